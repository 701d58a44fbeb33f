"""``python -m numpy_bert train|eval|fill-mask ...``: the command line of numpy_bert/cli/, in NumPy."""

import os
import sys

from .cli.main import main
from .training.pretraining import NumpyBackend

if __name__ == "__main__":
    if os.environ.get("WORLD_SIZE", "1") != "1":  # several processes would all write one run folder
        print("python -m numpy_bert: error: numpy_bert runs in one process (WORLD_SIZE is set by torchrun); "
              "for several, run python -m torch_bert under torchrun", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(backend=NumpyBackend))
