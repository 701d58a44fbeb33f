"""ELECTRA in NumPy (Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
Generators"), name for name as transformers' modeling_electra.py.

The encoder is BERT's (BertEncoder, BertLayer, attention, GELU, LayerNorm: reused here as they are).
What ELECTRA changes is what the encoder is trained to do, and three small things around it:

1. Replaced-token detection (RTD) instead of masked-LM. A small *generator* (ElectraForMaskedLM, a
   masked LM) fills the masked positions of a sentence with tokens *sampled* from its softmax; the
   *discriminator* (ElectraForPreTraining, the model one keeps) reads the result and says, for every
   token, whether it was replaced (label 1) or is the original (label 0). BERT learns from the 15% of
   the tokens it masked; the discriminator learns from all of them. A sampled token that happens to
   equal the original counts as original. The loss is the binary cross-entropy of the per-token
   logits, averaged over the real (not padding) tokens:

       L_D = 1/n sum_{t: attention_mask_t = 1} softplus(x_t) - y_t x_t      (x: logits, y: labels)

   and both models are trained together on L = L_MLM(generator) + λ L_D (λ = 50), no gradient
   flowing through the sampling. numpy_bert/training/electra.py does that step
   (``python -m numpy_bert train --objective electra``).
2. The embeddings have their own width E (``embedding_size``; ELECTRA-small: E = 128, H = 256).
   When E != H a Linear ``embeddings_project`` E -> H sits between the embeddings and the encoder.
   The generator and the discriminator share one set of embedding tables, so E is the same for
   both while their hidden sizes differ (the generator is ~1/4 as wide).
3. No pooler and no next-sentence prediction. The generator's masked-LM head goes H -> E (dense,
   GELU, LayerNorm) and decodes with the E-wide word table (``generator_lm_head``, tied, with its
   own bias); the discriminator's head is dense H -> H, the activation, and ``dense_prediction``
   H -> 1.

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

The backward of the discriminator's loss, with σ the sigmoid: d softplus(x)/dx = σ(x), so
dL_D/dx_t = (σ(x_t) - y_t) / n at the counted positions and 0 at padding (see
:func:`replaced_token_detection_loss`). ELECTRA's checkpoints use BERT's WordPiece vocabulary, so
``BertTokenizer`` is its tokenizer.
"""

from __future__ import annotations

import numpy as np

from .config import IGNORE_INDEX, ElectraConfig
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear
from .modeling import BertEmbeddings, BertEncoder, masked_lm_backward, masked_lm_forward
from .modeling_utils import BertPreTrainedModel, additive_attention_mask, check_labels, has_padding
from .nn import Module, Parameter
from .outputs import BaseModelOutputWithPooling, ElectraForPreTrainingOutput, MaskedLMOutput

# The heads of the two ELECTRA models: a checkpoint of one loads into the other with the other's head
# freshly initialised (transformers' rule), and ElectraModel ignores both.
ELECTRA_HEADS = ("generator_predictions.", "generator_lm_head.", "discriminator_predictions.")


class ElectraEmbeddings(BertEmbeddings):
    """BERT's embeddings, E = embedding_size wide: LayerNorm(word[ids] + token_type[types] + position[0..T-1]).

    forward and backward are BertEmbeddings' own: only the tables' width differs.
    """

    def __init__(self, config: ElectraConfig):
        Module.__init__(self)  # BertEmbeddings' tables would be hidden_size wide
        E = config.embedding_size
        self.word_embeddings = Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, E)
        self.token_type_embeddings = Embedding(config.type_vocab_size, E)
        self.LayerNorm = LayerNorm(E, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)


class ElectraDiscriminatorPredictions(Module):
    """The discriminator's head: logit = dense_prediction(activation(dense(h))), one number per token.

    Backward, in reverse: d(dense_prediction) from d_logits (B, T, 1), then the activation's and
    the dense layer's backward.
    """

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.activation = GELU(config.hidden_act)
        self.dense_prediction = Linear(config.hidden_size, 1)

    def forward(self, discriminator_hidden_states: np.ndarray) -> np.ndarray:
        hidden_states = self.dense(discriminator_hidden_states)  # (B, T, H)
        hidden_states = self.activation(hidden_states)
        return self.dense_prediction(hidden_states)[..., 0]  # (B, T): transformers' squeeze(-1)

    def backward(self, d_logits: np.ndarray) -> np.ndarray:
        d_activation = self.dense_prediction.backward(d_logits[..., None])  # (B, T, H)
        d_dense = self.activation.backward(d_activation)
        return self.dense.backward(d_dense)  # (B, T, H)


