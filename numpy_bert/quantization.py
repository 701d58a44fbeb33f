"""Int8 weights by hand: symmetric, per-output-channel quantization of BERT's matrices.

Every Linear layer's weight W (out, in) and the word-embedding table E (V, C) are stored as
int8 with one float32 scale per row:

    s_i  = max_j |W_ij| / 127                     one scale per output channel (row) i
    Q_ij = round(W_ij / s_i)                      an integer in [-127, 127]: int8
    W_ij ≈ s_i Q_ij,    |W_ij - s_i Q_ij| <= s_i / 2

*Symmetric*: zero maps to zero and no zero point is stored; BERT's weights are centred on zero,
so an offset would buy little and cost a term per output. *Per channel*: a row with one large
weight gets a coarse step of its own without coarsening the others (one scale for the whole
matrix would be set by its single largest weight). -128 is left out so that the range is
symmetric and ``-Q`` never overflows.

A Linear layer then computes, for an input row x,

    y_i = sum_j x_j W_ij + b_i  ≈  s_i (sum_j x_j Q_ij) + b_i

The scale belongs to the output i, so it leaves the sum: the matrix product runs on Q itself
and one multiply per output restores the scale. Here Q is cast to float32 for the product
(the integers -127..127 are exact in float32), so only the weights are quantized, never the
activations: the error is entirely the rounding of W,

    y_i - ŷ_i = sum_j x_j (W_ij - s_i Q_ij),   |y_i - ŷ_i| <= (s_i / 2) sum_j |x_j|

and with rounding errors independent and uniform on [-s_i/2, s_i/2] its standard deviation is
s_i ||x|| / sqrt(12): about 1/(127 sqrt(12)) ≈ 0.2 % of max|W_i| ||x||. The embedding lookup
gathers rows of Q and their scales, ``E[ids] ≈ s[ids, None] * Q[ids]``; the MLM decoder, tied
to E, is a Linear whose output channels are E's rows, so it shares E's int8 table and scales.

What stays float32: biases, LayerNorm, the position and token-type tables (small), every
activation. The checkpoint stores ``NAME.weight`` as int8 and ``NAME.weight_scale`` beside it,
and config.json says so in ``quantization_config``. Quantized models are for inference:
their backward passes raise, fine-tune the float32 model instead.
"""

from __future__ import annotations

import numpy as np

from .layers import Embedding, Linear
from .nn import Module, Parameter

INT8_MAX = 127
QUANT_METHOD = "numpy_bert_int8"
QUANTIZATION_CONFIG = {"quant_method": QUANT_METHOD, "bits": 8, "symmetric": True, "granularity": "per_channel",
                       "modules": ["Linear", "word_embeddings"], "activations": "float32"}


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, s): int8 Q (rows, cols) and float32 s (rows,) with w ≈ s[:, None] * Q, each row on its own scale."""
    largest = np.abs(w).max(axis=1)  # (rows,)
    # At least the smallest normal float32 (2^-126): a row of tiny weights would otherwise get a scale that
    # underflows to 0, or to a subnormal too coarse to hold the step (hypothesis found both); an all-zero
    # row, 0. A power of two divides and multiplies exactly, so those rows keep |error| <= s/2 too.
    scale = np.maximum(largest / INT8_MAX, np.finfo(np.float32).tiny).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)  # (rows, cols)
    return q, scale


def dequantize_rows(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """s[:, None] * Q as float32: the weights an int8 layer computes with."""
    return q.astype(np.float32) * scale[:, None]


def inference_only(module: Module) -> None:
    raise NotImplementedError(f"{type(module).__name__} is int8, for inference only: fine-tune or train the "
                              "float32 model and quantize it afterwards")


class QuantizedLinear(Module):
    """y = s * (x Q^T) + b: a Linear with int8 weight Q (out, in) and float32 scales s (out,)."""

    def __init__(self, weight: Parameter, weight_scale: Parameter, bias: Parameter):
        super().__init__()
        self.weight, self.weight_scale, self.bias = weight, weight_scale, bias

    @classmethod
    def from_linear(cls, linear: Linear) -> QuantizedLinear:
        q, scale = quantize_rows(linear.weight.data)
        return cls(Parameter(q), Parameter(scale), Parameter(linear.bias.data.astype(np.float32)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        summed = x @ self.weight.data.T.astype(x.dtype)  # (..., out): sum_j x_j Q_ij, exact integers times x
        return summed * self.weight_scale.data + self.bias.data  # (..., out): the scale of each output, then b

    def backward(self, dy: np.ndarray) -> np.ndarray:
        inference_only(self)


class QuantizedEmbedding(Module):
    """y = s[ids, None] * Q[ids]: an embedding table stored as int8 rows Q (V, C) with a scale per row s (V,)."""

    def __init__(self, weight: Parameter, weight_scale: Parameter):
        super().__init__()
        self.weight, self.weight_scale = weight, weight_scale

    @classmethod
    def from_embedding(cls, embedding: Embedding) -> QuantizedEmbedding:
        q, scale = quantize_rows(embedding.weight.data)
        return cls(Parameter(q), Parameter(scale))

    def forward(self, ids: np.ndarray) -> np.ndarray:
        rows = self.weight.data[ids].astype(np.float32)  # (..., C)
        return rows * self.weight_scale.data[ids][..., None]  # (..., C)

    def backward(self, dy: np.ndarray) -> None:
        inference_only(self)


def is_quantized(config) -> bool:
    """True for the config of a checkpoint this module wrote (config.json's ``quantization_config``)."""
    method = (config.extra.get("quantization_config") or {}).get("quant_method")
    if method not in (None, QUANT_METHOD):
        raise ValueError(f"quantization_config.quant_method is {method!r}: numpy_bert reads {QUANT_METHOD!r} "
                         "checkpoints only (python -m numpy_bert quantize writes them)")
    return method == QUANT_METHOD


def quantize_model(model: Module) -> Module:
    """Replace, in place, every Linear by a QuantizedLinear and the word embeddings by a QuantizedEmbedding.

    A Linear that shares its weight with the word embeddings (the tied MLM decoder) shares the
    int8 table and its scales too, so the checkpoint holds them once, as before quantization.
    """
    embeddings = getattr(getattr(model, "bert", model), "embeddings", None)
    table = getattr(embeddings, "word_embeddings", None)
    if isinstance(table, Embedding):
        quantized_table = QuantizedEmbedding.from_embedding(table)
        embeddings.word_embeddings = quantized_table
    for _, parent in list(model.named_modules()):
        for name, child in list(parent._modules.items()):
            if not isinstance(child, Linear):
                continue
            if isinstance(table, Embedding) and child.weight is table.weight:
                replacement = QuantizedLinear(quantized_table.weight, quantized_table.weight_scale, child.bias)
            else:
                replacement = QuantizedLinear.from_linear(child)
            setattr(parent, name, replacement)
    model.config = model.config.replace(extra={**model.config.extra, "quantization_config": QUANTIZATION_CONFIG})
    return model
