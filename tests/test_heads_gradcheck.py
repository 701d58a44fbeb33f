"""The fine-tuning heads' hand-written backward against finite differences, in float64.

Same method and threshold as tests/test_gradcheck.py (whose helpers are reused):
fourth-order central differences of the model's own loss, relative error <= 1e-6,
on a random sample of entries of every parameter. Each head is checked with dropout
on (fixed masks) and with the awkward cases of its loss: regression (MSE), ignored
token labels, answer positions that transformers clamps (negative -> [CLS]) or
ignores (beyond the sequence).
"""

from __future__ import annotations

import numpy as np
import pytest

from numpy_bert.heads import (
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    distillation_loss,
    span_loss,
)

from .test_gradcheck import (
    RTOL,
    FixedMasks,
    check_loss_gradients,
    init_random,
    numeric_gradient,
    relative_error,
    small_config,
)

INPUTS = dict(
    input_ids=np.array([[2, 5, 7, 9, 0, 0], [2, 4, 4, 3, 8, 1], [2, 6, 1, 1, 0, 0]]),
    attention_mask=np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
    token_type_ids=np.array([[0, 0, 1, 1, 0, 0], [0, 1, 1, 2, 2, 2], [0, 0, 0, 1, 0, 0]]),
)


def make(cls, rng, **config_fields):
    config = small_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.1, **config_fields)
    model = init_random(cls(config, seed=0, dtype=np.float64), rng, scale=0.3)
    model.set_dropout_masks(FixedMasks(7))
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(99)


def test_sequence_classification(rng):
    model = make(BertForSequenceClassification, rng, num_labels=4, classifier_dropout=0.3)
    check_loss_gradients(model, {**INPUTS, "labels": np.array([3, 0, -100])})
    assert np.any(model.gradients()["bert.pooler.dense.weight"] != 0), "the pooler is trained"


def test_sequence_regression_uses_mse(rng):
    model = make(BertForSequenceClassification, rng, num_labels=1)
    labels = np.array([0.5, -1.25, 2.0])
    out = model(**INPUTS, labels=labels)
    assert np.isclose(out.loss, np.mean((out.logits[:, 0] - labels) ** 2), rtol=1e-12, atol=0)
    check_loss_gradients(model, {**INPUTS, "labels": labels})


def test_token_classification_ignores_labels(rng):
    model = make(BertForTokenClassification, rng, num_labels=3)
    assert "bert.pooler.dense.weight" not in dict(model.named_parameters()), "no pooler, as transformers"
    labels = np.array([[-100, 1, 2, -100, -100, -100], [-100, 0, 0, 1, 2, -100], [-100, -100, -100, -100, -100, -100]])
    check_loss_gradients(model, {**INPUTS, "labels": labels})
    (d_logits,) = model.loss_grads
    assert np.all(d_logits[2] == 0) and np.all(d_logits[:, 0] == 0), "ignored tokens get no gradient"


@pytest.mark.parametrize("starts, ends", [
    (np.array([2, 1, 3]), np.array([3, 4, 3])),  # ordinary spans
    (np.array([-5, 9, 2]), np.array([1, 6, 40])),  # clamped to [CLS]; at and beyond T: ignored
])
def test_question_answering_with_clamped_positions(rng, starts, ends):
    model = make(BertForQuestionAnswering, rng)
    check_loss_gradients(model, {**INPUTS, "start_positions": starts, "end_positions": ends})


def test_span_loss_clamps_like_transformers(rng):
    start, end = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    loss, _, _ = span_loss(start, end, np.array([-5, 9, 2]), np.array([1, 6, 40]))

    def ce(logits, rows, targets):
        log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return -np.mean([log_p[r, t] for r, t in zip(rows, targets)])

    # start: -5 -> 0 (counted), 9 -> 6 = T (ignored); end: 6 = T and 40 -> T ignored.
    assert np.isclose(loss, (ce(start, [0, 2], [0, 2]) + ce(end, [0], [1])) / 2, rtol=1e-12, atol=0)


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (3.0, 0.9), (2.0, 0.0), (0.7, 1.0)])
def test_distillation_loss(rng, temperature, alpha):
    student, teacher = rng.standard_normal((5, 4)) * 2, rng.standard_normal((5, 4)) * 2
    labels = np.array([0, 3, -100, 2, 1])
    loss, d_student = distillation_loss(student, teacher, labels, temperature, alpha)
    p = np.exp(teacher / temperature) / np.exp(teacher / temperature).sum(-1, keepdims=True)
    q = np.exp(student / temperature) / np.exp(student / temperature).sum(-1, keepdims=True)
    log_probs = student - np.log(np.exp(student).sum(-1, keepdims=True))
    ce = -np.mean([log_probs[i, y] for i, y in enumerate(labels) if y != -100])
    assert np.isclose(loss, alpha * temperature**2 * np.mean((p * np.log(p / q)).sum(-1)) + (1 - alpha) * ce,
                      rtol=1e-12, atol=0)
    indices = [np.unravel_index(i, student.shape) for i in range(student.size)]
    numeric = numeric_gradient(lambda: float(distillation_loss(student, teacher, labels, temperature, alpha)[0]),
                               student, indices)
    assert relative_error(numeric, d_student.ravel(), 1.0) <= RTOL
    # The soft term vanishes when the student already matches the teacher.
    same, _ = distillation_loss(teacher, teacher, labels, temperature, 1.0)
    assert abs(same) < 1e-15


def test_sequence_classifier_backward_from_outside_loss(rng):
    """backward(grad_logits) back-propagates a loss computed outside the model (distillation)."""
    model = make(BertForSequenceClassification, rng, num_labels=3)
    labels, teacher = np.array([2, 0, 1]), rng.standard_normal((3, 3))

    class Distilled:  # the model, with distillation as its loss
        config = model.config

        def forward(self, **batch):
            out = model.forward(**batch)
            out.loss, self.d_logits = distillation_loss(out.logits, teacher, labels, 2.0, 0.7)
            return out

        def named_parameters(self):
            return model.named_parameters()

    distilled = Distilled()
    model.zero_grad()
    distilled.forward(**INPUTS)
    model.backward(distilled.d_logits)
    check_loss_gradients(distilled, INPUTS, grads=model.gradients())
