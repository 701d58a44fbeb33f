"""AdamW, its learning-rate schedule and gradient clipping, by hand in NumPy.

Everything here mirrors PyTorch so a NumPy run and a torch run follow the same
trajectory (``parity_tests/test_optim_parity.py`` checks 20 steps in float64):

* :class:`AdamW` is ``torch.optim.AdamW`` (single-tensor path): decoupled weight
  decay, bias-corrected moments, one step counter per parameter.
* :func:`linear_schedule_with_warmup` is transformers' ``get_linear_schedule_with_warmup``
  multiplier, and :class:`AdamW` applies it the way ``LambdaLR`` does.
* :func:`clip_grad_norm` is ``torch.nn.utils.clip_grad_norm_`` (global L2 norm).

The pure-Python parts - which parameters get weight decay, the layer-wise
learning-rate multipliers, the schedule - live here once; ``torch_bert.optim``
imports them, so the two backends cannot drift apart.

Defaults of :class:`AdamW` are torch's (``lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
weight_decay=1e-2``), so ``AdamW(params, **kw)`` and ``torch.optim.AdamW(params, **kw)``
mean the same thing for any ``kw``. BERT itself (Devlin et al. 2019, the
``AdamWeightDecayOptimizer`` of google-research/bert) used ``betas=(0.9, 0.999)``,
``eps=1e-6``, ``weight_decay=0.01`` without decay on biases and LayerNorm weights,
lr 1e-4 for pre-training (2e-5..5e-5 for fine-tuning), 10k warm-up steps then linear
decay to 0: :data:`BERT_DEFAULTS` and :func:`build_optimizer` use those.
(The original BERT optimizer also skipped Adam's bias correction; we keep it, as
torch and transformers do.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .nn import Parameter

__all__ = [
    "BERT_DEFAULTS",
    "AdamW",
    "LinearWarmupDecay",
    "build_optimizer",
    "clip_grad_norm",
    "count_layers",
    "decay_mask",
    "layer_depth",
    "layerwise_lr_multiplier",
    "linear_schedule_with_warmup",
    "param_groups",
    "scale_grads",
]

# What BERT was trained with (see the module docstring). lr is the pre-training value.
BERT_DEFAULTS: dict[str, Any] = {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.01}

_LAYER = re.compile(r"(?:^|\.)(?:encoder|transformer)\.layer\.(\d+)\.")  # transformer: DistilBERT's name

# =============================================================================
# Parameter groups (shared with torch_bert.optim)
# =============================================================================


def decay_mask(name: str) -> bool:
    """True when the parameter called ``name`` gets weight decay.

    As in BERT, biases (names ending in ``.bias``, ``cls.predictions.bias`` included)
    and LayerNorm parameters (names containing ``LayerNorm.``, or DistilBERT's ``layer_norm.``) are not
    decayed: shrinking a shift or a normalisation gain towards 0 is no regulariser.
    """
    return not (name == "bias" or name.endswith(".bias") or "LayerNorm." in name or "layer_norm." in name)


def count_layers(names: Iterable[str]) -> int:
    """Number of encoder layers named in ``names`` (1 + the largest ``encoder.layer.<i>``), 0 if none."""
    indices = [int(m.group(1)) for n in names if (m := _LAYER.search(n))]
    return 1 + max(indices) if indices else 0


def layer_depth(name: str, num_layers: int) -> int:
    """Depth of a parameter, counted from the input: the basis of layer-wise lr decay.

    embeddings (``...embeddings.*``)          -> 0
    encoder layer i (``...encoder.layer.i.*``) -> i + 1          (i = 0 .. L-1)
    everything else (pooler, MLM/NSP/task heads) -> L + 1

    A weight tied to the word embeddings (the MLM decoder) is named, and so
    treated, as the embedding it is.
    """
    if "embeddings" in name.split("."):
        return 0
    match = _LAYER.search(name)
    if match:
        index = int(match.group(1))
        if not 0 <= index < num_layers:
            raise ValueError(f"{name!r} is in encoder layer {index}, but num_layers is {num_layers}")
        return index + 1
    return num_layers + 1


def layerwise_lr_multiplier(name: str, decay: float, num_layers: int) -> float:
    """Layer-wise lr decay: ``decay ** (L + 1 - depth)`` with depth from :func:`layer_depth`.

    So with L layers: heads and pooler get ``decay**0 = 1`` (the full lr), the top
    layer i = L-1 gets ``decay**1``, layer i gets ``decay**(L - i)``, the embeddings
    ``decay**(L + 1)``. This is the convention of BEiT and of most BERT fine-tuning
    recipes; ELECTRA's original code (Clark et al. 2020) counts the task head as
    depth L + 2, i.e. every encoder/embedding exponent there is one larger.
    """
    return decay ** (num_layers + 1 - layer_depth(name, num_layers))


def param_groups(
    named_params: Iterable[tuple[str, Any]],
    weight_decay: float,
    lr: float,
    layerwise_lr_decay: float | None = None,
    num_layers: int | None = None,
) -> list[dict[str, Any]]:
    """Split ``(name, parameter)`` pairs into optimizer groups, BERT-style.

    Each group is ``{"params": [(name, param), ...], "lr": float, "weight_decay": float}``:
    parameters with the same learning rate and the same decay flag share a group,
    groups in order of first appearance, parameters in the given order. The format
    is what both :class:`AdamW` and ``torch.optim.AdamW`` accept (torch turns the
    names into ``param_names``); ``param`` may be anything, so torch_bert passes tensors.

    ``layerwise_lr_decay``: if given (0 < decay <= 1), a parameter's lr is
    ``lr * layerwise_lr_multiplier(name, decay, num_layers)``; ``num_layers``
    defaults to :func:`count_layers` of the names.
    """
    pairs = [(name, param) for name, param in named_params]
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("parameter names must be unique")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if layerwise_lr_decay is not None:
        if not 0.0 < layerwise_lr_decay <= 1.0:
            raise ValueError(f"layerwise_lr_decay must be in (0, 1], got {layerwise_lr_decay!r}")
        if num_layers is None:
            num_layers = count_layers(names)
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for name, param in pairs:
        group_lr = lr
        if layerwise_lr_decay is not None:
            group_lr = lr * layerwise_lr_multiplier(name, layerwise_lr_decay, num_layers)
        decays = decay_mask(name)
        key = (group_lr, decays)
        if key not in groups:
            groups[key] = {"params": [], "lr": group_lr, "weight_decay": weight_decay if decays else 0.0}
        groups[key]["params"].append((name, param))
    return list(groups.values())


# =============================================================================
# Schedule (shared with torch_bert.optim)
# =============================================================================


def linear_schedule_with_warmup(step: int, warmup_steps: int, total_steps: int) -> float:
    """lr multiplier at ``step``: linear warm-up from 0 to 1, then linear decay to 0.

        m(s) = s / W                                   for s < W
        m(s) = max(0, (T - s) / (T - W))               for s >= W

    exactly transformers' ``get_linear_schedule_with_warmup`` (including its
    ``max(1, .)`` guards on the denominators, so W = 0 and T = W are allowed).
    Step s is the number of optimizer steps already taken: the first update uses
    m(0), which is 0 when W > 0 - as with ``LambdaLR``.
    """
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))


@dataclass
class LinearWarmupDecay:
    """:func:`linear_schedule_with_warmup` as a callable ``step -> multiplier``.

    A class rather than a closure so that ``LambdaLR.state_dict()`` saves its two
    numbers, and :meth:`AdamW.state_dict` does the same.
    """

    warmup_steps: int
    total_steps: int

    def __post_init__(self) -> None:
        if self.warmup_steps < 0 or self.total_steps < 0:
            raise ValueError(f"warmup_steps and total_steps must be >= 0, got {self}")

    def __call__(self, step: int) -> float:
        return linear_schedule_with_warmup(step, self.warmup_steps, self.total_steps)


# =============================================================================
# Gradients: clipping and accumulation
# =============================================================================


def _parameters(params: Iterable[Parameter | tuple[str, Parameter]]) -> list[Parameter]:
    return [p[1] if isinstance(p, tuple) else p for p in params]


def clip_grad_norm(
    params: Iterable[Parameter | tuple[str, Parameter]], max_norm: float, error_if_nonfinite: bool = False
) -> float:
    """Scale all gradients in place so that their global L2 norm is at most ``max_norm``.

        n = sqrt(sum_p ||g_p||^2)          (over parameters whose grad is not None)
        c = min(1, max_norm / (n + 1e-6))
        g_p <- c * g_p

    as ``torch.nn.utils.clip_grad_norm_``; returns n (the norm before clipping), and
    0.0 with nothing done when no parameter has a gradient. A non-finite n makes the
    gradients 0 (n = inf) or NaN (n = NaN) as in torch, or raises RuntimeError
    when ``error_if_nonfinite``.
    """
    with_grad = [p for p in _parameters(params) if p.grad is not None]
    if not with_grad:
        return 0.0
    dtype = np.result_type(*(p.grad for p in with_grad))
    # ||g|| per tensor (a dot product, no temporary), then the norm of the norms, as torch does.
    norms = np.array([np.sqrt(np.dot(p.grad.ravel(), p.grad.ravel())) for p in with_grad], dtype=dtype)
    total = np.sqrt(np.dot(norms, norms))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"the total gradient norm is {total}; it cannot be clipped")
    coef = dtype.type(max_norm) / (total + dtype.type(1e-6))
    if np.isnan(coef) or coef < 1.0:  # torch multiplies by min(coef, 1); a factor of 1 changes nothing
        with np.errstate(invalid="ignore"):  # inf * 0 = NaN, silently, as in torch
            scale_grads(with_grad, coef)
    return float(total)


def scale_grads(
    grads_or_params: Iterable[np.ndarray | Parameter | tuple[str, Parameter]], factor: float
) -> None:
    """Multiply gradients in place by ``factor`` (arrays, Parameters or (name, Parameter) pairs).

    Gradient accumulation: backward passes *add* into ``Parameter.grad``, so
    running k micro-batches without ``zero_grad`` in between leaves the sum of
    their gradients. When each micro-batch loss is a mean over its examples, call
    ``scale_grads(model.parameters(), 1 / k)`` once before clipping and
    ``optimizer.step()`` (or, equivalently, divide each micro-batch loss by k -
    its upstream gradient - before backward), which gives the gradient of the
    mean loss over the k micro-batches of equal size.
    """
    for item in grads_or_params:
        if isinstance(item, tuple):
            item = item[1]
        if isinstance(item, Parameter):
            if item.grad is None:
                continue
            if not item.grad.flags.writeable:  # e.g. a broadcast view: replace, do not write through
                item.grad = item.grad * item.grad.dtype.type(factor)
                continue
            item = item.grad
        item *= factor


# =============================================================================
# AdamW
# =============================================================================


def _check_hyper(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """The same checks, and order, as torch.optim.Adam's constructor."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


