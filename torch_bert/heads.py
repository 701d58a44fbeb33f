"""Fine-tuning heads in PyTorch: the twins of numpy_bert/heads.py, name for name.

Same layers, same losses; autograd replaces the hand-written backward. The pure
helpers (label sets in the config, the dropout rule, position checks, span search)
come from numpy_bert.heads, so the two backends cannot drift apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from numpy_bert.config import IGNORE_INDEX, BertConfig
from numpy_bert.heads import best_span, classifier_dropout_prob, with_labels
from numpy_bert.modeling_utils import check_answer_positions, check_regression_targets
from numpy_bert.outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput, TokenClassifierOutput

from .layers import Dropout
from .modeling import BertModel
from .modeling_utils import BertPreTrainedModel, check_labels

__all__ = [
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "best_span",
    "distillation_loss",
    "span_loss",
]


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
              end_positions: torch.Tensor) -> torch.Tensor:
    """(CE(start) + CE(end)) / 2 with positions clamped to [0, T] and T ignored, as transformers."""
    T = start_logits.shape[1]
    start_loss = F.cross_entropy(start_logits, start_positions.clamp(0, T), ignore_index=T)
    end_loss = F.cross_entropy(end_logits, end_positions.clamp(0, T), ignore_index=T)
    return (start_loss + end_loss) / 2


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """alpha τ² KL(softmax(t/τ) || softmax(s/τ)) + (1 - alpha) CE(s, labels); KL averaged over the batch."""
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got alpha={alpha}, temperature={temperature}")
    dtype = torch.promote_types(student_logits.dtype, torch.float32)  # bf16 logits (autocast): in float32
    log_q = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.to(dtype) / temperature, dim=-1)
    kl = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    return alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(student_logits, labels)


class _HeadModel(BertPreTrainedModel):
    """A BertModel under ``bert.`` plus a task layer."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool):
        super().__init__(config)
        self.bert = BertModel(config, seed=None, add_pooling_layer=add_pooling_layer)

    def encode(self, input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states):
        return self.bert(input_ids, attention_mask, token_type_ids, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)


class BertForSequenceClassification(_HeadModel):
    """logits = classifier(dropout(pooled)), pooled = tanh(dense(h[CLS])).

    num_labels >= 2: classification, loss = CE(logits, labels) with labels (B,) ints.
    num_labels == 1: regression, loss = mean((logits[:, 0] - labels)^2), labels (B,) floats.
    """

    def __init__(self, config: BertConfig, seed: int = 0, dtype=torch.float32, num_labels: int | None = None,
                 id2label: dict | None = None):
        config = with_labels(config, num_labels, id2label)
        super().__init__(config, add_pooling_layer=True)
        self.dropout = Dropout(classifier_dropout_prob(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init(seed, dtype)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions: bool = False, output_hidden_states: bool = False) -> SequenceClassifierOutput:
        encoded = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        logits = self.classifier(self.dropout(encoded.pooler_output))  # (B, K)
        loss = None
        if labels is not None:
            B = logits.shape[0]
            if self.config.num_labels == 1:
                check_regression_targets(labels, B)
                loss = F.mse_loss(logits[:, 0], labels.to(logits.dtype))
            else:
                check_labels(labels, (B,), self.config.num_labels, "labels", require_labelled=self.training)
                loss = F.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states,
                                        attentions=encoded.attentions)


class BertForTokenClassification(_HeadModel):
    """logits[b, t] = classifier(dropout(h[b, t])); loss = CE over tokens whose label is not -100.

    Labels (B, T): one class per token, -100 for [CLS], [SEP], padding and the later
    WordPiece pieces of a word (only a word's first piece is labelled).
    """

    def __init__(self, config: BertConfig, seed: int = 0, dtype=torch.float32, num_labels: int | None = None,
                 id2label: dict | None = None):
        config = with_labels(config, num_labels, id2label)
        super().__init__(config, add_pooling_layer=False)
        self.dropout = Dropout(classifier_dropout_prob(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init(seed, dtype)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions: bool = False, output_hidden_states: bool = False) -> TokenClassifierOutput:
        encoded = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        logits = self.classifier(self.dropout(encoded.last_hidden_state))  # (B, T, K)
        loss = None
        if labels is not None:
            K = self.config.num_labels
            check_labels(labels, tuple(logits.shape[:2]), K, "labels", require_labelled=self.training)
            loss = F.cross_entropy(logits.reshape(-1, K), labels.reshape(-1), ignore_index=IGNORE_INDEX)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states,
                                     attentions=encoded.attentions)


class BertForQuestionAnswering(_HeadModel):
    """start_logits, end_logits = qa_outputs(h)[..., 0], qa_outputs(h)[..., 1]; loss from :func:`span_loss`.

    ``qa_outputs`` is Linear(C, num_labels) with num_labels = 2, as in transformers (a config
    with another num_labels is set to 2, so that transformers builds the same layer).
    """

    def __init__(self, config: BertConfig, seed: int = 0, dtype=torch.float32):
        config = with_labels(config, num_labels=2)
        super().__init__(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init(seed, dtype)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, start_positions=None,
                end_positions=None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> QuestionAnsweringModelOutput:
        encoded = self.encode(input_ids, attention_mask, token_type_ids, output_attentions, output_hidden_states)
        logits = self.qa_outputs(encoded.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if check_answer_positions(start_positions, end_positions, logits.shape[0]):
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=encoded.hidden_states, attentions=encoded.attentions)
