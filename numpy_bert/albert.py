"""ALBERT in NumPy (Lan et al. 2019, "ALBERT: A Lite BERT"), name for name as transformers' modeling_albert.py.

ALBERT is BERT with three changes; everything else (attention, LayerNorm, GELU, the masked-LM loss,
the tied decoder) is BERT's, and this chapter reuses numpy_bert's layers for it.

1. Factorised embeddings. BERT's tables are H wide, so the vocabulary alone costs V x H parameters.
   ALBERT's are E wide (``embedding_size``, E << H), and one Linear E -> H
   (``encoder.embedding_hidden_mapping_in``) takes them into the encoder: V x E + E x H instead of
   V x H. The masked-LM head goes the other way, H -> E (``predictions.dense``), and decodes with
   the same E-wide word table (tied, as in BERT).
2. Cross-layer parameter sharing. The encoder runs L = ``num_hidden_layers`` layers but holds only
   G = ``num_hidden_groups`` sets of parameters (each a group of ``inner_group_num`` AlbertLayers);
   layer i runs group int(i / (L / G)). With G = 1 (ALBERT's default) one layer's weights are applied
   L times over.
3. Sentence-order prediction (SOP) instead of next-sentence prediction: B is always the segment that
   follows A, and the label says whether they were swapped (1) or not (0). Telling a random B from
   the true one is easy from the topic alone; telling the order needs discourse. numpy_bert's data
   already builds such pairs: task "sop" in numpy_bert/data/pretraining_data.py.

The lesson of this chapter is the backward pass of a shared module. A parameter used k times has
the gradient dL/dθ = sum over the k uses of dL/dθ_use, each use's term computed from that use's own
input. numpy_bert's modules keep their cache on ``self``, so a layer run three times would keep only
the last run's. ``AlbertTransformer`` therefore runs, for each layer, a :func:`shared_copy` of the
group: a copy of the module tree that holds the *same* Parameter objects but its own caches. The
copies form a stack, one per call; backward pops them in reverse, and each adds its term into the
shared ``Parameter.grad`` (backward adds, never assigns: see numpy_bert/nn.py), which is the sum.
torch_bert's twin needs none of this: autograd records every call in its graph.

Parameters, for a vocabulary of 30,000 and BERT-base's sizes (H = 768, L = 12, intermediate 3,072)::

                            BertModel      AlbertModel (E = 128, G = 1)
    embeddings             23,436,288       3,906,048   (V x E + 512 x E + 2 x E + LayerNorm)
    E -> H projection               -          99,072
    encoder layers         85,054,464       7,087,872   (BERT: 12 layers; ALBERT: one, run 12 times)
    pooler                    590,592         590,592
    total                 109,081,344      11,683,584   (num_parameters())

With G = 12 (no sharing) AlbertModel would have 89,650,176: the sharing is most of the saving, the
factorised embeddings the rest.

    AlbertForPreTraining
    ├── albert: AlbertModel
    │   ├── embeddings: AlbertEmbeddings        word + position + token type, E wide; LayerNorm, dropout
    │   ├── encoder: AlbertTransformer
    │   │   ├── embedding_hidden_mapping_in: Linear      E -> H
    │   │   └── albert_layer_groups.G: AlbertLayerGroup  one set of shared parameters
    │   │       └── albert_layers.I: AlbertLayer         post-LN block
    │   │           ├── attention: AlbertAttention       self-attention, dense, residual, LayerNorm
    │   │           ├── ffn, ffn_output: Linear          H -> intermediate -> H, activation between
    │   │           └── full_layer_layer_norm            residual, LayerNorm
    │   └── pooler: Linear, pooler_activation: Tanh      tanh(pooler(h[CLS]))
    ├── predictions: AlbertMLMHead              dense H -> E, activation, LayerNorm, decoder tied to the word table
    └── sop_classifier: AlbertSOPHead           dropout, classifier: sentence order

AlbertForMaskedLM is the same without the pooler and without the SOP head.

ALBERT's own tokenizer is SentencePiece (a unigram model); here numpy_bert's WordPiece
``BertTokenizer`` stands in for it: the models read ids and do not care how they were cut.
"""

from __future__ import annotations

import copy

import numpy as np

