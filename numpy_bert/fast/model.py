"""The same BERT, made fast: one fused forward and backward over the readable model's parameters.

:class:`FastBertForPreTraining` *is* a :class:`numpy_bert.BertForPreTraining`: same
modules, same parameter objects, same names, same ``state_dict``, ``from_pretrained``,
``save_pretrained``, ``train``/``eval`` and dropout mask sources, and the same label
gathering and loss assembly (the shared helpers at the end of ``modeling.py``). Only
``forward`` and ``backward`` are replaced, by flat code that reads the parameters
straight out of the module tree. ``parity_tests/test_fast_parity.py`` checks that both
give the same outputs and the same gradient for every parameter (float64: relative
error <= 1e-10).

What is different, and why it is faster (``python -m benchmarks --profile`` shows the
hot spots of the readable step that motivated each item; benchmarks/README.md has the
measurements):

* **2-D activations, one GEMM per dense layer.** Activations are (B*T, C) matrices;
  ``np.matmul(..., out=)`` writes each product where it is needed.
* **Fused QKV.** Query, key and value weights are concatenated into one (3C, C) matrix
  (a copy of 3C^2 numbers per call, negligible): one GEMM forward, two backward. The
  attention scaling is applied to q once (B*T*C numbers) instead of to the scores
  (B*nh*T*T). Heads are strided views of the QKV matrix and the context is written
  straight into the (B*T, C) matrix the output projection reads: no split/merge copies.
* **Blocked, fused element-wise kernels** (``kernels.py``). Everything between two GEMMs
  runs over cache-sized blocks of rows, so each array crosses the memory bus once instead
  of once per NumPy operation; the blocks are shared between threads (``threads.py``),
  as the BLAS shares the GEMMs, with results that do not depend on the thread count.
* **GELU computes erf once**, and float32 uses a branch-free erf (``erf_float32``);
  float64 keeps the exact one, so float64 parity stays at rounding level.
* **Fused cross-entropy.** The MLM softmax, loss, gradient and the decoder bias
  gradient come out of one pass over one (N, V) buffer.
* **Cheaper embedding backward.** The tied word-embedding gradient starts from the MLM
  decoder's dE (a GEMM result) and the lookup's rows are added into it
  (``scatter_add_rows``); the position gradient is a sum over the batch; the token-type
  gradient a (K, N) GEMM.
* **Recycled buffers.** Arrays of 8 MiB and more come from a pool and are reused from
  one step to the next when nothing else refers to them (``buffers.py``).
* **Same dropout masks.** Masks are drawn from the model's mask source in the same
  order and shapes as the readable model (so ``GeneratorMasks`` and ``KeyedMasks``
  give identical masks).

Nothing here changes the maths: the readable ``modeling.py`` stays the reference, and
the names below follow it (``attended``, ``context``, ``d_attended``, ``d_context``...).
Shapes in comments: B batch, T sequence, C hidden, I intermediate, V vocabulary, nh
heads, hs head size; M the rows the MLM head reads (B*T, or the N labelled ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layers import cross_entropy
from ..modeling import (
    BertForPreTraining,
    check_pretraining_labels,
    labelled_rows,
    mlm_targets,
    pretraining_output,
    scatter_labelled_rows,
)
from ..modeling_utils import additive_attention_mask, has_padding
from ..outputs import BertForPreTrainingOutput
from .buffers import BufferPool
from .kernels import (
    SMALL_ROWS,
    fused_add_norm,
    fused_add_norm_backward,
    fused_cross_entropy,
    fused_gelu,
    fused_gelu_backward,
    fused_softmax_dropout,
    fused_softmax_dropout_backward,
    gemm,
    matmul_bias,
    scatter_add_rows,
)

__all__ = ["EmbeddingsCache", "FastBertForPreTraining", "ForwardCache", "HeadsCache", "LayerCache", "NormCache"]


# ---- what the forward keeps for the backward ----------------------------------------------


@dataclass
class NormCache:
    """What :func:`fused_add_norm_backward` needs of one :func:`fused_add_norm` call (N = B*T or M rows)."""

    xhat: np.ndarray  # (N, C) the normalised LayerNorm input
    rstd: np.ndarray  # (N, 1) 1 / sqrt(var + eps) of each row
    keep: np.ndarray | None  # (N, C) the fused dropout's keep mask; None when dropout is off


@dataclass
class EmbeddingsCache:
    """What the embeddings' backward reads: the ids (for the lookups' gradients) and the LayerNorm's values."""

    ids: np.ndarray  # (B*T,) input_ids, flat
    types: np.ndarray  # (B*T,) token_type_ids, flat
    norm: NormCache  # LayerNorm, then dropout (keep: the mask after the norm)


