"""The PyTorch twin of numpy_bert.optim: torch.optim.AdamW, LambdaLR and clip_grad_norm_.

Nothing is re-implemented: the parameter groups (no weight decay for biases and
LayerNorm weights, optional layer-wise lr decay) and the warm-up/decay multiplier
come from ``numpy_bert.optim``, pure Python shared by both backends, and torch's own
optimizer, scheduler and clipping do the arithmetic. The training loop that matches
``numpy_bert.optim.AdamW(..., schedule=...)`` step for step is::

    optimizer = build_optimizer(model, lr, ...)
    scheduler = build_scheduler(optimizer, warmup_steps, total_steps)
    for batch in batches:
        loss = ...; loss.backward()
        clip_grad_norm(model.parameters(), max_norm)
        optimizer.step()          # step k uses lr * multiplier(k), k = 0, 1, ...
        scheduler.step()
        optimizer.zero_grad()
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from numpy_bert.optim import (
    BERT_DEFAULTS,
    LinearWarmupDecay,
    decay_mask,
    layer_depth,
    layerwise_lr_multiplier,
    linear_schedule_with_warmup,
    param_groups,
)

__all__ = [
    "BERT_DEFAULTS",
    "LinearWarmupDecay",
    "build_optimizer",
    "build_scheduler",
    "clip_grad_norm",
    "decay_mask",
    "layer_depth",
    "layerwise_lr_multiplier",
    "linear_schedule_with_warmup",
    "param_groups",
    "scale_grads",
]


def build_optimizer(
    model_or_named_params: torch.nn.Module | Iterable[tuple[str, torch.Tensor]],
    lr: float = BERT_DEFAULTS["lr"],
    weight_decay: float = BERT_DEFAULTS["weight_decay"],
    betas: tuple[float, float] = BERT_DEFAULTS["betas"],
    eps: float = BERT_DEFAULTS["eps"],
    layerwise_lr_decay: float | None = None,
    num_layers: int | None = None,
    foreach: bool | None = None,
) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over ``numpy_bert.optim.param_groups``, with BERT's defaults.

    The groups carry the parameter names (torch stores them as ``param_names``).
    ``foreach=None`` is torch's default: the single-tensor loop on CPU (what the
    parity tests compare with), the fused-list kernels on CUDA.
    """
    named = model_or_named_params
    if isinstance(named, torch.nn.Module):
        named = named.named_parameters()
    groups = param_groups(named, weight_decay, lr, layerwise_lr_decay, num_layers)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach)


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then linear decay to 0: ``LambdaLR`` with the shared multiplier.

    Equivalent to transformers' ``get_linear_schedule_with_warmup``; its state_dict
    holds ``warmup_steps`` and ``total_steps`` (the multiplier is a small object,
    not a closure).
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LinearWarmupDecay(warmup_steps, total_steps))


def clip_grad_norm(params: Iterable[torch.Tensor | tuple[str, torch.Tensor]], max_norm: float,
                   error_if_nonfinite: bool = False) -> float:
    """``torch.nn.utils.clip_grad_norm_`` (global L2 norm); returns the norm before clipping.

    Accepts tensors or ``(name, tensor)`` pairs, like its NumPy twin. The float
    conversion synchronises with the device once per call.
    """
    tensors = [p[1] if isinstance(p, tuple) else p for p in params]
    return float(torch.nn.utils.clip_grad_norm_(tensors, max_norm, error_if_nonfinite=error_if_nonfinite))


@torch.no_grad()
def scale_grads(params: Iterable[torch.Tensor | tuple[str, torch.Tensor]], factor: float) -> None:
    """Multiply every existing ``.grad`` in place by ``factor`` (e.g. 1/k after k accumulated micro-batches).

    ``loss.backward()`` adds into ``.grad``, so k micro-batches without
    ``zero_grad`` in between leave the sum of their gradients; ``scale_grads(.., 1/k)``
    (or ``(loss / k).backward()``) turns that into the gradient of the mean loss.
    """
    for p in params:
        p = p[1] if isinstance(p, tuple) else p
        if p.grad is not None:
            p.grad.mul_(factor)

