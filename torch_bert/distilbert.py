"""DistilBERT in PyTorch, module for module and name for name as transformers' modeling_distilbert.py.

The twin of numpy_bert/distilbert.py (which says what DistilBERT changes relative to BERT): the same
classes with the same attributes and forwards; autograd replaces the backward methods. The config
(numpy_bert.config.DistilBertConfig) and the distillation objective's pure-NumPy parts live once, there.

    DistilBertForMaskedLM
    ├── distilbert: DistilBertModel
    │   ├── embeddings: Embeddings              word + position (no token types), LayerNorm, dropout
    │   └── transformer: Transformer            BertEncoder's loop over
    │       └── layer.N: TransformerBlock       post-LN block
    │           ├── attention: DistilBertSelfAttention   BERT's multi-head attention, then out_lin
    │           ├── sa_layer_norm: LayerNorm             LayerNorm(x + attention(x))
    │           ├── ffn: FFN                             lin1, GELU, lin2, dropout
    │           └── output_layer_norm: LayerNorm         LayerNorm(a + ffn(a))
    ├── vocab_transform: Linear, activation: GELU, vocab_layer_norm: LayerNorm
    └── vocab_projector: Linear                 MLM logits, weight tied to the word embeddings
"""

from __future__ import annotations

import torch
from torch import nn

from numpy_bert.config import DistilBertConfig
from numpy_bert.distilbert import LAYER_NORM_EPS
from numpy_bert.modeling_utils import check_inputs
from numpy_bert.outputs import BaseModelOutputWithPooling, MaskedLMOutput

from .layers import GELU, Dropout
from .modeling import BertEncoder, BertSelfAttention, masked_lm_forward
from .modeling_utils import BertPreTrainedModel, additive_attention_mask, has_padding, tracing