@dataclass
class LayerCache:
    """One encoder layer's forward values that its backward reads."""

    x: np.ndarray  # (B*T, C) the layer's input
    qkv: np.ndarray  # (B*T, 3C) q (times the attention scaling), k and v side by side
    w_qkv: np.ndarray | None  # (3C, C) query, key and value weights stacked; None for <= SMALL_ROWS rows
    probs: np.ndarray  # (B, nh, T, T) attention probabilities
    attention_keep: np.ndarray | None  # (B, nh, T, T) their dropout's keep mask; None when dropout is off
    dropped_probs: np.ndarray  # (B, nh, T, T) after dropout (probs itself when dropout is off)
    context: np.ndarray  # (B*T, C) heads merged: the attention output projection's input
    attention_norm: NormCache  # the attention block's add & norm (keep: the dropout before the sum)
    attended: np.ndarray  # (B*T, C) the attention block's output
    intermediate_pre: np.ndarray  # (B*T, I) the intermediate dense layer's output, before GELU
    intermediate_aux: np.ndarray  # (B*T, I) what the GELU backward needs besides its input (fused_gelu)
    intermediate: np.ndarray  # (B*T, I) after GELU: the output dense layer's input
    output_norm: NormCache  # the feed-forward block's add & norm


@dataclass
class HeadsCache:
    """The pooler's and the two heads' forward values that their backward reads."""

    cls_rows: np.ndarray  # (B, C) the [CLS] states: the pooler's input
    pooled: np.ndarray  # (B, C) tanh(dense(cls_rows)): the NSP head's input
    mlm_hidden: np.ndarray  # (M, C) the encoder rows the MLM head reads
    transform_pre: np.ndarray  # (M, C) the transform's dense output, before GELU
    transform_aux: np.ndarray  # (M, C) fused_gelu's aux
    transform_norm: NormCache  # the transform's LayerNorm (no dropout)
    transformed: np.ndarray  # (M, C) the decoder's input


@dataclass
class ForwardCache:
    embeddings: EmbeddingsCache
    layers: list[LayerCache]  # in forward order
    heads: HeadsCache
    decoder_bias_grad: np.ndarray | None  # (V,) d(MLM loss)/d(decoder bias), from the fused loss; None without labels


# ---- small helpers ----------------------------------------------------------------------


def _reshaped(array: np.ndarray | None, *shape: int) -> np.ndarray | None:
    """array.reshape(shape) (a view here: every array passed is contiguous), None staying None."""
    return None if array is None else array.reshape(shape)


def _heads(matrix: np.ndarray, B: int, T: int, nh: int) -> np.ndarray:
    """The strided (B, nh, T, hs) view of a (B*T, nh*hs) matrix: split_heads without a copy."""
    return matrix.reshape(B, T, nh, -1).transpose(0, 2, 1, 3)


def _qkv_heads(qkv: np.ndarray, B: int, T: int, nh: int) -> list[np.ndarray]:
    """Strided (B, nh, T, hs) views of q, k and v inside the (B*T, 3C) matrix: no copies."""
    C = qkv.shape[1] // 3
    return [_heads(qkv[:, i * C:(i + 1) * C], B, T, nh) for i in range(3)]


