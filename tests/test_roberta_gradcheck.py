"""RoBERTa's hand-written backward passes against float64 finite differences (tests/test_gradcheck.py's method).

The new modules alone (the embeddings with positions after the padding index, the LM head), then
RobertaForMaskedLM's loss and RobertaModel's two outputs w.r.t. every parameter, on batches where
padding tokens sit at the end of rows and inside them. The padding rows of the word and position
tables get no gradient from their lookups, by torch's padding_idx convention (finite differences
would see the lookups of padding tokens), so they are left out of the sampled entries; the position
table's is checked to be exactly zero (the word table's also gets the tied decoder's gradient).
Then the position ids themselves and the refusals of bad input.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert import RobertaConfig, RobertaForMaskedLM, RobertaModel
from numpy_bert.roberta import RobertaEmbeddings, RobertaLMHead, create_position_ids_from_input_ids

from .test_gradcheck import (
    RTOL,
    FixedMasks,
    check_module,
    init_random,
    numeric_gradient,
    relative_error,
    sample_indices,
)

PAD = 1  # RoBERTa's <pad>: position ids start at 2
PADDING_ROWS = ("word_embeddings.weight", "position_embeddings.weight")  # tables whose row PAD gets no gradient


@pytest.fixture
def rng():
    return np.random.default_rng(19)


def small_config(**overrides) -> RobertaConfig:
    fields = dict(vocab_size=31, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
                  max_position_embeddings=12, type_vocab_size=1, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    fields.update(overrides)
    return RobertaConfig(**fields)


def padded_batch(rng, batch: int, length: int, vocab_size: int = 31) -> dict[str, np.ndarray]:
    """Ids without PAD, then PAD at the end of each row but the first (attention mask 0 there) and one PAD
    inside row 0 (mask 1, as in a text that spells <pad>): its position repeats its neighbour's."""
    ids = rng.choice(np.setdiff1d(np.arange(vocab_size), [PAD]), size=(batch, length))
    mask = np.ones((batch, length), dtype=np.int64)
    for row in range(1, batch):
        keep = rng.integers(1, length + 1)
        ids[row, keep:], mask[row, keep:] = PAD, 0
    if length > 2:
        ids[0, length // 2] = PAD
    return dict(input_ids=ids, attention_mask=mask)


def check_every_parameter(model, loss_fn, grads: dict, rng, count: int = 5) -> None:
    """Each parameter's gradient at ``count`` sampled entries against finite differences of ``loss_fn``
    (the padding rows left out and required to be zero)."""
    scale = max(float(np.abs(g).max()) for g in grads.values())
    for name, param in model.named_parameters():
        pad = PAD if name.endswith(PADDING_ROWS) else None
        if name.endswith("position_embeddings.weight"):  # the word table's row also gets the tied decoder's dE
            assert np.all(grads[name][PAD] == 0), f"{name}: the padding row got a gradient"
        indices = sample_indices(param.shape, rng, count=count, skip_row=pad)
        numeric = numeric_gradient(loss_fn, param.data, indices)
        err = relative_error(numeric, np.array([grads[name][i] for i in indices]), scale)
        assert err <= RTOL, f"{name}: finite-difference relative error {err:.2e}"


def check_masked_lm_loss(model, batch: dict, rng, count: int = 5) -> None:
    model.zero_grad()
    model(**batch)
    model.backward()
    grads = model.gradients()
    assert set(grads) == {name for name, _ in model.named_parameters()}
    check_every_parameter(model, lambda: float(model(**batch).loss), grads, rng, count)


def test_position_ids_start_after_the_padding_index():
    ids = np.array([[0, 5, 7, 1, 1], [0, 1, 9, 2, 1], [1, 1, 1, 1, 1]])
    assert create_position_ids_from_input_ids(ids, 1).tolist() == [[2, 3, 4, 1, 1], [2, 1, 3, 4, 1], [1] * 5]
    assert create_position_ids_from_input_ids(ids, 0).tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5]]


@settings(max_examples=25, deadline=None)
@given(ids=st.lists(st.lists(st.integers(0, 4), min_size=6, max_size=6), min_size=1, max_size=4),
       padding_idx=st.integers(0, 4))
def test_position_ids_count_the_tokens_before(ids, padding_idx):
    """fairseq's make_positions, spelled as a loop: the n-th non-padding token of a row gets padding_idx + n."""
    ids = np.array(ids)
    expected = np.full(ids.shape, padding_idx)
    for row in range(ids.shape[0]):
        tokens = np.flatnonzero(ids[row] != padding_idx)
        expected[row, tokens] = padding_idx + 1 + np.arange(len(tokens))
    np.testing.assert_array_equal(create_position_ids_from_input_ids(ids, padding_idx), expected)