class Embeddings(nn.Module):
    """x = LayerNorm(word[ids] + position[0..T-1]), then dropout: BERT's embeddings without token types."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        C = config.dim
        self.word_embeddings = nn.Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, C)
        self.LayerNorm = nn.LayerNorm(C, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)  # (B, T, C)
        return self.dropout(self.LayerNorm(x))


class DistilBertSelfAttention(BertSelfAttention):
    """BERT's multi-head attention with the output projection inside: y = out_lin(attention(x)).

    The attention itself is BertSelfAttention's forward (eager, or torch's fused kernel with
    ``use_sdpa``); it reads its projections as ``query``, ``key`` and ``value``, which here are the
    properties naming DistilBERT's ``q_lin``, ``k_lin`` and ``v_lin``.
    """

    def __init__(self, config: DistilBertConfig):
        nn.Module.__init__(self)  # not BertSelfAttention.__init__: it would name the projections query, key, value
        C = config.dim
        self.num_attention_heads = config.n_heads
        self.attention_head_size = config.head_size
        self.scaling = self.attention_head_size**-0.5
        self.q_lin = nn.Linear(C, C)
        self.k_lin = nn.Linear(C, C)
        self.v_lin = nn.Linear(C, C)
        self.out_lin = nn.Linear(C, C)
        self.dropout = Dropout(config.attention_dropout)
        self.use_sdpa = False

    query = property(lambda self: self.q_lin)  # the names BertSelfAttention's code reads
    key = property(lambda self: self.k_lin)
    value = property(lambda self: self.v_lin)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        context = super().forward(hidden_states, mask)  # (B, T, C): BERT's attention, heads merged
        return self.out_lin(context)


class FFN(nn.Module):
    """y = dropout(lin2(GELU(lin1(x)))): the feed-forward sub-block, C -> hidden_dim -> C."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.dropout = Dropout(config.dropout)
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.activation = GELU(config.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.activation(self.lin1(x))  # (B, T, hidden_dim)
        return self.dropout(self.lin2(h))  # (B, T, C)


class TransformerBlock(nn.Module):
    """One post-LN block, as BertLayer: a = LayerNorm(x + attention(x)), y = LayerNorm(a + ffn(a))."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.attention = DistilBertSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.sa_layer_norm(self.attention(hidden_states, mask) + hidden_states)  # (B, T, C)
        return self.output_layer_norm(self.ffn(attended) + attended)


class Transformer(BertEncoder):
    """The stack of n_layers TransformerBlocks, run by BertEncoder's loop."""

    def __init__(self, config: DistilBertConfig):
        nn.Module.__init__(self)  # not BertEncoder.__init__, which builds BertLayers
        self.layer = nn.ModuleList([TransformerBlock(config) for _ in range(config.n_layers)])


class DistilBertPreTrainedModel(BertPreTrainedModel):
    """What the DistilBERT models share: their config class, and inputs without token types."""

    config_class = DistilBertConfig
    base_model_prefix = "distilbert"  # DistilBertForMaskedLM's encoder; its MLM head's layers sit beside it:
    head_prefixes = ("vocab_transform.", "vocab_layer_norm.", "vocab_projector.")

    def check_inputs(self, input_ids, attention_mask=None, token_type_ids=None):
        if token_type_ids is not None:
            raise ValueError("DistilBERT has no token types (no token_type_embeddings): leave token_type_ids out")
        for name, value in (("input_ids", input_ids), ("attention_mask", attention_mask)):
            if value is not None and not isinstance(value, torch.Tensor):  # the shared checks take arrays too
                raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not tracing():  # the checks read the values, which a traced graph does not have
            check_inputs(self.config, input_ids, attention_mask)
        return input_ids, attention_mask


class DistilBertModel(DistilBertPreTrainedModel):
    """The encoder: ids in, contextual vectors out (last_hidden_state; there is no pooler)."""

    def __init__(self, config: DistilBertConfig, seed: int | None = 0, dtype=torch.float32):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.transformer = Transformer(config)
        self.post_init(seed, dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: None = None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> BaseModelOutputWithPooling:
        """``pooler_output`` is None: DistilBERT has no pooler."""
        input_ids, attention_mask = self.check_inputs(input_ids, attention_mask, token_type_ids)
        mask = additive_attention_mask(attention_mask, self.dtype) if has_padding(attention_mask) else None
        states = self.transformer(self.embeddings(input_ids), mask)  # the embeddings, then each block's output
        return BaseModelOutputWithPooling(
            last_hidden_state=states[-1],
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(layer.attention.dropped_probs for layer in self.transformer.layer)
            if output_attentions else None,
        )


class DistilBertForMaskedLM(DistilBertPreTrainedModel):
    """DistilBERT with its masked-LM head: logits = vocab_projector(LayerNorm(GELU(vocab_transform(h)))).

    loss = CE(logits, labels; ignoring -100). ``vocab_projector.weight`` is the word-embedding matrix
    (``tie_word_embeddings``).
    """

    tied_weights = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: DistilBertConfig, seed: int = 0, dtype=torch.float32):
        super().__init__(config)
        self.activation = GELU(config.activation)
        self.distilbert = DistilBertModel(config, seed=None)
        self.vocab_transform = nn.Linear(config.dim, config.dim)
        self.vocab_layer_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.vocab_projector = nn.Linear(config.dim, config.vocab_size)
        if config.tie_word_embeddings:
            self.vocab_projector.weight = self.distilbert.embeddings.word_embeddings.weight
        else:
            self.tied_weights = {}
        self.post_init(seed, dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                labelled_positions_only: bool = False) -> MaskedLMOutput:
        """``labelled_positions_only``: logits only where labels != -100, (N, V), as in BertForMaskedLM."""
        encoded = self.distilbert(input_ids, attention_mask, token_type_ids, output_attentions=output_attentions,
                                  output_hidden_states=output_hidden_states)
        return masked_lm_forward(self, encoded, labels, labelled_positions_only, head=self.mlm_head)

    def mlm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The MLM logits (..., V) of hidden states (..., C): the four head modules laid out on the model."""
        transformed = self.activation(self.vocab_transform(hidden))  # (..., C)
        return self.vocab_projector(self.vocab_layer_norm(transformed))  # (..., V)
