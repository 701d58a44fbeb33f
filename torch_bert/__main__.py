"""``python -m torch_bert train|eval|fill-mask ...``: numpy_bert's command line, computed by PyTorch.

Same options as ``python -m numpy_bert``, plus ``--device cpu|cuda`` and
``--precision fp32|bf16|fp16``; see numpy_bert/cli/. Under torchrun (several
processes), ``train`` uses DistributedDataParallel; see torch_bert/training/distributed.py.
"""

from numpy_bert.cli.main import main

from .training.distributed import DistributedTorchBackend, launched_by_torchrun, shutdown
from .training.pretraining import TorchBackend

if __name__ == "__main__":
    try:
        status = main(backend=DistributedTorchBackend if launched_by_torchrun() else TorchBackend)
    finally:
        shutdown()  # leave the process group, if one was joined: also after an error
    raise SystemExit(status)
