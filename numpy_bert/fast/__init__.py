"""The same BERT, made fast: a fused forward and backward over the readable model's parameters."""

from .model import BufferPool, FastBertForPreTraining, erf_float32, get_num_threads, set_num_threads

__all__ = ["BufferPool", "FastBertForPreTraining", "erf_float32", "get_num_threads", "set_num_threads"]
