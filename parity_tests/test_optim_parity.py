"""numpy_bert.optim against torch.optim.AdamW, LambdaLR and clip_grad_norm_, on BERT-named parameters.

Error of a tensor: max|numpy - torch| / max|torch| (parity_tests.compare), float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from numpy_bert import optim as np_optim
from numpy_bert.nn import Parameter
from parity_tests.compare import assert_close
from torch_bert import optim as torch_optim

# One and a few AdamW steps (same gradients, no clipping): only rounding differs.
STEP_TOLERANCE = 1e-12
# 20 steps with the warm-up/decay schedule and global-norm clipping.
TRAJECTORY_TOLERANCE = 1e-10
# Total gradient norms (float64 sums in a different order).
NORM_RTOL = 1e-13
# A few steps in float32 (different rounding of the elementwise kernels).
FLOAT32_TOLERANCE = 1e-5

LAYERS, HIDDEN, INTERMEDIATE, VOCAB = 2, 8, 16, 30


def bert_shapes() -> dict[str, tuple[int, ...]]:
    """BertForPreTraining's parameter names and (small) shapes, in named_parameters order."""
    h, f = HIDDEN, INTERMEDIATE
    shapes = {"bert.embeddings.word_embeddings.weight": (VOCAB, h),
              "bert.embeddings.position_embeddings.weight": (12, h),
              "bert.embeddings.token_type_embeddings.weight": (2, h),
              "bert.embeddings.LayerNorm.weight": (h,), "bert.embeddings.LayerNorm.bias": (h,)}
    for i in range(LAYERS):
        prefix = f"bert.encoder.layer.{i}."
        for sub in ("attention.self.query", "attention.self.key", "attention.self.value",
                    "attention.output.dense"):
            shapes |= {prefix + sub + ".weight": (h, h), prefix + sub + ".bias": (h,)}
        shapes |= {prefix + "attention.output.LayerNorm.weight": (h,),
                   prefix + "attention.output.LayerNorm.bias": (h,),
                   prefix + "intermediate.dense.weight": (f, h), prefix + "intermediate.dense.bias": (f,),
                   prefix + "output.dense.weight": (h, f), prefix + "output.dense.bias": (h,),
                   prefix + "output.LayerNorm.weight": (h,), prefix + "output.LayerNorm.bias": (h,)}
    shapes |= {"bert.pooler.dense.weight": (h, h), "bert.pooler.dense.bias": (h,),
               "cls.predictions.bias": (VOCAB,),
               "cls.predictions.transform.dense.weight": (h, h), "cls.predictions.transform.dense.bias": (h,),
               "cls.predictions.transform.LayerNorm.weight": (h,),
               "cls.predictions.transform.LayerNorm.bias": (h,),
               "cls.seq_relationship.weight": (2, h), "cls.seq_relationship.bias": (2,)}
    return shapes


class Twins:
    """The same parameters as numpy Parameters and torch leaf tensors, fed the same gradients."""

    def __init__(self, seed: int, dtype=np.float64):
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype
        init = {n: self.rng.standard_normal(s).astype(dtype) for n, s in bert_shapes().items()}
        self.np_params = [(n, Parameter(a.copy())) for n, a in init.items()]
        self.torch_params = [(n, torch.nn.Parameter(torch.tensor(a.copy()))) for n, a in init.items()]

    def set_grads(self, scale: float = 1.0, skip: tuple[str, ...] = ()) -> None:
        for (name, p), (_, t) in zip(self.np_params, self.torch_params):
            if name.startswith(skip):
                p.grad, t.grad = None, None
                continue
            g = (scale * self.rng.standard_normal(p.shape)).astype(self.dtype)
            p.grad, t.grad = g.copy(), torch.tensor(g.copy())

    def assert_params_close(self, tolerance: float, what: str) -> None:
        assert_close({n: p.data for n, p in self.np_params}, {n: t for n, t in self.torch_params},
                     tolerance, what)

    def assert_moments_close(self, np_opt, torch_opt, tolerance: float) -> None:
        names = {id(t): n for n, t in self.torch_params}
        for key in ("exp_avg", "exp_avg_sq"):
            expected = {names[id(t)]: s[key] for t, s in torch_opt.state.items()}
            actual = {n: s[key] for n, s in np_opt.state.items()}
            assert_close(actual, expected, tolerance, key)
        steps = {names[id(t)]: int(s["step"]) for t, s in torch_opt.state.items()}
        assert steps == {n: s["step"] for n, s in np_opt.state.items()}


