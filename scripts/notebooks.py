"""Execute the notebooks from their sources and write the paired ``.ipynb`` with outputs.

    python scripts/notebooks.py               # every notebooks/NN_*.py -> NN_*.ipynb, executed full size
    python scripts/notebooks.py 03 10         # only the notebooks whose names start with 03 or 10
    python scripts/notebooks.py --check       # say which .ipynb differ from their sources (exit 1 if any)
    python scripts/notebooks.py --text 05     # copy edits of markdown cells only into 05's .ipynb, running nothing

Each notebook is authored as a jupytext percent-format source, ``notebooks/NN_name.py``,
paired with ``NN_name.ipynb`` (``notebooks/jupytext.toml``): edit the ``.py`` in an editor,
or the notebook in JupyterLab (``make lab``), which saves both. The ``.ipynb`` is committed
*with* its outputs, so the plots show on GitHub and in the book (``make book``); this script
makes those outputs from a clean run, top to bottom. The ``.py`` is the source of truth here:
an ``.ipynb`` edited after its source is refused rather than overwritten.

Execution uses the interpreter running this script (a kernelspec pointing at
``sys.executable`` is written to a temporary folder), so no ``jupyter kernelspec install``
is needed. ``fast=True`` sets ``MINI_BERT_FAST=1`` in the kernel's environment; notebooks read
it to shrink their sizes (the tests do this), and NumPy's BLAS gets one thread unless
OPENBLAS_NUM_THREADS / MKL_NUM_THREADS are set: its matrices are small then, and idle BLAS
threads spinning on shared cores slowed the tests several times over.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL_NAME = "mini-bert-python"  # a private kernelspec, written to a temporary folder per run
KERNELSPEC_METADATA = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
FAST_ENV = "MINI_BERT_FAST"
BLAS_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def sources(prefixes: list[str] | None = None) -> list[Path]:
    """The notebook sources ``notebooks/NN_name.py``, in order, optionally only those starting with a prefix."""
    paths = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    return [p for p in paths if not prefixes or p.name.startswith(tuple(prefixes))]


def read_source(path: Path) -> nbformat.NotebookNode:
    """The notebook of a percent-format source, without outputs, with stable cell ids."""
    nb = jupytext.read(path)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"
    nb.metadata["kernelspec"] = dict(KERNELSPEC_METADATA)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """What pairing must keep equal: each cell's type and source."""
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def out_of_sync(source: Path) -> str | None:
    """Why ``source``'s committed ``.ipynb`` does not hold its cells, or None when it does."""
    notebook = source.with_suffix(".ipynb")
    if not notebook.is_file():
        return f"{notebook.name} is missing"
    if cells(nbformat.read(notebook, as_version=4)) != cells(read_source(source)):
        return f"{notebook.name} differs from {source.name}"
    return None


def execute(nb: nbformat.NotebookNode, cwd: Path = NOTEBOOK_DIR, fast: bool = False, timeout: int = 300) -> None:
    """Run every cell of ``nb`` in place with this interpreter; raises CellExecutionError on the first error."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    env = dict(os.environ)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures as inline PNG outputs
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    env.pop(FAST_ENV, None)
    if fast:
        env[FAST_ENV] = "1"
        for name in BLAS_THREAD_ENV:
            env.setdefault(name, "1")
    with tempfile.TemporaryDirectory() as tmp:
        kernel_dir = Path(tmp, "kernels", KERNEL_NAME)
        kernel_dir.mkdir(parents=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (this interpreter)", "language": "python"}
        (kernel_dir / "kernel.json").write_text(json.dumps(spec))
        manager = KernelManager(kernel_name=KERNEL_NAME,
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir.parent)]))
        client = NotebookClient(nb, km=manager, timeout=timeout, record_timing=False,
                                resources={"metadata": {"path": str(cwd)}})
        try:
            client.execute(env=env)  # keyword arguments go to KernelManager.start_kernel
        finally:
            if manager.has_kernel:  # a kernel manager we pass in is ours to shut down, not nbclient's
                manager.shutdown_kernel(now=True)
    nb.metadata["kernelspec"] = dict(KERNELSPEC_METADATA)  # what a reader's Jupyter should start


def copy_text(source: Path) -> str | None:
    """Put the source's markdown cells into its .ipynb, keeping the outputs; why not, or None when done.

    Prose does not change what the code prints, so an edit of markdown cells alone needs no re-run;
    anything else (a code cell, a cell added, removed or moved) does.
    """
    notebook = source.with_suffix(".ipynb")
    new, old = read_source(source), nbformat.read(notebook, as_version=4)
    code = [[c.source for c in nb.cells if c.cell_type == "code"] for nb in (new, old)]
    if [c.cell_type for c in new.cells] != [c.cell_type for c in old.cells] or code[0] != code[1]:
        return (f"{notebook.name} has other code cells than {source.name}: "
                f"run `python scripts/notebooks.py {source.name[:2]}`")
    for new_cell, old_cell in zip(new.cells, old.cells, strict=True):
        if new_cell.cell_type == "markdown":
            old_cell.source = new_cell.source
    nbformat.write(old, notebook)
    os.utime(source)
    return None


def edited_in_jupyter(source: Path) -> bool:
    """True when the .ipynb holds other cells than its source and was saved after it (jupytext --sync first)."""
    notebook = source.with_suffix(".ipynb")
    return (notebook.is_file() and notebook.stat().st_mtime > source.stat().st_mtime
            and out_of_sync(source) is not None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="only notebooks whose names start with one of these")
    parser.add_argument("--check", action="store_true", help="only report notebooks out of sync with their sources")
    parser.add_argument("--text", action="store_true", help="copy edits of markdown cells only, running nothing")
    parser.add_argument("--fast", action="store_true", help=f"run with {FAST_ENV}=1 (small sizes, as the tests)")
    args = parser.parse_args(argv)
    paths = sources(args.prefixes)
    if not paths:
        print(f"no notebook source matches {args.prefixes} in {NOTEBOOK_DIR}", file=sys.stderr)
        return 2
    if args.check:
        problems = [(path, problem) for path in paths if (problem := out_of_sync(path))]
        for path, problem in problems:
            print(f"{problem}: run `python scripts/notebooks.py {path.name[:2]}`")
        return 1 if problems else 0
    if args.text:
        problems = [problem for path in paths if (problem := copy_text(path))]
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2 if problems else 0
    for path in paths:
        if edited_in_jupyter(path):
            print(f"{path.with_suffix('.ipynb').name} was edited after {path.name}: "
                  f"run `jupytext --sync notebooks/{path.name}` first (or save it in JupyterLab)", file=sys.stderr)
            return 2
    for path in paths:
        start = time.perf_counter()
        nb = read_source(path)
        execute(nb, fast=args.fast)
        nbformat.validate(nb)
        out = path.with_suffix(".ipynb")
        nbformat.write(nb, out)
        os.utime(path)  # the source stays the newer of the pair
        print(f"wrote notebooks/{out.name} ({out.stat().st_size / 1024:.0f} KB, "
              f"executed in {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