class AdamW:
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``.

    For each parameter p with gradient g (parameters whose ``grad`` is None are
    skipped entirely, as in torch), at its own step t = 1, 2, ...::

        lr_t = lr_group * schedule(k)          k = optimizer steps taken before this one
        p   <- p * (1 - lr_t * wd)             decoupled weight decay, first
        m   <- m + (1 - beta1) (g - m)         = beta1 m + (1 - beta1) g
        v   <- beta2 v + (1 - beta2) g^2
        p   <- p - lr_t / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``params``: ``(name, Parameter)`` pairs (``model.named_parameters()``), one
    group with the constructor's hyper-parameters; or groups from
    :func:`param_groups` - dicts with ``"params"`` (pairs) and any of ``lr``,
    ``betas``, ``eps``, ``weight_decay`` overriding the defaults, as in torch.

    ``schedule``: ``step -> multiplier`` (e.g. :class:`LinearWarmupDecay`), or
    None for a constant lr. ``step()`` number k (counting from 0) uses
    ``schedule(k)``: the same lrs as ``torch.optim.AdamW`` driven by a ``LambdaLR``
    with the loop ``optimizer.step(); scheduler.step()``.

    Updates happen in place in the parameters' own dtype; the moments have that
    dtype too, and one scratch buffer per dtype (the size of the largest
    parameter) holds the intermediates, so a step allocates nothing.
    """

    def __init__(
        self,
        params: Iterable[tuple[str, Parameter]] | Iterable[Mapping[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        schedule: Callable[[int], float] | None = None,
    ):
        _check_hyper(lr, betas, eps, weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        items = list(params)
        if items and isinstance(items[0], Mapping):
            raw_groups = [dict(g) for g in items]
        else:
            raw_groups = [{"params": items}]
        self.param_groups: list[dict[str, Any]] = []
        seen: set[str] = set()
        for raw in raw_groups:
            group = {**defaults, **raw, "params": list(raw["params"])}
            group["betas"] = tuple(group["betas"])
            _check_hyper(group["lr"], group["betas"], group["eps"], group["weight_decay"])
            for name, param in group["params"]:
                if not isinstance(param, Parameter):
                    raise TypeError(f"{name!r} is a {type(param).__name__}, not a numpy_bert Parameter")
                if name in seen:
                    raise ValueError(f"parameter {name!r} appears more than once")
                seen.add(name)
            self.param_groups.append(group)
        if not seen:
            raise ValueError("optimizer got an empty parameter list")
        self.schedule = schedule
        self.step_count = 0  # optimizer steps taken; LambdaLR's last_epoch
        self.state: dict[str, dict[str, Any]] = {}  # name -> {"step": int, "exp_avg", "exp_avg_sq"}
        self._scratch: dict[np.dtype, np.ndarray] = {}

    # ---- the update ---------------------------------------------------------------

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        return [pair for group in self.param_groups for pair in group["params"]]

    def parameters(self) -> list[Parameter]:
        return [param for _, param in self.named_parameters()]

    def lr_multiplier(self) -> float:
        """The schedule's multiplier for the next step."""
        return 1.0 if self.schedule is None else self.schedule(self.step_count)

    def get_lr(self) -> list[float]:
        """Each group's lr for the next step: torch's ``[g["lr"] for g in opt.param_groups]``."""
        mult = self.lr_multiplier()
        return [group["lr"] * mult for group in self.param_groups]

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    def step(self) -> None:
        """One AdamW update of every parameter that has a gradient (see the class docstring)."""
        for group, lr in zip(self.param_groups, self.get_lr()):
            beta1, beta2 = group["betas"]
            for name, param in group["params"]:
                if param.grad is None:
                    continue
                self._check_grad(name, param)
                state = self.state.get(name)
                if state is None:
                    state = self.state[name] = {"step": 0, "exp_avg": np.zeros_like(param.data),
                                                "exp_avg_sq": np.zeros_like(param.data)}
                state["step"] += 1
                _adamw_update(param.data, param.grad, state["exp_avg"], state["exp_avg_sq"],
                              self._scratch_for(param.data), step=state["step"], lr=lr, beta1=beta1,
                              beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"])
        self.step_count += 1

    @staticmethod
    def _check_grad(name: str, param: Parameter) -> None:
        if param.grad.shape != param.data.shape:
            raise ValueError(f"gradient of {name!r} has shape {param.grad.shape}, "
                             f"the parameter {param.shape}")
        if param.grad.dtype != param.data.dtype:
            raise TypeError(f"gradient of {name!r} is {param.grad.dtype} but the parameter is "
                            f"{param.data.dtype}; the backward pass changed the dtype")

    def _scratch_for(self, data: np.ndarray) -> np.ndarray:
        """A view of the shared scratch buffer with ``data``'s shape and dtype."""
        buffer = self._scratch.get(data.dtype)
        if buffer is None or buffer.size < data.size:
            largest = max(p.data.size for p in self.parameters() if p.data.dtype == data.dtype)
            buffer = self._scratch[data.dtype] = np.empty(largest, dtype=data.dtype)
        return buffer[: data.size].reshape(data.shape)

    # ---- checkpointing ------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"tensors": {name: ndarray}, "scalars": JSON-able dict}``, copies, ready for safetensors.

        tensors: ``<param name>.exp_avg`` and ``<param name>.exp_avg_sq`` for each
        parameter updated so far. scalars: ``step_count``, each such parameter's
        own ``steps``, the groups' hyper-parameters and member names, and the
        schedule's fields when it is a :class:`LinearWarmupDecay`.
        """
        tensors: dict[str, np.ndarray] = {}
        for name, state in self.state.items():
            tensors[f"{name}.exp_avg"] = state["exp_avg"].copy()
            tensors[f"{name}.exp_avg_sq"] = state["exp_avg_sq"].copy()
        groups = [{"lr": g["lr"], "betas": list(g["betas"]), "eps": g["eps"],
                   "weight_decay": g["weight_decay"], "param_names": [name for name, _ in g["params"]]}
                  for g in self.param_groups]
        scalars: dict[str, Any] = {"step_count": self.step_count,
                                   "steps": {name: state["step"] for name, state in self.state.items()},
                                   "param_groups": groups}
        if isinstance(self.schedule, LinearWarmupDecay):
            scalars["schedule"] = {"warmup_steps": self.schedule.warmup_steps,
                                   "total_steps": self.schedule.total_steps}
        return {"tensors": tensors, "scalars": scalars}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (copied in), so training continues bitwise identically.

        Like torch, the groups' hyper-parameters are restored too; the groups must
        hold the same parameter names. Raises ValueError listing every problem.
        """
        tensors, scalars = state["tensors"], state["scalars"]
        params = dict(self.named_parameters())
        problems = self._state_problems(tensors, scalars, params)
        if problems:
            raise ValueError("optimizer state does not fit:\n  " + "\n  ".join(problems))
        for group, saved in zip(self.param_groups, scalars["param_groups"]):
            group.update(lr=saved["lr"], betas=tuple(saved["betas"]), eps=saved["eps"],
                         weight_decay=saved["weight_decay"])
        self.state = {name: {"step": int(step),
                             "exp_avg": np.array(tensors[f"{name}.exp_avg"], copy=True),
                             "exp_avg_sq": np.array(tensors[f"{name}.exp_avg_sq"], copy=True)}
                      for name, step in scalars["steps"].items()}
        self.step_count = int(scalars["step_count"])
        if "schedule" in scalars and isinstance(self.schedule, LinearWarmupDecay):
            self.schedule = LinearWarmupDecay(**scalars["schedule"])

    def _state_problems(self, tensors: Mapping[str, np.ndarray], scalars: Mapping[str, Any],
                        params: Mapping[str, Parameter]) -> list[str]:
        saved_groups = [g["param_names"] for g in scalars["param_groups"]]
        own_groups = [[name for name, _ in g["params"]] for g in self.param_groups]
        problems = [] if saved_groups == own_groups else [
            "the parameter groups differ (number of groups, or the names in a group)"]
        expected = set()
        for name in scalars["steps"]:
            if name not in params:
                problems.append(f"state for unknown parameter {name!r}")
                continue
            for key in (f"{name}.exp_avg", f"{name}.exp_avg_sq"):
                expected.add(key)
                if key not in tensors:
                    problems.append(f"missing tensor {key!r}")
                    continue
                array, data = tensors[key], params[name].data
                if array.shape != data.shape or array.dtype != data.dtype:
                    problems.append(f"tensor {key!r} is {array.dtype}{list(array.shape)}, "
                                    f"the parameter {data.dtype}{list(data.shape)}")
        problems += [f"unexpected tensor {key!r}" for key in tensors if key not in expected]
        return problems


def _adamw_update(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, tmp: np.ndarray, *,
                  step: int, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """One in-place AdamW update of p, m, v (torch's order of operations); ``tmp`` is scratch."""
    if weight_decay != 0:
        p *= 1 - lr * weight_decay
    np.subtract(g, m, out=tmp)  # m <- m + (1 - beta1)(g - m): torch's exp_avg.lerp_(g, 1 - beta1)
    tmp *= 1 - beta1
    m += tmp
    v *= beta2  # v <- beta2 v + (1 - beta2) g^2
    np.multiply(g, g, out=tmp)
    tmp *= 1 - beta2
    v += tmp
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    np.sqrt(v, out=tmp)  # denominator sqrt(v) / sqrt(1 - beta2^t) + eps
    tmp /= bias_correction2_sqrt
    tmp += eps
    np.divide(m, tmp, out=tmp)
    tmp *= -step_size
    p += tmp


def build_optimizer(
    model_or_named_params: Any,
    lr: float = BERT_DEFAULTS["lr"],
    weight_decay: float = BERT_DEFAULTS["weight_decay"],
    betas: tuple[float, float] = BERT_DEFAULTS["betas"],
    eps: float = BERT_DEFAULTS["eps"],
    warmup_steps: int | None = None,
    total_steps: int | None = None,
    layerwise_lr_decay: float | None = None,
    num_layers: int | None = None,
) -> AdamW:
    """BERT's optimizer: AdamW over :func:`param_groups`, with BERT's defaults.

    With ``total_steps`` given, the lr follows :class:`LinearWarmupDecay`
    (``warmup_steps`` default 0); otherwise it is constant.
    ``torch_bert.optim.build_optimizer`` + ``build_scheduler`` build the twin.
    """
    named = model_or_named_params
    if hasattr(named, "named_parameters"):
        named = named.named_parameters()
    groups = param_groups(named, weight_decay, lr, layerwise_lr_decay, num_layers)
    schedule = None if total_steps is None else LinearWarmupDecay(warmup_steps or 0, total_steps)
    return AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, schedule=schedule)
