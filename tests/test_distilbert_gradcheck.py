"""DistilBERT's hand-written backward passes (numpy_bert/distilbert.py) against float64 finite differences.

Every new module, each model's loss with respect to every parameter (sampled entries), the two new terms of
the distillation loss, and the whole distillation objective (numpy_bert/training/distillation.py) with respect
to every student parameter. The helpers and the tolerance are tests/test_gradcheck.py's.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM, DistilBertModel
from numpy_bert.distilbert import (
    FFN,
    DistilBertSelfAttention,
    Embeddings,
    Transformer,
    TransformerBlock,
    cosine_embedding_loss,
    soft_target_loss,
)
from numpy_bert.modeling_utils import additive_attention_mask
from numpy_bert.training.distillation import Distiller
from tests.test_gradcheck import (
    RTOL,
    FixedMasks,
    check_loss_gradients,
    check_model_backward,
    check_module,
    check_tied_table,
    init_random,
    numeric_gradient,
    relative_error,
    sample_indices,
)


@pytest.fixture
def rng():
    return np.random.default_rng(4321)


def small_config(**overrides) -> DistilBertConfig:
    fields = dict(vocab_size=31, dim=12, n_layers=2, n_heads=3, hidden_dim=20, max_position_embeddings=16,
                  dropout=0.0, attention_dropout=0.0)
    fields.update(overrides)
    return DistilBertConfig(**fields)


def with_fixed_dropout(module, seed: int):
    """Every Dropout of ``module`` draws one fixed mask per shape, so the loss is a deterministic function."""
    masks = FixedMasks(seed)
    for name, child in module.named_modules():
        if hasattr(child, "mask_source"):
            child.name, child.mask_source = name, masks
    return module


PADDING = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 0]])  # every row keeps a real key


def test_embeddings(rng):
    embeddings = with_fixed_dropout(init_random(Embeddings(small_config(dropout=0.2)).to(np.float64), rng), 1)
    ids = rng.integers(1, 31, (2, 6))  # no padding id: its row gets no gradient (torch's padding_idx)
    check_module(embeddings, [ids], differentiable=())


def test_embeddings_leave_the_padding_row_alone(rng):
    embeddings = init_random(Embeddings(small_config()).to(np.float64), rng)
    embeddings(np.array([[0, 3, 0, 5]]))
    embeddings.zero_grad()
    embeddings.backward(rng.standard_normal((1, 4, 12)))
    assert np.all(embeddings.word_embeddings.weight.grad[0] == 0)
    assert np.any(embeddings.word_embeddings.weight.grad[3] != 0)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_self_attention_with_padding(rng, dropout):
    attention = init_random(DistilBertSelfAttention(small_config(attention_dropout=dropout)).to(np.float64), rng)
    with_fixed_dropout(attention, 2)
    check_module(attention, [rng.standard_normal((3, 5, 12)), additive_attention_mask(PADDING, np.float64)])
    assert [name for name, _ in attention.named_parameters()] == [
        f"{lin}.{p}" for lin in ("q_lin", "k_lin", "v_lin", "out_lin") for p in ("weight", "bias")]


def test_ffn_with_dropout(rng):
    ffn = with_fixed_dropout(init_random(FFN(small_config(dropout=0.25)).to(np.float64), rng), 3)
    check_module(ffn, [rng.standard_normal((2, 4, 12))])


@pytest.mark.parametrize("activation", ["gelu", "gelu_new"])
def test_transformer_block(rng, activation):
    config = small_config(activation=activation, dropout=0.2, attention_dropout=0.1)
    block = with_fixed_dropout(init_random(TransformerBlock(config).to(np.float64), rng), 4)
    check_module(block, [rng.standard_normal((3, 5, 12)), additive_attention_mask(PADDING, np.float64)])


def test_transformer_stack(rng):
    stack = init_random(Transformer(small_config(n_layers=3)).to(np.float64), rng, scale=0.3)
    check_module(stack, [rng.standard_normal((3, 5, 12)), additive_attention_mask(PADDING, np.float64)],
                 forward=lambda x, mask: stack.forward(x, mask)[-1])


def test_model_backward_from_the_last_hidden_state(rng):
    model = init_random(DistilBertModel(small_config(), seed=0, dtype=np.float64), rng, scale=0.3)
    check_model_backward(model, dict(input_ids=rng.integers(1, 31, (3, 5)), attention_mask=PADDING), rng,
                         outputs=("last_hidden_state",))


def mlm_batch(rng, batch=2, length=6, vocab=31, padding=True) -> dict:
    labels = np.where(rng.random((batch, length)) < 0.4, rng.integers(0, vocab, (batch, length)), -100)
    labels[-1, 1] = 7  # at least one counted label
    mask = np.ones((batch, length), np.int64)
    if padding:
        mask[0, length // 2:] = 0
    return dict(input_ids=rng.integers(0, vocab, (batch, length)), attention_mask=mask, labels=labels)


@pytest.mark.parametrize("gathered", [False, True])
@pytest.mark.parametrize("tied", [True, False])
def test_masked_lm_loss_for_every_parameter(rng, gathered, tied):
    config = small_config(dropout=0.15, attention_dropout=0.1, tie_word_embeddings=tied)
    model = with_fixed_dropout(init_random(DistilBertForMaskedLM(config, seed=0, dtype=np.float64), rng, 0.3), 5)
    assert ("vocab_projector.weight" in model.state_dict()) is not tied
    check_loss_gradients(model, {**mlm_batch(rng), "labelled_positions_only": gathered}, seed=6, count=6)


def test_tied_embedding_receives_both_uses(rng):
    """vocab_projector.weight is the word-embedding table: rows that are looked up get both contributions."""
    model = init_random(DistilBertForMaskedLM(small_config(), seed=0, dtype=np.float64), rng, scale=0.3)
    batch = dict(input_ids=np.array([[2, 5, 7, 9, 4]]), labels=np.array([[-100, 6, -100, 30, -100]]))
    check_tied_table(model, batch, "distilbert.embeddings.word_embeddings.weight",
                     [(5, 0), (7, 3), (4, 5), (30, 2), (11, 1)])  # looked up, a label only, neither


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 7), heads=st.sampled_from([1, 2, 4]),
       gathered=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_masked_lm_random_shapes_and_masks(batch, length, heads, gathered, seed):
    """Hypothesis hunts for shapes and padding that break backward (every row keeps one real key, see
    tests/test_gradcheck.py)."""
    rng = np.random.default_rng(seed)
    config = small_config(dim=8, n_heads=heads, n_layers=1, hidden_dim=8)
    model = init_random(DistilBertForMaskedLM(config, seed=0, dtype=np.float64), rng, scale=0.3)
    inputs = mlm_batch(rng, batch, max(length, 2), padding=False)
    inputs["attention_mask"][:, 1:] = rng.random((batch, inputs["attention_mask"].shape[1] - 1)) < 0.7
    check_loss_gradients(model, {**inputs, "labelled_positions_only": gathered}, seed, count=4)


# ---- the distillation loss terms --------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.5])
def test_soft_target_loss(rng, temperature):
    student, teacher = rng.standard_normal((5, 9)) * 2, rng.standard_normal((5, 9)) * 2
    labels = rng.integers(0, 9, 5)
    loss, d_student = soft_target_loss(student, teacher, labels, temperature)
    every = [np.unravel_index(i, student.shape) for i in range(student.size)]
    numeric = numeric_gradient(lambda: float(soft_target_loss(student, teacher, labels, temperature)[0]), student,
                               every)
    assert relative_error(numeric, d_student.ravel(), 1.0) <= RTOL
    assert loss > 0 and soft_target_loss(teacher, teacher, labels, temperature)[0] == pytest.approx(0, abs=1e-12)


def test_cosine_embedding_loss_with_padding(rng):
    student, teacher = rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 5, 4))
    loss, d_student = cosine_embedding_loss(student, teacher, PADDING)
    every = [np.unravel_index(i, student.shape) for i in range(student.size)]
    numeric = numeric_gradient(lambda: float(cosine_embedding_loss(student, teacher, PADDING)[0]), student, every)
    assert relative_error(numeric, d_student.ravel(), 1.0) <= RTOL
    assert np.all(d_student[PADDING == 0] == 0), "padding gets no gradient"
    assert 0 < loss < 2
    assert cosine_embedding_loss(3 * teacher, teacher, None)[0] == pytest.approx(0, abs=1e-12)  # same direction


# ---- the whole objective -------------------------------------------------------------------------------


def tiny_teacher(rng) -> BertForMaskedLM:
    config = BertConfig(vocab_size=31, hidden_size=12, num_hidden_layers=3, num_attention_heads=3,
                        intermediate_size=20, max_position_embeddings=16)
    return init_random(BertForMaskedLM(config, seed=0, dtype=np.float64), rng, scale=0.3).eval()


def test_distillation_objective_for_every_student_parameter(rng):
    """L = α_ce τ² KL + α_mlm CE + α_cos (1 - cos) with dropout on: the student's gradient of every part."""
    student = with_fixed_dropout(init_random(DistilBertForMaskedLM(
        small_config(dropout=0.1, attention_dropout=0.1), seed=0, dtype=np.float64), rng, scale=0.3), 7)
    distiller = Distiller(student, tiny_teacher(rng), temperature=2.0, alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0)
    batch = mlm_batch(rng, batch=3, length=6)
    batch["token_type_ids"] = np.zeros_like(batch["input_ids"])
    student.zero_grad()
    parts = distiller.forward(batch)
    distiller.backward()
    grads = student.gradients()
    assert parts["loss"] == pytest.approx(5 * parts["kl_loss"] + 2 * parts["mlm_loss"] + parts["cosine_loss"])
    scale = max(float(np.abs(g).max()) for g in grads.values())
    for name, param in student.named_parameters():
        pad = 0 if name.endswith("word_embeddings.weight") else None
        indices = sample_indices(param.shape, rng, count=4, skip_row=pad)
        numeric = numeric_gradient(lambda: float(distiller.forward(batch)["loss"]), param.data, indices)
        err = relative_error(numeric, np.array([grads[name][i] for i in indices]), scale)
        assert err <= RTOL, f"{name}: finite-difference relative error {err:.2e}"
    assert all(p.grad is None for p in distiller.teacher.parameters()), "the teacher got a gradient"
