"""BERT in NumPy, module for module and name for name as transformers' modeling_bert.py.

Every module has a ``forward`` and, right below it, a ``backward`` that runs the
same steps in reverse. Reading the two together is the point of this file.

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

BertForMaskedLM is the same without the pooler and without seq_relationship (its
``cls`` is a BertOnlyMLMHead): the masked-LM model that ``train --no-nsp`` exports.
"""

from __future__ import annotations

import numpy as np

from .config import IGNORE_INDEX, BertConfig
from .layers import (
    GELU,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Tanh,
    cross_entropy,
    softmax,
    softmax_backward,
)
from .modeling_utils import BertPreTrainedModel, additive_attention_mask, check_labels, has_padding
from .nn import Module, ModuleList, Parameter
from .outputs import BaseModelOutputWithPooling, BertForPreTrainingOutput, MaskedLMOutput


class BertEmbeddings(Module):
    """x = LayerNorm(word[ids] + token_type[types] + position[0..T-1]), then dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.hidden_size
        self.word_embeddings = Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, C)
        self.token_type_embeddings = Embedding(config.type_vocab_size, C)
        self.LayerNorm = LayerNorm(C, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        B, T = input_ids.shape
        position_ids = np.broadcast_to(np.arange(T), (B, T))
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))

    def backward(self, dy: np.ndarray) -> None:
        """Adds the three tables' gradients; returns None (the inputs are ids)."""
        d_norm = self.dropout.backward(dy)  # (B, T, C)
        dx = self.LayerNorm.backward(d_norm)
        self.position_embeddings.backward(dx)  # the sum fans the same gradient out to all three tables
        self.token_type_embeddings.backward(dx)
        self.word_embeddings.backward(dx)


class BertSelfAttention(Module):
    """Multi-head scaled dot-product attention, every token attending to every token.

        q, k, v = split_heads(x Wq + bq), ...                     (B, nh, T, hs)
        scores = q k^T / sqrt(hs) + mask                          (B, nh, T, T)
        probs = dropout(softmax(scores))
        out = merge_heads(probs v)                                (B, T, C)

    ``mask`` is 0 where a key may be attended to and the dtype's most negative number
    where it is padding (transformers' eager value), so padding gets probability 0.
    Backward, in reverse: d(probs) = d(out) v^T, dv = probs^T d(out), d(scores) via the
    softmax Jacobian, dq = d(scores) k / sqrt(hs), dk = d(scores)^T q / sqrt(hs).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.head_size
        self.scaling = self.attention_head_size**-0.5
        self.query = Linear(C, C)
        self.key = Linear(C, C)
        self.value = Linear(C, C)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def split_heads(self, x: np.ndarray) -> np.ndarray:
        B, T, _ = x.shape  # (B, T, C) -> (B, nh, T, hs)
        return x.reshape(B, T, self.num_attention_heads, self.attention_head_size).transpose(0, 2, 1, 3)

    @staticmethod
    def merge_heads(x: np.ndarray) -> np.ndarray:
        B, nh, T, hs = x.shape  # (B, nh, T, hs) -> (B, T, C)
        return x.transpose(0, 2, 1, 3).reshape(B, T, nh * hs)

    def forward(self, hidden_states: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        q = self.split_heads(self.query(hidden_states))  # (B, nh, T, hs)
        k = self.split_heads(self.key(hidden_states))
        v = self.split_heads(self.value(hidden_states))
        scores = (q @ k.transpose(0, 1, 3, 2)) * self.scaling  # (B, nh, T, T)
        if mask is not None:
            scores = scores + mask  # (B, 1, 1, T) broadcast over heads and queries
        self.probs = softmax(scores)
        self.dropped_probs = self.dropout(self.probs)
        self.q, self.k, self.v = q, k, v
        return self.merge_heads(self.dropped_probs @ v)  # (B, T, C)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_context = self.split_heads(dy)  # (B, nh, T, hs)
        d_dropped = d_context @ self.v.transpose(0, 1, 3, 2)  # (B, nh, T, T)
        dv = self.dropped_probs.transpose(0, 1, 3, 2) @ d_context  # (B, nh, T, hs)
        d_probs = self.dropout.backward(d_dropped)  # (B, nh, T, T)
        d_scores = softmax_backward(self.probs, d_probs) * self.scaling  # the mask is a constant: no gradient
        dq = d_scores @ self.k  # (B, nh, T, hs)
        dk = d_scores.transpose(0, 1, 3, 2) @ self.q  # (B, nh, T, hs)
        dx = self.value.backward(self.merge_heads(dv))  # (B, T, C): x fed all three projections
        dx += self.key.backward(self.merge_heads(dk))
        dx += self.query.backward(self.merge_heads(dq))
        return dx


class ResidualOutput(Module):
    """y = LayerNorm(dropout(dense(x)) + input_tensor): the "add & norm" that ends each sub-block.

    transformers has two copies of this (BertSelfOutput, BertOutput) that differ only
    in the dense layer's input size; here they share it.
    Backward: two inputs, two gradients. The sum passes LayerNorm's input gradient
    unchanged to both branches; the dense branch then goes back through dropout and dense.
    """

    def __init__(self, config: BertConfig, in_features: int):
        super().__init__()
        self.dense = Linear(in_features, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: np.ndarray, input_tensor: np.ndarray) -> np.ndarray:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)

    def backward(self, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (d hidden_states, d input_tensor)."""
        d_sum = self.LayerNorm.backward(dy)  # (B, T, C)
        d_dense = self.dropout.backward(d_sum)
        return self.dense.backward(d_dense), d_sum


