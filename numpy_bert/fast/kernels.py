"""The fast path's kernels: blocked, fused element-wise passes between the GEMMs, and the GEMMs.

Everything between two matrix products (dropout, residual add, LayerNorm; GELU; softmax
with its mask and dropout; their backwards; the bias gradients) runs over blocks of rows
of about ``CHUNK`` numbers, small enough to stay in the L2 cache, so that each array
crosses the memory bus once per kernel instead of once per NumPy operation. The blocks
are shared between threads (:func:`numpy_bert.fast.threads.parallel_blocks`).

The maths is the readable layers' (``numpy_bert/layers.py``), step for step; the names
here say ``fused_`` so they are not mistaken for those layers. A kernel works in place
where it can: which argument it overwrites is in its docstring.
"""

from __future__ import annotations

import numpy as np

from ..config import IGNORE_INDEX
from ..erf import erf as erf_exact
from ..layers import INV_SQRT_TWO_PI, SQRT_HALF, SQRT_TWO_OVER_PI
from .threads import parallel_blocks, sum_partials

__all__ = [
    "CHUNK", "SMALL_ROWS", "erf_float32", "fused_add_norm", "fused_add_norm_backward",
    "fused_cross_entropy", "fused_gelu", "fused_gelu_backward", "fused_softmax_dropout",
    "fused_softmax_dropout_backward", "gemm", "matmul_bias", "scatter_add_rows",
]

CHUNK = 1 << 15  # numbers per block of an element-wise kernel: 128 KiB of float32, stays in L2
SMALL_ROWS = 32  # up to this many rows, matmul_bias() multiplies W x^T: the BLAS then streams W only once

# XLA's ErfImpl32 (xla/client/lib/math.cc): erf(x) = x P(x^2) / Q(x^2) on [-4, 4].
_ERF32_ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                -1.60960333262415e-02)
_ERF32_BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
               -7.37332916720468e-03, -1.42647390514189e-02)


def _rows_per_block(row_size: int, numbers: int = CHUNK) -> int:
    """How many rows of ``row_size`` numbers make one block of about ``numbers``."""
    return numbers // max(1, row_size)


# ---- matrix products --------------------------------------------------------------------


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """np.matmul, under a name of its own so that profiles show the matrix products apart from the rest."""
    return np.matmul(a, b, out=out)


