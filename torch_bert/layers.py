"""The layers torch.nn lacks, as twins of numpy_bert/layers.py: BERT's two GELUs and a dropout
that can share its masks with numpy_bert. Everything else (Linear, Embedding, LayerNorm, Tanh,
softmax, cross-entropy) is torch's own."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from numpy_bert.layers import GeneratorMasks, KeyedMasks

__all__ = ["GELU", "Dropout"]


class GELU(nn.Module):
    """Gaussian Error Linear Unit, in transformers' two flavours: "gelu" (exact, with erf) and
    "gelu_new" (tanh approximation, GPT-2's)."""

    def __init__(self, approximate: str = "gelu"):
        super().__init__()
        if approximate not in ("gelu", "gelu_new"):
            raise ValueError(f"unknown GELU variant {approximate!r}; use 'gelu' or 'gelu_new'")
        self.approximate = "none" if approximate == "gelu" else "tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)


class Dropout(nn.Dropout):
    """nn.Dropout that can instead take its masks from a numpy_bert mask source.

    With ``mask_source`` set (a KeyedMasks), the mask for this module's n-th call is
    the same array numpy_bert's twin module draws, so the two backends can be compared
    with dropout on. Otherwise it is plain torch dropout.
    """

    def __init__(self, p: float):
        super().__init__(p)
        self.name = ""  # the module's dotted name, set by the model: masks are keyed by it
        self.mask_source: GeneratorMasks | KeyedMasks | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.mask_source is None:
            return F.dropout(x, self.p, self.training)
        keep = self.mask_source.keep_mask(self.name, tuple(x.shape), self.p)
        scale = torch.from_numpy(keep).to(device=x.device, dtype=x.dtype) / (1 - self.p)
        return x * scale
