"""numpy_bert.optim on its own (no torch): schedule, parameter groups, AdamW, clipping, checkpoints."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from numpy_bert.nn import Module, ModuleList, Parameter
from numpy_bert.optim import (
    BERT_DEFAULTS,
    AdamW,
    LinearWarmupDecay,
    build_optimizer,
    clip_grad_norm,
    count_layers,
    decay_mask,
    layer_depth,
    layerwise_lr_multiplier,
    linear_schedule_with_warmup,
    param_groups,
    scale_grads,
)

# AdamW against a textbook re-implementation (different order of operations, not in place).
REFERENCE_RTOL = 1e-12
# Clipping: the clipped norm is max_norm * n / (n + 1e-6), so within this of max_norm.
CLIP_RTOL = 1e-5
# float32 AdamW against the same run in float64, a few steps.
FLOAT32_RTOL = 1e-5

SETTINGS = settings(max_examples=40, deadline=None)


# ---- helpers ----------------------------------------------------------------------------------


def named(arrays: dict[str, np.ndarray]) -> list[tuple[str, Parameter]]:
    return [(name, Parameter(array.copy())) for name, array in arrays.items()]


def bert_like(rng: np.random.Generator, layers: int = 2, hidden: int = 4, dtype=np.float64) -> dict:
    """A small set of arrays named like BertForPreTraining's parameters."""
    shapes = {"bert.embeddings.word_embeddings.weight": (11, hidden),
              "bert.embeddings.LayerNorm.weight": (hidden,), "bert.embeddings.LayerNorm.bias": (hidden,)}
    for i in range(layers):
        shapes |= {f"bert.encoder.layer.{i}.attention.self.query.weight": (hidden, hidden),
                   f"bert.encoder.layer.{i}.attention.self.query.bias": (hidden,),
                   f"bert.encoder.layer.{i}.output.LayerNorm.weight": (hidden,)}
    shapes |= {"bert.pooler.dense.weight": (hidden, hidden), "cls.predictions.bias": (11,)}
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in shapes.items()}


def set_grads(pairs, rng: np.random.Generator, scale: float = 1.0) -> None:
    for _, p in pairs:
        p.grad = (scale * rng.standard_normal(p.shape)).astype(p.data.dtype)


def reference_adamw(params, grads_per_step, lrs, betas, eps, wd):
    """AdamW straight from the equations, out of place, float64."""
    b1, b2 = betas
    p = {n: a.astype(np.float64) for n, a in params.items()}
    m = {n: np.zeros_like(a) for n, a in p.items()}
    v = {n: np.zeros_like(a) for n, a in p.items()}
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        for n in p:
            g = grads[n]
            p[n] = p[n] * (1 - lr * wd)
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            m_hat, v_hat = m[n] / (1 - b1**t), v[n] / (1 - b2**t)
            p[n] = p[n] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def run(opt: AdamW, pairs, grads_per_step) -> None:
    for grads in grads_per_step:
        for name, p in pairs:
            p.grad = grads[name].copy()
        opt.step()


# ---- schedule ---------------------------------------------------------------------------------


def test_schedule_warmup_peak_decay_and_zero():
    values = [linear_schedule_with_warmup(s, 4, 10) for s in range(13)]
    assert values[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]  # warm-up, peak at s = warmup
    assert values[5:10] == [5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]
    assert values[10:] == [0.0, 0.0, 0.0]  # zero at the end and after