def matmul_bias(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """x W^T + b for a 2-D x (N, in), W (out, in): one product, then the bias added in place.

    The product is chosen by the number of rows. For a few rows (a short sentence, a
    few masked positions) it is bound by reading W, and ``x @ W.T`` makes the BLAS
    repack all of W.T for a handful of rows; ``(W @ x^T)^T`` streams W in its own
    layout; for a single row that is the BLAS's matrix-vector product (benchmarks/README.md,
    "The fast path's measurements").
    """
    rows = x.shape[0]
    if rows == 1:
        y = np.empty((1, weight.shape[0]), dtype=x.dtype) if out is None else out
        gemm(weight, x[0], out=y[0])  # (out, in) @ (in,) -> (out,)
    elif rows <= SMALL_ROWS:
        y = np.empty((rows, weight.shape[0]), dtype=x.dtype) if out is None else out
        np.copyto(y, gemm(weight, x.T).T)
    else:
        y = gemm(x, weight.T, out=out)
    y += bias
    return y


# ---- erf and GELU -----------------------------------------------------------------------


def erf_float32(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """erf for float32 arrays, branch-free: clamp to [-4, 4], then x P(x^2) / Q(x^2).

    Max absolute error 4.2e-7 against math.erf (float32's spacing near 1 is 6e-8;
    erf(4) = 1 - 1.5e-8 rounds to 1 in float32): below the resolution of a float32
    GELU output, and with no branches it is a handful of vectorised passes, where the
    exact Cody erf (``numpy_bert.erf``) selects among three ranges. Meant for
    cache-sized blocks: the scratch arrays have x's size.
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
            aux[...] = erf_exact(aux)  # float64 keeps the exact erf: parity at rounding level
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
    """d *= GELU'(x), in place, for one block (aux from :func:`_gelu_block`)."""
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


def fused_gelu(x: np.ndarray, approximate: str = "gelu", out: np.ndarray | None = None,
               aux: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """y = GELU(x) for a 2-D x, by row blocks; returns (y, aux), aux being what the backward needs besides x.

        "gelu":      y = x Phi(x),        aux = Phi(x) = (1 + erf(x / sqrt 2)) / 2
        "gelu_new":  y = x/2 (1 + t),     aux = t = tanh(sqrt(2/pi) (x + 0.044715 x^3))

    Fused so that erf (or tanh) is computed once and kept: the backward then needs only
    exp(-x^2/2) more. float32 uses :func:`erf_float32`, float64 the exact erf.
    """
    y = np.empty_like(x) if out is None else out
    aux = np.empty_like(x) if aux is None else aux

    def kernel(lo, hi):
        _gelu_block(x[lo:hi], y[lo:hi], aux[lo:hi], approximate)

    parallel_blocks(kernel, x.shape[0], _rows_per_block(x.shape[1]))
    return y, aux


def fused_gelu_backward(d: np.ndarray, x: np.ndarray, aux: np.ndarray, approximate: str = "gelu"
                        ) -> tuple[np.ndarray, np.ndarray]:
    """d *= GELU'(x) in place (2-D); returns (d, d's column sums: the preceding dense layer's bias gradient).

        "gelu":      GELU'(x) = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
        "gelu_new":  GELU'(x) = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)

    Fused with the bias gradient: the column sums are taken while the block is in cache.
    """

    def kernel(lo, hi):
        _gelu_backward_block(d[lo:hi], x[lo:hi], aux[lo:hi], approximate)
        return d[lo:hi].sum(axis=0)

    partials = parallel_blocks(kernel, d.shape[0], _rows_per_block(d.shape[1]))
    return d, sum_partials(partials, d.dtype, d.shape[1])


# ---- dropout, residual and LayerNorm ----------------------------------------------------


def _dropout_scale(x: np.ndarray, p: float):
    return x.dtype.type(1) / x.dtype.type(1 - p)


def _dropout(block: np.ndarray, keep: np.ndarray, scale, out: np.ndarray | None = None) -> np.ndarray:
    """out = block * scale * keep (in place when ``out`` is None): a dropout forward, or its backward."""
    out = np.multiply(block, scale, out=block if out is None else out)
    out *= keep
    return out


def fused_add_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, *,
                   keep_in: np.ndarray | None = None, p_in: float = 0.0, residual: np.ndarray | None = None,
                   keep_out: np.ndarray | None = None, p_out: float = 0.0, out: np.ndarray | None = None):
    """y = dropout_out(LayerNorm(dropout_in(x) + residual)) for a 2-D x (N, C), by row blocks:

        z    = x * keep_in / (1 - p_in) + residual
        xhat = (z - mean(z)) * rstd,   rstd = 1 / sqrt(var(z) + eps)      (per row)
        y    = (xhat gamma + beta) * keep_out / (1 - p_out)

    x is overwritten: it becomes xhat. Returns (y, xhat, rstd) with rstd (N, 1). The keep
    masks are (N, C) booleans or None (no dropout there), the residual (N, C) or None.
    Fused because each step alone would read and write all N*C numbers: an encoder
    block's "add & norm" is one pass here.
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

    parallel_blocks(kernel, N, _rows_per_block(C))
    return y, x, rstd


def fused_add_norm_backward(dy: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, weight: np.ndarray, *,
                            add: np.ndarray | None = None, keep_dy: np.ndarray | None = None, p_dy: float = 0.0,
                            keep_in: np.ndarray | None = None, p_in: float = 0.0):
    """The backward of :func:`fused_add_norm`, by row blocks:

        g     = (dy + add) * keep_dy / (1 - p_dy)     gradient at the LayerNorm output (dy is overwritten)
        d_sum = rstd (g gamma - mean(g gamma) - xhat mean(g gamma xhat))   at its input (the residual's)
        d_in  = d_sum * keep_in / (1 - p_in)          before the input dropout (d_sum itself without one)

    ``add`` is a second gradient arriving at the output (a residual branch's), so the sum
    is never a separate pass. Returns (d_sum, d_in, dgamma, dbeta, column sums of d_in):
    the LayerNorm's parameter gradients and the bias gradient of the dense layer before
    it come out of the same pass.
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

    partials = parallel_blocks(kernel, N, _rows_per_block(C))
    dgamma, dbeta, dbias = (sum_partials([p[i] for p in partials], dy.dtype, C) for i in range(3))
    return d_sum, d_in, dgamma, dbeta, dbias


# ---- attention softmax ------------------------------------------------------------------


def fused_softmax_dropout(scores: np.ndarray, mask: np.ndarray | None, keep: np.ndarray | None, p: float,
                          dropped: np.ndarray | None) -> None:
    """In place on (R, T, T) scores, by blocks of whole (T, T) matrices:

        probs   = softmax(scores + mask)        over the last axis; scores becomes probs
        dropped = probs * keep / (1 - p)        when keep is given (written into ``dropped``)

    The mask is (R, 1, T) or None. Fused because the (R, T, T) scores are the largest
    activations of a layer: mask, softmax and dropout in one pass read them once.
    """
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

    parallel_blocks(kernel, R, _rows_per_block(T * T))


def fused_softmax_dropout_backward(d: np.ndarray, probs: np.ndarray, keep: np.ndarray | None, p: float) -> None:
    """In place on (R, T, T), d(dropped) -> d(scores), the backward of :func:`fused_softmax_dropout`:

        d_probs  = d * keep / (1 - p)                               (d itself without dropout)
        d_scores = probs (d_probs - sum(d_probs probs))              over the last axis

    The mask is a constant: it has no gradient. One pass over the (R, T, T) arrays.
    """
    R, T, _ = d.shape
    scale = _dropout_scale(d, p) if keep is not None else None

    def kernel(lo, hi):
        g = d[lo:hi]
        if keep is not None:
            _dropout(g, keep[lo:hi], scale)
        pb = probs[lo:hi]
        g -= (g * pb).sum(axis=-1, keepdims=True)
        g *= pb

    parallel_blocks(kernel, R, _rows_per_block(T * T))


# ---- the MLM loss and the embedding gradient --------------------------------------------


def fused_cross_entropy(logits: np.ndarray, labels: np.ndarray, work: np.ndarray | None = None):
    """:func:`numpy_bert.layers.cross_entropy` in one pass over the rows: (loss, dlogits, dlogits' column sums).

    logits (M, V), labels (M,); n counted rows (label != -100), p = softmax(logits):

        loss      = 1/n sum_i (log sum_j exp(logits[i, j]) - logits[i, label_i])
        dlogits   = (p - onehot(label)) / n          (zero rows where the label is ignored)

    The column sums are the MLM decoder's bias gradient. Fused because the (M, V) logits
    are the largest array of a step: softmax, loss, gradient and bias gradient come out
    of one pass over one buffer. ``work``: optional scratch of logits' shape and dtype;
    it becomes dlogits.
    """
    rows = np.flatnonzero(labels != IGNORE_INDEX)
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

    with np.errstate(invalid="ignore", divide="ignore"):  # n = 0 gives nan (0/0), as in the readable loss
        # a vocabulary row alone is about CHUNK numbers: a few per block amortise each block's calls
        partials = parallel_blocks(kernel, M, _rows_per_block(V, 4 * CHUNK))
        total = np.sum([p[0] for p in partials], dtype=logits.dtype)
        loss = np.asarray(total / n, dtype=logits.dtype)
    return loss, work, sum_partials([p[1] for p in partials], logits.dtype, V)


def scatter_add_rows(target: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> None:
    """target[ids[i]] += rows[i] for every i, repeated ids summed: an embedding lookup's backward.

    One stable sort and ``np.add.reduceat`` instead of ``np.add.at`` (which handles one
    row at a time), adding straight into ``target``, which already holds the tied decoder's
    dE: no (V, C) array of zeros and no (V, C) sum.
    """
    if ids.size == 0:
        return
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    target[sorted_ids[starts]] += np.add.reduceat(rows[order], starts, axis=0)
