"""The same BERT, made fast: a fused forward and backward over the readable model's parameters.

model.py      FastBertForPreTraining, and the dataclasses its forward keeps for its backward
kernels.py    the blocked, fused element-wise kernels (fused_add_norm, fused_gelu, ...) and the GEMMs
threads.py    how many threads the kernels use, and how they share the blocks
buffers.py    BufferPool: large arrays recycled from one step to the next
"""

from .buffers import BufferPool
from .kernels import erf_float32
from .model import FastBertForPreTraining
from .threads import get_num_threads, set_num_threads

__all__ = ["BufferPool", "FastBertForPreTraining", "erf_float32", "get_num_threads", "set_num_threads"]
