"""DistilBERT in NumPy (Sanh et al. 2019, "DistilBERT, a distilled version of BERT"), module for module and
name for name as transformers' modeling_distilbert.py.

What DistilBERT changes relative to BERT (numpy_bert/modeling.py):

* Half the layers, the same width: the student of a 12-layer BERT has 6 blocks of the teacher's size,
  and starts as the teacher with one layer out of two (:func:`student_weights_from_teacher`).
* No token-type embeddings and no pooler: next-sentence prediction is gone, so is what served it.
  ``token_type_ids`` is refused, as transformers has no such input.
* The same post-LN block, regrouped: the attention module ends with its output projection
  ``out_lin`` (BERT's ``attention.output.dense``) with no dropout after it, and the block owns
  its two LayerNorms (``sa_layer_norm``, ``output_layer_norm``). The feed-forward ``FFN`` is
  lin1, GELU, lin2, dropout. The maths of each piece is BERT's, and so is the code: the attention
  is BertSelfAttention's, the stack of blocks BertEncoder's.
* The config speaks XLM's names (``dim``, ``n_layers``, ``n_heads``, ``hidden_dim``, ``activation``,
  ``dropout``, ``attention_dropout``): numpy_bert/config.py's DistilBertConfig. Its
  ``sinusoidal_pos_embds`` (fixed sine/cosine positions) is refused: positions are learned, as in
  the released distilbert-base models.
* The MLM head is BERT's (dense, GELU, LayerNorm, decoder tied to the word embeddings) laid out flat
  on the model: ``vocab_transform``, ``activation``, ``vocab_layer_norm``, ``vocab_projector``.
* It is pre-trained by distillation (``train --objective distillation``, numpy_bert/training/
  distillation.py): the student learns the teacher's softened MLM distribution, the masked tokens, and
  (optionally) the direction of the teacher's hidden states,

      L = α_ce τ² KL(softmax(t/τ) || softmax(s/τ)) + α_mlm CE(s, labels) + α_cos (1 - cos(h_s, h_t))

  whose two new terms are :func:`soft_target_loss` and :func:`cosine_embedding_loss` below.

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

transformers 4.x called the attention module MultiHeadSelfAttention; 5.x (this file's model) calls it
DistilBertSelfAttention. The parameter names, which checkpoints hold, are the same in both.
"""

from __future__ import annotations

import numpy as np

from .config import BertConfig, DistilBertConfig
from .heads import distillation_loss
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear
from .modeling import BertEncoder, BertSelfAttention, masked_lm_backward, masked_lm_forward
from .modeling_utils import BertPreTrainedModel, additive_attention_mask, check_inputs, has_padding
from .nn import Module, ModuleList, Parameter
from .outputs import BaseModelOutputWithPooling, MaskedLMOutput

LAYER_NORM_EPS = 1e-12  # transformers' DistilBERT fixes every LayerNorm's eps (it is not in the config)


class Embeddings(Module):
    """x = LayerNorm(word[ids] + position[0..T-1]), then dropout: BERT's embeddings without token types."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        C = config.dim
        self.word_embeddings = Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, C)
        self.LayerNorm = LayerNorm(C, LAYER_NORM_EPS)
        self.dropout = Dropout(config.dropout)

    def forward(self, input_ids: np.ndarray) -> np.ndarray:
        B, T = input_ids.shape
        position_ids = np.broadcast_to(np.arange(T), (B, T))
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)  # (B, T, C)
        return self.dropout(self.LayerNorm(x))

    def backward(self, dy: np.ndarray) -> None:
        """Adds the two tables' gradients; returns None (the inputs are ids)."""
        d_norm = self.dropout.backward(dy)  # (B, T, C)
        dx = self.LayerNorm.backward(d_norm)
        self.position_embeddings.backward(dx)  # the sum passes the same gradient to both tables
        self.word_embeddings.backward(dx)


