"""``python -m benchmarks``: see benchmarks/README.md and ``python -m benchmarks --help``.

The BLAS libraries read their thread count once, when they are loaded, so the thread
variables are set here, before anything imports numpy (benchmarks/__init__.py imports
nothing). Every worker process inherits them; torch.set_num_threads gets the same number.
"""

import os
import sys

from benchmarks.machine import THREAD_VARIABLES, available_cpus


def _threads_argument(argv: list[str]) -> int | None:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return None


THREADS = _threads_argument(sys.argv[1:]) or available_cpus()
for _name in THREAD_VARIABLES:
    os.environ[_name] = str(THREADS)
os.environ["TOKENIZERS_PARALLELISM"] = "true"

from benchmarks.run import main  # noqa: E402  (after the environment is set)

raise SystemExit(main(sys.argv[1:], THREADS))
