"""Recycled large arrays: the fast model's activations come from a pool instead of fresh allocations."""

from __future__ import annotations

import math
import sys

import numpy as np

__all__ = ["REUSE_BYTES", "BufferPool"]

REUSE_BYTES = 8 << 20  # arrays at least this large come from the pool; smaller ones are cheap to allocate
_ONLY_THE_POOL = 3  # sys.getrefcount of an array held by nobody else: the pool's list, a loop variable, the call


class BufferPool:
    """Large arrays kept from one call to the next, handed out again only when nothing else holds them.

    Fresh multi-megabyte arrays cost page faults on every step (the kernel zeroes every
    page on first touch; glibc returns allocations above 32 MiB to the system when they
    are freed): system time that a reused array does not pay. An array in
    the pool is reused only when its reference count says that no caller, output or
    view still refers to it, so reuse never changes what a caller sees. The pool
    forgets other shapes whenever a new one is asked for, so sweeping over batch shapes
    does not hoard memory.
    """

    def __init__(self) -> None:
        self.arrays: dict[tuple, list[np.ndarray]] = {}

    def empty(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array, like np.empty: a free pooled one when the array is large."""
        dtype = np.dtype(dtype)
        if math.prod(shape) * dtype.itemsize < REUSE_BYTES:
            return np.empty(shape, dtype)
        key = (tuple(shape), dtype)
        arrays = self.arrays.get(key)
        if arrays is None:
            self._forget_free(but=key)
            arrays = self.arrays[key] = []
        for array in arrays:
            if sys.getrefcount(array) == _ONLY_THE_POOL:
                return array
        array = np.empty(shape, dtype)
        arrays.append(array)
        return array

    def _forget_free(self, but: tuple) -> None:
        for key in list(self.arrays):
            if key != but:
                self.arrays[key] = [a for a in self.arrays[key] if sys.getrefcount(a) > _ONLY_THE_POOL]
                if not self.arrays[key]:
                    del self.arrays[key]
