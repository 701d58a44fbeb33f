"""Fine-tuning heads in NumPy: sentence classification, token classification, span QA.

Each model is a ``BertModel`` under ``bert.`` plus one small layer, named exactly as
transformers names it, so a pre-training run, a transformers checkpoint or a saved
fine-tuned model all load with ``from_pretrained`` (a head the file lacks is
initialised and listed as new)::

    BertForSequenceClassification      pooled [CLS] -> dropout -> classifier   (B, K)
    BertForTokenClassification         every h_t    -> dropout -> classifier   (B, T, K)
    BertForQuestionAnswering           every h_t    -> qa_outputs -> start, end logits (B, T) each

The two token-level models build their encoder without the pooler, as transformers
does (``add_pooling_layer=False``): a checkpoint's ``bert.pooler.*`` is ignored and listed.

The backward of a head is short because the encoder does the rest: a head computes
dL/d(its input) and hands it to ``BertModel.backward``. The losses and their
gradients are plain functions below (:func:`mse_loss`, :func:`span_loss`,
:func:`distillation_loss`), each with its derivation.
"""

from __future__ import annotations

import numpy as np

from .config import IGNORE_INDEX, BertConfig, read_id2label
from .layers import Dropout, Linear, cross_entropy, log_softmax
from .modeling import BertModel
from .modeling_utils import BertPreTrainedModel, check_answer_positions, check_labels, check_regression_targets
from .outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput, TokenClassifierOutput

__all__ = [
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "best_span",
    "best_spans",
    "classifier_dropout_prob",
    "distillation_loss",
    "mse_loss",
    "span_loss",
    "with_labels",
]


# ---- configuration helpers (shared with torch_bert) ----------------------------------------


def with_labels(config: BertConfig, num_labels: int | None = None, id2label: dict | None = None) -> BertConfig:
    """The config with a new label set, as ``from_pretrained(..., num_labels=, id2label=)`` asks.

    ``id2label`` fixes ``num_labels`` to its length; a bare ``num_labels`` keeps the
    config's names only if there are that many of them.
    """
    if id2label is not None:
        id2label = {i: str(name) for i, name in read_id2label(id2label).items()}
        return config.replace(num_labels=len(id2label), id2label=id2label)  # replace() validates
    if num_labels is None:
        return config
    keep = config.id2label if config.id2label and len(config.id2label) == num_labels else None
    return config.replace(num_labels=num_labels, id2label=keep)


def classifier_dropout_prob(config: BertConfig) -> float:
    """classifier_dropout if set, else hidden_dropout_prob (transformers' rule)."""
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


# ---- losses with their gradients --------------------------------------------------------------


