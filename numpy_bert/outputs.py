"""Model outputs, named as transformers names them. Shared by both backends (they hold
NumPy arrays in numpy_bert and tensors in torch_bert)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class BaseModelOutputWithPooling:
    last_hidden_state: Any  # (B, T, C)
    pooler_output: Any = None  # (B, C): tanh(dense(h[CLS])), None without a pooler
    hidden_states: tuple | None = None  # embeddings output, then every layer's output
    attentions: tuple | None = None  # per layer, (B, nh, T, T) attention probabilities


@dataclass
class BertForPreTrainingOutput:
    loss: Any = None  # mlm_loss + nsp_loss, when both label arrays are given
    prediction_logits: Any = None  # (B, T, V)
    seq_relationship_logits: Any = None  # (B, 2): 0 = B follows A, 1 = B is random
    mlm_loss: Any = None
    nsp_loss: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class AlbertForPreTrainingOutput:
    loss: Any = None  # mlm_loss + sop_loss, when both label arrays are given
    prediction_logits: Any = None  # (B, T, V)
    sop_logits: Any = None  # (B, 2): 0 = the segments in order, 1 = swapped
    mlm_loss: Any = None
    sop_loss: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class MaskedLMOutput:
    loss: Any = None  # the masked-LM cross-entropy, when labels are given
    logits: Any = None  # (B, T, V), or (N labelled, V) with labelled_positions_only
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class SequenceClassifierOutput:
    loss: Any = None  # cross-entropy, or mean squared error when num_labels == 1
    logits: Any = None  # (B, num_labels)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class TokenClassifierOutput:
    loss: Any = None  # cross-entropy over the tokens whose label is not -100
    logits: Any = None  # (B, T, num_labels)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class QuestionAnsweringModelOutput:
    loss: Any = None  # (CE(start) + CE(end)) / 2
    start_logits: Any = None  # (B, T)
    end_logits: Any = None  # (B, T)
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class ElectraForPreTrainingOutput:
    loss: Any = None  # replaced-token detection: BCE-with-logits over the positions attention_mask keeps
    logits: Any = None  # (B, T): > 0 says "replaced", < 0 "original"
    hidden_states: tuple | None = None
    attentions: tuple | None = None
