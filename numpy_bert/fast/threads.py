"""Threads for the element-wise kernels: how many, and how the blocks of rows are shared.

NumPy releases the GIL inside its loops, so a kernel run on separate blocks of rows
from several Python threads uses several cores, as the BLAS does for the GEMMs. The
blocks' partial sums are added in block order, so results do not depend on the
number of threads (``parity_tests/test_fast_parity.py`` checks the bits).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["get_num_threads", "parallel_blocks", "set_num_threads", "sum_partials"]

_threads: int | None = None
_default_threads: int | None = None
_executor: ThreadPoolExecutor | None = None


def get_num_threads() -> int:
    """Threads for the element-wise kernels: set_num_threads(), else OMP/OPENBLAS_NUM_THREADS, else all CPUs."""
    global _default_threads
    if _threads is not None:
        return _threads
    if _default_threads is None:  # read once: the BLAS, too, reads these when it is loaded
        _default_threads = os.cpu_count() or 1
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            value = os.environ.get(name, "")
            if value.isdigit() and int(value) > 0:
                _default_threads = int(value)
                break
    return _default_threads


def set_num_threads(n: int | None) -> None:
    """Use n threads for the element-wise kernels (None: back to the default). The BLAS is not affected."""
    global _threads
    if n is not None and n < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    _threads = n


def parallel_blocks(kernel: Callable[[int, int], object], n: int, block: int) -> list:
    """[kernel(lo, hi) for each block of ``block`` rows of range(n)], the blocks shared by the threads.

    Each thread takes a contiguous run of blocks (the calling thread the first run), so
    neighbouring rows stay on one core; the results come back in block order.
    """
    global _executor
    block = max(1, block)
    blocks = [(lo, min(lo + block, n)) for lo in range(0, n, block)]
    workers = min(get_num_threads(), len(blocks))
    if workers <= 1:
        return _run_blocks(kernel, blocks)
    if _executor is None or _executor._max_workers < workers - 1:
        _executor = ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="numpy_bert.fast")
    size = -(-len(blocks) // workers)
    runs = [blocks[i:i + size] for i in range(0, len(blocks), size)]
    futures = [_executor.submit(_run_blocks, kernel, run) for run in runs[1:]]
    results = _run_blocks(kernel, runs[0])
    for future in futures:
        results += future.result()
    return results


def _run_blocks(kernel: Callable[[int, int], object], blocks: list[tuple[int, int]]) -> list:
    return [kernel(lo, hi) for lo, hi in blocks]


def sum_partials(partials: list, dtype, size: int) -> np.ndarray:
    """Add per-block partial sums (each of ``size`` numbers) in block order: the same bits for any thread count."""
    return np.sum(partials, axis=0, dtype=dtype) if partials else np.zeros(size, dtype=dtype)
