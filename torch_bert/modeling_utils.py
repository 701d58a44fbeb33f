"""What every torch_bert model shares; the twin of numpy_bert/modeling_utils.py.

Input checks, config and checkpoint files come from numpy_bert (shared pure-Python
code lives once); this file adds what is PyTorch-specific.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from numpy_bert.checkpoint import (
    HEAD_PREFIXES,
    WEIGHTS_NAME,
    LoadingInfo,
    align_to_model,
    check_finite,
    load_weights,
    named_model_dir,
    save_model_files,
)
from numpy_bert.config import BertConfig
from numpy_bert.layers import KeyedMasks
from numpy_bert.modeling_utils import check_inputs, check_labels
from numpy_bert.modeling_utils import has_padding as has_masked_keys
from numpy_bert.quantization import is_quantized

from .layers import Dropout

__all__ = ["BertPreTrainedModel", "additive_attention_mask", "check_labels", "has_padding"]


def tracing() -> bool:
    """True while torch.export (ONNX's dynamo exporter) or torch.jit.trace (its TorchScript one) records the model."""
    exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.6, which export-onnx needs
    return (exporting is not None and exporting()) or torch.jit.is_tracing()


def has_padding(attention_mask: torch.Tensor | None) -> bool:
    """numpy_bert's ``has_padding``, except while the model is traced for export (ONNX): the exported
    graph serves every batch, padded or not, so it always applies the mask (adding zeros where nothing
    is padded), and the question, which reads the data, is not asked."""
    if tracing():
        return attention_mask is not None
    return has_masked_keys(attention_mask)


def additive_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) of 1/0 -> (B, 1, 1, T) of 0 / the dtype's most negative number (transformers' eager mask).

    Under autocast the scores are computed in the autocast dtype, so the mask is built in it: float32's
    most negative number would round to -inf in bfloat16, and a row with every key masked would then
    be NaN or zeros instead of the uniform average it is in float32 and in numpy_bert.
    """
    device_type = attention_mask.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    return torch.where(attention_mask[:, None, None, :] != 0, zero, torch.finfo(dtype).min)


class BertPreTrainedModel(nn.Module):
    config_class = BertConfig  # the family members (RobertaForMaskedLM, ...) name their own
    base_model_prefix = "bert"  # the encoder's name inside a model with heads, as in transformers
    head_prefixes = HEAD_PREFIXES  # names of the heads around it: a checkpoint may lack them, or have others
    tied_weights: dict[str, str] = {}

    def __init__(self, config: BertConfig):
        super().__init__()
        config.validate()
        self.config = config

    def post_init(self, seed: int | None, dtype: torch.dtype) -> None:
        """Initialise weights as transformers does (drawn from torch's generator seeded with
        ``seed``), name the dropout layers, and cast to ``dtype``. ``seed=None``: a sub-module."""
        if seed is None:
            return
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        generator = torch.Generator().manual_seed(seed)
        std = self.config.initializer_range
        drawn: set[int] = set()  # the tied decoder weight is the embedding: draw it once
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)) and id(module.weight) not in drawn:
                    drawn.add(id(module.weight))
                    module.weight.normal_(0.0, std, generator=generator)
                    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                        module.weight[module.padding_idx] = 0
                if isinstance(module, (nn.Linear, nn.LayerNorm)) and module.bias is not None:
                    module.bias.zero_()
                if isinstance(module, nn.LayerNorm):
                    module.weight.fill_(1.0)
        for name, module in self.named_modules():
            if isinstance(module, Dropout):
                module.name = name
        self.to(dtype)

    def set_dropout_masks(self, source: KeyedMasks | None) -> None:
        """Take dropout masks from a numpy_bert mask source (None: torch's own RNG)."""
        for module in self.modules():
            if isinstance(module, Dropout):
                module.mask_source = source

    def use_sdpa(self, enabled: bool = True) -> None:
        """Compute attention with torch's fused scaled_dot_product_attention (no attention maps)."""
        for module in self.modules():
            if hasattr(module, "use_sdpa") and not callable(module.use_sdpa):
                module.use_sdpa = enabled

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype, set once for the whole tree by ``post_init``."""
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_inputs(self, input_ids, attention_mask=None, token_type_ids=None):
        for name, value in (("input_ids", input_ids), ("attention_mask", attention_mask),
                            ("token_type_ids", token_type_ids)):
            if value is not None and not isinstance(value, torch.Tensor):  # the shared checks take arrays too
                raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if not tracing():  # the checks read the values, which a traced graph does not have
            check_inputs(self.config, input_ids, attention_mask, token_type_ids)
        return input_ids, attention_mask, token_type_ids

    # ---- checkpoints -------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, dtype=torch.float32, output_loading_info: bool = False,
                        **kwargs):
        """Load config.json + model.safetensors (or a pytorch_model.bin, with weights_only=True).

        ``directory`` may also be a name that numpy_bert.checkpoint.named_model_dir knows ("python-docs", "minilm").
        """
        directory = named_model_dir(directory)
        config = cls.config_class.from_pretrained(directory)
        if is_quantized(config):
            raise ValueError(f"{directory} holds numpy_bert's int8 weights (python -m numpy_bert quantize), which "
                             "torch_bert does not compute with; load the float32 model it was quantized from")
        model = cls(config, dtype=dtype, **kwargs)
        info = model.load_pretrained_weights(directory)
        return (model, info) if output_loading_info else model

    def load_pretrained_weights(self, directory: str | os.PathLike) -> LoadingInfo:
        """Copy a checkpoint's tensors into this model by name (see ``from_pretrained`` for the rules)."""
        tensors = _read_weights(named_model_dir(directory))
        params = dict(self.named_parameters())
        aligned, info = align_to_model(tensors, {n: tuple(p.shape) for n, p in params.items()}, self.tied_weights,
                                       self.base_model_prefix, self.head_prefixes)
        with torch.no_grad():
            for name, array in aligned.items():
                params[name].copy_(torch.from_numpy(np.asarray(array)))
        return info

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write config.json and model.safetensors as one unit, in the layout numpy_bert and transformers use."""
        tensors = {name: p.detach().cpu().numpy() for name, p in self.named_parameters()}
        extra = {**self.config.extra, "architectures": [type(self).__name__]}
        save_model_files(directory, self.config.replace(extra=extra).to_dict(), tensors)


def _read_weights(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """model.safetensors if present; else a legacy pytorch_model.bin, unpickled only as plain tensors."""
    legacy = os.path.join(directory, "pytorch_model.bin")
    if not os.path.isfile(os.path.join(directory, WEIGHTS_NAME)) and os.path.isfile(legacy):
        try:
            state = torch.load(legacy, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for corrupt or unsafe files
            raise ValueError(f"{legacy} could not be read as plain tensors ({err})") from err
        tensors = {name: t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy() for name, t in state.items()}
        check_finite(tensors, legacy)
        return tensors
    return load_weights(directory)
