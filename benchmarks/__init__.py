"""Benchmarks: numpy_bert (readable and fast) on CPU against torch_bert and transformers on CPU and GPU.

    python -m benchmarks            # the full matrix (CPU; GPU cells too when a CUDA device is present)
    python -m benchmarks --quick    # a small matrix, a few minutes on 2 cores
    python -m benchmarks --smoke    # seconds; what tests/test_benchmarks.py runs
    python -m benchmarks --gpu-only # only the CUDA cells (for a machine with a GPU)
    python -m benchmarks --readme   # print benchmarks/README.md's results block, rendered from results.json
    python -m benchmarks --profile  # pyinstrument profile of the NumPy training step (readable and fast)

See benchmarks/README.md for the JSON schema, the FLOP convention and the timing protocol.
This package must not import numpy at import time: ``__main__`` sets the BLAS thread
variables first.
"""
