"""``python -m numpy_bert train|eval|fill-mask ...``: the command line of numpy_bert/cli.py, in NumPy."""

from .cli import main
from .training import NumpyBackend

if __name__ == "__main__":
    raise SystemExit(main(backend=NumpyBackend))
