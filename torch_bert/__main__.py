"""``python -m torch_bert train|eval|fill-mask ...``: numpy_bert's command line, computed by PyTorch.

Same options as ``python -m numpy_bert``, plus ``--device cpu|cuda`` and
``--precision fp32|bf16|fp16``; see numpy_bert/cli.py.
"""

from numpy_bert.cli import main

from .training import TorchBackend

if __name__ == "__main__":
    raise SystemExit(main(backend=TorchBackend))
