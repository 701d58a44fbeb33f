"""RoBERTa in PyTorch, the twin of numpy_bert/roberta.py (which explains what RoBERTa changes).

The same classes with the same attributes and the same forward as their NumPy twins; the
backward methods are autograd's. The encoder is torch_bert's BERT encoder, unchanged.

    RobertaForMaskedLM
    ├── roberta: RobertaModel
    │   ├── embeddings: RobertaEmbeddings   word + position (after the padding index) + token type
    │   ├── encoder: BertEncoder            BERT's layers, unchanged
    │   └── pooler: BertPooler              only with add_pooling_layer (RobertaForMaskedLM has none)
    └── lm_head: RobertaLMHead              dense, GELU, layer_norm, decoder tied to the word embeddings
"""

from __future__ import annotations

import torch
from torch import nn

from numpy_bert.config import RobertaConfig
from numpy_bert.outputs import MaskedLMOutput
from numpy_bert.roberta import check_positions_fit

from .layers import GELU
from .modeling import BertEmbeddings, BertModel, masked_lm_forward
from .modeling_utils import BertPreTrainedModel, tracing

__all__ = ["RobertaEmbeddings", "RobertaForMaskedLM", "RobertaLMHead", "RobertaModel", "RobertaPreTrainedModel",
           "create_position_ids_from_input_ids"]


def create_position_ids_from_input_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """Position ids (B, T): padding_idx + 1, + 2, ... over the non-padding tokens; padding_idx on padding."""
    is_token = (input_ids != padding_idx).long()  # (B, T): 1 for a token, 0 for padding
    return torch.cumsum(is_token, dim=1) * is_token + padding_idx


class RobertaEmbeddings(BertEmbeddings):
    """x = LayerNorm(word[ids] + token_type[types] + position[positions after the padding index]), then dropout.

    BertEmbeddings with two changes: the position ids come from
    :func:`create_position_ids_from_input_ids`, and the position table has a padding row
    (``padding_idx = pad_token_id``), which padding tokens look up and which gets no gradient.
    """

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=config.pad_token_id)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        position_ids = create_position_ids_from_input_ids(input_ids, self.padding_idx)  # (B, T)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class RobertaPreTrainedModel(BertPreTrainedModel):
    """Base of the RoBERTa models: RobertaConfig, and checkpoints with the ``roberta.`` prefix."""

    config_class = RobertaConfig
    base_model_prefix, head_prefixes = "roberta", ("lm_head.",)


class RobertaModel(RobertaPreTrainedModel, BertModel):
    """The encoder: ids in, contextual vectors out (last_hidden_state, and pooler_output with the pooler).

    BertModel with RobertaEmbeddings; forward is BertModel's. Only the input check adds a
    rule: T tokens need T position rows after the padding index.
    """

    def __init__(self, config: RobertaConfig, seed: int | None = 0, dtype=torch.float32,
                 add_pooling_layer: bool = True):
        BertModel.__init__(self, config, seed=None, add_pooling_layer=add_pooling_layer)
        self.embeddings = RobertaEmbeddings(config)  # in BertEmbeddings' place (and parameter order)
        self.post_init(seed, dtype)

    def check_inputs(self, input_ids, attention_mask=None, token_type_ids=None):
        checked = super().check_inputs(input_ids, attention_mask, token_type_ids)
        if not tracing():  # a traced graph serves every length; the check reads this one's
            check_positions_fit(self.config, checked[0].shape[1])
        return checked


class RobertaLMHead(nn.Module):
    """Masked-LM logits: decoder(layer_norm(GELU(dense(h)))), the decoder tied to the word embeddings.

    The same maths as BertLMPredictionHead (transform, then E^T + bias), with transformers'
    RoBERTa names. The GELU is always the exact one.
    """

    def __init__(self, config: RobertaConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.decoder.weight, self.decoder.bias = word_embeddings, self.bias
        self.activation = GELU("gelu")  # transformers calls its gelu() here, not config.hidden_act

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dense(features)  # (..., C)
        x = self.activation(x)
        x = self.layer_norm(x)
        return self.decoder(x)  # (..., V)


class RobertaForMaskedLM(RobertaPreTrainedModel):
    """RoBERTa with its masked-LM head: what RoBERTa pre-trains (there is no NSP head to train).

    loss = CE(logits, labels; ignoring -100).
    """

    tied_weights = {
        "lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
        "lm_head.decoder.bias": "lm_head.bias",
    }

    def __init__(self, config: RobertaConfig, seed: int = 0, dtype=torch.float32):
        super().__init__(config)
        self.roberta = RobertaModel(config, seed=None, add_pooling_layer=False)
        self.lm_head = RobertaLMHead(config, self.roberta.embeddings.word_embeddings.weight)
        self.post_init(seed, dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                labelled_positions_only: bool = False) -> MaskedLMOutput:
        """``labelled_positions_only``: logits only where labels != -100, (N, V), as in BertForMaskedLM."""
        encoded = self.roberta(input_ids, attention_mask, token_type_ids,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return masked_lm_forward(self, encoded, labels, labelled_positions_only, head=self.lm_head)
