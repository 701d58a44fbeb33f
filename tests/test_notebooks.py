"""The notebooks in notebooks/ run top to bottom, and their committed outputs are current.

Every ``notebooks/*.ipynb`` is picked up automatically. Each is executed with nbclient in a
kernel that runs this very interpreter (``notebooks/_build.py`` writes a temporary
kernelspec pointing at ``sys.executable``, so a fresh ``.venv`` needs no ``jupyter
kernelspec install``), with ``MINI_BERT_FAST=1`` in its environment so a notebook can
shrink its sizes. Any cell error fails the test.

The committed files must be the executed output of ``notebooks/_build.py``: every code
cell ran, in order, without errors, and (for notebooks that _build.py defines) the cells
equal what it generates. After editing a notebook's cells in _build.py, regenerate with
``python notebooks/_build.py NN``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
MAX_NOTEBOOK_BYTES = 400_000  # committed outputs included; keep figures small (dpi ~72-100)
REGENERATE = "regenerate it with `python notebooks/_build.py {prefix}`"


def load_build():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOK_DIR / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_build = load_build()


def ids(path: Path) -> str:
    return path.name


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def cells_missing_figures(cells: list) -> list[int]:
    """Indices of the code cells that call plt.show() yet hold no image: a backend switched to a
    non-displaying one (matplotlib.use("Agg") in an imported module, say) shows nothing, silently."""
    return [i for i, cell in enumerate(cells) if "plt.show()" in cell.source
            and not any("image/png" in output.get("data", {}) for output in cell.outputs)]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_runs(path: Path):
    nb = nbformat.read(path, as_version=4)
    for cell in code_cells(nb):
        cell.outputs, cell.execution_count = [], None
    _build.execute(nb, cwd=str(NOTEBOOK_DIR), fast=True, timeout=CELL_TIMEOUT_S)  # raises on any cell error
    assert all(cell.execution_count is not None for cell in code_cells(nb))
    assert not cells_missing_figures(code_cells(nb)), f"{path.name}: cells without their figures"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_outputs_are_current(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    prefix = path.stem.split("_")[0]
    cells = code_cells(nb)
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name} was not executed top to bottom in one run (execution counts {counts}): "
        + REGENERATE.format(prefix=prefix))
    errors = [(i, o.get("ename")) for i, cell in enumerate(cells) for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} has committed error outputs {errors}: " + REGENERATE.format(prefix=prefix)
    missing = cells_missing_figures(cells)
    assert not missing, f"{path.name}: code cells {missing} call plt.show() but hold no figure"
    size = path.stat().st_size
    assert size <= MAX_NOTEBOOK_BYTES, (
        f"{path.name} is {size / 1e3:.0f} KB (limit {MAX_NOTEBOOK_BYTES / 1e3:.0f} KB): use smaller or fewer figures")
    if path.stem in _build.NOTEBOOKS:
        expected = _build.build(path.stem)
        actual_cells = [(c.cell_type, c.source) for c in nb.cells]
        expected_cells = [(c.cell_type, c.source) for c in expected.cells]
        assert actual_cells == expected_cells, (
            f"{path.name} differs from the cells in notebooks/_build.py (edit the cells there, not in Jupyter): "
            + REGENERATE.format(prefix=prefix))


@pytest.mark.parametrize("name", sorted(_build.NOTEBOOKS))
def test_every_built_notebook_is_committed(name: str):
    assert (NOTEBOOK_DIR / f"{name}.ipynb").is_file(), f"notebooks/{name}.ipynb is missing: " + REGENERATE.format(
        prefix=name.split("_")[0])


def test_readme_indexes_every_number():
    """The index names each notebook's number (01, 02, ...); written ones should also be linked there."""
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    missing = [path.name for path in NOTEBOOKS if f"| {path.stem.split('_')[0]} " not in readme]
    assert not missing, f"notebooks/README.md has no row for {missing}"