class BertSelfOutput(ResidualOutput):
    def __init__(self, config: BertConfig):
        super().__init__(config, config.hidden_size)


class BertOutput(ResidualOutput):
    def __init__(self, config: BertConfig):
        super().__init__(config, config.intermediate_size)


class BertAttention(Module):
    """Self-attention, then add & norm: y = LayerNorm(x + dropout(dense(attention(x))))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return self.output(self.self(hidden_states, mask), hidden_states)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_attention, d_input = self.output.backward(dy)
        return self.self.backward(d_attention) + d_input  # x feeds both branches


class BertIntermediate(Module):
    """h = GELU(x W1 + b1), widening C to the intermediate size (4C)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = GELU(config.hidden_act)

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        return self.intermediate_act_fn(self.dense(hidden_states))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_dense = self.intermediate_act_fn.backward(dy)  # (B, T, 4C)
        return self.dense.backward(d_dense)


class BertLayer(Module):
    """One post-LN encoder block: attention + add & norm, then feed-forward + add & norm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        attended = self.attention(hidden_states, mask)
        return self.output(self.intermediate(attended), attended)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_intermediate, d_input = self.output.backward(dy)
        d_attended = self.intermediate.backward(d_intermediate) + d_input  # attended feeds both branches
        return self.attention.backward(d_attended)


class BertEncoder(Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states: np.ndarray, mask: np.ndarray | None) -> list[np.ndarray]:
        """All hidden states: the input, then each layer's output."""
        states = [hidden_states]
        for layer in self.layer:
            states.append(layer(states[-1], mask))
        return states

    def backward(self, dy: np.ndarray) -> np.ndarray:
        for layer in reversed(list(self.layer)):
            dy = layer.backward(dy)
        return dy