class ElectraGeneratorPredictions(Module):
    """The generator's head before the vocabulary: h = LayerNorm(GELU(dense(x))), H -> E.

    The activation is always the exact GELU (transformers' get_activation("gelu")), whatever
    hidden_act says. Backward: LayerNorm's, GELU's, then the dense layer's.
    """

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.activation = GELU("gelu")
        self.LayerNorm = LayerNorm(config.embedding_size, config.layer_norm_eps)
        self.dense = Linear(config.hidden_size, config.embedding_size)

    def forward(self, generator_hidden_states: np.ndarray) -> np.ndarray:
        hidden_states = self.dense(generator_hidden_states)  # (..., E)
        hidden_states = self.activation(hidden_states)
        return self.LayerNorm(hidden_states)  # (..., E)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_activation = self.LayerNorm.backward(dy)  # (..., E)
        d_dense = self.activation.backward(d_activation)
        return self.dense.backward(d_dense)  # (..., H)


class ElectraPreTrainedModel(BertPreTrainedModel):
    """Base of the ELECTRA models: ElectraConfig, and checkpoints with the ``electra.`` prefix."""

    config_class = ElectraConfig
    base_model_prefix = "electra"  # ElectraModel's tensors have no prefix, the two heads' models this one
    head_prefixes = ELECTRA_HEADS  # either model's file loads into the other, the other head fresh (transformers' rule)


class ElectraModel(ElectraPreTrainedModel):
    """The encoder: ids in, contextual vectors out (last_hidden_state; no pooler).

    Backward: from the gradient of last_hidden_state through the encoder, the E -> H projection
    (if any) and the embeddings; returns None (the inputs are ids).
    """

    def __init__(self, config: ElectraConfig, seed: int | None = 0, dtype=np.float32):
        super().__init__(config)
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = Linear(config.embedding_size, config.hidden_size)
        self.encoder = BertEncoder(config)
        self.post_init(seed, dtype)

    @property
    def projects(self) -> bool:
        """Whether the embeddings are projected E -> H (embedding_size != hidden_size)."""
        return "embeddings_project" in self._modules

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None = None,
        token_type_ids: np.ndarray | None = None,
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

    def backward(self, grad_last_hidden_state: np.ndarray) -> None:
        """Adds the gradients of sum(grad_last_hidden_state * last_hidden_state) into every parameter's
        .grad, for the last forward call."""
        d_embedded = self.encoder.backward(np.array(grad_last_hidden_state, dtype=self.dtype))  # (B, T, H)
        if self.projects:
            d_embedded = self.embeddings_project.backward(d_embedded)  # (B, T, E)
        self.embeddings.backward(d_embedded)


class ElectraForPreTraining(ElectraPreTrainedModel):
    """The discriminator: for every token, a logit that it was replaced (labels: 1 replaced, 0 original).

    loss = BCE-with-logits of the logits against the labels, averaged over the positions where
    attention_mask is 1 (over all positions without a mask), exactly as transformers computes it;
    no position is ignored (-100 is refused). Backward: the head's, then the encoder's;
    ``backward(weight)`` differentiates weight · loss (λ · L_D in ELECTRA's pre-training).
    """

    loss_arguments = "labels"

    def __init__(self, config: ElectraConfig, seed: int = 0, dtype=np.float32):
        super().__init__(config)
        self.electra = ElectraModel(config, seed=None)  # initialised below, with the head
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)
        self.post_init(seed, dtype)

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None = None,
        token_type_ids: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ElectraForPreTrainingOutput:
        encoded = self.electra(input_ids, attention_mask, token_type_ids,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        B, T, _ = encoded.last_hidden_state.shape
        logits = self.discriminator_predictions(encoded.last_hidden_state)  # (B, T)
        loss, self.loss_grads = None, None
        if labels is not None:
            labels = np.asarray(labels)
            check_replaced_labels(labels, B, T)
            loss, d_logits = replaced_token_detection_loss(logits, labels, attention_mask)
            self.loss_grads = (d_logits,)
        return ElectraForPreTrainingOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states,
                                           attentions=encoded.attentions)

    def backward(self, weight: float = 1.0) -> None:
        """Adds d(weight · loss)/d(parameter) into every parameter's .grad, for the last forward call
        (as ``(weight * loss).backward()`` in torch)."""
        (d_logits,) = self.stored_loss_grads()  # (B, T)
        d_hidden = self.discriminator_predictions.backward(d_logits * d_logits.dtype.type(weight))  # (B, T, H)
        self.electra.backward(d_hidden)


