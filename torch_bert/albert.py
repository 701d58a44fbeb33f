"""ALBERT in PyTorch, the twin of numpy_bert/albert.py (which explains what ALBERT changes and why).

Every class here has the same name, the same attributes and the same forward as its NumPy twin;
the backward methods are autograd's. Where numpy_bert runs a ``shared_copy`` of a layer group for
each layer that uses it (one cache per call), this file simply calls the group again: autograd
records every call in its graph and sums the shared parameters' gradients itself.

    AlbertForPreTraining
    ├── albert: AlbertModel
    │   ├── embeddings: AlbertEmbeddings        word + position + token type, E wide; LayerNorm, dropout
    │   ├── encoder: AlbertTransformer
    │   │   ├── embedding_hidden_mapping_in: Linear      E -> H
    │   │   └── albert_layer_groups.G: AlbertLayerGroup  one set of shared parameters
    │   │       └── albert_layers.I: AlbertLayer         post-LN block
    │   └── pooler: Linear, pooler_activation: Tanh      tanh(pooler(h[CLS]))
    ├── predictions: AlbertMLMHead              dense H -> E, activation, LayerNorm, decoder tied to the word table
    └── sop_classifier: AlbertSOPHead           dropout, classifier: sentence order
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from numpy_bert.albert import HEAD_PREFIXES, check_sop_classes, group_index
from numpy_bert.config import AlbertConfig
from numpy_bert.modeling import check_pretraining_labels
from numpy_bert.outputs import AlbertForPreTrainingOutput, BaseModelOutputWithPooling, MaskedLMOutput

from .layers import GELU, Dropout
from .modeling import BertEmbeddings, BertSelfAttention, gather_labelled, masked_lm_forward, mlm_targets
from .modeling_utils import BertPreTrainedModel, additive_attention_mask, check_labels, has_padding


class AlbertEmbeddings(BertEmbeddings):
    """x = LayerNorm(word[ids] + token_type[types] + position[0..T-1]), then dropout, all E wide."""

    def __init__(self, config: AlbertConfig):
        nn.Module.__init__(self)  # not BertEmbeddings.__init__, whose tables are hidden_size wide
        E = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, E)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E)
        self.LayerNorm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)


class AlbertAttention(BertSelfAttention):
    """Self-attention and its add & norm in one module: y = LayerNorm(x + dropout(dense(attention(x))))."""

    def __init__(self, config: AlbertConfig):
        super().__init__(config)  # query, key, value and the attention-probability dropout
        H = config.hidden_size
        self.output_dropout = Dropout(config.hidden_dropout_prob)
        self.dense = nn.Linear(H, H)
        self.LayerNorm = nn.LayerNorm(H, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        context = super().forward(hidden_states, mask)  # (B, T, H): the heads, merged
        projected = self.output_dropout(self.dense(context))  # (B, T, H)
        return self.LayerNorm(hidden_states + projected)


class AlbertLayer(nn.Module):
    """One post-LN block: attention (with its add & norm), then ffn, activation, ffn_output and add & norm."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        H, inner = config.hidden_size, config.intermediate_size
        self.full_layer_layer_norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.attention = AlbertAttention(config)
        self.ffn = nn.Linear(H, inner)
        self.ffn_output = nn.Linear(inner, H)
        self.activation = GELU(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.attention(hidden_states, mask)  # (B, T, H)
        widened = self.activation(self.ffn(attended))  # (B, T, intermediate)
        return self.full_layer_layer_norm(self.ffn_output(widened) + attended)  # (B, T, H)


class AlbertLayerGroup(nn.Module):
    """One set of shared parameters: inner_group_num AlbertLayers, run one after the other."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.albert_layers = nn.ModuleList([AlbertLayer(config) for _ in range(config.inner_group_num)])

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> list[torch.Tensor]:
        """The output of each of its layers (B, T, H); the last is the group's output."""
        states = []
        for layer in self.albert_layers:
            hidden_states = layer(hidden_states, mask)
            states.append(hidden_states)
        return states


class AlbertTransformer(nn.Module):
    """The encoder: project E -> H, then num_hidden_layers layers that share num_hidden_groups parameter groups.

    Layer i calls group ``group_index(i, L, G)`` again; autograd adds up the shared parameters' gradients.
    """

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.num_hidden_layers = config.num_hidden_layers
        self.num_hidden_groups = config.num_hidden_groups
        self.embedding_hidden_mapping_in = nn.Linear(config.embedding_size, config.hidden_size)
        self.albert_layer_groups = nn.ModuleList([AlbertLayerGroup(config) for _ in range(config.num_hidden_groups)])

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> list[torch.Tensor]:
        """All hidden states (B, T, H): the projected embeddings, then the output of every AlbertLayer call.

        Also keeps ``attention_maps``, every call's attention probabilities (B, nh, T, T), in call order
        (read after each call: the next call of the same layer overwrites its ``dropped_probs``).
        """
        states = [self.embedding_hidden_mapping_in(hidden_states)]  # (B, T, E) -> (B, T, H)
        self.attention_maps = []
        for i in range(self.num_hidden_layers):
            group = self.albert_layer_groups[group_index(i, self.num_hidden_layers, self.num_hidden_groups)]
            states.extend(group(states[-1], mask))
            self.attention_maps.extend(layer.attention.dropped_probs for layer in group.albert_layers)
        return states


class AlbertPreTrainedModel(BertPreTrainedModel):
    """Base of the ALBERT models: AlbertConfig, and checkpoints with the ``albert.`` prefix."""

    config_class = AlbertConfig
    base_model_prefix, head_prefixes = "albert", HEAD_PREFIXES


class AlbertModel(AlbertPreTrainedModel):
    """The encoder: ids in, contextual vectors out (last_hidden_state and pooler_output)."""

    def __init__(self, config: AlbertConfig, seed: int | None = 0, dtype=torch.float32,
                 add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = AlbertEmbeddings(config)
        self.encoder = AlbertTransformer(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.pooler_activation = nn.Tanh() if add_pooling_layer else None
        self.post_init(seed, dtype)

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
        states = self.encoder(self.embeddings(input_ids, token_type_ids), mask)
        last = states[-1]  # (B, T, H)
        pooled = None if self.pooler is None else self.pooler_activation(self.pooler(last[:, 0]))  # (B, H)
        return BaseModelOutputWithPooling(
            last_hidden_state=last,
            pooler_output=pooled,
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(self.encoder.attention_maps) if output_attentions else None,
        )


class AlbertMLMHead(nn.Module):
    """Masked-LM logits: decoder(LayerNorm(activation(dense(h)))), dense H -> E, decoder E -> V tied to the words."""

    def __init__(self, config: AlbertConfig, word_embeddings: nn.Parameter):
        super().__init__()
        E = config.embedding_size
        self.LayerNorm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.dense = nn.Linear(config.hidden_size, E)
        self.decoder = nn.Linear(E, config.vocab_size)
        self.decoder.weight, self.decoder.bias = word_embeddings, self.bias
        self.activation = GELU(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        narrowed = self.activation(self.dense(hidden_states))  # (..., E)
        return self.decoder(self.LayerNorm(narrowed))  # (..., V)


class AlbertSOPHead(nn.Module):
    """Sentence-order logits: classifier(dropout(pooled)), (B, 2)."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.dropout = Dropout(config.classifier_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled_output))  # (B, 2)


class AlbertForPreTraining(AlbertPreTrainedModel):
    """ALBERT with its two pre-training heads: masked-LM and sentence-order prediction.

    loss = CE(MLM logits, labels; ignoring -100) + CE(SOP logits, sentence_order_label), computed when
    both label arrays are given (as in transformers).
    """

    tied_weights = {
        "predictions.decoder.weight": "albert.embeddings.word_embeddings.weight",
        "predictions.decoder.bias": "predictions.bias",
    }

    def __init__(self, config: AlbertConfig, seed: int = 0, dtype=torch.float32):
        super().__init__(config)
        check_sop_classes(config)
        self.albert = AlbertModel(config, seed=None)  # initialised below, with the heads
        self.predictions = AlbertMLMHead(config, self.albert.embeddings.word_embeddings.weight)
        self.sop_classifier = AlbertSOPHead(config)
        self.post_init(seed, dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        sentence_order_label: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labelled_positions_only: bool = False,
    ) -> AlbertForPreTrainingOutput:
        """``labelled_positions_only``: MLM logits only where labels != -100, (N, V), as in BertForPreTraining."""
        encoded = self.albert(input_ids, attention_mask, token_type_ids,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        B, T, _ = encoded.last_hidden_state.shape  # (B, T, H)
        check_pretraining_labels(self.config, labels, None, B, T, self.training)
        if sentence_order_label is not None:
            check_labels(sentence_order_label, (B,), 2, "sentence_order_label", require_labelled=self.training)
        hidden, selected = gather_labelled(encoded.last_hidden_state, labels, labelled_positions_only)
        prediction_logits = self.predictions(hidden)  # (B, T, V) or (N, V)
        sop_logits = self.sop_classifier(encoded.pooler_output)  # (B, 2)
        mlm_loss = None if labels is None else F.cross_entropy(prediction_logits.reshape(-1, self.config.vocab_size),
                                                               mlm_targets(labels, selected))
        sop_loss = None if sentence_order_label is None else F.cross_entropy(sop_logits, sentence_order_label)
        both = mlm_loss is not None and sop_loss is not None
        return AlbertForPreTrainingOutput(
            loss=mlm_loss + sop_loss if both else None, prediction_logits=prediction_logits,
            sop_logits=sop_logits, mlm_loss=mlm_loss, sop_loss=sop_loss,
            hidden_states=encoded.hidden_states, attentions=encoded.attentions)


class AlbertForMaskedLM(AlbertPreTrainedModel):
    """ALBERT with the masked-LM head alone: no pooler, no SOP head, as transformers' AlbertForMaskedLM."""

    tied_weights = AlbertForPreTraining.tied_weights

    def __init__(self, config: AlbertConfig, seed: int = 0, dtype=torch.float32):
        super().__init__(config)
        self.albert = AlbertModel(config, seed=None, add_pooling_layer=False)
        self.predictions = AlbertMLMHead(config, self.albert.embeddings.word_embeddings.weight)
        self.post_init(seed, dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                labelled_positions_only: bool = False) -> MaskedLMOutput:
        """``labelled_positions_only``: logits only where labels != -100, (N, V), as in BertForMaskedLM."""
        encoded = self.albert(input_ids, attention_mask, token_type_ids,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return masked_lm_forward(self, encoded, labels, labelled_positions_only, head=self.predictions)