class BertPooler(Module):
    """pooled = tanh(dense(h[:, 0])): the [CLS] token's state, for sentence-level heads."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.activation = Tanh()

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        self.seq_shape = hidden_states.shape
        return self.activation(self.dense(hidden_states[:, 0]))  # (B, C)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_dense = self.activation.backward(dy)  # (B, C)
        dh = np.zeros(self.seq_shape, dtype=dy.dtype)  # (B, T, C): only [CLS] fed the pooler
        dh[:, 0] = self.dense.backward(d_dense)
        return dh


class BertModel(BertPreTrainedModel):
    """The encoder: ids in, contextual vectors out (last_hidden_state and pooler_output).

    Backward: from the gradients of both outputs, through the pooler, the encoder and
    the embeddings; returns None (the inputs are ids).
    """

    def __init__(self, config: BertConfig, seed: int | None = 0, dtype=np.float32,
                 add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init(seed, dtype)

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
        states = self.encoder(self.embeddings(input_ids, token_type_ids), mask)
        last = states[-1]  # (B, T, C)
        return BaseModelOutputWithPooling(
            last_hidden_state=last,
            pooler_output=None if self.pooler is None else self.pooler(last),
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(layer.attention.self.dropped_probs for layer in self.encoder.layer)
            if output_attentions else None,
        )

    def backward(self, grad_last_hidden_state: np.ndarray, grad_pooler_output: np.ndarray | None = None) -> None:
        """Adds the gradients of sum(grad_last_hidden_state * last_hidden_state + grad_pooler_output *
        pooler_output) into every parameter's .grad, for the last forward call."""
        d_hidden = np.array(grad_last_hidden_state, dtype=self.dtype)  # (B, T, C), a copy: added into below
        if grad_pooler_output is not None:
            d_hidden += self.pooler.backward(grad_pooler_output)
        d_embeddings = self.encoder.backward(d_hidden)
        self.embeddings.backward(d_embeddings)


class BertPredictionHeadTransform(Module):
    """h = LayerNorm(GELU(dense(x))), before the vocabulary projection."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = GELU(config.hidden_act)
        self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_act = self.LayerNorm.backward(dy)
        d_dense = self.transform_act_fn.backward(d_act)
        return self.dense.backward(d_dense)


class BertLMPredictionHead(Module):
    """Masked-LM logits: transform(h) @ E^T + bias, with E the word-embedding matrix (V, C).

    ``decoder`` is a Linear whose weight *is* the embedding parameter and whose bias
    *is* ``self.bias`` (transformers ties them the same way). Its backward therefore
    adds the decoder's dE into the embedding's gradient: the tied-weight sum.
    """

    def __init__(self, config: BertConfig, word_embeddings: Parameter):
        super().__init__()
        self.bias = Parameter(np.zeros(config.vocab_size))
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = Linear.tied(word_embeddings, self.bias)

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        return self.decoder(self.transform(hidden_states))  # (..., V)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_transform = self.decoder.backward(dy)  # also adds the decoder's dE into the tied embedding
        return self.transform.backward(d_transform)


class BertPreTrainingHeads(Module):
    def __init__(self, config: BertConfig, word_embeddings: Parameter):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings)
        self.seq_relationship = Linear(config.hidden_size, 2)


class BertForPreTraining(BertPreTrainedModel):
    """BERT with its two pre-training heads: masked-LM and next-sentence prediction.

    loss = CE(MLM logits, labels; ignoring -100) + CE(NSP logits, next_sentence_label),
    computed when both label arrays are given (as in transformers); ``mlm_loss`` and
    ``nsp_loss`` are there whenever their labels are.
    Backward: the two heads' gradients meet in the encoder's last hidden state. It
    differentiates the losses the forward computed: ``loss``, or ``mlm_loss`` alone
    for an MLM-only batch (``train --no-nsp``).
    """

    tied_weights = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }
    loss_arguments = "labels and next_sentence_label"

    def __init__(self, config: BertConfig, seed: int = 0, dtype=np.float32):
        super().__init__(config)
        self.bert = BertModel(config, seed=None)  # initialised below, with the heads
        self.cls = BertPreTrainingHeads(config, self.bert.embeddings.word_embeddings.weight)
        self.post_init(seed, dtype)

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None = None,
        token_type_ids: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        next_sentence_label: np.ndarray | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labelled_positions_only: bool = False,
    ) -> BertForPreTrainingOutput:
        """With ``labelled_positions_only`` (training), MLM logits are computed only where
        labels != -100, as the original BERT gathers them: prediction_logits is then
        (N labelled, V) instead of (B, T, V), and the loss is unchanged."""
        encoded = self.bert(input_ids, attention_mask, token_type_ids,
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        B, T, _ = self.sequence_shape = encoded.last_hidden_state.shape  # (B, T, C)
        check_pretraining_labels(self.config, labels, next_sentence_label, B, T, self.training)
        hidden, self.selected = gather_labelled(encoded.last_hidden_state, labels, labelled_positions_only)
        prediction_logits = self.cls.predictions(hidden)  # (B, T, V) or (N, V)
        nsp_logits = self.cls.seq_relationship(encoded.pooler_output)  # (B, 2)
        mlm = None if labels is None else masked_lm_loss(prediction_logits, mlm_targets(labels, self.selected))
        nsp = None if next_sentence_label is None else cross_entropy(nsp_logits, next_sentence_label)
        output, self.loss_grads = pretraining_output(prediction_logits, nsp_logits, mlm, nsp,
                                                     encoded.hidden_states, encoded.attentions)
        return output

    def backward(self) -> None:
        """Adds d(loss)/d(parameter) into every parameter's .grad, for the last forward call."""
        d_logits, d_nsp = self.stored_loss_grads()  # (B, T, V) or (N, V), and (B, 2); either may be None
        d_sequence = masked_lm_backward(self, self.cls.predictions.backward, d_logits)  # (B, T, C); 0 if NSP only
        d_pooled = None if d_nsp is None else self.cls.seq_relationship.backward(d_nsp)  # (B, C)
        self.bert.backward(d_sequence, d_pooled)