class DistilBertSelfAttention(BertSelfAttention):
    """BERT's multi-head attention with the output projection inside: y = out_lin(attention(x)).

    The attention itself (projections, heads, scaled scores, mask, softmax, dropout) is
    BertSelfAttention's forward and backward, unchanged; it reads its projections as ``query``,
    ``key`` and ``value``, which here are the properties naming DistilBERT's ``q_lin``, ``k_lin``
    and ``v_lin``. Backward: out_lin's, then BERT's attention backward.
    """

    def __init__(self, config: DistilBertConfig):
        Module.__init__(self)  # not BertSelfAttention.__init__: it would name the projections query, key, value
        C = config.dim
        self.num_attention_heads = config.n_heads
        self.attention_head_size = config.head_size
        self.scaling = self.attention_head_size**-0.5
        self.q_lin = Linear(C, C)
        self.k_lin = Linear(C, C)
        self.v_lin = Linear(C, C)
        self.out_lin = Linear(C, C)
        self.dropout = Dropout(config.attention_dropout)

    query = property(lambda self: self.q_lin)  # the names BertSelfAttention's code reads
    key = property(lambda self: self.k_lin)
    value = property(lambda self: self.v_lin)

    def forward(self, hidden_states: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        context = super().forward(hidden_states, mask)  # (B, T, C): BERT's attention, heads merged
        return self.out_lin(context)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_context = self.out_lin.backward(dy)  # (B, T, C)
        return super().backward(d_context)


class FFN(Module):
    """y = dropout(lin2(GELU(lin1(x)))): the feed-forward sub-block, C -> hidden_dim -> C.

    Backward, in reverse: dropout's mask, lin2, GELU's derivative, lin1.
    """

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.dropout = Dropout(config.dropout)
        self.lin1 = Linear(config.dim, config.hidden_dim)
        self.lin2 = Linear(config.hidden_dim, config.dim)
        self.activation = GELU(config.activation)

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = self.activation(self.lin1(x))  # (B, T, hidden_dim)
        return self.dropout(self.lin2(h))  # (B, T, C)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_lin2 = self.dropout.backward(dy)  # (B, T, C)
        d_h = self.lin2.backward(d_lin2)  # (B, T, hidden_dim)
        d_lin1 = self.activation.backward(d_h)
        return self.lin1.backward(d_lin1)  # (B, T, C)


class TransformerBlock(Module):
    """One post-LN block, as BertLayer: a = LayerNorm(x + attention(x)), y = LayerNorm(a + ffn(a)).

    Backward: each LayerNorm's input gradient reaches both terms of its sum, the sub-block
    and the residual, so each residual adds its gradient to the sub-block's input gradient.
    """

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.attention = DistilBertSelfAttention(config)
        self.sa_layer_norm = LayerNorm(config.dim, LAYER_NORM_EPS)
        self.ffn = FFN(config)
        self.output_layer_norm = LayerNorm(config.dim, LAYER_NORM_EPS)

    def forward(self, hidden_states: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        attended = self.sa_layer_norm(self.attention(hidden_states, mask) + hidden_states)  # (B, T, C)
        return self.output_layer_norm(self.ffn(attended) + attended)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_ffn_sum = self.output_layer_norm.backward(dy)  # (B, T, C)
        d_attended = self.ffn.backward(d_ffn_sum) + d_ffn_sum  # attended feeds the FFN and the residual
        d_attention_sum = self.sa_layer_norm.backward(d_attended)
        return self.attention.backward(d_attention_sum) + d_attention_sum  # x feeds attention and residual


class Transformer(BertEncoder):
    """The stack of n_layers TransformerBlocks, run by BertEncoder's loop."""

    def __init__(self, config: DistilBertConfig):
        Module.__init__(self)  # not BertEncoder.__init__, which builds BertLayers
        self.layer = ModuleList([TransformerBlock(config) for _ in range(config.n_layers)])


class DistilBertPreTrainedModel(BertPreTrainedModel):
    """What the DistilBERT models share: their config class, and inputs without token types."""

    config_class = DistilBertConfig
    base_model_prefix = "distilbert"  # DistilBertForMaskedLM's encoder; its MLM head's layers sit beside it:
    head_prefixes = ("vocab_transform.", "vocab_layer_norm.", "vocab_projector.")
    runs_int8 = False  # numpy_bert/quantization.py swaps BERT's layers, not these

    def check_inputs(self, input_ids, attention_mask=None, token_type_ids=None):
        if token_type_ids is not None:
            raise ValueError("DistilBERT has no token types (no token_type_embeddings): leave token_type_ids out")
        input_ids = np.asarray(input_ids)
        attention_mask = None if attention_mask is None else np.asarray(attention_mask)
        check_inputs(self.config, input_ids, attention_mask)
        return input_ids, attention_mask


class DistilBertModel(DistilBertPreTrainedModel):
    """The encoder: ids in, contextual vectors out (last_hidden_state; there is no pooler).

    Backward: from the gradient of last_hidden_state through the blocks and the embeddings;
    returns None (the inputs are ids).
    """

    def __init__(self, config: DistilBertConfig, seed: int | None = 0, dtype=np.float32):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.transformer = Transformer(config)
        self.post_init(seed, dtype)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
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

    def backward(self, grad_last_hidden_state: np.ndarray) -> None:
        """Adds the gradients of sum(grad_last_hidden_state * last_hidden_state) into every parameter's .grad,
        for the last forward call."""
        d_hidden = np.asarray(grad_last_hidden_state, dtype=self.dtype)  # (B, T, C)
        d_embeddings = self.transformer.backward(d_hidden)
        self.embeddings.backward(d_embeddings)


class DistilBertForMaskedLM(DistilBertPreTrainedModel):
    """DistilBERT with its masked-LM head: logits = vocab_projector(LayerNorm(GELU(vocab_transform(h)))).

    loss = CE(logits, labels; ignoring -100), as BertForMaskedLM's. ``vocab_projector.weight`` is the
    word-embedding matrix (``tie_word_embeddings``), so its backward adds into the embedding's gradient.
    Backward: the head in reverse, then the encoder; from the MLM loss, or from gradients of the logits
    and the last hidden state given by the caller (the distillation loss).
    """

    tied_weights = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}
    loss_arguments = "labels"

    def __init__(self, config: DistilBertConfig, seed: int = 0, dtype=np.float32):
        super().__init__(config)
        self.activation = GELU(config.activation)
        self.distilbert = DistilBertModel(config, seed=None)
        self.vocab_transform = Linear(config.dim, config.dim)
        self.vocab_layer_norm = LayerNorm(config.dim, LAYER_NORM_EPS)
        if config.tie_word_embeddings:
            bias = Parameter(np.zeros(config.vocab_size, dtype=np.float32))
            self.vocab_projector = Linear.tied(self.distilbert.embeddings.word_embeddings.weight, bias)
        else:
            self.vocab_projector = Linear(config.dim, config.vocab_size)
            self.tied_weights = {}
        self.post_init(seed, dtype)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
                token_type_ids: None = None, labels: np.ndarray | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                labelled_positions_only: bool = False) -> MaskedLMOutput:
        """``labelled_positions_only``: logits only where labels != -100, (N, V), as in BertForMaskedLM."""
        encoded = self.distilbert(input_ids, attention_mask, token_type_ids, output_attentions=output_attentions,
                                  output_hidden_states=output_hidden_states)
        return masked_lm_forward(self, encoded, labels, labelled_positions_only, head=self.mlm_head)

    def mlm_head(self, hidden: np.ndarray) -> np.ndarray:
        """The MLM logits (..., V) of hidden states (..., C): the four head modules laid out on the model."""
        transformed = self.activation(self.vocab_transform(hidden))  # (..., C)
        return self.vocab_projector(self.vocab_layer_norm(transformed))  # (..., V)

    def mlm_head_backward(self, d_logits: np.ndarray) -> np.ndarray:
        d_norm = self.vocab_projector.backward(np.asarray(d_logits, self.dtype))  # also into the tied table
        d_transformed = self.vocab_layer_norm.backward(d_norm)
        d_activation = self.activation.backward(d_transformed)
        return self.vocab_transform.backward(d_activation)  # (..., C)

    def backward(self, grad_logits: np.ndarray | None = None, grad_last_hidden_state: np.ndarray | None = None) -> None:
        """Adds d(loss)/d(parameter) into every .grad, for the last forward call; given either argument, the
        gradients of sum(grad_logits * logits) + sum(grad_last_hidden_state * last_hidden_state) instead
        (how a loss computed outside the model, such as the distillation loss, is back-propagated)."""
        if grad_logits is None and grad_last_hidden_state is None:
            (grad_logits,) = self.stored_loss_grads()  # (B, T, V) or (N, V)
        d_sequence = masked_lm_backward(self, self.mlm_head_backward, grad_logits)  # (B, T, C); 0 if no logits
        if grad_last_hidden_state is not None:
            d_sequence += grad_last_hidden_state
        self.distilbert.backward(d_sequence)


