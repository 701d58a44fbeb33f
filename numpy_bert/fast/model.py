"""The same BERT, made fast: one fused forward and backward over the readable model's parameters.

:class:`FastBertForPreTraining` *is* a :class:`numpy_bert.BertForPreTraining`: same
modules, same parameter objects, same names, same ``state_dict``, ``from_pretrained``,
``save_pretrained``, ``train``/``eval`` and dropout mask sources. Only ``forward`` and
``backward`` are replaced, by flat functions that read the parameters straight out of
the module tree. ``parity_tests/test_fast_parity.py`` checks that both give the same
outputs and the same gradient for every parameter (float64: relative error <= 1e-10).

What is different, and why it is faster (``python -m benchmarks --profile`` shows the
hot spots of the readable step that motivated each item):

* **2-D activations, one GEMM per dense layer.** Activations are (B*T, C) matrices;
  ``np.matmul(..., out=)`` writes each product where it is needed.
* **Fused QKV.** Query, key and value weights are concatenated into one (3C, C) matrix
  (a copy of 3C^2 numbers per call, negligible): one GEMM forward, two backward. The
  attention scaling is applied to q once (B*T*C numbers) instead of to the scores
  (B*nh*T*T). Heads are strided views of the QKV matrix and the context is written
  straight into the (B*T, C) matrix the output projection reads: no split/merge copies.
* **Blocked, fused element-wise kernels.** Everything between two GEMMs - dropout,
  residual add, LayerNorm; GELU; softmax with its mask and dropout; their backwards;
  the bias gradients - runs over blocks of rows small enough to stay in the L2 cache
  (``CHUNK`` numbers), so each array crosses the memory bus once instead of once per
  NumPy operation. NumPy releases the GIL inside its loops, so the blocks are shared
  between ``get_num_threads()`` threads (the BLAS thread count by default), as the
  BLAS shares the GEMMs. The partial sums are added in block order, so the results do
  not depend on the number of threads. (On the 2-core machine of the committed
  benchmarks, 1 and 2 threads measured the same: the kernels are then bound by memory
  and by the BLAS threads that keep spinning between GEMMs; more cores should gain.)
* **GELU computes erf once.** The forward keeps Phi(x) = (1 + erf(x/sqrt 2)) / 2; the
  backward needs only exp(-x^2/2) more. For float32, erf is a branch-free rational
  approximation (XLA's ``ErfImpl32``: max abs error 4e-7, below float32 resolution of
  the GELU output); float64 keeps the exact Cody ``numpy_bert.erf.erf`` (so float64
  parity stays at rounding level).
* **Fused cross-entropy.** The MLM softmax, loss, gradient and the decoder bias
  gradient come out of one pass over one (N, V) buffer.
* **Cheaper embedding backward.** The tied word-embedding gradient starts from the MLM
  decoder's dE (a GEMM result) and the lookup's rows are added into it with one sort +
  ``np.add.reduceat`` (instead of ``np.zeros`` + ``np.add.at`` + a (V, C) sum); the
  position gradient is a sum over the batch; the token-type gradient a (K, N) GEMM.
* **Recycled buffers.** Arrays of 8 MiB and more come from a small pool and are reused
  from one step to the next when nothing else refers to them (``BufferPool``): fresh
  large arrays cost page faults, which were a visible share of the readable step.
* **Same dropout masks.** Masks are drawn from the model's mask source in the same
  order and shapes as the readable model (so ``GeneratorMasks`` and ``KeyedMasks``
  give identical masks) and applied as ``x *= 1/(1-p); x *= keep``.

Nothing here changes the maths: the readable ``modeling.py`` stays the reference.
"""

from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..config import IGNORE_INDEX
from ..erf import erf as erf_exact
from ..layers import cross_entropy
from ..modeling import BertForPreTraining
from ..modeling_utils import additive_attention_mask, check_labels
from ..outputs import BertForPreTrainingOutput

__all__ = ["BufferPool", "FastBertForPreTraining", "erf_float32", "get_num_threads", "set_num_threads"]

SQRT_HALF = 0.7071067811865476
INV_SQRT_TWO_PI = 0.3989422804014327
SQRT_TWO_OVER_PI = 0.7978845608028654
CHUNK = 1 << 15  # numbers per block of an element-wise kernel: 128 KiB of float32, stays in L2
REUSE_BYTES = 8 << 20  # arrays at least this large come from the model's buffer pool

# XLA's ErfImpl32 (xla/client/lib/math.cc): erf(x) = x P(x^2) / Q(x^2) on [-4, 4].
_ERF32_ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                -1.60960333262415e-02)
_ERF32_BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
               -7.37332916720468e-03, -1.42647390514189e-02)


# =============================================================================
# Threads for the element-wise kernels
# =============================================================================

_threads: int | None = None
_default_threads: int | None = None
_executor: ThreadPoolExecutor | None = None