def mse_loss(predictions: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared error over the N values and its gradient:

        L = 1/N sum_i (p_i - y_i)^2          dL/dp_i = 2 (p_i - y_i) / N
    """
    diff = predictions - targets
    n = predictions.dtype.type(diff.size)
    return (diff * diff).sum() / n, 2 * diff / n


def span_loss(start_logits: np.ndarray, end_logits: np.ndarray, start_positions: np.ndarray,
              end_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """transformers' QA loss and its gradients: (loss, d_start_logits, d_end_logits).

    With T the sequence length, positions are first clamped to [0, T]: a negative
    position becomes 0 (the [CLS] token, "no answer"), and one at or beyond T becomes
    T, which is then ignored (an answer cut off by truncation teaches nothing). Then

        L = (CE(start_logits, start) + CE(end_logits, end)) / 2

    each CE a mean over its own counted rows, so each gradient is half a CE gradient.
    """
    T = start_logits.shape[1]

    def targets(positions):
        clamped = np.clip(np.asarray(positions), 0, T)
        return np.where(clamped == T, IGNORE_INDEX, clamped)

    start_loss, d_start = cross_entropy(start_logits, targets(start_positions))
    end_loss, d_end = cross_entropy(end_logits, targets(end_positions))
    half = start_logits.dtype.type(0.5)
    return (start_loss + end_loss) * half, d_start * half, d_end * half


def distillation_loss(student_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray,
                      temperature: float = 2.0, alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Knowledge distillation (Hinton et al. 2015) and its gradient for the student.

    With s, t the student's and teacher's logits (B, K), temperature τ and

        q = softmax(s / τ)    p = softmax(t / τ)    (the teacher's "soft targets")
        KL = 1/B sum_b sum_k p_bk (log p_bk - log q_bk)
        L  = α τ² KL + (1 - α) CE(s, labels)

    Differentiating log q_bk = s_bk/τ - logsumexp(s_b/τ) gives dKL/ds_bk = (q_bk - p_bk) / (τ B),
    so
        dL/ds = α τ (q - p) / B + (1 - α) dCE/ds.

    The τ² keeps the soft term's gradient on the scale of the hard one's when τ
    changes (the softened gradients shrink like 1/τ²). Rows with label -100 get no
    CE, but still the KL term, which needs no label. Returns (loss, dL/ds) in the logits'
    dtype (the soft term is computed in float64).
    """
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got alpha={alpha}, temperature={temperature}")
    dtype = student_logits.dtype.type
    log_q = log_softmax(student_logits / temperature)  # (B, K), in float64
    log_p = log_softmax(np.asarray(teacher_logits) / temperature)
    p, batch = np.exp(log_p), student_logits.shape[0]
    kl = (p * (log_p - log_q)).sum() / batch
    ce, d_ce = cross_entropy(student_logits, labels)
    loss = alpha * temperature**2 * kl + (1 - alpha) * ce
    d_soft = alpha * temperature * (np.exp(log_q) - p) / batch
    return dtype(loss), d_soft.astype(student_logits.dtype) + dtype(1 - alpha) * d_ce


# ---- span decoding --------------------------------------------------------------------------


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray, max_answer_len: int = 30,
               allowed: np.ndarray | None = None, k: int = 1) -> list[tuple[int, int]]:
    """The ``k`` answer spans (i, j) of one example with the highest start_logits[i] + end_logits[j], best first.

    Valid spans have i <= j < i + max_answer_len, and both ends where ``allowed`` is
    True (the context's tokens: not the question, [CLS], [SEP] or padding); ``None``
    allows every position. The logits are 1-D arrays of length T. This is the
    search of BERT's run_squad, done at once on the T x T table of scores; fewer than
    ``k`` spans come back when fewer are valid, and ties go to the smaller i, then j.
    """
    start_logits, end_logits = np.asarray(start_logits, np.float64), np.asarray(end_logits, np.float64)
    T = start_logits.shape[0]
    if max_answer_len < 1:
        raise ValueError(f"max_answer_len must be >= 1, got {max_answer_len}")
    allowed = np.ones(T, bool) if allowed is None else np.asarray(allowed, bool)
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    valid = (i <= j) & (j < i + max_answer_len) & allowed[:, None] & allowed[None, :]
    if not valid.any():
        raise ValueError("no valid answer span: no position is allowed")
    candidates = np.flatnonzero(valid)  # (N,) the valid spans as i * T + j, in increasing order
    scores = (start_logits[:, None] + end_logits[None, :]).ravel()[candidates]
    best = candidates[np.argsort(-scores, kind="stable")[:k]]
    return [(int(n) // T, int(n) % T) for n in best]


def best_span(start_logits: np.ndarray, end_logits: np.ndarray, max_answer_len: int = 30,
              allowed: np.ndarray | None = None) -> tuple[int, int]:
    """The best answer span (i, j) of :func:`best_spans`."""
    return best_spans(start_logits, end_logits, max_answer_len, allowed)[0]


# ---- the models ---------------------------------------------------------------------------------


class _HeadModel(BertPreTrainedModel):
    """A BertModel under ``bert.`` plus a task layer.

    Its forward keeps the loss gradient for backward() (``loss_grads``).
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool):
        super().__init__(config)
        self.bert = BertModel(config, seed=None, add_pooling_layer=add_pooling_layer)

    def encode(self, input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states):
        encoded = self.bert(input_ids, attention_mask, token_type_ids, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states)
        self.sequence_shape = encoded.last_hidden_state.shape  # (B, T, C)
        self.loss_grads = None
        return encoded


class BertForSequenceClassification(_HeadModel):
    """logits = classifier(dropout(pooled)), pooled = tanh(dense(h[CLS])).

    num_labels >= 2: classification, loss = CE(logits, labels) with labels (B,) ints.
    num_labels == 1: regression, loss = mean((logits[:, 0] - labels)^2), labels (B,) floats.
    Backward: d_pooled = dropout'(d_logits W), then the pooler and the encoder.
    """

    def __init__(self, config: BertConfig, seed: int = 0, dtype=np.float32, num_labels: int | None = None,
                 id2label: dict | None = None):
        config = with_labels(config, num_labels, id2label)
        super().__init__(config, add_pooling_layer=True)
        self.dropout = Dropout(classifier_dropout_prob(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self.post_init(seed, dtype)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions: bool = False, output_hidden_states: bool = False) -> SequenceClassifierOutput:
        encoded = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        logits = self.classifier(self.dropout(encoded.pooler_output))  # (B, K)
        loss = None
        if labels is not None:
            loss, d_logits = self.loss(logits, np.asarray(labels))
            self.loss_grads = (d_logits,)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states,
                                        attentions=encoded.attentions)

    def loss(self, logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        B = logits.shape[0]
        if self.config.num_labels == 1:
            check_regression_targets(labels, B)
            return mse_loss(logits, labels.astype(self.dtype).reshape(B, 1))
        check_labels(labels, (B,), self.config.num_labels, "labels", require_labelled=self.training)
        return cross_entropy(logits, labels)

    def backward(self, grad_logits: np.ndarray | None = None) -> None:
        """Adds d(loss)/d(parameter) into every .grad; with ``grad_logits``, the gradients of
        sum(grad_logits * logits) instead (how a loss computed outside, such as
        :func:`distillation_loss`, is back-propagated)."""
        d_logits = self.stored_loss_grads()[0] if grad_logits is None else np.asarray(grad_logits, self.dtype)
        d_dropped = self.classifier.backward(d_logits)  # (B, C)
        d_pooled = self.dropout.backward(d_dropped)
        self.bert.backward(np.zeros(self.sequence_shape, self.dtype), d_pooled)


class BertForTokenClassification(_HeadModel):
    """logits[b, t] = classifier(dropout(h[b, t])); loss = CE over tokens whose label is not -100.

    Labels (B, T): one class per token, -100 for [CLS], [SEP], padding and the later
    WordPiece pieces of a word (only a word's first piece is labelled).
    Backward: dh[b, t] = dropout'(d_logits[b, t] W), for every token at once; ignored
    tokens have d_logits = 0, so they send nothing back.
    """

    def __init__(self, config: BertConfig, seed: int = 0, dtype=np.float32, num_labels: int | None = None,
                 id2label: dict | None = None):
        config = with_labels(config, num_labels, id2label)
        super().__init__(config, add_pooling_layer=False)
        self.dropout = Dropout(classifier_dropout_prob(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self.post_init(seed, dtype)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions: bool = False, output_hidden_states: bool = False) -> TokenClassifierOutput:
        encoded = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        logits = self.classifier(self.dropout(encoded.last_hidden_state))  # (B, T, K)
        loss = None
        if labels is not None:
            labels = np.asarray(labels)
            K = self.config.num_labels
            check_labels(labels, logits.shape[:2], K, "labels", require_labelled=self.training)
            loss, d_logits = cross_entropy(logits.reshape(-1, K), labels.reshape(-1))
            self.loss_grads = (d_logits.reshape(logits.shape),)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states,
                                     attentions=encoded.attentions)

    def backward(self) -> None:
        """Adds d(loss)/d(parameter) into every parameter's .grad, for the last forward call."""
        (d_logits,) = self.stored_loss_grads()  # (B, T, K)
        d_dropped = self.classifier.backward(d_logits)  # (B, T, C)
        d_hidden = self.dropout.backward(d_dropped)
        self.bert.backward(d_hidden)


class BertForQuestionAnswering(_HeadModel):
    """start_logits, end_logits = qa_outputs(h)[..., 0], qa_outputs(h)[..., 1]; loss from :func:`span_loss`.

    ``qa_outputs`` is Linear(C, num_labels) with num_labels = 2, as in transformers (a config
    with another num_labels is set to 2, so that transformers builds the same layer).
    Backward: the two (B, T) gradients are stacked back into (B, T, 2) for qa_outputs.
    """

    def __init__(self, config: BertConfig, seed: int = 0, dtype=np.float32):
        config = with_labels(config, num_labels=2)  # transformers reads qa_outputs' size from num_labels
        super().__init__(config, add_pooling_layer=False)
        self.qa_outputs = Linear(config.hidden_size, 2)
        self.post_init(seed, dtype)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, start_positions=None,
                end_positions=None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> QuestionAnsweringModelOutput:
        encoded = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        logits = self.qa_outputs(encoded.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        positions = [None if p is None else np.asarray(p) for p in (start_positions, end_positions)]
        if check_answer_positions(*positions, logits.shape[0]):
            loss, d_start, d_end = span_loss(start_logits, end_logits, *positions)
            self.loss_grads = (d_start, d_end)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=encoded.hidden_states, attentions=encoded.attentions)

    def backward(self) -> None:
        """Adds d(loss)/d(parameter) into every parameter's .grad, for the last forward call."""
        d_start, d_end = self.stored_loss_grads()  # (B, T) each
        d_logits = np.stack([d_start, d_end], axis=-1)  # (B, T, 2)
        d_hidden = self.qa_outputs.backward(d_logits)
        self.bert.backward(d_hidden)