def test_schedule_without_warmup_and_degenerate_lengths():
    assert [linear_schedule_with_warmup(s, 0, 4) for s in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert [linear_schedule_with_warmup(s, 3, 3) for s in range(5)] == [0.0, 1 / 3, 2 / 3, 0.0, 0.0]
    assert linear_schedule_with_warmup(0, 0, 0) == 0.0
    assert LinearWarmupDecay(4, 10)(6) == linear_schedule_with_warmup(6, 4, 10)
    with pytest.raises(ValueError):
        LinearWarmupDecay(-1, 10)


@SETTINGS
@given(st.integers(0, 50), st.integers(0, 100))
def test_schedule_shape(warmup, extra):
    total = warmup + extra
    values = [linear_schedule_with_warmup(s, warmup, total) for s in range(total + 3)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a < b for a, b in itertools.pairwise(values[:warmup]))  # rises during warm-up
    assert all(a >= b for a, b in itertools.pairwise(values[warmup:]))  # then falls
    if total > warmup:
        assert values[warmup] == 1.0 == max(values)  # the peak
    assert values[total] == 0.0


# ---- parameter groups -------------------------------------------------------------------------


@pytest.mark.parametrize("name, decays", [
    ("bert.embeddings.word_embeddings.weight", True),
    ("bert.embeddings.LayerNorm.weight", False),
    ("bert.embeddings.LayerNorm.bias", False),
    ("bert.encoder.layer.3.attention.self.query.bias", False),
    ("bert.encoder.layer.3.attention.self.query.weight", True),
    ("bert.encoder.layer.0.output.LayerNorm.weight", False),
    ("bert.encoder.layer.0.attention.output.LayerNorm.weight", False),
    ("bert.encoder.layer.0.intermediate.dense.weight", True),
    ("cls.predictions.bias", False),
    ("cls.predictions.transform.LayerNorm.weight", False),
    ("cls.predictions.transform.dense.weight", True),
    ("bert.pooler.dense.weight", True),
    ("bias", False),
    ("classifier.weight", True),
])
def test_decay_mask(name, decays):
    assert decay_mask(name) is decays


def test_layer_depths_and_multipliers():
    L, d = 4, 0.5
    expected = {
        "bert.embeddings.word_embeddings.weight": (0, d**5),
        "bert.embeddings.LayerNorm.bias": (0, d**5),
        "bert.encoder.layer.0.attention.self.query.weight": (1, d**4),
        "bert.encoder.layer.2.output.LayerNorm.weight": (3, d**2),
        "bert.encoder.layer.3.output.dense.bias": (4, d**1),
        "bert.pooler.dense.weight": (5, 1.0),
        "cls.predictions.bias": (5, 1.0),
        "classifier.weight": (5, 1.0),
        "encoder.layer.1.intermediate.dense.weight": (2, d**3),  # a bare BertModel's names
        "embeddings.position_embeddings.weight": (0, d**5),
    }
    for name, (depth, multiplier) in expected.items():
        assert layer_depth(name, L) == depth, name
        assert layerwise_lr_multiplier(name, d, L) == multiplier, name
    with pytest.raises(ValueError, match="layer 4"):
        layer_depth("bert.encoder.layer.4.output.dense.bias", L)
    assert count_layers(expected) == 4
    assert count_layers(["cls.predictions.bias"]) == 0


def test_param_groups_split_by_decay_and_keep_order():
    pairs = named(bert_like(np.random.default_rng(0)))
    groups = param_groups(pairs, weight_decay=0.01, lr=2e-5)
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(2e-5, 0.01), (2e-5, 0.0)]
    decayed = [n for n, _ in groups[0]["params"]]
    assert all(decay_mask(n) for n in decayed) and not any(decay_mask(n) for n, _ in groups[1]["params"])
    assert sorted(decayed + [n for n, _ in groups[1]["params"]]) == sorted(n for n, _ in pairs)
    assert decayed == [n for n, _ in pairs if decay_mask(n)]  # the given order within a group
    assert all(isinstance(pair, tuple) for g in groups for pair in g["params"])  # as torch expects


def test_param_groups_layerwise():
    pairs = named(bert_like(np.random.default_rng(0), layers=3))
    groups = param_groups(pairs, weight_decay=0.01, lr=1.0, layerwise_lr_decay=0.9)  # num_layers inferred
    lr_of = {name: g["lr"] for g in groups for name, _ in g["params"]}
    assert lr_of["bert.embeddings.word_embeddings.weight"] == 0.9**4
    assert lr_of["bert.encoder.layer.0.attention.self.query.bias"] == 0.9**3
    assert lr_of["bert.encoder.layer.2.output.LayerNorm.weight"] == 0.9
    assert lr_of["bert.pooler.dense.weight"] == lr_of["cls.predictions.bias"] == 1.0
    assert len({(g["lr"], g["weight_decay"]) for g in groups}) == len(groups)
    with pytest.raises(ValueError):
        param_groups(pairs, 0.01, 1.0, layerwise_lr_decay=1.5)
    with pytest.raises(ValueError, match="unique"):
        param_groups(pairs + pairs[:1], 0.01, 1.0)


