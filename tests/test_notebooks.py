"""The notebooks run top to bottom from their sources, and the committed ``.ipynb`` are current.

Each notebook is a jupytext percent-format source ``notebooks/NN_name.py`` paired with
``NN_name.ipynb`` (committed with outputs). Every source is executed with nbclient in a kernel
running this interpreter, with ``MINI_BERT_FAST=1`` so it can shrink its sizes; any cell error
fails. Every committed ``.ipynb`` must hold exactly its source's cells, executed top to bottom
without errors. After editing a source: ``python scripts/notebooks.py NN``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
REGENERATE = "regenerate it with `python scripts/notebooks.py {prefix}`"
CELL_TIMEOUT_S = 300
MAX_NOTEBOOK_BYTES = 400_000  # committed outputs included; keep figures small (dpi ~72-100)


def load_runner():
    spec = importlib.util.spec_from_file_location("notebook_runner", ROOT / "scripts" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = load_runner()
SOURCES = runner.sources()


def ids(path: Path) -> str:
    return path.stem


def prefix(path: Path) -> str:
    return path.name[:2]


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def cells_missing_figures(cells: list) -> list[int]:
    """Indices of the code cells that call plt.show() yet hold no image: a backend switched to a
    non-displaying one (matplotlib.use("Agg") in an imported module, say) shows nothing, silently."""
    return [i for i, cell in enumerate(cells) if "plt.show()" in cell.source
            and not any("image/png" in output.get("data", {}) for output in cell.outputs)]


def test_there_are_notebooks():
    assert len(SOURCES) >= 10, f"expected the ten notebook sources in {NOTEBOOK_DIR}, found {len(SOURCES)}"


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_notebook_runs(source: Path):
    nb = runner.read_source(source)
    runner.execute(nb, fast=True, timeout=CELL_TIMEOUT_S)  # raises on any cell error
    assert all(cell.execution_count is not None for cell in code_cells(nb))
    assert not cells_missing_figures(code_cells(nb)), f"{source.name}: cells without their figures"


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_committed_notebook_is_its_source_executed(source: Path):
    problem = runner.out_of_sync(source)
    assert problem is None, f"{problem}: " + REGENERATE.format(prefix=prefix(source))
    path = source.with_suffix(".ipynb")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = code_cells(nb)
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name} was not executed top to bottom in one run (execution counts {counts}): "
        + REGENERATE.format(prefix=prefix(source)))
    errors = [(i, o.get("ename")) for i, cell in enumerate(cells) for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} has committed error outputs {errors}: " + REGENERATE.format(prefix=prefix(source))
    missing = cells_missing_figures(cells)
    assert not missing, f"{path.name}: code cells {missing} call plt.show() but hold no figure"
    size = path.stat().st_size
    assert size <= MAX_NOTEBOOK_BYTES, (
        f"{path.name} is {size / 1e3:.0f} KB (limit {MAX_NOTEBOOK_BYTES / 1e3:.0f} KB): use smaller or fewer figures")


def test_every_notebook_has_a_source():
    orphans = [p.name for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.with_suffix(".py").is_file()]
    assert not orphans, f"{orphans} have no percent-format source: create it with `jupytext --to py:percent`"


def test_readme_indexes_every_number():
    """The index names each notebook's number (01, 02, ...) and links it."""
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    missing = [p.stem for p in SOURCES if f"| {prefix(p)} " not in readme or f"({p.stem}.ipynb)" not in readme]
    assert not missing, f"notebooks/README.md has no linked row for {missing}"


def test_runner_check_reports_a_stale_notebook(tmp_path, monkeypatch):
    """--check names a notebook whose cells differ from its source, and passes once they agree."""
    source = tmp_path / "01_example.py"
    source.write_text("# %% [markdown]\n# # Example\n\n# %%\nprint(1 + 1)\n")
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", tmp_path)
    assert runner.out_of_sync(source) == "01_example.ipynb is missing"
    nbformat.write(runner.read_source(source), source.with_suffix(".ipynb"))
    assert runner.main(["--check"]) == 0
    source.write_text(source.read_text().replace("1 + 1", "2 + 2"))
    assert runner.out_of_sync(source) == "01_example.ipynb differs from 01_example.py"
    assert runner.main(["--check"]) == 1


def test_runner_text_copies_prose_keeps_outputs_and_refuses_code(tmp_path, monkeypatch):
    """--text copies an edited markdown cell into the .ipynb with its outputs kept; a code edit is refused (exit 2)."""
    source = tmp_path / "01_example.py"
    source.write_text("# %% [markdown]\n# # Example\n\n# %%\nprint(1 + 1)\n")
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", tmp_path)
    nb = runner.read_source(source)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nbformat.write(nb, source.with_suffix(".ipynb"))
    source.write_text(source.read_text().replace("Example", "A better title"))
    assert runner.main(["--text"]) == 0
    written = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert written.cells[0].source == "# A better title" and written.cells[1].outputs[0].text == "2\n"
    assert runner.out_of_sync(source) is None
    source.write_text(source.read_text().replace("1 + 1", "2 + 2"))
    assert runner.main(["--text"]) == 2
    assert nbformat.read(source.with_suffix(".ipynb"), as_version=4).cells[1].source == "print(1 + 1)"


def test_every_exercise_is_posed_in_its_notebook():
    """Each registered exercise has its stub, with the checker's signature, and its check in its notebook's source."""
    from numpy_bert import exercises as ex

    problems = []
    for name, exercise in ex.EXERCISES.items():
        source = (NOTEBOOK_DIR / f"{exercise.notebook}.py").read_text()
        signature = exercise.signature.splitlines()[0]  # "def name(...):"
        if signature not in source:
            problems.append(f"{exercise.notebook}.py lacks the stub `{signature}`")
        if f'ex.check("{name}", {name})' not in source:
            problems.append(f'{exercise.notebook}.py never calls ex.check("{name}", {name})')
    assert not problems, "; ".join(problems)
