"""BERT in PyTorch, module for module and name for name as transformers' modeling_bert.py.

The twin of numpy_bert/modeling.py: every class here has the same name, the same
attributes and the same forward as its NumPy twin, and ``diff`` shows only the API
translation and the backward methods, which autograd replaces here.

    BertForPreTraining
    ├── bert: BertModel
    │   ├── embeddings: BertEmbeddings      word + position + token type, LayerNorm, dropout
    │   ├── encoder: BertEncoder
    │   │   └── layer.N: BertLayer          post-LN transformer block
    │   │       ├── attention: BertAttention
    │   │       │   ├── self: BertSelfAttention     multi-head scaled dot-product attention
    │   │       │   └── output: BertSelfOutput      dense, dropout, residual, LayerNorm
    │   │       ├── intermediate: BertIntermediate  dense C -> 4C, GELU
    │   │       └── output: BertOutput              dense 4C -> C, dropout, residual, LayerNorm
    │   └── pooler: BertPooler              tanh(dense(h[CLS]))
    └── cls: BertPreTrainingHeads
        ├── predictions: BertLMPredictionHead   transform, then decoder tied to word embeddings
        └── seq_relationship: Linear            next-sentence prediction
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from numpy_bert.config import IGNORE_INDEX, BertConfig
from numpy_bert.modeling import check_pretraining_labels
from numpy_bert.outputs import BaseModelOutputWithPooling, BertForPreTrainingOutput, MaskedLMOutput

from .layers import GELU, Dropout
from .modeling_utils import BertPreTrainedModel, additive_attention_mask, has_padding


class BertEmbeddings(nn.Module):
    """x = LayerNorm(word[ids] + token_type[types] + position[0..T-1]), then dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, C)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, C)
        self.LayerNorm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention, every token attending to every token.

        q, k, v = split_heads(x Wq + bq), ...                     (B, nh, T, hs)
        scores = q k^T / sqrt(hs) + mask                          (B, nh, T, T)
        probs = dropout(softmax(scores))
        out = merge_heads(probs v)                                (B, T, C)

    ``mask`` is 0 where a key may be attended to and the dtype's most negative number
    where it is padding (transformers' eager value), so padding gets probability 0.
    With ``use_sdpa`` (see ``BertPreTrainedModel.use_sdpa``) torch's fused kernel computes
    the same, without keeping the attention probabilities.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.head_size
        self.scaling = self.attention_head_size**-0.5
        self.query = nn.Linear(C, C)
        self.key = nn.Linear(C, C)
        self.value = nn.Linear(C, C)
        self.dropout = Dropout(config.attention_probs_dropout_prob)
        self.use_sdpa = False

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape  # (B, T, C) -> (B, nh, T, hs)
        return x.reshape(B, T, self.num_attention_heads, self.attention_head_size).permute(0, 2, 1, 3)

    @staticmethod
    def merge_heads(x: torch.Tensor) -> torch.Tensor:
        B, nh, T, hs = x.shape  # (B, nh, T, hs) -> (B, T, C)
        return x.permute(0, 2, 1, 3).reshape(B, T, nh * hs)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = self.split_heads(self.query(hidden_states))  # (B, nh, T, hs)
        k = self.split_heads(self.key(hidden_states))
        v = self.split_heads(self.value(hidden_states))
        if self.use_sdpa:
            self.dropped_probs = None
            p = self.dropout.p if self.training else 0.0
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=self.scaling)
            return self.merge_heads(context)
        scores = (q @ k.transpose(-1, -2)) * self.scaling  # (B, nh, T, T)
        if mask is not None:
            scores = scores + mask  # (B, 1, 1, T) broadcast over heads and queries
        self.probs = torch.softmax(scores, dim=-1)
        self.dropped_probs = self.dropout(self.probs)
        return self.merge_heads(self.dropped_probs @ v)  # (B, T, C)