# ---- AdamW ------------------------------------------------------------------------------------


def test_first_step_is_a_normalised_step():
    """With m = v = 0, one step without decay moves each entry by lr * g / (|g| + eps)."""
    rng = np.random.default_rng(1)
    p0, g = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    pairs = named({"w": p0})
    pairs[0][1].grad = g.copy()
    AdamW(pairs, lr=0.1, eps=1e-8, weight_decay=0.0).step()
    np.testing.assert_allclose(pairs[0][1].data, p0 - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-14)


@SETTINGS
@given(
    shapes=st.lists(st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4),
    lr=st.floats(1e-5, 1.0), beta1=st.floats(0.0, 0.99), beta2=st.floats(0.5, 0.9999),
    eps=st.floats(1e-10, 1e-2), wd=st.floats(0.0, 0.5), steps=st.integers(1, 6),
    warmup=st.none() | st.integers(0, 4), seed=st.integers(0, 2**32 - 1),
)
def test_adamw_matches_the_equations(shapes, lr, beta1, beta2, eps, wd, steps, warmup, seed):
    rng = np.random.default_rng(seed)
    params = {f"p{i}.weight": rng.standard_normal(s) for i, s in enumerate(shapes)}
    grads = [{n: rng.standard_normal(a.shape) for n, a in params.items()} for _ in range(steps)]
    schedule = None if warmup is None else LinearWarmupDecay(warmup, steps + 1)
    pairs = named(params)
    opt = AdamW(pairs, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd, schedule=schedule)
    lrs = []
    for k in range(steps):
        lrs.append(lr * (1.0 if schedule is None else schedule(k)))
        assert opt.get_lr() == [lrs[-1]]
        run(opt, pairs, grads[k : k + 1])
    expected = reference_adamw(params, grads, lrs, (beta1, beta2), eps, wd)
    for name, p in pairs:
        np.testing.assert_allclose(p.data, expected[name], rtol=REFERENCE_RTOL, atol=1e-14, err_msg=name)
    assert opt.step_count == steps and all(s["step"] == steps for s in opt.state.values())


def test_groups_get_their_own_lr_and_decay():
    rng = np.random.default_rng(2)
    arrays = bert_like(rng)
    pairs = named(arrays)
    opt = AdamW(param_groups(pairs, weight_decay=0.1, lr=1e-2, layerwise_lr_decay=0.5), eps=1e-6)
    grads = [{n: rng.standard_normal(a.shape) for n, a in arrays.items()} for _ in range(3)]
    run(opt, pairs, grads)
    for name, p in pairs:
        lr = 1e-2 * layerwise_lr_multiplier(name, 0.5, 2)
        wd = 0.1 if decay_mask(name) else 0.0
        expected = reference_adamw({name: arrays[name]}, [{name: g[name]} for g in grads], [lr] * 3,
                                   (0.9, 0.999), 1e-6, wd)[name]
        np.testing.assert_allclose(p.data, expected, rtol=REFERENCE_RTOL, err_msg=name)


def test_parameters_without_grad_are_skipped_and_updates_are_in_place():
    rng = np.random.default_rng(3)
    pairs = named({"a.weight": rng.standard_normal(3), "b.weight": rng.standard_normal(4)})
    before = {n: p.data.copy() for n, p in pairs}
    arrays = {n: p.data for n, p in pairs}
    opt = AdamW(pairs, weight_decay=0.5)
    pairs[0][1].grad = rng.standard_normal(3)
    opt.step()
    assert set(opt.state) == {"a.weight"}
    np.testing.assert_array_equal(pairs[1][1].data, before["b.weight"])  # not even decayed, as in torch
    assert not np.array_equal(pairs[0][1].data, before["a.weight"])
    assert all(p.data is arrays[n] for n, p in pairs)  # the same arrays, updated in place