class ElectraForMaskedLM(ElectraPreTrainedModel):
    """The generator: a masked LM whose head projects to E and decodes with the tied word table.

    loss = CE(logits, labels; ignoring -100), as BertForMaskedLM's. Backward: generator_lm_head's
    (which adds its dE into the tied word table), generator_predictions', then the encoder's.
    """

    tied_weights = {"generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"}
    loss_arguments = "labels"

    def __init__(self, config: ElectraConfig, seed: int = 0, dtype=np.float32):
        super().__init__(config)
        self.electra = ElectraModel(config, seed=None)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = Linear.tied(self.electra.embeddings.word_embeddings.weight,
                                             Parameter(np.zeros(config.vocab_size, dtype=np.float32)))
        self.post_init(seed, dtype)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
                token_type_ids: np.ndarray | None = None, labels: np.ndarray | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                labelled_positions_only: bool = False) -> MaskedLMOutput:
        """``labelled_positions_only``: logits only where labels != -100, (N, V), as in BertForMaskedLM."""
        encoded = self.electra(input_ids, attention_mask, token_type_ids,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return masked_lm_forward(self, encoded, labels, labelled_positions_only, head=self.mlm_head)

    def mlm_head(self, hidden: np.ndarray) -> np.ndarray:
        """The MLM logits (..., V) of hidden states (..., H): generator_predictions (H -> E), then the tied decoder."""
        return self.generator_lm_head(self.generator_predictions(hidden))

    def mlm_head_backward(self, d_logits: np.ndarray) -> np.ndarray:
        d_head = self.generator_lm_head.backward(d_logits)  # (.., E); also adds dE into the tied word table
        return self.generator_predictions.backward(d_head)  # (.., H)

    def backward(self) -> None:
        """Adds d(loss)/d(parameter) into every parameter's .grad, for the last forward call."""
        (d_logits,) = self.stored_loss_grads()  # (B, T, V) or (N, V)
        self.electra.backward(masked_lm_backward(self, self.mlm_head_backward, d_logits))  # (B, T, H)


# ---- the discriminator's labels and loss: shared with torch_bert --------------------------------------------


def check_replaced_labels(labels, B: int, T: int) -> None:
    """The discriminator's labels: (B, T) integers, 1 where the token was replaced and 0 where it is the
    original; none is -100, because the loss counts every position the attention_mask keeps."""
    check_labels(labels, (B, T), 2, "labels")
    ignored = labels == IGNORE_INDEX
    if bool(ignored.any()):
        raise ValueError(f"labels of ElectraForPreTraining are 0 (original) or 1 (replaced) at every position; "
                         f"found {IGNORE_INDEX}: padding is left out by the attention_mask, not by the labels")


def replaced_token_detection_loss(logits: np.ndarray, labels: np.ndarray,
                                  attention_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Binary cross-entropy with logits, averaged over the n positions where attention_mask is 1
    (all positions without a mask), and its gradient:

        loss = 1/n sum_t [softplus(x_t) - y_t x_t]        dloss/dx_t = (σ(x_t) - y_t) / n

    and 0 at padding. (softplus(x) - y x is -y log σ(x) - (1 - y) log(1 - σ(x)), since
    log σ(x) = -softplus(-x) and softplus(x) - softplus(-x) = x.) Like torch, n = 0 gives nan.
    """
    active = np.ones(logits.shape, dtype=bool) if attention_mask is None else np.asarray(attention_mask) == 1
    x = logits[active]  # (n,)
    y = labels[active].astype(logits.dtype)
    n = logits.dtype.type(x.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = (np.logaddexp(0, x) - y * x).sum() / n  # softplus(x) = log(1 + e^x), without overflow
        d_logits = np.zeros_like(logits)
        d_logits[active] = (np.exp(-np.logaddexp(0, -x)) - y) / n  # σ(x) = exp(-softplus(-x))
    return loss, d_logits

