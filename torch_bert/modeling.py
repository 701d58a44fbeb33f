"""BERT in PyTorch: the twin of numpy_bert/modeling.py, module for module and name for name.

Read the two files side by side: every class here has the same name, the same
attributes and the same forward as its NumPy twin; autograd replaces the
hand-written backward methods. Parameter names equal transformers' BertForPreTraining.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from numpy_bert.config import IGNORE_INDEX, BertConfig
from numpy_bert.outputs import BaseModelOutputWithPooling, BertForPreTrainingOutput

from .modeling_utils import BertPreTrainedModel, Dropout, additive_attention_mask, check_labels


class GELU(nn.Module):
    """"gelu": x * Phi(x) with the exact erf; "gelu_new": the tanh approximation."""

    def __init__(self, approximate: str = "gelu"):
        super().__init__()
        if approximate not in ("gelu", "gelu_new"):
            raise ValueError(f"unknown GELU variant {approximate!r}; use 'gelu' or 'gelu_new'")
        self.approximate = "none" if approximate == "gelu" else "tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, C)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, C)
        self.LayerNorm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        position_ids = torch.arange(T, device=input_ids.device)[None, :]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
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
        self.use_sdpa = False  # eager by default; torch_bert.modeling_utils.use_sdpa switches

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape  # (B, T, C) -> (B, nh, T, hs)
        return x.view(B, T, self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    @staticmethod
    def merge_heads(x: torch.Tensor) -> torch.Tensor:
        B, nh, T, hs = x.shape  # (B, nh, T, hs) -> (B, T, C)
        return x.transpose(1, 2).reshape(B, T, nh * hs)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = self.split_heads(self.query(hidden_states))  # (B, nh, T, hs)
        k = self.split_heads(self.key(hidden_states))
        v = self.split_heads(self.value(hidden_states))
        if self.use_sdpa:  # fused kernel; same maths, no attention probabilities kept
            self.dropped_probs = None
            p = self.dropout.p if self.training else 0.0
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=self.scaling)
            return self.merge_heads(context)
        scores = (q @ k.transpose(-1, -2)) * self.scaling  # (B, nh, T, T)
        if mask is not None:
            scores = scores + mask
        probs = torch.softmax(scores, dim=-1)
        self.dropped_probs = self.dropout(probs)
        return self.merge_heads(self.dropped_probs @ v)  # (B, T, C)


class ResidualOutput(nn.Module):
    def __init__(self, config: BertConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class BertSelfOutput(ResidualOutput):
    def __init__(self, config: BertConfig):
        super().__init__(config, config.hidden_size)


class BertOutput(ResidualOutput):
    def __init__(self, config: BertConfig):
        super().__init__(config, config.intermediate_size)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(hidden_states, mask), hidden_states)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = GELU(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertLayer(nn.Module):
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
        states = [hidden_states]
        for layer in self.layer:
            states.append(layer(states[-1], mask))
        return states


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))  # (B, C)


class BertModel(BertPreTrainedModel):
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
        dtype = self.embeddings.word_embeddings.weight.dtype
        # A mask of all ones would add zeros to the scores: leave it out, as transformers does, so that
        # scaled_dot_product_attention may pick its fastest (flash) kernel, which takes no mask.
        padded = attention_mask is not None and not bool(attention_mask.all())
        mask = additive_attention_mask(attention_mask, dtype) if padded else None
        states = self.encoder(self.embeddings(input_ids, token_type_ids), mask)
        last = states[-1]
        return BaseModelOutputWithPooling(
            last_hidden_state=last,
            pooler_output=None if self.pooler is None else self.pooler(last),
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(layer.attention.self.dropped_probs for layer in self.encoder.layer)
            if output_attentions else None,
        )


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = GELU(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, config: BertConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.decoder.weight = word_embeddings  # tied: one tensor, two uses, summed gradients
        self.decoder.bias = self.bias

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))  # (..., V)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BertForPreTraining(BertPreTrainedModel):
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
        encoded = self.bert(input_ids, attention_mask, token_type_ids,
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        hidden = encoded.last_hidden_state  # (B, T, C)
        B, T, C = hidden.shape
        flat_labels = None
        if labels is not None:
            check_labels(labels, (B, T), self.config.vocab_size, "labels")
            flat_labels = labels.reshape(-1)
        if labelled_positions_only and labels is not None:
            selected = torch.nonzero(flat_labels != IGNORE_INDEX).squeeze(1)  # (N,)
            hidden, flat_labels = hidden.reshape(B * T, C)[selected], flat_labels[selected]  # (N, C), (N,)
        prediction_logits = self.cls.predictions(hidden)  # (B, T, V) or (N, V)
        nsp_logits = self.cls.seq_relationship(encoded.pooler_output)  # (B, 2)
        mlm_loss = nsp_loss = loss = None
        if labels is not None:
            mlm_loss = F.cross_entropy(prediction_logits.reshape(len(flat_labels), -1), flat_labels)
        if next_sentence_label is not None:
            check_labels(next_sentence_label, (B,), 2, "next_sentence_label")
            nsp_loss = F.cross_entropy(nsp_logits, next_sentence_label)
        if mlm_loss is not None and nsp_loss is not None:
            loss = mlm_loss + nsp_loss
        return BertForPreTrainingOutput(
            loss=loss, prediction_logits=prediction_logits, seq_relationship_logits=nsp_logits,
            mlm_loss=mlm_loss, nsp_loss=nsp_loss,
            hidden_states=encoded.hidden_states, attentions=encoded.attentions,
        )

