"""The timing protocol and the memory meters, shared by every backend.

Timing: ``warmup`` untimed calls, then timed calls until at least ``min_repeats`` calls
*and* ``min_time`` seconds have been measured (at most ``max_repeats``; a cell slower
than ``budget_s`` stops after 2). Each call is timed alone with ``time.perf_counter``,
after a device synchronisation on CUDA, so the spread is visible: the median is the
figure, the inter-quartile range and min/max its spread.

Memory: the growth of the peak over what was in use once the model, the optimizer and
the batch were built, during all the calls of the cell (so the first training step's
gradients, optimizer state and activations are included):

* CPU: the process's peak resident set (``VmHWM``), reset before the cell by writing
  5 to ``/proc/self/clear_refs`` (Linux >= 4.0); elsewhere ``ru_maxrss``, which cannot
  be reset (the method field says which). This measures NumPy and PyTorch alike,
  allocator caches included. Before the baseline is read, glibc's ``malloc_trim(0)``
  hands memory freed by earlier cells back to the system, so that a cell cannot hide
  its peak in memory a previous cell left in the heap.
* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable


def measure(step: Callable[[], object], sync: Callable[[], None] | None = None, *, warmup: int, min_repeats: int,
            max_repeats: int, min_time: float, budget_s: float) -> dict:
    sync = sync or (lambda: None)
    for _ in range(warmup):
        step()
        sync()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_repeats:
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        if len(times) >= min_repeats and elapsed >= min_time:
            break
        if len(times) >= 2 and elapsed >= budget_s:
            break
    return summarise(times, warmup)


def summarise(times: list[float], warmup: int) -> dict:
    ordered = sorted(times)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {"median_s": statistics.median(ordered), "q1_s": q1, "q3_s": q3, "min_s": ordered[0],
            "max_s": ordered[-1], "repeats": len(ordered), "warmup": warmup, "times_s": times}


# ---- CPU memory ------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _release_free_heap() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class CpuMemoryMeter:
    """Peak resident memory of this process during a block, above the level at its start."""

    def start(self) -> None:
        gc.collect()
        _release_free_heap()
        self.method = "VmHWM after clear_refs (peak RSS growth)"
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            self.base_kib = _status_kib("VmRSS")
            if self.base_kib is None:
                raise OSError("no VmRSS")
        except OSError:
            self.method = "ru_maxrss growth (cannot be reset; a lower bound)"
            self.base_kib = self._maxrss_kib()

    @staticmethod
    def _maxrss_kib() -> int:
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return value // 1024 if sys.platform == "darwin" else value  # bytes on macOS, KiB on Linux

    def stop(self) -> int:
        peak = _status_kib("VmHWM") if self.method.startswith("VmHWM") else self._maxrss_kib()
        return max(0, (peak or 0) - self.base_kib) * 1024


class CudaMemoryMeter:
    method = "torch.cuda.max_memory_allocated growth"

    def __init__(self, torch):
        self.torch = torch

    def start(self) -> None:
        gc.collect()
        self.torch.cuda.synchronize()
        self.torch.cuda.reset_peak_memory_stats()
        self.base = self.torch.cuda.memory_allocated()

    def stop(self) -> int:
        self.torch.cuda.synchronize()
        return max(0, self.torch.cuda.max_memory_allocated() - self.base)