class ResidualOutput(nn.Module):
    """y = LayerNorm(dropout(dense(x)) + input_tensor): the "add & norm" that ends each sub-block.

    transformers has two copies of this (BertSelfOutput, BertOutput) that differ only
    in the dense layer's input size; here they share it.
    """

    def __init__(self, config: BertConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertSelfOutput(ResidualOutput):
    def __init__(self, config: BertConfig):
        super().__init__(config, config.hidden_size)


class BertOutput(ResidualOutput):
    def __init__(self, config: BertConfig):
        super().__init__(config, config.intermediate_size)


class BertAttention(nn.Module):
    """Self-attention, then add & norm: y = LayerNorm(x + dropout(dense(attention(x))))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(hidden_states, mask), hidden_states)


class BertIntermediate(nn.Module):
    """h = GELU(x W1 + b1), widening C to the intermediate size (4C)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = GELU(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertLayer(nn.Module):
    """One post-LN encoder block: attention + add & norm, then feed-forward + add & norm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.attention(hidden_states, mask)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> list[torch.Tensor]:
        """All hidden states: the input, then each layer's output."""
        states = [hidden_states]
        for layer in self.layer:
            states.append(layer(states[-1], mask))
        return states


class BertPooler(nn.Module):
    """pooled = tanh(dense(h[:, 0])): the [CLS] token's state, for sentence-level heads."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))  # (B, C)


class BertModel(BertPreTrainedModel):
    """The encoder: ids in, contextual vectors out (last_hidden_state and pooler_output)."""

    def __init__(self, config: BertConfig, seed: int | None = 0, dtype=torch.float32,
                 add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
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
        last = states[-1]  # (B, T, C)
        return BaseModelOutputWithPooling(
            last_hidden_state=last,
            pooler_output=None if self.pooler is None else self.pooler(last),
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(layer.attention.self.dropped_probs for layer in self.encoder.layer)
            if output_attentions else None,
        )


class BertPredictionHeadTransform(nn.Module):
    """h = LayerNorm(GELU(dense(x))), before the vocabulary projection."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = GELU(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """Masked-LM logits: transform(h) @ E^T + bias, with E the word-embedding matrix (V, C).

    ``decoder`` is a Linear whose weight *is* the embedding parameter and whose bias
    *is* ``self.bias`` (transformers ties them the same way).
    """

    def __init__(self, config: BertConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.decoder.weight, self.decoder.bias = word_embeddings, self.bias

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))  # (..., V)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BertForPreTraining(BertPreTrainedModel):
    """BERT with its two pre-training heads: masked-LM and next-sentence prediction.

    loss = CE(MLM logits, labels; ignoring -100) + CE(NSP logits, next_sentence_label),
    computed when both label arrays are given (as in transformers).
    """

    tied_weights = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: BertConfig, seed: int = 0, dtype=torch.float32):
        super().__init__(config)
        self.bert = BertModel(config, seed=None)  # initialised below, with the heads
        self.cls = BertPreTrainingHeads(config, self.bert.embeddings.word_embeddings.weight)
        self.post_init(seed, dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labelled_positions_only: bool = False,
    ) -> BertForPreTrainingOutput:
        """With ``labelled_positions_only`` (training), MLM logits are computed only where
        labels != -100, as the original BERT gathers them: prediction_logits is then
        (N labelled, V) instead of (B, T, V), and the loss is unchanged."""
        encoded = self.bert(input_ids, attention_mask, token_type_ids,
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        B, T, _ = encoded.last_hidden_state.shape  # (B, T, C)
        check_pretraining_labels(self.config, labels, next_sentence_label, B, T, self.training)
        hidden, selected = gather_labelled(encoded.last_hidden_state, labels, labelled_positions_only)
        prediction_logits = self.cls.predictions(hidden)  # (B, T, V) or (N, V)
        nsp_logits = self.cls.seq_relationship(encoded.pooler_output)  # (B, 2)
        mlm_loss = None if labels is None else F.cross_entropy(prediction_logits.reshape(-1, self.config.vocab_size),
                                                               mlm_targets(labels, selected))
        nsp_loss = None if next_sentence_label is None else F.cross_entropy(nsp_logits, next_sentence_label)
        both = mlm_loss is not None and nsp_loss is not None
        return BertForPreTrainingOutput(
            loss=mlm_loss + nsp_loss if both else None, prediction_logits=prediction_logits,
            seq_relationship_logits=nsp_logits, mlm_loss=mlm_loss, nsp_loss=nsp_loss,
            hidden_states=encoded.hidden_states, attentions=encoded.attentions)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings)


class BertForMaskedLM(BertPreTrainedModel):
    """BERT with the masked-LM head alone, as transformers' run_mlm.py trains and saves it:
    no pooler, no NSP head. loss = CE(logits, labels; ignoring -100).
    """

    tied_weights = BertForPreTraining.tied_weights

    def __init__(self, config: BertConfig, seed: int = 0, dtype=torch.float32):
        super().__init__(config)
        self.bert = BertModel(config, seed=None, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings.weight)
        self.post_init(seed, dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                labelled_positions_only: bool = False) -> MaskedLMOutput:
        """``labelled_positions_only``: logits only where labels != -100, (N, V), as in BertForPreTraining."""
        encoded = self.bert(input_ids, attention_mask, token_type_ids,
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return masked_lm_forward(self, encoded, labels, labelled_positions_only, head=self.cls.predictions)


def labelled_rows(labels: torch.Tensor | None) -> torch.Tensor | None:
    """The flat positions (N,) whose label is not -100, in row-major order: where MLM logits are needed."""
    return None if labels is None else torch.nonzero(labels.reshape(-1) != IGNORE_INDEX).squeeze(1)


def gather_labelled(hidden: torch.Tensor, labels: torch.Tensor | None,
                    labelled_positions_only: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The hidden states the MLM head reads: all (B, T, C), or the (N, C) rows at labelled positions
    with their flat indices (N,) (None when all are read)."""
    selected = labelled_rows(labels) if labelled_positions_only else None
    if selected is None:
        return hidden, None
    B, T, C = hidden.shape
    return hidden.reshape(B * T, C)[selected], selected


def mlm_targets(labels: torch.Tensor, selected: torch.Tensor | None) -> torch.Tensor:
    """The labels of the rows the MLM head computed: all B*T, or the N selected ones."""
    flat = labels.reshape(-1)
    return flat if selected is None else flat[selected]


# ---- the masked-LM step after the encoder: BertForMaskedLM's, and the family's (roberta.py, albert.py, ...) --


def masked_lm_forward(model: BertPreTrainedModel, encoded: BaseModelOutputWithPooling, labels,
                      labelled_positions_only: bool, head) -> MaskedLMOutput:
    """What every masked-LM model does after its encoder: check the labels, gather the rows the head reads
    (all, or the labelled ones), logits = head(rows), and the loss when labels are given.

    ``head`` maps hidden states (..., C) to logits (..., V). (numpy_bert's twin also keeps what backward
    needs; here autograd does.)
    """
    B, T, _ = encoded.last_hidden_state.shape  # (B, T, C)
    check_pretraining_labels(model.config, labels, None, B, T, model.training)
    hidden, selected = gather_labelled(encoded.last_hidden_state, labels, labelled_positions_only)
    logits = head(hidden)  # (B, T, V) or (N, V)
    loss = None if labels is None else F.cross_entropy(logits.reshape(-1, model.config.vocab_size),
                                                       mlm_targets(labels, selected))
    return MaskedLMOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states,
                          attentions=encoded.attentions)