def test_embeddings(rng):
    config = small_config(type_vocab_size=2, hidden_dropout_prob=0.2)
    embeddings = init_random(RobertaEmbeddings(config).to(np.float64), rng)
    embeddings.dropout.mask_source = FixedMasks(4)
    ids = np.array([[0, 5, 7, 1, 1], [0, 1, 9, 2, 30]])  # PAD at the end of row 0 and inside row 1
    types = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]])
    R = rng.standard_normal((2, 5, 12))
    embeddings.zero_grad()
    embeddings(ids, types)
    assert embeddings.backward(R) is None  # the inputs are ids
    check_every_parameter(embeddings, lambda: float((embeddings(ids, types) * R).sum()), embeddings.gradients(),
                          rng, count=12)
    assert np.all(embeddings.position_embeddings.weight.grad[6:] == 0), "rows past the longest row's last position"
    assert np.any(embeddings.position_embeddings.weight.grad[5] != 0)


@pytest.mark.parametrize("shape", [(2, 3, 12), (7, 12)])
def test_lm_head(rng, shape):
    """The decoder's weight is the tied embedding: its gradient is the head's dE, a parameter like the others."""
    config = small_config()
    embedding = init_random(RobertaEmbeddings(config).to(np.float64), rng).word_embeddings.weight
    head = init_random(RobertaLMHead(config, embedding).to(np.float64), rng)
    assert head.decoder.weight is embedding and head.decoder.bias is head.bias
    check_module(head, [rng.standard_normal(shape)])


@pytest.mark.parametrize("gathered", [False, True])
def test_masked_lm_loss(rng, gathered):
    model = init_random(RobertaForMaskedLM(small_config(hidden_act="gelu_new"), seed=0, dtype=np.float64), rng, 0.3)
    batch = padded_batch(rng, 3, 6)
    labels = np.where(rng.random((3, 6)) < 0.4, rng.integers(0, 31, (3, 6)), -100)
    labels[0, 0] = 7
    check_masked_lm_loss(model, {**batch, "labels": labels, "labelled_positions_only": gathered}, rng, count=6)


def test_masked_lm_loss_with_dropout(rng):
    config = small_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2, type_vocab_size=2)
    model = init_random(RobertaForMaskedLM(config, seed=0, dtype=np.float64), rng, scale=0.3)
    model.set_dropout_masks(FixedMasks(6))
    batch = padded_batch(rng, 2, 7)
    batch["token_type_ids"] = np.array([[0, 0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0, 0]])
    batch["labels"] = np.array([[-100, 6, -100, 30, 1, -100, 2], [-100] * 7])
    check_masked_lm_loss(model, batch, rng, count=6)


def test_model_backward_from_both_outputs(rng):
    model = init_random(RobertaModel(small_config(), seed=0, dtype=np.float64), rng, scale=0.3)
    batch = padded_batch(rng, 2, 5)
    out = model(**batch)
    R_last, R_pool = rng.standard_normal(out.last_hidden_state.shape), rng.standard_normal(out.pooler_output.shape)

    def loss():
        o = model(**batch)
        return float((o.last_hidden_state * R_last).sum() + (o.pooler_output * R_pool).sum())

    model.zero_grad()
    model(**batch)
    model.backward(R_last, R_pool)
    check_every_parameter(model, loss, model.gradients(), rng)


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 9), heads=st.sampled_from([1, 2, 4]),
       seed=st.integers(0, 2**31 - 1))
def test_masked_lm_random_shapes_and_padding(batch, length, heads, seed):
    """Hypothesis hunts for shapes and padding patterns that break backward (every row keeps a real key:
    see tests/test_gradcheck.py on fully padded rows, which parity_tests check against transformers)."""
    rng = np.random.default_rng(seed)
    config = small_config(hidden_size=8, num_attention_heads=heads, num_hidden_layers=1, intermediate_size=8)
    model = init_random(RobertaForMaskedLM(config, seed=0, dtype=np.float64), rng, scale=0.3)
    labels = np.where(rng.random((batch, length)) < 0.5, rng.integers(0, 31, (batch, length)), -100)
    labels[0, 0] = 5
    check_masked_lm_loss(model, {**padded_batch(rng, batch, length), "labels": labels}, rng, count=4)


def test_refusals():
    config = small_config()  # 12 positions, padding index 1: at most 10 tokens
    model = RobertaForMaskedLM(config, seed=0)
    model(np.zeros((1, 10), dtype=np.int64))
    with pytest.raises(ValueError, match="sequence length 11 exceeds the 10 tokens"):
        model(np.zeros((1, 11), dtype=np.int64))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 31\)"):
        model(np.zeros((1, 4), dtype=np.int64), labels=np.array([[31, -100, -100, -100]]))
    with pytest.raises(ValueError, match="token_type_ids values must lie in"):
        model(np.zeros((1, 4), dtype=np.int64), token_type_ids=np.ones((1, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="backward\\(\\) needs a forward call with labels"):
        model(np.zeros((1, 4), dtype=np.int64))
        model.backward()
    with pytest.raises(ValueError, match="at least pad_token_id \\+ 2"):
        small_config(max_position_embeddings=2)
    with pytest.raises(ValueError, match="tie_word_embeddings is False"):
        RobertaConfig.from_dict({**config.to_dict(), "tie_word_embeddings": False})
    with pytest.raises(ValueError, match="not 'roberta'"):
        RobertaConfig.from_dict({**config.to_dict(), "model_type": "bert"})