def optimizers(twins: Twins, layerwise: float | None, **kwargs):
    np_opt = np_optim.build_optimizer(twins.np_params, layerwise_lr_decay=layerwise, **kwargs)
    torch_opt = torch_optim.build_optimizer(twins.torch_params, layerwise_lr_decay=layerwise,
                                            **{k: v for k, v in kwargs.items() if "steps" not in k})
    return np_opt, torch_opt


def test_same_param_groups():
    twins = Twins(0)
    np_opt, torch_opt = optimizers(twins, 0.8, lr=1e-3)
    ours = [([n for n, _ in g["params"]], g["lr"], g["weight_decay"], g["eps"], g["betas"])
            for g in np_opt.param_groups]
    theirs = [(g["param_names"], g["lr"], g["weight_decay"], g["eps"], g["betas"])
              for g in torch_opt.param_groups]
    assert ours == theirs
    no_decay = {n for g in torch_opt.param_groups if g["weight_decay"] == 0 for n in g["param_names"]}
    assert "cls.predictions.bias" in no_decay and "bert.encoder.layer.1.output.LayerNorm.weight" in no_decay
    assert "bert.encoder.layer.1.output.dense.weight" not in no_decay
    assert len({g["lr"] for g in torch_opt.param_groups}) == LAYERS + 2


@pytest.mark.parametrize("layerwise", [None, 0.8])
@pytest.mark.parametrize("steps", [1, 5])
def test_adamw_steps(layerwise, steps):
    twins = Twins(1)
    np_opt, torch_opt = optimizers(twins, layerwise, lr=1e-2, weight_decay=0.05)
    for _ in range(steps):
        twins.set_grads()
        np_opt.step()
        torch_opt.step()
    twins.assert_params_close(STEP_TOLERANCE, f"parameters after {steps} AdamW step(s)")
    twins.assert_moments_close(np_opt, torch_opt, STEP_TOLERANCE)


def test_constructor_defaults_are_torchs():
    """AdamW(params) with nothing else means torch.optim.AdamW(params)."""
    twins = Twins(2)
    np_opt = np_optim.AdamW(twins.np_params)
    torch_opt = torch.optim.AdamW([t for _, t in twins.torch_params])
    for _ in range(3):
        twins.set_grads()
        np_opt.step()
        torch_opt.step()
    twins.assert_params_close(STEP_TOLERANCE, "default AdamW")


def test_twenty_steps_with_schedule_and_clipping():
    twins = Twins(3)
    np_opt, torch_opt = optimizers(twins, 0.75, lr=3e-2, warmup_steps=5, total_steps=20)
    scheduler = torch_optim.build_scheduler(torch_opt, warmup_steps=5, total_steps=20)
    clipped = []
    for step in range(20):
        # Large and small gradients by turns, so clipping is active on some steps only; the
        # pooler and NSP head get no gradient for the first steps (skipped by both).
        skip = ("bert.pooler.", "cls.seq_relationship.") if step < 4 else ()
        twins.set_grads(scale=10.0 if step % 2 else 0.01, skip=skip)
        np_norm = np_optim.clip_grad_norm(twins.np_params, 1.0)
        torch_norm = torch_optim.clip_grad_norm(twins.torch_params, 1.0)
        assert np_norm == pytest.approx(torch_norm, rel=NORM_RTOL)
        clipped.append(np_norm > 1.0)
        assert np_opt.get_lr() == [g["lr"] for g in torch_opt.param_groups], f"lr at step {step}"
        np_opt.step()
        torch_opt.step()
        scheduler.step()
    assert any(clipped) and not all(clipped)
    assert np_opt.step_count == scheduler.last_epoch == 20
    twins.assert_params_close(TRAJECTORY_TOLERANCE, "parameters after 20 scheduled, clipped steps")
    twins.assert_moments_close(np_opt, torch_opt, TRAJECTORY_TOLERANCE)