# ---- the distillation objective's two new terms ------------------------------------------------------


def soft_target_loss(student_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray,
                     temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """τ² KL(softmax(t/τ) || softmax(s/τ)), the mean over the N rows, and its gradient for the student's logits.

    This is Hinton et al.'s soft-target term, numpy_bert/heads.py's :func:`distillation_loss` with α = 1
    (its cross-entropy then has weight 0: ``labels``, the rows' MLM targets, only keep it finite), so
    the derivation is there: with q = softmax(s/τ) and p = softmax(t/τ),

        dL/ds = τ (q - p) / N.

    On MLM rows (N, V) it is the distiller's ``KLDivLoss(reduction="batchmean") * τ²`` over the masked
    positions (transformers' examples/research_projects/distillation, ``--restrict_ce_to_mask``).
    """
    return distillation_loss(student_logits, teacher_logits, labels, temperature=temperature, alpha=1.0)


def cosine_embedding_loss(student_hidden: np.ndarray, teacher_hidden: np.ndarray,
                          attention_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """mean over the M real (unpadded) positions of 1 - cos(h_s, h_t), and its gradient for h_s.

    torch's CosineEmbeddingLoss with target 1, as the distiller aligns the last hidden states (B, T, C).
    With ε = 1e-12 added to each squared norm (as torch does), a = |h_s|² + ε, b = |h_t|² + ε and
    p = h_s · h_t, cos = p / sqrt(a b), and since d sqrt(a b) / dh_s = sqrt(a b) h_s / a,

        d cos / dh_s = h_t / sqrt(a b) - cos h_s / a,       dL/dh_s = -(d cos / dh_s) / M

    at real positions, 0 at padding. Returns (loss, dL/dh_s (B, T, C)), in h_s's dtype.
    """
    real = np.ones(student_hidden.shape[:2], bool) if attention_mask is None else np.asarray(attention_mask) != 0
    s, t = student_hidden[real], teacher_hidden[real]  # (M, C)
    a = (s * s).sum(axis=-1, keepdims=True) + 1e-12  # (M, 1)
    b = (t * t).sum(axis=-1, keepdims=True) + 1e-12
    norms = np.sqrt(a * b)  # (M, 1)
    cos = (s * t).sum(axis=-1, keepdims=True) / norms  # (M, 1)
    M = student_hidden.dtype.type(len(s))
    loss = (1 - cos).sum() / M
    d_student = np.zeros_like(student_hidden)  # (B, T, C): padding gets no gradient
    d_student[real] = -(t / norms - cos * s / a) / M
    return loss, d_student


# ---- the student, initialised from its teacher -------------------------------------------------------

# Where each student parameter comes from in the teacher (BertForMaskedLM's names): TransformerBlock <- BertLayer,
STUDENT_LAYER_FROM_TEACHER = {
    "attention.q_lin": "attention.self.query",
    "attention.k_lin": "attention.self.key",
    "attention.v_lin": "attention.self.value",
    "attention.out_lin": "attention.output.dense",
    "sa_layer_norm": "attention.output.LayerNorm",
    "ffn.lin1": "intermediate.dense",
    "ffn.lin2": "output.dense",
    "output_layer_norm": "output.LayerNorm",
}
# ... and the MLM head <- BERT's prediction head.
STUDENT_HEAD_FROM_TEACHER = {
    "vocab_transform": "cls.predictions.transform.dense",
    "vocab_layer_norm": "cls.predictions.transform.LayerNorm",
}


def student_config(teacher: BertConfig) -> DistilBertConfig:
    """The paper's student of a BERT: its vocabulary, positions, width, heads, activation and dropout,
    and half its layers (ceil(L / 2): one layer out of two, the first included)."""
    return DistilBertConfig(
        vocab_size=teacher.vocab_size, max_position_embeddings=teacher.max_position_embeddings,
        n_layers=(teacher.num_hidden_layers + 1) // 2, n_heads=teacher.num_attention_heads, dim=teacher.hidden_size,
        hidden_dim=teacher.intermediate_size, dropout=teacher.hidden_dropout_prob,
        attention_dropout=teacher.attention_probs_dropout_prob, activation=teacher.hidden_act,
        initializer_range=teacher.initializer_range, pad_token_id=teacher.pad_token_id)


def student_weights_from_teacher(teacher: dict[str, np.ndarray], config: DistilBertConfig) -> dict[str, np.ndarray]:
    """The student's state dict (DistilBertForMaskedLM's names) from a BERT masked-LM teacher's state dict.

    As the paper initialises it ("taking one layer out of two"): student block i is teacher layer 2i, the
    MLM head and the word embeddings are the teacher's. The student has no token types, so
    token_type_embeddings[0], which the teacher adds at every position of a single-segment input, is
    folded into the position table: for such inputs the student's embeddings equal the teacher's.
    (transformers' scripts/extract_distilbert.py copies the positions alone and takes layers
    0, 2, 4, 7, 9, 11 of a 12-layer teacher.)
    """
    weights = {
        "distilbert.embeddings.word_embeddings.weight": teacher["bert.embeddings.word_embeddings.weight"],
        "distilbert.embeddings.position_embeddings.weight": teacher["bert.embeddings.position_embeddings.weight"]
        + teacher["bert.embeddings.token_type_embeddings.weight"][0],
        "vocab_projector.bias": teacher["cls.predictions.bias"],
    }
    sources = {"distilbert.embeddings.LayerNorm": "bert.embeddings.LayerNorm", **STUDENT_HEAD_FROM_TEACHER}
    for i in range(config.n_layers):
        sources.update({f"distilbert.transformer.layer.{i}.{ours}": f"bert.encoder.layer.{2 * i}.{theirs}"
                        for ours, theirs in STUDENT_LAYER_FROM_TEACHER.items()})
    for ours, theirs in sources.items():
        weights[f"{ours}.weight"], weights[f"{ours}.bias"] = teacher[f"{theirs}.weight"], teacher[f"{theirs}.bias"]
    if not config.tie_word_embeddings:
        weights["vocab_projector.weight"] = teacher["bert.embeddings.word_embeddings.weight"]
    return weights