def _linear_backward(linear, dy: np.ndarray, x: np.ndarray, d_bias: np.ndarray,
                     out: np.ndarray | None = None) -> np.ndarray:
    """A dense layer's backward given its bias gradient (most come out of a fused kernel):
    adds dW = dy^T x and db into the parameters' .grad; returns dx = dy W."""
    linear.weight.accumulate_grad(gemm(dy.T, x))
    linear.bias.accumulate_grad(d_bias)
    return gemm(dy, linear.weight.data, out=out)


class FastBertForPreTraining(BertForPreTraining):
    """:class:`numpy_bert.BertForPreTraining` with a fused, blocked forward and backward.

    A drop-in replacement: construct, load and save it exactly like the readable class
    (``FastBertForPreTraining.from_pretrained(folder)`` reads any checkpoint the readable
    one reads). ``forward`` takes the same arguments and returns the same output;
    ``backward()`` adds the same gradients into every parameter's ``.grad``.
    """

    runs_int8 = False  # the fused kernels read the float weights themselves

    def __init__(self, config, seed: int = 0, dtype=np.float32):
        super().__init__(config, seed=seed, dtype=dtype)
        self._buffer_pool = BufferPool()
        self._cache: ForwardCache | None = None

    def _new(self, *shape: int) -> np.ndarray:
        """An uninitialised array in the model's dtype (large ones recycled, see BufferPool)."""
        return self._buffer_pool.empty(shape, self._compute_dtype)

    # ---- forward ---------------------------------------------------------------------

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
        self._cache = self.loss_grads = None  # the last call's buffers go back to the pool
        self._compute_dtype = self.dtype  # read once per call: the property walks the module tree
        input_ids, attention_mask, token_type_ids = self.check_inputs(input_ids, attention_mask, token_type_ids)
        B, T = input_ids.shape
        C, nh = self.config.hidden_size, self.config.num_attention_heads
        self.sequence_shape = (B, T, C)
        check_pretraining_labels(self.config, labels, next_sentence_label, B, T, self.training)
        mask = None
        if has_padding(attention_mask):  # (B*nh, 1, T): one row of the mask per (sequence, head)
            mask = np.repeat(additive_attention_mask(attention_mask, self._compute_dtype)[:, 0], nh, axis=0)

        x, embeddings = self._embeddings_forward(input_ids, token_type_ids)  # (B*T, C)
        states, layers = [x], []
        for layer in self.bert.encoder.layer:
            x, layer_cache = self._layer_forward(layer, x, mask, B, T)
            states.append(x)
            layers.append(layer_cache)
        self.selected = labelled_rows(labels) if labelled_positions_only else None  # (N,) or None
        logits, nsp_logits, heads = self._heads_forward(x, self.selected, B, T)  # (M, V), (B, 2)

        mlm = decoder_bias_grad = None
        if labels is not None:  # the fused loss replaces masked_lm_loss; its column sums are db of the decoder
            mlm_loss, d_logits, decoder_bias_grad = fused_cross_entropy(
                logits, mlm_targets(labels, self.selected), self._new(*logits.shape))
            mlm = (mlm_loss, d_logits)
        nsp = None if next_sentence_label is None else cross_entropy(nsp_logits, next_sentence_label)
        self._cache = ForwardCache(embeddings, layers, heads, decoder_bias_grad)
        prediction_logits = logits.reshape(B, T, -1) if self.selected is None else logits  # (B, T, V) or (N, V)
        hidden_states = tuple(s.reshape(B, T, C) for s in states) if output_hidden_states else None
        attentions = tuple(c.dropped_probs for c in layers) if output_attentions else None
        output, self.loss_grads = pretraining_output(prediction_logits, nsp_logits, mlm, nsp,
                                                     hidden_states, attentions)
        return output

    def _embeddings_forward(self, input_ids: np.ndarray, token_type_ids: np.ndarray
                            ) -> tuple[np.ndarray, EmbeddingsCache]:
        emb = self.bert.embeddings
        B, T = input_ids.shape
        C = self.config.hidden_size
        ids, types = input_ids.reshape(-1), token_type_ids.reshape(-1)  # (B*T,)
        x = emb.word_embeddings.weight.data.take(ids, axis=0)  # (B*T, C)
        x += emb.token_type_embeddings.weight.data.take(types, axis=0)
        x.reshape(B, T, C)[...] += emb.position_embeddings.weight.data[:T]
        keep = _reshaped(emb.dropout.keep_mask((B, T, C)), B * T, C)
        norm = emb.LayerNorm
        y, xhat, rstd = fused_add_norm(x, norm.weight.data, norm.bias.data, norm.eps,
                                       keep_out=keep, p_out=emb.dropout.p)
        return y, EmbeddingsCache(ids, types, NormCache(xhat, rstd, keep))

    @staticmethod
    def _qkv_forward(att, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(x [Wq; Wk; Wv]^T + [bq; bk; bv], the stacked weights): one product, or three small
        ones for a few rows (no weight copy then); q is then multiplied by the attention scaling."""
        N, C = x.shape
        projections = (att.query, att.key, att.value)
        w_qkv = None
        if N <= SMALL_ROWS:
            qkv = np.empty((N, 3 * C), dtype=x.dtype)
            for i, projection in enumerate(projections):
                qkv[:, i * C:(i + 1) * C] = matmul_bias(x, projection.weight.data, projection.bias.data)
        else:
            w_qkv = np.concatenate([p.weight.data for p in projections])  # (3C, C)
            qkv = matmul_bias(x, w_qkv, np.concatenate([p.bias.data for p in projections]))  # (N, 3C)
        qkv[:, :C] *= x.dtype.type(att.scaling)
        return qkv, w_qkv

    def _residual_output_forward(self, block, hidden: np.ndarray, residual: np.ndarray, B: int, T: int
                                 ) -> tuple[np.ndarray, NormCache]:
        """A ResidualOutput: LayerNorm(dropout(dense(hidden)) + residual), the dense layer then one kernel."""
        dense = matmul_bias(hidden, block.dense.weight.data, block.dense.bias.data)  # (B*T, C)
        keep = _reshaped(block.dropout.keep_mask((B, T, dense.shape[1])), *dense.shape)
        norm = block.LayerNorm
        y, xhat, rstd = fused_add_norm(dense, norm.weight.data, norm.bias.data, norm.eps,
                                       keep_in=keep, p_in=block.dropout.p, residual=residual)
        return y, NormCache(xhat, rstd, keep)

    def _layer_forward(self, layer, x: np.ndarray, mask: np.ndarray | None, B: int, T: int
                       ) -> tuple[np.ndarray, LayerCache]:
        N, C = x.shape
        att = layer.attention.self
        nh = att.num_attention_heads

        # Self-attention: q k^T (q already scaled) becomes probs in place; the context is written
        # through a strided view straight into the (B*T, C) matrix: merge_heads without a copy.
        qkv, w_qkv = self._qkv_forward(att, x)  # (N, 3C)
        q, k, v = _qkv_heads(qkv, B, T, nh)  # (B, nh, T, hs)
        probs = gemm(q, k.transpose(0, 1, 3, 2), out=self._new(B, nh, T, T))  # the scores, until the softmax
        attention_keep = att.dropout.keep_mask((B, nh, T, T))
        dropped_probs = probs if attention_keep is None else self._new(B, nh, T, T)
        fused_softmax_dropout(probs.reshape(B * nh, T, T), mask, _reshaped(attention_keep, B * nh, T, T),
                              att.dropout.p, dropped_probs.reshape(B * nh, T, T))
        context = np.empty((N, C), dtype=x.dtype)
        gemm(dropped_probs, v, out=_heads(context, B, T, nh))

        # Attention output: dense, then dropout + residual + LayerNorm in one kernel.
        attended, attention_norm = self._residual_output_forward(layer.attention.output, context, x, B, T)

        # Feed-forward: dense, GELU, dense, then dropout + residual + LayerNorm.
        inter = layer.intermediate
        I = inter.dense.weight.shape[0]
        pre = matmul_bias(attended, inter.dense.weight.data, inter.dense.bias.data, out=self._new(N, I))
        intermediate, aux = fused_gelu(pre, inter.intermediate_act_fn.approximate,
                                       out=self._new(N, I), aux=self._new(N, I))
        y, output_norm = self._residual_output_forward(layer.output, intermediate, attended, B, T)
        return y, LayerCache(x, qkv, w_qkv, probs, attention_keep, dropped_probs, context, attention_norm,
                             attended, pre, aux, intermediate, output_norm)

    def _heads_forward(self, x: np.ndarray, selected: np.ndarray | None, B: int, T: int
                       ) -> tuple[np.ndarray, np.ndarray, HeadsCache]:
        """The pooler, the MLM head on the rows it needs (all, or the selected) and the NSP head:
        (logits, nsp_logits)."""
        pool = self.bert.pooler.dense
        cls_rows = x.reshape(B, T, -1)[:, 0]  # (B, C)
        pooled = np.tanh(matmul_bias(cls_rows, pool.weight.data, pool.bias.data))

        head = self.cls.predictions
        tr = head.transform
        hidden = x if selected is None else x[selected]  # (M, C)
        pre = matmul_bias(hidden, tr.dense.weight.data, tr.dense.bias.data)
        activated, aux = fused_gelu(pre, tr.transform_act_fn.approximate)
        transformed, xhat, rstd = fused_add_norm(activated, tr.LayerNorm.weight.data, tr.LayerNorm.bias.data,
                                                 tr.LayerNorm.eps)
        logits = matmul_bias(transformed, head.decoder.weight.data, head.decoder.bias.data,
                             out=self._new(len(transformed), head.bias.shape[0]))  # (M, V)

        seq = self.cls.seq_relationship
        nsp_logits = matmul_bias(pooled, seq.weight.data, seq.bias.data)  # (B, 2)
        heads = HeadsCache(cls_rows, pooled, hidden, pre, aux, NormCache(xhat, rstd, None), transformed)
        return logits, nsp_logits, heads

    # ---- backward --------------------------------------------------------------------

    def backward(self) -> None:
        """Adds d(loss)/d(parameter) into every parameter's .grad, for the last forward call."""
        d_logits, d_nsp = self.stored_loss_grads()  # (M, V), (B, 2); either may be None (that loss not computed)
        cache = self._cache
        B, T, C = self.sequence_shape
        if d_logits is None:  # NSP only
            d_sequence = np.zeros(self.sequence_shape, dtype=self._compute_dtype)
            d_word_embeddings = np.zeros(self.bert.embeddings.word_embeddings.weight.shape, dtype=self._compute_dtype)
        else:
            d_hidden, d_word_embeddings = self._mlm_head_backward(d_logits, cache)  # (M, C), (V, C)
            d_sequence = scatter_labelled_rows(d_hidden, self.selected, self.sequence_shape)  # (B, T, C)
        if d_nsp is not None:
            d_pooled = self._nsp_backward(d_nsp, cache.heads)  # (B, C)
            d_sequence[:, 0] += self._pooler_backward(d_pooled, cache.heads)  # only [CLS] fed the pooler
        d_x = d_sequence.reshape(B * T, C)
        for layer, layer_cache in zip(reversed(list(self.bert.encoder.layer)), reversed(cache.layers)):
            d_x = self._layer_backward(layer, d_x, layer_cache, B, T)
        self._embeddings_backward(d_x, d_word_embeddings, cache.embeddings)

    def _mlm_head_backward(self, d_logits: np.ndarray, cache: ForwardCache) -> tuple[np.ndarray, np.ndarray]:
        """Returns (d mlm_hidden, the decoder's dE): dE is where the tied word-embedding gradient starts,
        so it is added into .grad only once the lookup's rows are in (_embeddings_backward)."""
        heads = cache.heads
        head = self.cls.predictions
        tr = head.transform
        d_word_embeddings = gemm(d_logits.T, heads.transformed)  # (V, C)
        # the decoder's bias is head.bias (tied); a copy (V numbers), as .grad may be scaled in place
        head.bias.accumulate_grad(cache.decoder_bias_grad.copy())
        d_transformed = gemm(d_logits, head.decoder.weight.data)  # (M, C)
        d_activated, _, d_gamma, d_beta, _ = fused_add_norm_backward(
            d_transformed, heads.transform_norm.xhat, heads.transform_norm.rstd, tr.LayerNorm.weight.data)
        tr.LayerNorm.weight.accumulate_grad(d_gamma)
        tr.LayerNorm.bias.accumulate_grad(d_beta)
        d_pre, d_bias = fused_gelu_backward(d_activated, heads.transform_pre, heads.transform_aux,
                                            tr.transform_act_fn.approximate)
        d_hidden = _linear_backward(tr.dense, d_pre, heads.mlm_hidden, d_bias)
        return d_hidden, d_word_embeddings

    def _nsp_backward(self, d_nsp: np.ndarray, heads: HeadsCache) -> np.ndarray:
        return _linear_backward(self.cls.seq_relationship, d_nsp, heads.pooled, d_nsp.sum(axis=0))

    def _pooler_backward(self, d_pooled: np.ndarray, heads: HeadsCache) -> np.ndarray:
        d_pooled *= 1 - heads.pooled * heads.pooled  # tanh' = 1 - tanh^2 (d_pooled is ours: changed in place)
        return _linear_backward(self.bert.pooler.dense, d_pooled, heads.cls_rows, d_pooled.sum(axis=0))

    def _residual_output_backward(self, block, dy: np.ndarray, norm: NormCache, hidden: np.ndarray,
                                  add: np.ndarray | None = None, out: np.ndarray | None = None
                                  ) -> tuple[np.ndarray, np.ndarray]:
        """ResidualOutput.backward in one kernel and the dense layer's products; ``add``, a residual
        branch's gradient, joins dy inside the kernel (dy is overwritten). ``hidden`` is the dense
        layer's input. Returns (d hidden, d input_tensor)."""
        d_sum, d_dense, d_gamma, d_beta, d_bias = fused_add_norm_backward(
            dy, norm.xhat, norm.rstd, block.LayerNorm.weight.data, add=add, keep_in=norm.keep, p_in=block.dropout.p)
        block.LayerNorm.weight.accumulate_grad(d_gamma)
        block.LayerNorm.bias.accumulate_grad(d_beta)
        return _linear_backward(block.dense, d_dense, hidden, d_bias, out=out), d_sum

    def _layer_backward(self, layer, dy: np.ndarray, c: LayerCache, B: int, T: int) -> np.ndarray:
        att = layer.attention.self
        nh = att.num_attention_heads

        # Feed-forward block, in reverse: add & norm and output dense, GELU, intermediate dense. The
        # residual's share of d_attended, d_attended_residual, joins the branch's inside the next kernel.
        d_intermediate, d_attended_residual = self._residual_output_backward(
            layer.output, dy, c.output_norm, c.intermediate, out=self._new(*c.intermediate.shape))  # (N, I)
        inter = layer.intermediate
        d_pre, d_bias = fused_gelu_backward(d_intermediate, c.intermediate_pre, c.intermediate_aux,
                                            inter.intermediate_act_fn.approximate)
        d_attended = _linear_backward(inter.dense, d_pre, c.attended, d_bias)  # (N, C)

        # Attention output block, in reverse; x's residual share comes back as d_x_residual.
        d_context, d_x_residual = self._residual_output_backward(
            layer.attention.output, d_attended, c.attention_norm, c.context, add=d_attended_residual)  # (N, C)

        # Self-attention, in reverse, into one (N, 3C) gradient of the fused projection.
        q, k, v = _qkv_heads(c.qkv, B, T, nh)
        d_qkv = np.empty_like(c.qkv)
        dq, dk, dv = _qkv_heads(d_qkv, B, T, nh)  # views: the products below write into d_qkv
        d_context = _heads(d_context, B, T, nh)  # (B, nh, T, hs)
        d_scores = gemm(d_context, v.transpose(0, 1, 3, 2), out=self._new(B, nh, T, T))  # d_dropped, for now
        gemm(c.dropped_probs.transpose(0, 1, 3, 2), d_context, out=dv)
        fused_softmax_dropout_backward(d_scores.reshape(B * nh, T, T), c.probs.reshape(B * nh, T, T),
                                       _reshaped(c.attention_keep, B * nh, T, T), att.dropout.p)
        gemm(d_scores, k, out=dq)
        dq *= dy.dtype.type(att.scaling)
        gemm(d_scores.transpose(0, 1, 3, 2), q, out=dk)  # q already carries the scaling
        d_x = self._qkv_backward(att, d_qkv, c)
        d_x += d_x_residual
        return d_x

    @staticmethod
    def _qkv_backward(att, d_qkv: np.ndarray, c: LayerCache) -> np.ndarray:
        """The backward of _qkv_forward: adds the three projections' gradients; returns d x."""
        projections = (att.query, att.key, att.value)
        C = c.x.shape[1]
        d_weights = gemm(d_qkv.T, c.x)  # (3C, C)
        d_biases = d_qkv.sum(axis=0)  # (3C,)
        for i, projection in enumerate(projections):
            projection.weight.accumulate_grad(d_weights[i * C:(i + 1) * C])
            projection.bias.accumulate_grad(d_biases[i * C:(i + 1) * C])
        w_qkv = c.w_qkv if c.w_qkv is not None else np.concatenate([p.weight.data for p in projections])
        return gemm(d_qkv, w_qkv)  # (N, C)

    def _embeddings_backward(self, dy: np.ndarray, d_word_embeddings: np.ndarray, cache: EmbeddingsCache) -> None:
        """Adds the three tables' and the LayerNorm's gradients (dy is overwritten); d_word_embeddings,
        the decoder's dE, receives the lookup's rows: the tied weight's gradient is their sum."""
        emb = self.bert.embeddings
        d_sum, _, d_gamma, d_beta, _ = fused_add_norm_backward(
            dy, cache.norm.xhat, cache.norm.rstd, emb.LayerNorm.weight.data, keep_dy=cache.norm.keep,
            p_dy=emb.dropout.p)  # (B*T, C)
        emb.LayerNorm.weight.accumulate_grad(d_gamma)
        emb.LayerNorm.bias.accumulate_grad(d_beta)
        # the sum fans the same gradient out to all three tables
        ids = cache.ids
        pad = emb.word_embeddings.padding_idx
        if pad is not None and np.any(ids == pad):  # the padding row gets no gradient from the lookup
            rows = ids != pad
            scatter_add_rows(d_word_embeddings, ids[rows], d_sum[rows])
        else:
            scatter_add_rows(d_word_embeddings, ids, d_sum)
        emb.word_embeddings.weight.accumulate_grad(d_word_embeddings)

        pos = emb.position_embeddings.weight
        B, T, C = self.sequence_shape
        d_positions = np.zeros_like(pos.data)
        d_sum.reshape(B, T, C).sum(axis=0, out=d_positions[:T])
        pos.accumulate_grad(d_positions)

        token_type = emb.token_type_embeddings.weight
        one_hot = (cache.types[None, :] == np.arange(token_type.shape[0])[:, None]).astype(d_sum.dtype)  # (K, B*T)
        token_type.accumulate_grad(gemm(one_hot, d_sum))
