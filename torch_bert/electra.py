"""ELECTRA in PyTorch, module for module and name for name as transformers' modeling_electra.py.

The twin of numpy_bert/electra.py (read that chapter for what ELECTRA changes relative to BERT):
the same classes, attributes and forward passes; autograd replaces the backward methods. The
config, the output class, the label check and the names of the heads are numpy_bert's.

    ElectraForPreTraining                   the discriminator
    ├── electra: ElectraModel
    │   ├── embeddings: ElectraEmbeddings   word + position + token type, E wide; LayerNorm, dropout
    │   ├── embeddings_project: Linear      E -> H (only when E != H)
    │   └── encoder: BertEncoder            BERT's post-LN layers, unchanged
    └── discriminator_predictions: ElectraDiscriminatorPredictions   dense, activation, dense_prediction -> (B, T)

    ElectraForMaskedLM                      the generator
    ├── electra: ElectraModel
    ├── generator_predictions: ElectraGeneratorPredictions           dense H -> E, GELU, LayerNorm
    └── generator_lm_head: Linear           E -> V, its weight tied to electra.embeddings.word_embeddings
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from numpy_bert.config import ElectraConfig
from numpy_bert.electra import ELECTRA_HEADS, check_replaced_labels
from numpy_bert.outputs import BaseModelOutputWithPooling, ElectraForPreTrainingOutput, MaskedLMOutput

from .layers import GELU, Dropout
from .modeling import BertEmbeddings, BertEncoder, masked_lm_forward
from .modeling_utils import BertPreTrainedModel, additive_attention_mask, has_padding


class ElectraEmbeddings(BertEmbeddings):
    """BERT's embeddings, E = embedding_size wide: LayerNorm(word[ids] + token_type[types] + position[0..T-1]).

    forward is BertEmbeddings' own: only the tables' width differs.
    """

    def __init__(self, config: ElectraConfig):
        nn.Module.__init__(self)  # BertEmbeddings' tables would be hidden_size wide
        E = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, E)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E)
        self.LayerNorm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)


class ElectraDiscriminatorPredictions(nn.Module):
    """The discriminator's head: logit = dense_prediction(activation(dense(h))), one number per token."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = GELU(config.hidden_act)
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, discriminator_hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dense(discriminator_hidden_states)  # (B, T, H)
        hidden_states = self.activation(hidden_states)
        return self.dense_prediction(hidden_states).squeeze(-1)  # (B, T)


class ElectraGeneratorPredictions(nn.Module):
    """The generator's head before the vocabulary: h = LayerNorm(GELU(dense(x))), H -> E."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.activation = GELU("gelu")
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)

    def forward(self, generator_hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dense(generator_hidden_states)  # (..., E)
        hidden_states = self.activation(hidden_states)
        return self.LayerNorm(hidden_states)  # (..., E)


class ElectraPreTrainedModel(BertPreTrainedModel):
    """Base of the ELECTRA models: ElectraConfig, and checkpoints with the ``electra.`` prefix."""

    config_class = ElectraConfig
    base_model_prefix = "electra"
    head_prefixes = ELECTRA_HEADS


class ElectraModel(ElectraPreTrainedModel):
    """The encoder: ids in, contextual vectors out (last_hidden_state; no pooler)."""

    def __init__(self, config: ElectraConfig, seed: int | None = 0, dtype=torch.float32):
        super().__init__(config)
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = BertEncoder(config)
        self.post_init(seed, dtype)

    @property
    def projects(self) -> bool:
        """Whether the embeddings are projected E -> H (embedding_size != hidden_size)."""
        return "embeddings_project" in self._modules

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutputWithPooling:
        input_ids, attention_mask, token_type_ids = self.check_inputs(input_ids, attention_mask, token_type_ids)
        mask = additive_attention_mask(attention_mask, self.dtype) if has_padding(attention_mask) else None
        embedded = self.embeddings(input_ids, token_type_ids)  # (B, T, E)
        if self.projects:
            embedded = self.embeddings_project(embedded)  # (B, T, H)
        states = self.encoder(embedded, mask)
        return BaseModelOutputWithPooling(
            last_hidden_state=states[-1],  # (B, T, H)
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(layer.attention.self.dropped_probs for layer in self.encoder.layer)
            if output_attentions else None,
        )


class ElectraForPreTraining(ElectraPreTrainedModel):
    """The discriminator: for every token, a logit that it was replaced (labels: 1 replaced, 0 original).

    loss = BCE-with-logits of the logits against the labels, averaged over the positions where
    attention_mask is 1 (over all positions without a mask), as transformers computes it; the labels
    are cast to the logits' dtype (transformers casts them to float32, which makes a float64 model's
    loss float32).
    """

    def __init__(self, config: ElectraConfig, seed: int = 0, dtype=torch.float32):
        super().__init__(config)
        self.electra = ElectraModel(config, seed=None)  # initialised below, with the head
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)
        self.post_init(seed, dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ElectraForPreTrainingOutput:
        encoded = self.electra(input_ids, attention_mask, token_type_ids,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        B, T, _ = encoded.last_hidden_state.shape
        logits = self.discriminator_predictions(encoded.last_hidden_state)  # (B, T)
        loss = None
        if labels is not None:
            check_replaced_labels(labels, B, T)
            active = torch.ones_like(labels, dtype=torch.bool) if attention_mask is None else attention_mask == 1
            loss = F.binary_cross_entropy_with_logits(logits[active], labels[active].to(logits.dtype))
        return ElectraForPreTrainingOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states,
                                           attentions=encoded.attentions)


class ElectraForMaskedLM(ElectraPreTrainedModel):
    """The generator: a masked LM whose head projects to E and decodes with the tied word table."""

    tied_weights = {"generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"}

    def __init__(self, config: ElectraConfig, seed: int = 0, dtype=torch.float32):
        super().__init__(config)
        self.electra = ElectraModel(config, seed=None)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = nn.Linear(config.embedding_size, config.vocab_size)
        self.generator_lm_head.weight = self.electra.embeddings.word_embeddings.weight
        self.post_init(seed, dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                labelled_positions_only: bool = False) -> MaskedLMOutput:
        """``labelled_positions_only``: logits only where labels != -100, (N, V), as in BertForMaskedLM."""
        encoded = self.electra(input_ids, attention_mask, token_type_ids,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return masked_lm_forward(self, encoded, labels, labelled_positions_only, head=self.mlm_head)

    def mlm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The MLM logits (..., V) of hidden states (..., H): generator_predictions (H -> E), then the tied decoder."""
        return self.generator_lm_head(self.generator_predictions(hidden))