def get_num_threads() -> int:
    """Threads for the element-wise kernels: set_num_threads(), else OMP/OPENBLAS_NUM_THREADS, else all CPUs."""
    global _default_threads
    if _threads is not None:
        return _threads
    if _default_threads is None:  # read once: the BLAS, too, reads these when it is loaded
        _default_threads = os.cpu_count() or 1
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            value = os.environ.get(name, "")
            if value.isdigit() and int(value) > 0:
                _default_threads = int(value)
                break
    return _default_threads


def set_num_threads(n: int | None) -> None:
    """Use n threads for the element-wise kernels (None: back to the default). The BLAS is not affected."""
    global _threads
    if n is not None and n < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    _threads = n


def parallel_blocks(kernel, n: int, block: int) -> list:
    """[kernel(lo, hi) for each block of ``block`` rows of range(n)], the blocks shared by the threads.

    Each thread takes a contiguous run of blocks; the results come back in block order.
    """
    global _executor
    block = max(1, block)
    blocks = [(lo, min(lo + block, n)) for lo in range(0, n, block)]
    workers = min(get_num_threads(), len(blocks))
    if workers <= 1:
        return [kernel(lo, hi) for lo, hi in blocks]
    if _executor is None or _executor._max_workers < workers - 1:
        _executor = ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="numpy_bert.fast")
    size = -(-len(blocks) // workers)
    runs = [blocks[i:i + size] for i in range(0, len(blocks), size)]
    futures = [_executor.submit(_run_blocks, kernel, run) for run in runs[1:]]
    results = _run_blocks(kernel, runs[0])
    for future in futures:
        results += future.result()
    return results


def _run_blocks(kernel, blocks: list[tuple[int, int]]) -> list:
    return [kernel(lo, hi) for lo, hi in blocks]


def _sum_partials(partials: list, dtype, size: int) -> np.ndarray:
    """Add per-block partial sums in block order (so the result does not depend on the threads)."""
    return np.sum(partials, axis=0, dtype=dtype) if partials else np.zeros(size, dtype=dtype)


# =============================================================================
# Element-wise kernels
# =============================================================================


def erf_float32(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """erf for float32 arrays, branch-free: clamp to [-4, 4], then x P(x^2) / Q(x^2).

    Max absolute error 4.2e-7 against math.erf (float32's spacing near 1 is 6e-8;
    erf(4) = 1 - 1.5e-8 rounds to 1 in float32). Meant for cache-sized blocks: the
    scratch arrays have x's size.
    """
    f = np.float32
    xc = np.clip(x, f(-4), f(4))
    x2 = xc * xc
    p = _horner(x2, _ERF32_ALPHA)
    q = _horner(x2, _ERF32_BETA)
    out = np.multiply(xc, p, out=out)
    out /= q
    return out


def _horner(x: np.ndarray, coefficients: tuple) -> np.ndarray:
    """c[0] x^(n-1) + c[1] x^(n-2) + ... + c[n-1], by Horner's rule, in x's dtype (at least two coefficients)."""
    f = x.dtype.type
    p = np.multiply(x, f(coefficients[0]))
    p += f(coefficients[1])
    for c in coefficients[2:]:
        p *= x
        p += f(c)
    return p


def _gelu_block(x: np.ndarray, y: np.ndarray, aux: np.ndarray, approximate: str) -> None:
    """y = GELU(x) for one block; aux = Phi(x) ("gelu") or t = tanh(...) ("gelu_new")."""
    dt = x.dtype.type
    if approximate == "gelu":
        np.multiply(x, dt(SQRT_HALF), out=aux)
        if x.dtype == np.float32:
            erf_float32(aux, out=aux)
        else:
            aux[...] = erf_exact(aux)
        aux += dt(1)
        aux *= dt(0.5)  # Phi(x)
        np.multiply(x, aux, out=y)
    else:  # the readable model's expression, term for term
        np.multiply(x, x, out=aux)
        aux *= x
        aux *= dt(0.044715)
        aux += x
        aux *= dt(SQRT_TWO_OVER_PI)
        np.tanh(aux, out=aux)
        np.add(aux, dt(1), out=y)
        y *= x
        y *= dt(0.5)


def _gelu_backward_block(d: np.ndarray, x: np.ndarray, aux: np.ndarray, approximate: str) -> None:
    """d *= GELU'(x), in place, for one block.

    "gelu":     GELU'(x) = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
    "gelu_new": GELU'(x) = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    """
    dt = x.dtype.type
    t = x * x
    if approximate == "gelu":
        t *= dt(-0.5)
        np.exp(t, out=t)
        t *= dt(INV_SQRT_TWO_PI)
        t *= x
        t += aux
    else:
        t *= dt(3 * 0.044715)
        t += dt(1)
        t *= dt(SQRT_TWO_OVER_PI)  # du/dx
        u = aux * aux
        np.subtract(dt(1), u, out=u)  # 1 - t^2
        t *= u
        t *= x
        t *= dt(0.5)
        np.add(aux, dt(1), out=u)
        u *= dt(0.5)
        t += u
    d *= t


def gelu_forward(x: np.ndarray, approximate: str = "gelu", out: np.ndarray | None = None,
                 aux: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GELU of a 2-D x by row blocks; returns (y, aux), aux being what the backward needs besides x."""
    y = np.empty_like(x) if out is None else out
    aux = np.empty_like(x) if aux is None else aux

    def kernel(lo, hi):
        _gelu_block(x[lo:hi], y[lo:hi], aux[lo:hi], approximate)

    parallel_blocks(kernel, x.shape[0], CHUNK // max(1, x.shape[1]))
    return y, aux


def gelu_backward(d: np.ndarray, x: np.ndarray, aux: np.ndarray, approximate: str = "gelu"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """d *= GELU'(x) in place (2-D); returns (d, d's column sums - the preceding dense layer's bias gradient)."""

    def kernel(lo, hi):
        _gelu_backward_block(d[lo:hi], x[lo:hi], aux[lo:hi], approximate)
        return d[lo:hi].sum(axis=0)

    partials = parallel_blocks(kernel, d.shape[0], CHUNK // max(1, d.shape[1]))
    return d, _sum_partials(partials, d.dtype, d.shape[1])


def _dropout_scale(x: np.ndarray, p: float):
    return x.dtype.type(1) / x.dtype.type(1 - p)


def _dropout(block: np.ndarray, keep: np.ndarray, scale, out: np.ndarray | None = None) -> np.ndarray:
    """out = block * scale * keep (in place when ``out`` is None): a dropout forward, or its backward."""
    out = np.multiply(block, scale, out=block if out is None else out)
    out *= keep
    return out


def norm_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, *,
                 keep_in: np.ndarray | None = None, p_in: float = 0.0, residual: np.ndarray | None = None,
                 keep_out: np.ndarray | None = None, p_out: float = 0.0, out: np.ndarray | None = None):
    """y = dropout_out(LayerNorm(dropout_in(x) + residual)) for a 2-D x, by row blocks.

    x is overwritten: it becomes xhat = (z - mean) / std, z being the LayerNorm input.
    Returns (y, xhat, rstd) with rstd (N, 1). The keep masks are (N, C) booleans or None.
    """
    N, C = x.shape
    dt = x.dtype.type
    y = np.empty_like(x) if out is None else out
    rstd = np.empty((N, 1), dtype=x.dtype)
    scale_in = _dropout_scale(x, p_in) if keep_in is not None else None
    scale_out = _dropout_scale(x, p_out) if keep_out is not None else None

    def kernel(lo, hi):
        z = x[lo:hi]
        if keep_in is not None:
            _dropout(z, keep_in[lo:hi], scale_in)
        if residual is not None:
            z += residual[lo:hi]
        mean = z.sum(axis=1, keepdims=True)
        mean /= dt(C)
        z -= mean
        r = rstd[lo:hi]
        np.einsum("ij,ij->i", z, z, out=r[:, 0])
        r /= dt(C)
        r += dt(eps)
        np.sqrt(r, out=r)
        np.divide(dt(1), r, out=r)
        z *= r
        yb = y[lo:hi]
        np.multiply(z, weight, out=yb)
        yb += bias
        if keep_out is not None:
            _dropout(yb, keep_out[lo:hi], scale_out)

    parallel_blocks(kernel, N, CHUNK // max(1, C))
    return y, x, rstd


def norm_backward(dy: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, weight: np.ndarray, *,
                  add: np.ndarray | None = None, keep_dy: np.ndarray | None = None, p_dy: float = 0.0,
                  keep_in: np.ndarray | None = None, p_in: float = 0.0):
    """The backward of :func:`norm_forward`, by row blocks.

        g     = (dy + add) * keep_dy / (1 - p_dy)     gradient at the LayerNorm output (dy is overwritten)
        d_sum = rstd (g gamma - mean(g gamma) - xhat mean(g gamma xhat))   at its input (the residual's)
        d_in  = d_sum * keep_in / (1 - p_in)          before the input dropout (d_sum itself without one)

    Returns (d_sum, d_in, dgamma, dbeta, column sums of d_in).
    """
    N, C = dy.shape
    dt = dy.dtype.type
    d_sum = np.empty_like(dy)
    d_in = d_sum if keep_in is None else np.empty_like(dy)
    scale_dy = _dropout_scale(dy, p_dy) if keep_dy is not None else None
    scale_in = _dropout_scale(dy, p_in) if keep_in is not None else None

    def kernel(lo, hi):
        g = dy[lo:hi]
        if add is not None:
            g += add[lo:hi]
        if keep_dy is not None:
            _dropout(g, keep_dy[lo:hi], scale_dy)
        xh = xhat[lo:hi]
        dgamma = np.einsum("ij,ij->j", g, xh)
        dbeta = g.sum(axis=0)
        t = d_sum[lo:hi]
        np.multiply(g, weight, out=t)
        mean = t.sum(axis=1, keepdims=True)
        mean /= dt(C)
        mean_xhat = np.einsum("ij,ij->i", t, xh)[:, None]
        mean_xhat /= dt(C)
        t -= mean
        t -= xh * mean_xhat
        t *= rstd[lo:hi]
        d = t
        if keep_in is not None:
            d = _dropout(t, keep_in[lo:hi], scale_in, out=d_in[lo:hi])
        return dgamma, dbeta, d.sum(axis=0)

    partials = parallel_blocks(kernel, N, CHUNK // max(1, C))
    dgamma, dbeta, dbias = (_sum_partials([p[i] for p in partials], dy.dtype, C) for i in range(3))
    return d_sum, d_in, dgamma, dbeta, dbias


def softmax_forward(scores: np.ndarray, mask: np.ndarray | None, keep: np.ndarray | None, p: float,
                    dropped: np.ndarray | None) -> None:
    """In place on (R, T, T) scores: add the (R, 1, T) mask, softmax over the last axis; and
    dropped = probs * keep / (1 - p) when keep is given. By blocks of whole (T, T) matrices."""
    R, T, _ = scores.shape
    scale = _dropout_scale(scores, p) if keep is not None else None

    def kernel(lo, hi):
        s = scores[lo:hi]
        if mask is not None:
            s += mask[lo:hi]
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        if keep is not None:
            _dropout(s, keep[lo:hi], scale, out=dropped[lo:hi])

    parallel_blocks(kernel, R, CHUNK // max(1, T * T))


def softmax_backward(d: np.ndarray, probs: np.ndarray, keep: np.ndarray | None, p: float) -> None:
    """In place on (R, T, T): d(dropped probs) -> d(scores): dropout backward, then
    d(scores) = probs (d - sum(d probs)) over the last axis."""
    R, T, _ = d.shape
    scale = _dropout_scale(d, p) if keep is not None else None

    def kernel(lo, hi):
        g = d[lo:hi]
        if keep is not None:
            _dropout(g, keep[lo:hi], scale)
        pb = probs[lo:hi]
        g -= (g * pb).sum(axis=-1, keepdims=True)
        g *= pb

    parallel_blocks(kernel, R, CHUNK // max(1, T * T))


def fused_cross_entropy(logits: np.ndarray, labels: np.ndarray, work: np.ndarray | None = None):
    """:func:`numpy_bert.layers.cross_entropy` in one pass over the rows: (loss, dlogits, dlogits' column sums).

    ``work``: optional scratch of logits' shape and dtype; it becomes dlogits.
    """
    counted = labels != IGNORE_INDEX
    rows = np.flatnonzero(counted)
    if rows.size != labels.size:  # some rows ignored (not the gathered training path): compact, then scatter
        loss, d_rows, _ = fused_cross_entropy(logits[rows], labels[rows])
        dlogits = np.zeros_like(logits)
        dlogits[rows] = d_rows
        return loss, dlogits, dlogits.sum(axis=0)
    M, V = logits.shape
    dt = logits.dtype.type
    n = dt(M)
    work = np.empty_like(logits) if work is None else work

    def kernel(lo, hi):
        w, block = work[lo:hi], logits[lo:hi]
        np.subtract(block, block.max(axis=1, keepdims=True), out=w)  # shifted logits
        picked = (np.arange(hi - lo), labels[lo:hi])
        target = w[picked]
        np.exp(w, out=w)
        sums = w.sum(axis=1, keepdims=True)
        part = (np.log(sums[:, 0]) - target).sum()
        sums *= n
        w /= sums  # softmax / n
        w[picked] -= dt(1) / n
        return part, w.sum(axis=0)

    with np.errstate(invalid="ignore", divide="ignore"):
        partials = parallel_blocks(kernel, M, (4 * CHUNK) // max(1, V))
        total = np.sum([p[0] for p in partials], dtype=logits.dtype)
        loss = np.asarray(total / n, dtype=logits.dtype)
    return loss, work, _sum_partials([p[1] for p in partials], logits.dtype, V)


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """np.matmul, under a name of its own so that profiles show the matrix products apart from the rest."""
    return np.matmul(a, b, out=out)


SMALL_ROWS = 32  # up to this many rows, linear() multiplies W x^T: the BLAS then streams W only once


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """x W^T + b for 2-D x, in one product and one in-place add.

    For a few rows (a short sentence, a few masked positions) the product is bound by
    reading W, and ``x @ W.T`` is slow: the BLAS repacks all of W.T for a handful of
    rows. ``(W @ x^T)^T`` streams W in its own layout (about twice as fast for 16 rows),
    and for a single row ``np.einsum`` reads W at memory speed (the 31 MB vocabulary
    matrix in 1.8 ms instead of 4 ms on one core; inside a fill-mask call it also beat
    the BLAS's two-thread ``W @ x[0]``, which is faster on its own).
    """
    rows = x.shape[0]
    if rows == 1:
        y = np.einsum("mi,oi->mo", x, weight, out=out)
    elif rows <= SMALL_ROWS:
        y = np.empty((rows, weight.shape[0]), dtype=x.dtype) if out is None else out
        np.copyto(y, gemm(weight, x.T).T)
    else:
        y = gemm(x, weight.T, out=out)
    y += bias
    return y


def keep_mask(dropout, shape: tuple[int, ...]) -> np.ndarray | None:
    """The readable Dropout module's mask for this call (None when dropout is off), drawn the same way."""
    if not dropout.training or dropout.p == 0:
        return None
    if dropout.mask_source is None:
        raise ValueError(f"dropout layer {dropout.name!r} has no mask source: a model sets one when it is "
                         "built; a layer used on its own needs layer.mask_source = GeneratorMasks(seed)")
    return dropout.mask_source.keep_mask(dropout.name, shape, dropout.p)


def scatter_add_rows(target: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> None:
    """target[ids[i]] += rows[i] for every i (repeated ids summed): one sort and np.add.reduceat."""
    if ids.size == 0:
        return
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    target[sorted_ids[starts]] += np.add.reduceat(rows[order], starts, axis=0)


class BufferPool:
    """Large arrays kept from one call to the next, handed out again only when nothing else holds them.

    Fresh multi-megabyte arrays cost page faults (the kernel zeroes every page on first
    touch; glibc returns allocations above 32 MiB to the system when they are freed),
    which showed up as a large share of system time in the readable step. An array in
    the pool is reused only when its reference count says that no caller, output or
    view still refers to it, so reuse never changes what a caller sees. The pool
    forgets other shapes whenever a new one is asked for, so sweeping over batch shapes
    does not hoard memory.
    """

    def __init__(self) -> None:
        self.arrays: dict[tuple, list[np.ndarray]] = {}

    def empty(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        if math.prod(shape) * dtype.itemsize < REUSE_BYTES:
            return np.empty(shape, dtype)
        key = (tuple(shape), dtype)
        arrays = self.arrays.get(key)
        if arrays is None:
            self._forget_free(but=key)
            arrays = self.arrays[key] = []
        for array in arrays:
            if sys.getrefcount(array) == 3:  # held only by: the list, this loop variable, the call
                return array
        array = np.empty(shape, dtype)
        arrays.append(array)
        return array

    def _forget_free(self, but: tuple) -> None:
        for key in list(self.arrays):
            if key != but:
                self.arrays[key] = [a for a in self.arrays[key] if sys.getrefcount(a) > 3]  # 3: list, loop, call
                if not self.arrays[key]:
                    del self.arrays[key]


# =============================================================================
# The model
# =============================================================================


def _flat(mask: np.ndarray | None, rows: int) -> np.ndarray | None:
    return None if mask is None else mask.reshape(rows, -1)


class FastBertForPreTraining(BertForPreTraining):
    """:class:`numpy_bert.BertForPreTraining` with a fused, blocked forward and backward.

    A drop-in replacement: construct, load and save it exactly like the readable class
    (``FastBertForPreTraining.from_pretrained(folder)`` reads any checkpoint the readable
    one reads). ``forward`` takes the same arguments and returns the same output;
    ``backward`` returns the same gradients by name.
    """

    def _new(self, *shape: int) -> np.ndarray:
        """An uninitialised array in the model's dtype (large ones recycled, see BufferPool)."""
        pool = self.__dict__.get("_buffer_pool")
        if pool is None:
            pool = self._buffer_pool = BufferPool()
        return pool.empty(shape, self.dtype)

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
        input_ids, attention_mask, token_type_ids = self.check_inputs(input_ids, attention_mask, token_type_ids)
        config = self.config
        B, T = input_ids.shape
        C = config.hidden_size
        if labels is not None:
            check_labels(labels, (B, T), config.vocab_size, "labels")
        if next_sentence_label is not None:
            check_labels(next_sentence_label, (B,), 2, "next_sentence_label")
        nh = config.num_attention_heads
        mask = None
        if attention_mask is not None and not np.all(attention_mask != 0):  # adding zeros changes nothing
            mask = np.repeat(additive_attention_mask(attention_mask, self.dtype)[:, 0], nh, axis=0)  # (B*nh, 1, T)
        cache = self._cache = {"shape": (B, T, C), "ids": input_ids.reshape(-1),
                               "types": token_type_ids.reshape(-1), "layers": []}

        x = self._embeddings_forward(input_ids, token_type_ids, cache)
        states, attentions = [x], []
        for layer in self.bert.encoder.layer:
            layer_cache = {}
            x = self._layer_forward(layer, x, mask, layer_cache)
            cache["layers"].append(layer_cache)
            states.append(x)
            attentions.append(layer_cache["dropped"].reshape(B, nh, T, T))

        pooled = self._pooler_forward(x, cache)
        self.selected = None
        hidden = x  # (B*T, C)
        if labelled_positions_only and labels is not None:
            self.selected = np.flatnonzero(labels.reshape(-1) != IGNORE_INDEX)
            hidden = x[self.selected]
        cache["selected"] = self.selected
        logits = self._mlm_head_forward(hidden, cache)
        seq = self.cls.seq_relationship
        nsp_logits = linear(pooled, seq.weight.data, seq.bias.data)

        mlm_loss = nsp_loss = loss = None
        if labels is not None:
            flat = labels.reshape(-1) if self.selected is None else labels.reshape(-1)[self.selected]
            mlm_loss, d_mlm, cache["decoder_bias_grad"] = fused_cross_entropy(logits, flat, self._new(*logits.shape))
        if next_sentence_label is not None:
            nsp_loss, d_nsp = cross_entropy(nsp_logits, next_sentence_label)
        if mlm_loss is not None and nsp_loss is not None:
            loss = mlm_loss + nsp_loss
            self.loss_grads = (d_mlm, d_nsp)
        if self.selected is None:
            logits = logits.reshape(B, T, config.vocab_size)
        return BertForPreTrainingOutput(
            loss=loss, prediction_logits=logits, seq_relationship_logits=nsp_logits,
            mlm_loss=mlm_loss, nsp_loss=nsp_loss,
            hidden_states=tuple(s.reshape(B, T, C) for s in states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    def _embeddings_forward(self, input_ids, token_type_ids, cache) -> np.ndarray:
        emb = self.bert.embeddings
        B, T, C = cache["shape"]
        x = emb.word_embeddings.weight.data.take(input_ids.reshape(-1), axis=0)  # (B*T, C)
        x += emb.token_type_embeddings.weight.data.take(token_type_ids.reshape(-1), axis=0)
        x.reshape(B, T, C)[...] += emb.position_embeddings.weight.data[:T]
        keep = cache["emb_keep"] = _flat(keep_mask(emb.dropout, (B, T, C)), B * T)
        y, cache["emb_xhat"], cache["emb_rstd"] = norm_forward(
            x, emb.LayerNorm.weight.data, emb.LayerNorm.bias.data, emb.LayerNorm.eps,
            keep_out=keep, p_out=emb.dropout.p)
        return y

    @staticmethod
    def _heads(qkv: np.ndarray, B: int, T: int, nh: int, hs: int):
        """Strided (B, nh, T, hs) views of q, k and v inside the (B*T, 3C) matrix: no copies."""
        C = nh * hs
        return [qkv[:, i * C:(i + 1) * C].reshape(B, T, nh, hs).transpose(0, 2, 1, 3) for i in range(3)]

    def _layer_forward(self, layer, x: np.ndarray, mask: np.ndarray | None, c: dict) -> np.ndarray:
        B, T, C = self._cache["shape"]
        N = B * T
        att = layer.attention.self
        nh, hs = att.num_attention_heads, att.attention_head_size

        # Fused QKV projection (for a few rows, three small products: no weight copy); q is then
        # multiplied by the attention scaling.
        projections = (att.query, att.key, att.value)
        if N <= SMALL_ROWS:
            qkv = np.empty((N, 3 * C), dtype=x.dtype)
            for i, projection in enumerate(projections):
                qkv[:, i * C:(i + 1) * C] = linear(x, projection.weight.data, projection.bias.data)
        else:
            c["w_qkv"] = np.concatenate([p.weight.data for p in projections])
            qkv = linear(x, c["w_qkv"], np.concatenate([p.bias.data for p in projections]))  # (B*T, 3C)
        qkv[:, :C] *= x.dtype.type(att.scaling)
        q, k, v = self._heads(qkv, B, T, nh, hs)

        probs = gemm(q, k.transpose(0, 1, 3, 2), out=self._new(B, nh, T, T))  # scores, then probs
        keep = keep_mask(att.dropout, (B, nh, T, T))
        dropped = probs if keep is None else self._new(B, nh, T, T)
        softmax_forward(probs.reshape(B * nh, T, T), mask, None if keep is None else keep.reshape(B * nh, T, T),
                        att.dropout.p, dropped.reshape(B * nh, T, T))
        context = np.empty((N, C), dtype=x.dtype)
        gemm(dropped, v, out=context.reshape(B, T, nh, hs).transpose(0, 2, 1, 3))

        # Output projection, dropout, residual, LayerNorm - one blocked kernel after the GEMM.
        so = layer.attention.output
        a = linear(context, so.dense.weight.data, so.dense.bias.data)
        keep_so = _flat(keep_mask(so.dropout, (B, T, C)), N)
        attended, xhat1, rstd1 = norm_forward(a, so.LayerNorm.weight.data, so.LayerNorm.bias.data,
                                              so.LayerNorm.eps, keep_in=keep_so, p_in=so.dropout.p, residual=x)

        # Feed-forward: dense, GELU, dense, then dropout + residual + LayerNorm.
        inter = layer.intermediate.dense
        I = inter.weight.shape[0]
        pre = linear(attended, inter.weight.data, inter.bias.data, out=self._new(N, I))
        act = layer.intermediate.intermediate_act_fn.approximate
        h, aux = gelu_forward(pre, act, out=self._new(N, I), aux=self._new(N, I))
        out = layer.output
        o = linear(h, out.dense.weight.data, out.dense.bias.data)
        keep_out = _flat(keep_mask(out.dropout, (B, T, C)), N)
        y, xhat2, rstd2 = norm_forward(o, out.LayerNorm.weight.data, out.LayerNorm.bias.data, out.LayerNorm.eps,
                                       keep_in=keep_out, p_in=out.dropout.p, residual=attended)
        c.update(x=x, qkv=qkv, probs=probs, keep=keep, dropped=dropped, context=context,
                 keep_so=keep_so, xhat1=xhat1, rstd1=rstd1, attended=attended, pre=pre, aux=aux, h=h,
                 keep_out=keep_out, xhat2=xhat2, rstd2=rstd2)
        return y

    def _pooler_forward(self, x: np.ndarray, cache: dict) -> np.ndarray:
        B, T, C = cache["shape"]
        dense = self.bert.pooler.dense
        cls_rows = x.reshape(B, T, C)[:, 0]
        pooled = np.tanh(linear(cls_rows, dense.weight.data, dense.bias.data))
        cache.update(cls_rows=cls_rows, pooled=pooled)
        return pooled

    def _mlm_head_forward(self, hidden: np.ndarray, cache: dict) -> np.ndarray:
        head = self.cls.predictions
        tr = head.transform
        pre = linear(hidden, tr.dense.weight.data, tr.dense.bias.data)
        g, aux = gelu_forward(pre, tr.transform_act_fn.approximate)
        ht, xhat, rstd = norm_forward(g, tr.LayerNorm.weight.data, tr.LayerNorm.bias.data, tr.LayerNorm.eps)
        cache.update(head_hidden=hidden, head_pre=pre, head_aux=aux, head_xhat=xhat, head_rstd=rstd, head_out=ht)
        logits = self._new(len(ht), head.bias.shape[0])
        return linear(ht, head.decoder.weight.data, head.decoder.bias.data, out=logits)  # (N, V)

    # ---- backward --------------------------------------------------------------------

    def backward(self) -> dict[str, np.ndarray]:
        """d(loss)/d(parameter) for every parameter, by name, for the last forward call."""
        if self.loss_grads is None:
            raise ValueError("backward() needs a forward call with labels and next_sentence_label (a loss)")
        self.zero_grad()
        d_logits, d_nsp = self.loss_grads
        cache = self._cache
        B, T, C = cache["shape"]

        # MLM head: the decoder's dE is where the word-embedding gradient starts.
        head = self.cls.predictions
        word_grad = gemm(d_logits.T, cache["head_out"])  # (V, C)
        head.bias.grad = cache["decoder_bias_grad"]
        d_ht = gemm(d_logits, head.decoder.weight.data)
        tr = head.transform
        d_g, _, tr.LayerNorm.weight.grad, tr.LayerNorm.bias.grad, _ = norm_backward(
            d_ht, cache["head_xhat"], cache["head_rstd"], tr.LayerNorm.weight.data)
        d_pre, tr.dense.bias.grad = gelu_backward(d_g, cache["head_pre"], cache["head_aux"],
                                                  tr.transform_act_fn.approximate)
        tr.dense.weight.grad = gemm(d_pre.T, cache["head_hidden"])
        d_hidden = gemm(d_pre, tr.dense.weight.data)
        if cache["selected"] is None:
            d_x = d_hidden
        else:
            d_x = np.zeros((B * T, C), dtype=d_hidden.dtype)
            d_x[cache["selected"]] = d_hidden

        # NSP head and pooler (only [CLS] rows feed the pooler).
        seq = self.cls.seq_relationship
        pooled = cache["pooled"]
        seq.weight.grad = gemm(d_nsp.T, pooled)
        seq.bias.grad = d_nsp.sum(axis=0)
        d_pooled = gemm(d_nsp, seq.weight.data)
        d_pooled *= 1 - pooled * pooled
        pool = self.bert.pooler.dense
        pool.weight.grad = gemm(d_pooled.T, cache["cls_rows"])
        pool.bias.grad = d_pooled.sum(axis=0)
        d_x.reshape(B, T, C)[:, 0] += gemm(d_pooled, pool.weight.data)

        for layer, layer_cache in zip(reversed(list(self.bert.encoder.layer)), reversed(cache["layers"])):
            d_x = self._layer_backward(layer, d_x, layer_cache)
        self._embeddings_backward(d_x, word_grad)
        return self.gradients()

    def _layer_backward(self, layer, dy: np.ndarray, c: dict) -> np.ndarray:
        B, T, C = self._cache["shape"]
        att = layer.attention.self
        nh, hs = att.num_attention_heads, att.attention_head_size

        # Feed-forward block: LayerNorm and dropout backward in one kernel, then the two dense layers.
        out = layer.output
        d_sum2, d_o, out.LayerNorm.weight.grad, out.LayerNorm.bias.grad, out.dense.bias.grad = norm_backward(
            dy, c["xhat2"], c["rstd2"], out.LayerNorm.weight.data, keep_in=c["keep_out"], p_in=out.dropout.p)
        out.dense.weight.grad = gemm(d_o.T, c["h"])
        d_h = gemm(d_o, out.dense.weight.data, out=self._new(*c["h"].shape))
        inter = layer.intermediate.dense
        d_pre, inter.bias.grad = gelu_backward(d_h, c["pre"], c["aux"],
                                               layer.intermediate.intermediate_act_fn.approximate)
        inter.weight.grad = gemm(d_pre.T, c["attended"])
        d_attended = gemm(d_pre, inter.weight.data)

        # Attention output block (the residual's gradient d_sum2 is added inside the kernel).
        so = layer.attention.output
        d_sum1, d_a, so.LayerNorm.weight.grad, so.LayerNorm.bias.grad, so.dense.bias.grad = norm_backward(
            d_attended, c["xhat1"], c["rstd1"], so.LayerNorm.weight.data, add=d_sum2,
            keep_in=c["keep_so"], p_in=so.dropout.p)
        so.dense.weight.grad = gemm(d_a.T, c["context"])
        d_context = gemm(d_a, so.dense.weight.data).reshape(B, T, nh, hs).transpose(0, 2, 1, 3)

        # Attention itself, into one (B*T, 3C) gradient of the fused projection.
        q, k, v = self._heads(c["qkv"], B, T, nh, hs)
        d_qkv = np.empty((B * T, 3 * C), dtype=dy.dtype)
        dq, dk, dv = self._heads(d_qkv, B, T, nh, hs)
        d_scores = gemm(d_context, v.transpose(0, 1, 3, 2), out=self._new(B, nh, T, T))  # d(dropped)
        gemm(c["dropped"].transpose(0, 1, 3, 2), d_context, out=dv)
        keep = c["keep"]
        softmax_backward(d_scores.reshape(B * nh, T, T), c["probs"].reshape(B * nh, T, T),
                         None if keep is None else keep.reshape(B * nh, T, T), att.dropout.p)
        gemm(d_scores, k, out=dq)
        dq *= dy.dtype.type(att.scaling)
        gemm(d_scores.transpose(0, 1, 3, 2), q, out=dk)  # q already carries the scaling
        w_grad = gemm(d_qkv.T, c["x"])  # (3C, C)
        b_grad = d_qkv.sum(axis=0)
        for i, projection in enumerate((att.query, att.key, att.value)):
            projection.weight.grad = w_grad[i * C:(i + 1) * C]
            projection.bias.grad = b_grad[i * C:(i + 1) * C]
        w_qkv = c.get("w_qkv")
        if w_qkv is None:
            w_qkv = np.concatenate([p.weight.data for p in (att.query, att.key, att.value)])
        d_x = gemm(d_qkv, w_qkv)
        d_x += d_sum1
        return d_x

    def _embeddings_backward(self, dy: np.ndarray, word_grad: np.ndarray) -> None:
        emb = self.bert.embeddings
        cache = self._cache
        B, T, C = cache["shape"]
        dx, _, emb.LayerNorm.weight.grad, emb.LayerNorm.bias.grad, _ = norm_backward(
            dy, cache["emb_xhat"], cache["emb_rstd"], emb.LayerNorm.weight.data,
            keep_dy=cache["emb_keep"], p_dy=emb.dropout.p)

        ids = cache["ids"]
        pad = emb.word_embeddings.padding_idx
        if pad is not None and np.any(ids == pad):  # the padding row gets no gradient from the lookup
            rows = ids != pad
            scatter_add_rows(word_grad, ids[rows], dx[rows])
        else:
            scatter_add_rows(word_grad, ids, dx)
        emb.word_embeddings.weight.grad = word_grad  # tied: decoder dE + lookup scatter

        pos = emb.position_embeddings.weight
        pos.grad = np.zeros_like(pos.data)
        dx.reshape(B, T, C).sum(axis=0, out=pos.grad[:T])

        token_type = emb.token_type_embeddings.weight
        one_hot = (cache["types"][None, :] == np.arange(token_type.shape[0])[:, None]).astype(dx.dtype)  # (K, N)
        token_type.grad = gemm(one_hot, dx)