class BertOnlyMLMHead(Module):
    def __init__(self, config: BertConfig, word_embeddings: Parameter):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings)


class BertForMaskedLM(BertPreTrainedModel):
    """BERT with the masked-LM head alone, as transformers' run_mlm.py trains and saves it:
    no pooler, no NSP head (a checkpoint's ``bert.pooler.*`` and ``cls.seq_relationship.*``
    are ignored and listed). What ``train --no-nsp`` learns; the shipped python-docs model.

    loss = CE(logits, labels; ignoring -100). Backward: the MLM head's, then the encoder's.
    """

    tied_weights = BertForPreTraining.tied_weights
    loss_arguments = "labels"

    def __init__(self, config: BertConfig, seed: int = 0, dtype=np.float32):
        super().__init__(config)
        self.bert = BertModel(config, seed=None, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings.weight)
        self.post_init(seed, dtype)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
                token_type_ids: np.ndarray | None = None, labels: np.ndarray | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                labelled_positions_only: bool = False) -> MaskedLMOutput:
        """``labelled_positions_only``: logits only where labels != -100, (N, V), as in BertForPreTraining."""
        encoded = self.bert(input_ids, attention_mask, token_type_ids,
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return masked_lm_forward(self, encoded, labels, labelled_positions_only, head=self.cls.predictions)

    def backward(self) -> None:
        """Adds d(loss)/d(parameter) into every parameter's .grad, for the last forward call."""
        (d_logits,) = self.stored_loss_grads()  # (B, T, V) or (N, V)
        self.bert.backward(masked_lm_backward(self, self.cls.predictions.backward, d_logits))  # (B, T, C)


# ---- what the readable and the fast model share: label gathering and the loss --------------------


def check_pretraining_labels(config: BertConfig, labels, next_sentence_label, B: int, T: int,
                             training: bool) -> None:
    """MLM labels (B, T) and NSP labels (B,); in training, each with some position labelled (see check_labels)."""
    if labels is not None:
        check_labels(labels, (B, T), config.vocab_size, "labels", require_labelled=training)
    if next_sentence_label is not None:
        check_labels(next_sentence_label, (B,), 2, "next_sentence_label", require_labelled=training)


def labelled_rows(labels: np.ndarray | None) -> np.ndarray | None:
    """The flat positions (N,) whose label is not -100, in row-major order: where MLM logits are needed."""
    return None if labels is None else np.flatnonzero(labels.reshape(-1) != IGNORE_INDEX)


def gather_labelled(hidden: np.ndarray, labels: np.ndarray | None,
                    labelled_positions_only: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The hidden states the MLM head reads: all (B, T, C), or the (N, C) rows at labelled positions
    with their flat indices (N,) (None when all are read)."""
    selected = labelled_rows(labels) if labelled_positions_only else None
    if selected is None:
        return hidden, None
    B, T, C = hidden.shape
    return hidden.reshape(B * T, C)[selected], selected


def mlm_targets(labels: np.ndarray, selected: np.ndarray | None) -> np.ndarray:
    """The labels of the rows the MLM head computed: all B*T, or the N selected ones."""
    flat = labels.reshape(-1)
    return flat if selected is None else flat[selected]


def masked_lm_loss(prediction_logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy of the MLM logits (B, T, V) or (N, V) against their targets, and d_logits in their shape."""
    vocab_size = prediction_logits.shape[-1]  # not -1: that cannot be inferred for N = 0 rows
    loss, d_logits = cross_entropy(prediction_logits.reshape(len(targets), vocab_size), targets)
    return loss, d_logits.reshape(prediction_logits.shape)


def scatter_labelled_rows(d_rows: np.ndarray, selected: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    """The gradient of the gathered rows put back at their positions (B, T, C); other positions get zero."""
    if selected is None:
        return d_rows.reshape(shape)
    B, T, C = shape
    d_sequence = np.zeros((B * T, C), dtype=d_rows.dtype)
    d_sequence[selected] = d_rows
    return d_sequence.reshape(shape)


def pretraining_output(prediction_logits, nsp_logits, mlm: tuple | None, nsp: tuple | None,
                       hidden_states: tuple | None, attentions: tuple | None
                       ) -> tuple[BertForPreTrainingOutput, tuple | None]:
    """The output, and the loss gradients backward() starts from: (d_mlm, d_nsp), None for a loss not
    computed; None if neither was.

    ``mlm`` and ``nsp`` are (loss, d_logits) pairs or None; loss = mlm_loss + nsp_loss when both are
    there (as in transformers, loss is None otherwise).
    """
    mlm_loss, d_mlm = mlm if mlm is not None else (None, None)
    nsp_loss, d_nsp = nsp if nsp is not None else (None, None)
    both = mlm is not None and nsp is not None
    output = BertForPreTrainingOutput(
        loss=mlm_loss + nsp_loss if both else None, prediction_logits=prediction_logits,
        seq_relationship_logits=nsp_logits, mlm_loss=mlm_loss, nsp_loss=nsp_loss,
        hidden_states=hidden_states, attentions=attentions)
    return output, (None if mlm is None and nsp is None else (d_mlm, d_nsp))


# ---- the masked-LM step after the encoder: BertForMaskedLM's, and the family's (roberta.py, albert.py, ...) --


def masked_lm_forward(model: BertPreTrainedModel, encoded: BaseModelOutputWithPooling, labels,
                      labelled_positions_only: bool, head) -> MaskedLMOutput:
    """What every masked-LM model does after its encoder: check the labels, gather the rows the head reads
    (all, or the labelled ones), logits = head(rows), and the loss with its d_logits when labels are given.

    ``head`` maps hidden states (..., C) to logits (..., V). Keeps on ``model`` what its backward needs
    (sequence_shape, selected, loss_grads), as every forward here keeps its cache on ``self``.
    """
    labels = None if labels is None else np.asarray(labels)
    B, T, _ = model.sequence_shape = encoded.last_hidden_state.shape  # (B, T, C)
    check_pretraining_labels(model.config, labels, None, B, T, model.training)
    hidden, model.selected = gather_labelled(encoded.last_hidden_state, labels, labelled_positions_only)
    logits = head(hidden)  # (B, T, V) or (N, V)
    loss, d_logits = (None, None) if labels is None else masked_lm_loss(logits, mlm_targets(labels, model.selected))
    model.loss_grads = None if labels is None else (d_logits,)
    return MaskedLMOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states,
                          attentions=encoded.attentions)


def masked_lm_backward(model: BertPreTrainedModel, head_backward, d_logits: np.ndarray | None) -> np.ndarray:
    """The gradient of the encoder's last hidden state (B, T, C) from the MLM logits': d_logits (B, T, V) or
    (N, V) back through ``head_backward``, its rows put back at their positions (zero elsewhere).
    No d_logits (no MLM loss, e.g. an NSP-only batch): zero everywhere."""
    if d_logits is None:
        return np.zeros(model.sequence_shape, dtype=model.dtype)
    d_hidden = head_backward(d_logits)  # (B, T, C) or (N, C)
    return scatter_labelled_rows(d_hidden, model.selected, model.sequence_shape)