from .config import AlbertConfig
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear, Tanh, cross_entropy
from .modeling import (
    BertEmbeddings,
    BertSelfAttention,
    check_pretraining_labels,
    gather_labelled,
    masked_lm_backward,
    masked_lm_forward,
    masked_lm_loss,
    mlm_targets,
)
from .modeling_utils import BertPreTrainedModel, additive_attention_mask, check_labels, has_padding
from .nn import Module, ModuleList, Parameter
from .outputs import AlbertForPreTrainingOutput, BaseModelOutputWithPooling, MaskedLMOutput

__all__ = ["AlbertForMaskedLM", "AlbertForPreTraining", "AlbertModel", "AlbertPreTrainedModel", "group_index",
           "shared_copy"]


def group_index(layer: int, num_hidden_layers: int, num_hidden_groups: int) -> int:
    """The group whose parameters layer ``layer`` runs: int(i / (L / G)), transformers' very formula (float
    division included), so that both pick the same group for every L and G."""
    return int(layer / (num_hidden_layers / num_hidden_groups))


def shared_copy(module: Module) -> Module:
    """A copy of ``module`` and of all its sub-modules that holds the same Parameters but its own caches.

    A forward keeps what its backward needs on ``self`` (Linear its input, LayerNorm xhat and rstd,
    attention its probabilities). Running a fresh copy for each use of a shared module keeps one cache
    per use; the copies' backward passes all add into the same ``Parameter.grad``.
    """
    clone = copy.copy(module)  # a new object with the same attributes: the same Parameters and settings
    children = {name: shared_copy(child) for name, child in module._modules.items()}
    object.__setattr__(clone, "_parameters", dict(module._parameters))  # the same Parameter objects
    object.__setattr__(clone, "_modules", children)
    for name, child in children.items():
        object.__setattr__(clone, name, child)
    return clone


# The heads around the base model "albert." (checkpoint.align_to_model: what a checkpoint may lack or add)
HEAD_PREFIXES = ("predictions.", "sop_classifier.", "classifier.", "qa_outputs.")


class AlbertEmbeddings(BertEmbeddings):
    """x = LayerNorm(word[ids] + token_type[types] + position[0..T-1]), then dropout, all E wide.

    BERT's embeddings at width E = embedding_size instead of H: the forward and backward are
    BertEmbeddings', only the tables are narrower.
    """

    def __init__(self, config: AlbertConfig):
        Module.__init__(self)  # not BertEmbeddings.__init__, whose tables are hidden_size wide
        E = config.embedding_size
        self.word_embeddings = Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, E)
        self.token_type_embeddings = Embedding(config.type_vocab_size, E)
        self.LayerNorm = LayerNorm(E, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)


