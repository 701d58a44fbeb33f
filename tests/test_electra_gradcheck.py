"""ELECTRA's hand-written backward passes against float64 central differences (tests/test_gradcheck.py's
helpers): each new module, the discriminator's loss with padding, both models' losses w.r.t. every
parameter (with and without the E -> H projection), and the replaced-token-detection objective,
whose shared embeddings must receive the sum of the generator's and λ times the discriminator's gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining, ElectraModel
from numpy_bert.electra import (
    ElectraDiscriminatorPredictions,
    ElectraEmbeddings,
    ElectraGeneratorPredictions,
    replaced_token_detection_loss,
)
from numpy_bert.training.electra import ReplacedTokenDetection, generator_config
from tests.test_gradcheck import (
    RTOL,
    FixedMasks,
    check_loss_gradients,
    check_module,
    check_tied_table,
    init_random,
    numeric_gradient,
    relative_error,
    sample_indices,
)


def electra_config(**overrides) -> ElectraConfig:
    fields = dict(vocab_size=31, embedding_size=8, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                  intermediate_size=20, max_position_embeddings=16, type_vocab_size=3,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return ElectraConfig(**{**fields, **overrides})


@pytest.fixture
def rng():
    return np.random.default_rng(2020)


PADDED = dict(input_ids=np.array([[2, 5, 7, 9, 0, 0], [2, 4, 4, 3, 8, 1]]),
              attention_mask=np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]),
              token_type_ids=np.array([[0, 0, 1, 1, 0, 0], [0, 1, 1, 2, 2, 2]]))


# ---- the new modules ---------------------------------------------------------------------


def test_embeddings_are_embedding_size_wide(rng):
    embeddings = init_random(ElectraEmbeddings(electra_config()).to(np.float64), rng)
    assert embeddings.forward(PADDED["input_ids"], PADDED["token_type_ids"]).shape == (2, 6, 8)
    ids = PADDED["input_ids"] + 1  # no [PAD] (id 0): its row gets no gradient, by torch's padding_idx rule
    check_module(embeddings, [ids, PADDED["token_type_ids"]], differentiable=())


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_discriminator_predictions(rng, hidden_act):
    head = init_random(ElectraDiscriminatorPredictions(electra_config(hidden_act=hidden_act)).to(np.float64), rng)
    assert head.forward(rng.standard_normal((2, 5, 12))).shape == (2, 5)
    check_module(head, [rng.standard_normal((2, 5, 12))])


def test_generator_predictions(rng):
    head = init_random(ElectraGeneratorPredictions(electra_config()).to(np.float64), rng)
    check_module(head, [rng.standard_normal((7, 12))])  # (N masked rows, H) -> (N, E)


@pytest.mark.parametrize("embedding_size", [8, 12])  # projected E -> H, and not
def test_electra_model(rng, embedding_size):
    model = init_random(ElectraModel(electra_config(embedding_size=embedding_size), dtype=np.float64), rng, 0.3)
    assert model.projects == (embedding_size != 12)
    check_module(model, [PADDED["input_ids"] + 1, PADDED["attention_mask"]], differentiable=(),  # no [PAD] id
                 forward=lambda ids, mask: model(ids, attention_mask=mask).last_hidden_state)


# ---- the discriminator's loss --------------------------------------------------------------


def test_discriminator_loss_counts_the_real_tokens_only(rng):
    logits = rng.standard_normal((3, 5)) * 3
    labels = rng.integers(0, 2, (3, 5))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    loss, d_logits = replaced_token_detection_loss(logits, labels, mask)
    p = 1 / (1 + np.exp(-logits))  # the textbook form: -y log p - (1 - y) log(1 - p), over the 9 real tokens
    by_hand = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))[mask == 1].mean()
    assert loss == pytest.approx(by_hand, rel=1e-13)
    numeric = numeric_gradient(lambda: float(replaced_token_detection_loss(logits, labels, mask)[0]), logits,
                               [np.unravel_index(i, logits.shape) for i in range(logits.size)])
    assert relative_error(numeric, d_logits.ravel(), 1.0) <= RTOL
    assert np.all(d_logits[mask == 0] == 0), "padding gets no gradient"
    unmasked, _ = replaced_token_detection_loss(logits, labels, None)  # no mask: every position counts
    assert unmasked == pytest.approx(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean(), rel=1e-13)


def test_discriminator_loss_is_finite_for_large_logits():
    logits = np.array([[-800.0, 800.0, -30.0, 30.0]])
    loss, d_logits = replaced_token_detection_loss(logits, np.array([[0, 1, 1, 0]]), None)
    assert np.isfinite(loss) and np.isfinite(d_logits).all()
    assert loss == pytest.approx((30 + 30) / 4, rel=1e-12)  # softplus(30) - 0 and softplus(-30) + 30, rounded
    np.testing.assert_allclose(d_logits, [[0, 0, -0.25, 0.25]], atol=1e-13)


# ---- whole models, every parameter -----------------------------------------------------------


@pytest.mark.parametrize("embedding_size", [8, 12])
def test_discriminator_every_parameter_with_padding_and_dropout(rng, embedding_size):
    config = electra_config(embedding_size=embedding_size, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)
    model = init_random(ElectraForPreTraining(config, seed=0, dtype=np.float64), rng, scale=0.3)
    model.set_dropout_masks(FixedMasks(4))
    batch = {**PADDED, "labels": np.array([[0, 1, 0, 1, 1, 0], [1, 0, 0, 1, 0, 1]])}
    check_loss_gradients(model, batch, seed=5, count=6)


@pytest.mark.parametrize("gathered", [False, True])
def test_generator_every_parameter_and_the_tied_head(rng, gathered):
    model = init_random(ElectraForMaskedLM(electra_config(), seed=0, dtype=np.float64), rng, scale=0.3)
    batch = {**PADDED, "labels": np.array([[-100, 11, -100, 3, -100, -100], [-100, 6, -100, 30, 1, -100]]),
             "labelled_positions_only": gathered}
    check_loss_gradients(model, batch, seed=6, count=6)
    # The tied table: rows that the lookup uses (5, 4, 8) get both terms, row 30 is only a label.
    check_tied_table(model, batch, "electra.embeddings.word_embeddings.weight", [(5, 0), (4, 7), (8, 3), (30, 2)])


def test_weighted_backward_scales_every_gradient(rng):
    """backward(λ) is the gradient of λ · loss: what the pre-training objective asks of the discriminator."""
    model = init_random(ElectraForPreTraining(electra_config(), seed=0, dtype=np.float64), rng, scale=0.3)
    model(**PADDED, labels=np.array([[0, 1, 0, 0, 1, 1], [1, 1, 0, 0, 0, 1]]))
    model.zero_grad()
    model.backward()
    once = model.gradients()
    model.zero_grad()
    model.backward(4.0)  # a power of two: scaling is exact, so the gradients must be exactly 4 times as large
    for name, grad in model.gradients().items():
        np.testing.assert_array_equal(grad, 4.0 * once[name], err_msg=name)


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 7), embedding_size=st.sampled_from([4, 8]),
       heads=st.sampled_from([1, 2, 4]), seed=st.integers(0, 2**31 - 1))
def test_discriminator_random_shapes_and_padding(batch, length, embedding_size, heads, seed):
    """Hypothesis hunts for shapes and padding that break the backward (every row keeps one real key, as in
    tests/test_gradcheck.py: a fully padded row is parity_tests' to check)."""
    rng = np.random.default_rng(seed)
    config = electra_config(embedding_size=embedding_size, hidden_size=8, num_attention_heads=heads,
                            num_hidden_layers=1, intermediate_size=8)
    model = init_random(ElectraForPreTraining(config, seed=0, dtype=np.float64), rng, scale=0.3)
    inputs = dict(
        input_ids=rng.integers(0, 31, (batch, length)),
        attention_mask=np.concatenate([np.ones((batch, 1), np.int64),
                                       (rng.random((batch, length - 1)) < 0.7).astype(np.int64)], axis=1),
        token_type_ids=rng.integers(0, 3, (batch, length)),
        labels=rng.integers(0, 2, (batch, length)),
    )
    check_loss_gradients(model, inputs, seed, count=5)


# ---- replaced-token detection: the two models together -----------------------------------------------------


def rtd_model(rng, weight=50.0) -> ReplacedTokenDetection:
    model = ReplacedTokenDetection.create(electra_config(), generator_size=0.5, discriminator_weight=weight,
                                          dtype=np.float64)
    return init_random(model, rng, scale=0.3)


RTD_BATCH = {**PADDED, "labels": np.array([[-100, 11, -100, 3, -100, -100], [-100, 6, 9, -100, 1, -100]])}


def rtd_loss(model, sampling_seed=3) -> float:
    """The objective with the sampling's uniform numbers fixed: a function of the parameters alone."""
    return float(model(rng=np.random.default_rng(sampling_seed), **RTD_BATCH).loss)


def test_the_objective_w_r_t_every_parameter(rng):
    """d(L_G + λ L_D) by backward() against finite differences, for every parameter of both models: the
    sampled tokens are piecewise constant in the weights, so nothing flows back through them."""
    model = rtd_model(rng)
    model.zero_grad()
    model(rng=np.random.default_rng(3), **RTD_BATCH)
    model.backward()
    grads = model.gradients()
    assert any(name.startswith("generator.") for name in grads) and any(n.startswith("discriminator.") for n in grads)
    scale = max(float(np.abs(g).max()) for g in grads.values())
    for name, param in model.named_parameters():
        skip = 0 if name.endswith("word_embeddings.weight") else None  # [PAD]'s row gets no gradient
        indices = sample_indices(param.shape, rng, count=4, skip_row=skip)
        numeric = numeric_gradient(lambda: rtd_loss(model), param.data, indices)
        err = relative_error(numeric, np.array([grads[name][i] for i in indices]), scale)
        assert err <= RTOL, f"{name}: finite-difference relative error {err:.2e}"


def test_shared_embeddings_get_the_sum_of_both_gradients(rng):
    """One set of Parameter objects in both models; its gradient is the generator's plus λ times the
    discriminator's, each computed alone on the same inputs."""
    weight = 7.0
    model = rtd_model(rng, weight)
    generator, discriminator = model.generator, model.discriminator
    shared = ["word_embeddings", "position_embeddings", "token_type_embeddings"]
    for table in shared:
        assert getattr(generator.electra.embeddings, table).weight is getattr(discriminator.electra.embeddings,
                                                                              table).weight
    assert generator.electra.embeddings.LayerNorm.weight is discriminator.electra.embeddings.LayerNorm.weight
    assert generator.generator_lm_head.weight is discriminator.electra.embeddings.word_embeddings.weight
    assert generator.electra.projects  # its hidden size (6) is not the shared embedding_size (8)

    model.zero_grad()
    out = model(rng=np.random.default_rng(3), **RTD_BATCH)
    model.backward()
    together = {name: p.grad.copy() for name, p in model.named_parameters()}
    assert 0 < out.replaced.sum() < out.replaced.size

    model.zero_grad()
    generator(**RTD_BATCH, labelled_positions_only=True)
    generator.backward()
    alone = {name: p.grad.copy() for name, p in generator.electra.embeddings.named_parameters()}
    model.zero_grad()
    discriminator(out.corrupted_input_ids, PADDED["attention_mask"], PADDED["token_type_ids"], labels=out.replaced)
    discriminator.backward()
    for name, param in discriminator.electra.embeddings.named_parameters():
        expected = alone[name] + weight * param.grad
        np.testing.assert_allclose(together[f"discriminator.electra.embeddings.{name}"], expected, rtol=1e-12,
                                   atol=1e-15, err_msg=name)
        assert np.abs(alone[name]).max() > 0 and np.abs(param.grad).max() > 0, f"{name}: both models reach it"


def test_generator_config_scales_width_not_depth():
    config = electra_config(hidden_size=32, num_attention_heads=4, intermediate_size=64, embedding_size=32)
    small = generator_config(config, 0.25)
    assert (small.hidden_size, small.num_attention_heads, small.intermediate_size) == (8, 1, 16)
    assert (small.num_hidden_layers, small.embedding_size, small.vocab_size) == (2, 32, 31)
    assert generator_config(config, 1.0) == config
