"""``python -m numpy_bert train|eval|fill-mask ...``: the command line of numpy_bert/cli/, in NumPy."""

import os

from .cli.main import main
from .training.pretraining import NumpyBackend

if __name__ == "__main__":
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # several processes would all write one run folder
        raise SystemExit("numpy_bert trains in one process; for several, run torch_bert under torchrun")
    raise SystemExit(main(backend=NumpyBackend))