def test_schedule_step_counting_like_lambdalr():
    """Step k uses schedule(k): with warm-up the first update has lr 0 but still fills the moments."""
    pairs = named({"w": np.ones(2)})
    opt = AdamW(pairs, lr=1.0, weight_decay=0.1, schedule=LinearWarmupDecay(2, 4))
    seen = []
    for _ in range(5):
        seen.append(opt.get_lr()[0])
        pairs[0][1].grad = np.array([1.0, -1.0])
        opt.step()
        if len(seen) == 1:
            np.testing.assert_array_equal(pairs[0][1].data, np.ones(2))
            np.testing.assert_allclose(opt.state["w"]["exp_avg"], [0.1, -0.1])
    assert seen == [0.0, 0.5, 1.0, 0.5, 0.0]


def test_float32_stays_float32():
    rng = np.random.default_rng(4)
    arrays = bert_like(rng, dtype=np.float32)
    pairs = named(arrays)
    twin = named({n: a.astype(np.float64) for n, a in arrays.items()})
    opt = AdamW(param_groups(pairs, 0.01, 1e-3), eps=1e-6, schedule=LinearWarmupDecay(1, 5))
    opt64 = AdamW(param_groups(twin, 0.01, 1e-3), eps=1e-6, schedule=LinearWarmupDecay(1, 5))
    for _ in range(4):
        set_grads(pairs, rng, scale=10.0)
        for (_, p), (_, q) in zip(pairs, twin):
            q.grad = p.grad.astype(np.float64)
        clip_grad_norm(pairs, 1.0)
        clip_grad_norm(twin, 1.0)
        assert all(p.grad.dtype == np.float32 for _, p in pairs)
        opt.step()
        opt64.step()
    assert all(p.data.dtype == np.float32 for _, p in pairs)
    assert all(a.dtype == np.float32 for s in opt.state.values() for a in (s["exp_avg"], s["exp_avg_sq"]))
    assert all(buffer.dtype == np.float32 for buffer in opt._scratch.values())
    for (name, p), (_, q) in zip(pairs, twin):
        np.testing.assert_allclose(p.data, q.data, rtol=FLOAT32_RTOL, atol=FLOAT32_RTOL, err_msg=name)


def test_bad_inputs_are_refused():
    pairs = named({"w": np.zeros(3)})
    for kwargs in ({"lr": -1.0}, {"eps": -1.0}, {"betas": (1.0, 0.9)}, {"betas": (0.9, -0.1)},
                   {"weight_decay": -0.1}):
        with pytest.raises(ValueError):
            AdamW(pairs, **kwargs)
    with pytest.raises(ValueError, match="empty"):
        AdamW([])
    with pytest.raises(TypeError):
        AdamW([("w", np.zeros(3))])
    with pytest.raises(ValueError, match="more than once"):
        AdamW(pairs + pairs)
    opt = AdamW(pairs)
    pairs[0][1].grad = np.zeros(4)
    with pytest.raises(ValueError, match="shape"):
        opt.step()
    pairs[0][1].grad = np.zeros(3, dtype=np.float32)
    with pytest.raises(TypeError, match="dtype"):
        opt.step()


class _Tiny(Module):
    def __init__(self, rng):
        super().__init__()
        self.embeddings = Module()
        self.embeddings.word_embeddings = Module()
        self.embeddings.word_embeddings.weight = Parameter(rng.standard_normal((5, 3)))
        self.encoder = Module()
        self.encoder.layer = ModuleList([Module(), Module()])
        for layer in self.encoder.layer:
            layer.dense = Module()
            layer.dense.weight = Parameter(rng.standard_normal((3, 3)))
            layer.dense.bias = Parameter(rng.standard_normal(3))


def test_build_optimizer_from_a_module():
    model = _Tiny(np.random.default_rng(5))
    opt = build_optimizer(model, lr=1.0, warmup_steps=2, total_steps=10, layerwise_lr_decay=0.5)
    lr_of = {n: g["lr"] for g in opt.param_groups for n, _ in g["params"]}
    assert lr_of == {"embeddings.word_embeddings.weight": 0.125, "encoder.layer.0.dense.weight": 0.25,
                     "encoder.layer.0.dense.bias": 0.25, "encoder.layer.1.dense.weight": 0.5,
                     "encoder.layer.1.dense.bias": 0.5}
    assert all(g["eps"] == BERT_DEFAULTS["eps"] for g in opt.param_groups)
    assert all(g["betas"] == BERT_DEFAULTS["betas"] for g in opt.param_groups)
    assert opt.schedule == LinearWarmupDecay(2, 10)
    assert build_optimizer(model).schedule is None