class AlbertAttention(BertSelfAttention):
    """Self-attention and its add & norm in one module: y = LayerNorm(x + dropout(dense(attention(x)))).

    BERT splits this in two (attention.self, attention.output); transformers' AlbertAttention holds
    query, key, value, dense and LayerNorm side by side, and so does this subclass of BertSelfAttention.
    (The attention-probability dropout keeps BertSelfAttention's name, ``dropout``, where transformers
    says ``attention_dropout``: it has no parameters, so no checkpoint sees the name.)
    Backward: LayerNorm's input gradient goes to both terms of the sum; the attention term then back
    through dropout, dense and BertSelfAttention's backward.
    """

    def __init__(self, config: AlbertConfig):
        super().__init__(config)  # query, key, value and the attention-probability dropout
        H = config.hidden_size
        self.output_dropout = Dropout(config.hidden_dropout_prob)
        self.dense = Linear(H, H)
        self.LayerNorm = LayerNorm(H, config.layer_norm_eps)

    def forward(self, hidden_states: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        context = super().forward(hidden_states, mask)  # (B, T, H): the heads, merged
        projected = self.output_dropout(self.dense(context))  # (B, T, H)
        return self.LayerNorm(hidden_states + projected)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_sum = self.LayerNorm.backward(dy)  # (B, T, H), to both terms of the sum
        d_projected = self.output_dropout.backward(d_sum)
        d_context = self.dense.backward(d_projected)
        return super().backward(d_context) + d_sum  # x fed the attention and the residual


class AlbertLayer(Module):
    """One post-LN block: attention (with its add & norm), then ffn, activation, ffn_output and add & norm.

        a = attention(x)
        y = full_layer_layer_norm(a + ffn_output(activation(ffn(a))))

    transformers' AlbertLayer also builds a dropout that its forward never applies; it is left out here,
    so the feed-forward output has no dropout in either library.
    Backward: as BertLayer's, with a fed to both the feed-forward branch and the residual.
    """

    def __init__(self, config: AlbertConfig):
        super().__init__()
        H, inner = config.hidden_size, config.intermediate_size
        self.full_layer_layer_norm = LayerNorm(H, config.layer_norm_eps)
        self.attention = AlbertAttention(config)
        self.ffn = Linear(H, inner)
        self.ffn_output = Linear(inner, H)
        self.activation = GELU(config.hidden_act)

    def forward(self, hidden_states: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        attended = self.attention(hidden_states, mask)  # (B, T, H)
        widened = self.activation(self.ffn(attended))  # (B, T, intermediate)
        return self.full_layer_layer_norm(self.ffn_output(widened) + attended)  # (B, T, H)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_sum = self.full_layer_layer_norm.backward(dy)  # (B, T, H), to both terms of the sum
        d_widened = self.ffn_output.backward(d_sum)  # (B, T, intermediate)
        d_ffn = self.activation.backward(d_widened)
        d_attended = self.ffn.backward(d_ffn) + d_sum  # attended fed the feed-forward branch and the residual
        return self.attention.backward(d_attended)


class AlbertLayerGroup(Module):
    """One set of shared parameters: inner_group_num AlbertLayers, run one after the other."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.albert_layers = ModuleList([AlbertLayer(config) for _ in range(config.inner_group_num)])

    def forward(self, hidden_states: np.ndarray, mask: np.ndarray | None) -> list[np.ndarray]:
        """The output of each of its layers (B, T, H); the last is the group's output."""
        states = []
        for layer in self.albert_layers:
            hidden_states = layer(hidden_states, mask)
            states.append(hidden_states)
        return states

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy: the gradient of the group's output (its last layer's); returns that of its input."""
        for layer in reversed(list(self.albert_layers)):
            dy = layer.backward(dy)
        return dy


class AlbertTransformer(Module):
    """The encoder: project E -> H, then num_hidden_layers layers that share num_hidden_groups parameter groups.

    Layer i runs group ``group_index(i, L, G)``, through a :func:`shared_copy` that keeps that call's
    cache: ``self.calls`` is the stack of the forward's calls, in order. Backward runs it in reverse, and
    every call adds its share into the group's Parameters, so a shared weight's gradient is
        dL/dW = sum over the layers i that use W of dL/dW at layer i.
    """

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.num_hidden_layers = config.num_hidden_layers
        self.num_hidden_groups = config.num_hidden_groups
        self.embedding_hidden_mapping_in = Linear(config.embedding_size, config.hidden_size)
        self.albert_layer_groups = ModuleList([AlbertLayerGroup(config) for _ in range(config.num_hidden_groups)])

    def forward(self, hidden_states: np.ndarray, mask: np.ndarray | None) -> list[np.ndarray]:
        """All hidden states (B, T, H): the projected embeddings, then the output of every AlbertLayer call.

        Also keeps ``attention_maps``, every call's attention probabilities (B, nh, T, T), in call order.
        """
        states = [self.embedding_hidden_mapping_in(hidden_states)]  # (B, T, E) -> (B, T, H)
        self.calls: list[AlbertLayerGroup] = []
        for i in range(self.num_hidden_layers):
            group = self.albert_layer_groups[group_index(i, self.num_hidden_layers, self.num_hidden_groups)]
            call = shared_copy(group)  # group's Parameters, this call's own caches
            states.extend(call(states[-1], mask))
            self.calls.append(call)
        self.attention_maps = [layer.attention.dropped_probs for call in self.calls for layer in call.albert_layers]
        return states

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Returns the gradient of the E-wide embeddings (B, T, E)."""
        for call in reversed(self.calls):
            dy = call.backward(dy)  # adds this call's share into the shared Parameters' .grad
        return self.embedding_hidden_mapping_in.backward(dy)


class AlbertPreTrainedModel(BertPreTrainedModel):
    """Base of the ALBERT models: AlbertConfig, and checkpoints with the ``albert.`` prefix.

    checkpoint.align_to_model adds or drops the prefix and lets the heads (HEAD_PREFIXES) be missing
    (initialised, listed) or left over (ignored, listed), as transformers does.
    """

    config_class = AlbertConfig
    base_model_prefix, head_prefixes = "albert", HEAD_PREFIXES
    runs_int8 = False  # numpy_bert/quantization.py knows BERT's layout (bert.embeddings), not ALBERT's


class AlbertModel(AlbertPreTrainedModel):
    """The encoder: ids in, contextual vectors out (last_hidden_state and pooler_output).

    pooler_output = tanh(pooler(h[:, 0])), with ``pooler`` a Linear and ``pooler_activation`` a Tanh
    directly on the model, as transformers names them (BERT has a BertPooler module instead).
    Backward: from the gradients of both outputs, through the pooler, the encoder and the
    embeddings; returns None (the inputs are ids).
    """

    def __init__(self, config: AlbertConfig, seed: int | None = 0, dtype=np.float32,
                 add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = AlbertEmbeddings(config)
        self.encoder = AlbertTransformer(config)
        self.pooler = Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.pooler_activation = Tanh() if add_pooling_layer else None
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
        last = states[-1]  # (B, T, H)
        pooled = None if self.pooler is None else self.pooler_activation(self.pooler(last[:, 0]))  # (B, H)
        return BaseModelOutputWithPooling(
            last_hidden_state=last,
            pooler_output=pooled,
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(self.encoder.attention_maps) if output_attentions else None,
        )

    def backward(self, grad_last_hidden_state: np.ndarray, grad_pooler_output: np.ndarray | None = None) -> None:
        """Adds the gradients of sum(grad_last_hidden_state * last_hidden_state + grad_pooler_output *
        pooler_output) into every parameter's .grad, for the last forward call."""
        d_hidden = np.array(grad_last_hidden_state, dtype=self.dtype)  # (B, T, H), a copy: added into below
        if grad_pooler_output is not None:
            d_pooled = self.pooler_activation.backward(grad_pooler_output)  # (B, H)
            d_hidden[:, 0] += self.pooler.backward(d_pooled)  # only [CLS] fed the pooler
        d_embeddings = self.encoder.backward(d_hidden)  # (B, T, E)
        self.embeddings.backward(d_embeddings)


class AlbertMLMHead(Module):
    """Masked-LM logits: decoder(LayerNorm(activation(dense(h)))), dense H -> E, decoder E -> V tied to the words.

    BERT's head keeps H wide until the decoder; ALBERT's narrows to E first, because its word table,
    which the decoder reuses (weight tied, bias = ``self.bias``, as in transformers), is E wide.
    Backward: the decoder's, which adds its dE into the tied embedding's gradient, then the rest in reverse.
    """

    def __init__(self, config: AlbertConfig, word_embeddings: Parameter):
        super().__init__()
        E = config.embedding_size
        self.LayerNorm = LayerNorm(E, config.layer_norm_eps)
        self.bias = Parameter(np.zeros(config.vocab_size))
        self.dense = Linear(config.hidden_size, E)
        self.decoder = Linear.tied(word_embeddings, self.bias)
        self.activation = GELU(config.hidden_act)

    def forward(self, hidden_states: np.ndarray) -> np.ndarray:
        narrowed = self.activation(self.dense(hidden_states))  # (..., E)
        return self.decoder(self.LayerNorm(narrowed))  # (..., V)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_normed = self.decoder.backward(dy)  # (..., E); also adds the decoder's dE into the tied embedding
        d_narrowed = self.LayerNorm.backward(d_normed)
        d_dense = self.activation.backward(d_narrowed)
        return self.dense.backward(d_dense)  # (..., H)


class AlbertSOPHead(Module):
    """Sentence-order logits: classifier(dropout(pooled)), (B, 2)."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.dropout = Dropout(config.classifier_dropout_prob)
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled_output: np.ndarray) -> np.ndarray:
        return self.classifier(self.dropout(pooled_output))  # (B, 2)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_dropped = self.classifier.backward(dy)  # (B, H)
        return self.dropout.backward(d_dropped)


class AlbertForPreTraining(AlbertPreTrainedModel):
    """ALBERT with its two pre-training heads: masked-LM and sentence-order prediction.

    loss = CE(MLM logits, labels; ignoring -100) + CE(SOP logits, sentence_order_label), computed when
    both label arrays are given (as in transformers); ``mlm_loss`` and ``sop_loss`` are there whenever
    their labels are. sentence_order_label is 0 for A then B, 1 for B then A.
    Backward: the two heads' gradients meet in the encoder's last hidden state (the SOP one through
    the pooler, at [CLS]); it differentiates the losses the forward computed.
    """

    tied_weights = {
        "predictions.decoder.weight": "albert.embeddings.word_embeddings.weight",
        "predictions.decoder.bias": "predictions.bias",
    }
    loss_arguments = "labels and sentence_order_label"

    def __init__(self, config: AlbertConfig, seed: int = 0, dtype=np.float32):
        super().__init__(config)
        check_sop_classes(config)
        self.albert = AlbertModel(config, seed=None)  # initialised below, with the heads
        self.predictions = AlbertMLMHead(config, self.albert.embeddings.word_embeddings.weight)
        self.sop_classifier = AlbertSOPHead(config)
        self.post_init(seed, dtype)

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None = None,
        token_type_ids: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        sentence_order_label: np.ndarray | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labelled_positions_only: bool = False,
    ) -> AlbertForPreTrainingOutput:
        """``labelled_positions_only``: MLM logits only where labels != -100, (N, V), as in BertForPreTraining."""
        encoded = self.albert(input_ids, attention_mask, token_type_ids,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        B, T, _ = self.sequence_shape = encoded.last_hidden_state.shape  # (B, T, H)
        labels = None if labels is None else np.asarray(labels)
        sentence_order_label = None if sentence_order_label is None else np.asarray(sentence_order_label)
        check_pretraining_labels(self.config, labels, None, B, T, self.training)
        if sentence_order_label is not None:
            check_labels(sentence_order_label, (B,), 2, "sentence_order_label", require_labelled=self.training)
        hidden, self.selected = gather_labelled(encoded.last_hidden_state, labels, labelled_positions_only)
        prediction_logits = self.predictions(hidden)  # (B, T, V) or (N, V)
        sop_logits = self.sop_classifier(encoded.pooler_output)  # (B, 2)
        mlm_loss, d_mlm = (None, None) if labels is None else masked_lm_loss(
            prediction_logits, mlm_targets(labels, self.selected))
        sop_loss, d_sop = (None, None) if sentence_order_label is None else cross_entropy(
            sop_logits, sentence_order_label)
        self.loss_grads = None if labels is None and sentence_order_label is None else (d_mlm, d_sop)
        both = labels is not None and sentence_order_label is not None
        return AlbertForPreTrainingOutput(
            loss=mlm_loss + sop_loss if both else None, prediction_logits=prediction_logits,
            sop_logits=sop_logits, mlm_loss=mlm_loss, sop_loss=sop_loss,
            hidden_states=encoded.hidden_states, attentions=encoded.attentions)

    def backward(self) -> None:
        """Adds d(loss)/d(parameter) into every parameter's .grad, for the last forward call."""
        d_logits, d_sop = self.stored_loss_grads()  # (B, T, V) or (N, V), and (B, 2); either may be None
        d_sequence = masked_lm_backward(self, self.predictions.backward, d_logits)  # (B, T, H); 0 if SOP only
        d_pooled = None if d_sop is None else self.sop_classifier.backward(d_sop)  # (B, H)
        self.albert.backward(d_sequence, d_pooled)


class AlbertForMaskedLM(AlbertPreTrainedModel):
    """ALBERT with the masked-LM head alone: no pooler, no SOP head, as transformers' AlbertForMaskedLM.

    loss = CE(logits, labels; ignoring -100). Backward: the MLM head's, then the encoder's.
    """

    tied_weights = AlbertForPreTraining.tied_weights
    loss_arguments = "labels"

    def __init__(self, config: AlbertConfig, seed: int = 0, dtype=np.float32):
        super().__init__(config)
        self.albert = AlbertModel(config, seed=None, add_pooling_layer=False)
        self.predictions = AlbertMLMHead(config, self.albert.embeddings.word_embeddings.weight)
        self.post_init(seed, dtype)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
                token_type_ids: np.ndarray | None = None, labels: np.ndarray | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                labelled_positions_only: bool = False) -> MaskedLMOutput:
        """``labelled_positions_only``: logits only where labels != -100, (N, V), as in BertForMaskedLM."""
        encoded = self.albert(input_ids, attention_mask, token_type_ids,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return masked_lm_forward(self, encoded, labels, labelled_positions_only, head=self.predictions)

    def backward(self) -> None:
        """Adds d(loss)/d(parameter) into every parameter's .grad, for the last forward call."""
        (d_logits,) = self.stored_loss_grads()  # (B, T, V) or (N, V)
        self.albert.backward(masked_lm_backward(self, self.predictions.backward, d_logits))  # (B, T, H)


def check_sop_classes(config: AlbertConfig) -> None:
    """The SOP classifier is Linear(H, num_labels) in transformers, and sentence order has two classes."""
    if config.num_labels != 2:
        raise ValueError(f"AlbertForPreTraining's sentence-order head has 2 classes, but num_labels is "
                         f"{config.num_labels}: load the pre-training model with num_labels=2")