@pytest.mark.parametrize("warmup, total", [(0, 10), (3, 10), (10, 10), (4, 7), (1, 1)])
def test_schedule_is_transformers(warmup, total):
    """The lrs our AdamW uses, step by step, are those of transformers' scheduler on torch's AdamW."""
    twins = Twins(4)
    np_opt, torch_opt = optimizers(twins, None, lr=5e-4, warmup_steps=warmup, total_steps=total)
    reference = get_linear_schedule_with_warmup(torch_opt, warmup, total)
    other = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=5e-4)
    ours = torch_optim.build_scheduler(other, warmup, total)
    for step in range(total + 3):
        expected = [g["lr"] for g in torch_opt.param_groups]
        assert np_opt.get_lr() == expected, f"step {step}"
        assert ours.get_last_lr()[0] == expected[0]
        np_opt.step_count += 1  # no gradients needed to advance the schedule
        torch_opt.step()
        other.step()
        reference.step()
        ours.step()
    assert ours.state_dict()["lr_lambdas"] == [{"warmup_steps": warmup, "total_steps": total}]


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])
def test_clip_grad_norm_is_torchs(max_norm):
    twins = Twins(5)
    twins.set_grads(skip=("bert.pooler.",))
    assert np_optim.clip_grad_norm(twins.np_params, max_norm) == pytest.approx(
        torch_optim.clip_grad_norm(twins.torch_params, max_norm), rel=NORM_RTOL)
    grads = {n: p.grad for n, p in twins.np_params if p.grad is not None}
    assert_close(grads, {n: t.grad for n, t in twins.torch_params if t.grad is not None}, STEP_TOLERANCE,
                 "clipped gradients")
    np_params = dict(twins.np_params)
    assert np_params["bert.pooler.dense.bias"].grad is None
    assert np_params["cls.predictions.bias"].grad is not None


def test_clip_non_finite_like_torch():
    a, t = Parameter(np.zeros(3)), torch.zeros(3, dtype=torch.float64, requires_grad=True)
    for bad in (np.inf, np.nan):
        a.grad = np.array([bad, 1.0, -2.0])
        t.grad = torch.tensor(a.grad.copy())
        np_norm, torch_norm = np_optim.clip_grad_norm([a], 1.0), torch_optim.clip_grad_norm([t], 1.0)
        np.testing.assert_array_equal(np_norm, torch_norm)
        np.testing.assert_array_equal(a.grad, t.grad.numpy())


def test_scale_grads_like_torch():
    twins = Twins(6)
    twins.set_grads()
    np_optim.scale_grads(twins.np_params, 0.25)
    torch_optim.scale_grads(twins.torch_params, 0.25)
    assert_close({n: p.grad for n, p in twins.np_params}, {n: t.grad for n, t in twins.torch_params}, 0.0,
                 "scaled gradients")


def test_float32_few_steps():
    twins = Twins(7, dtype=np.float32)
    np_opt, torch_opt = optimizers(twins, 0.9, lr=1e-3, warmup_steps=2, total_steps=6)
    scheduler = torch_optim.build_scheduler(torch_opt, 2, 6)
    for _ in range(6):
        twins.set_grads(scale=3.0)
        np_optim.clip_grad_norm(twins.np_params, 1.0)
        torch_optim.clip_grad_norm(twins.torch_params, 1.0)
        np_opt.step()
        torch_opt.step()
        scheduler.step()
    assert all(p.data.dtype == np.float32 for _, p in twins.np_params)
    twins.assert_params_close(FLOAT32_TOLERANCE, "float32 parameters after 6 steps")