# ---- clipping and accumulation ----------------------------------------------------------------


def test_clip_below_max_norm_changes_nothing():
    pairs = named({"a": np.zeros(2), "b": np.zeros(2)})
    pairs[0][1].grad, pairs[1][1].grad = np.array([3.0, 0.0]), np.array([0.0, 4.0])
    assert clip_grad_norm(pairs, 5.0 + 1e-3) == 5.0
    np.testing.assert_array_equal(pairs[0][1].grad, [3.0, 0.0])
    np.testing.assert_array_equal(pairs[1][1].grad, [0.0, 4.0])


def test_clip_above_max_norm_scales_by_the_torch_coefficient():
    pairs = named({"a": np.zeros(2), "b": np.zeros(2), "no_grad": np.zeros(2)})
    pairs[0][1].grad, pairs[1][1].grad = np.array([3.0, 0.0]), np.array([0.0, 4.0])
    assert clip_grad_norm([p for _, p in pairs], 1.0) == 5.0  # Parameters work as well as pairs
    coef = 1.0 / (5.0 + 1e-6)
    np.testing.assert_array_equal(pairs[0][1].grad, [3.0 * coef, 0.0])
    np.testing.assert_array_equal(pairs[1][1].grad, [0.0, 4.0 * coef])
    assert pairs[2][1].grad is None
    assert clip_grad_norm(named({"x": np.zeros(1)}), 1.0) == 0.0  # no gradients at all


@SETTINGS
@given(shapes=st.lists(st.lists(st.integers(1, 6), max_size=3).map(tuple), min_size=1, max_size=4),
       scale=st.floats(1e-3, 1e3), max_norm=st.floats(1e-2, 1e2), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_clip_properties(shapes, scale, max_norm, seed, dtype):
    rng = np.random.default_rng(seed)
    pairs = named({f"p{i}": np.zeros(s, dtype) for i, s in enumerate(shapes)})
    set_grads(pairs, rng, scale)
    before = [p.grad.astype(np.float64) for _, p in pairs]
    norm = np.sqrt(sum(np.sum(g * g) for g in before))
    total = clip_grad_norm(pairs, max_norm)
    assert total == pytest.approx(norm, rel=1e-5 if dtype == np.float32 else 1e-12)
    after = [p.grad for _, p in pairs]
    assert all(g.dtype == dtype for g in after)
    new_norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in after))
    assert new_norm <= max_norm * (1 + CLIP_RTOL)
    coef = min(1.0, max_norm / (norm + 1e-6))
    for g0, g1 in zip(before, after):  # the direction is kept: one common factor
        np.testing.assert_allclose(g1, coef * g0, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-30)


def test_clip_non_finite():
    pairs = named({"a": np.zeros(2)})
    pairs[0][1].grad = np.array([np.inf, 1.0])
    assert clip_grad_norm(pairs, 1.0) == np.inf
    np.testing.assert_array_equal(pairs[0][1].grad, [np.nan, 0.0])  # inf * 0, 1 * 0: as torch
    pairs[0][1].grad = np.array([np.nan, 1.0])
    with pytest.raises(RuntimeError):
        clip_grad_norm(pairs, 1.0, error_if_nonfinite=True)
    assert np.isnan(clip_grad_norm(pairs, 1.0)) and np.isnan(pairs[0][1].grad).all()


def test_gradient_accumulation_equals_the_full_batch():
    """Least squares: the mean-loss gradient over 4 rows = (sum of two half-batch mean gradients) / 2."""
    rng = np.random.default_rng(6)
    X, y, w = rng.standard_normal((4, 3)), rng.standard_normal(4), rng.standard_normal(3)

    def grad(rows):  # d/dw mean((X w - y)^2)
        return 2 * X[rows].T @ (X[rows] @ w - y[rows]) / len(rows)

    p = Parameter(w.copy())
    p.accumulate_grad(grad([0, 1]))
    p.accumulate_grad(grad([2, 3]))
    scale_grads([("w", p)], 1 / 2)
    np.testing.assert_allclose(p.grad, grad([0, 1, 2, 3]), rtol=1e-13)
    q = Parameter(np.zeros(3))
    q.grad = np.broadcast_to(np.ones(1), (3,))  # read-only: replaced, not written through
    scale_grads([q], 0.5)
    np.testing.assert_array_equal(q.grad, [0.5] * 3)
    array = np.ones(2, np.float32)
    scale_grads([array], 0.25)
    assert array.dtype == np.float32 and (array == 0.25).all()


# ---- checkpoints ------------------------------------------------------------------------------


def _through_files(state: dict) -> dict:
    """What a safetensors file plus a JSON file give back."""
    return {"tensors": st_load(st_save(state["tensors"])),
            "scalars": json.loads(json.dumps(state["scalars"]))}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_continues_bitwise(dtype):
    rng = np.random.default_rng(7)
    arrays = bert_like(rng, dtype=dtype)
    grads = [{n: rng.standard_normal(a.shape).astype(dtype) for n, a in arrays.items()} for _ in range(8)]
    for g in grads[:3]:
        del g["bert.pooler.dense.weight"]  # a parameter that only gets gradients later

    def make(pairs):
        return build_optimizer(pairs, lr=1e-2, warmup_steps=2, total_steps=8, layerwise_lr_decay=0.8)

    def feed(opt, pairs, steps):
        for g in steps:
            for name, p in pairs:
                p.grad = g[name].copy() if name in g else None
            opt.step()

    pairs = named(arrays)
    opt = make(pairs)
    feed(opt, pairs, grads[:3])
    saved = _through_files(opt.state_dict())
    assert "bert.pooler.dense.weight.exp_avg" not in saved["tensors"]
    weights = {n: p.data.copy() for n, p in pairs}
    feed(opt, pairs, grads[3:])

    resumed_pairs = named(weights)
    resumed = build_optimizer(resumed_pairs, lr=123.0, warmup_steps=2, total_steps=8, layerwise_lr_decay=0.8)
    resumed.load_state_dict(saved)
    assert resumed.step_count == 3 and [g["lr"] for g in resumed.param_groups] == [
        g["lr"] for g in opt.param_groups]  # hyper-parameters come back, as in torch
    feed(resumed, resumed_pairs, grads[3:])
    for (name, p), (_, q) in zip(pairs, resumed_pairs):
        assert p.data.dtype == q.data.dtype == dtype
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    for name, state in opt.state.items():
        np.testing.assert_array_equal(state["exp_avg_sq"], resumed.state[name]["exp_avg_sq"])
        assert state["step"] == resumed.state[name]["step"]


def test_state_dict_is_a_copy_and_load_checks_everything():
    pairs = named({"a.weight": np.ones(2), "b.bias": np.ones(3)})
    opt = AdamW(pairs)
    for _, p in pairs:
        p.grad = np.ones_like(p.data)
    opt.step()
    state = opt.state_dict()
    opt.step()
    assert not np.array_equal(state["tensors"]["a.weight.exp_avg"], opt.state["a.weight"]["exp_avg"])

    def broken(**changes):
        tensors = {**state["tensors"], **changes}
        return {"tensors": {k: v for k, v in tensors.items() if v is not None}, "scalars": state["scalars"]}

    with pytest.raises(ValueError, match=re.escape("missing tensor 'a.weight.exp_avg'")):
        opt.load_state_dict(broken(**{"a.weight.exp_avg": None}))
    with pytest.raises(ValueError, match=re.escape("unexpected tensor 'c.exp_avg'")):
        opt.load_state_dict(broken(**{"c.exp_avg": np.ones(1)}))
    with pytest.raises(ValueError, match="float32"):
        opt.load_state_dict(broken(**{"b.bias.exp_avg_sq": np.ones(3, np.float32)}))
    with pytest.raises(ValueError, match="groups differ"):
        AdamW(param_groups(pairs, 0.01, 1e-3)).load_state_dict(state)
