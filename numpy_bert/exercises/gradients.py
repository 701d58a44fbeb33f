"""Backward passes by hand (notebooks 02, 03, 06 and 10), each checked in float64 against central
finite differences of the forward pass and, where the library has it, its own backward."""

from __future__ import annotations

import numpy as np

from ..config import IGNORE_INDEX, BertConfig
from ..layers import Embedding, LayerNorm, cross_entropy, softmax, softmax_backward
from ..modeling import BertLayer
from ..modeling_utils import additive_attention_mask
from .core import FD_TOLERANCE, Failure, as_array, call, compare, exercise, numerical_gradient, unpack

FD = "central finite differences"


def _loss(dy: np.ndarray, y: np.ndarray) -> float:
    """The scalar whose gradient a backward pass computes, for a given upstream gradient dy: sum(dy * y)."""
    return float((dy * y).sum())


# ---- 02: the embedding lookup ---------------------------------------------------------------------


@exercise(
    "embedding_backward", "02_embeddings_and_attention",
    '''
def embedding_backward(ids, d_out, vocab_size):
    """dL/dW of the lookup out = W[ids], given dL/d(out): a scatter-add.

    ids:   (B, T) int         the token ids that were looked up (an id may occur many times)
    d_out: (B, T, C) float64  the gradient of the loss with respect to out
    Returns dW (vocab_size, C) float64.
    """''',
    hints=(
        "Position (b, t) of the output is a copy of row ids[b, t] of W, so its gradient d_out[b, t] goes to that "
        "row and to no other. dW has W's shape (vocab_size, C), with zeros for ids that never occur.",
        "An id that occurs at several positions collects the sum of their gradients. `dW[ids] += d_out` looks "
        "right but is not: with repeated ids NumPy writes each row once, so all but one of the repeats are lost.",
        "Flatten to rows, ids (N,) and d_out (N, C), and add each row of d_out into dW at its id: np.add.at "
        "(an unbuffered add) counts every repeat, and so does a plain loop over the N rows.",
    ),
)
def check_embedding_backward(function):
    rng = np.random.default_rng(2)
    ids = np.array([[3, 1, 3, 0], [1, 1, 5, 3]])  # 3 and 1 three times each; 2, 4 and 6 never
    vocab_size, C = 7, 3
    d_out = rng.standard_normal((*ids.shape, C))
    dW = as_array(call(function, ids.copy(), d_out.copy(), vocab_size), "dW", (vocab_size, C))
    table = Embedding(vocab_size, C).to(np.float64)
    table.weight.data = rng.standard_normal((vocab_size, C))
    numeric = numerical_gradient(lambda: _loss(d_out, table.forward(ids)), table.weight.data)
    table.backward(d_out)
    overwritten = np.zeros((vocab_size, C))
    overwritten[ids] += d_out
    if np.allclose(dW, overwritten):
        raise Failure("dW counts each repeated id once", note="dW[ids] += d_out keeps only one of the repeated "
                      "rows; ids 1 and 3 occur three times here, and each occurrence adds its gradient")
    error = compare({"dW": dW}, {FD: {"dW": numeric}, "Embedding.backward": {"dW": table.weight.grad}},
                    FD_TOLERANCE)
    return ("dW matches finite differences and numpy_bert.layers.Embedding.backward, repeated ids included",
            error, FD_TOLERANCE)


# ---- 03: softmax, LayerNorm, attention --------------------------------------------------------------


@exercise(
    "softmax_backward", "03_backward_by_hand",
    '''
def softmax_backward(y, dy):
    """dL/dx for y = softmax(x) over the last axis, given y and dL/dy.

    y, dy: (..., K) float64 (any leading axes). Returns dx (..., K).
    """''',
    hints=(
        "Every output y_i of a row depends on every input x_j of that row: dy_i/dx_j = y_i (δ_ij − y_j). "
        "Work out one row; with axis=-1 the leading axes come for free.",
        "Apply the transposed Jacobian to dy: dx_j = Σ_i dy_i y_i (δ_ij − y_j) = y_j dy_j − y_j Σ_i dy_i y_i. "
        "The second term, the path through the normalising sum, is the one that gets forgotten.",
        "dx is y times (dy minus one number per row), that number being the row's sum of dy * y; "
        "sum with keepdims=True so that it broadcasts back over the row.",
    ),
)
def check_softmax_backward(function):
    rng = np.random.default_rng(3)
    error = max(_softmax_case(function, rng, shape) for shape in [(3, 5), (2, 2, 4)])
    return ("dx matches finite differences and numpy_bert.layers.softmax_backward, for 2-d and 3-d inputs",
            error, FD_TOLERANCE)


def _softmax_case(function, rng: np.random.Generator, shape: tuple[int, ...]) -> float:
    x = 2 * rng.standard_normal(shape)
    y, dy = softmax(x), rng.standard_normal(shape)
    dx = as_array(call(function, y.copy(), dy.copy()), "dx", shape)
    numeric = numerical_gradient(lambda: _loss(dy, softmax(x)), x)
    return compare({"dx": dx}, {FD: {"dx": numeric}, "layers.softmax_backward": {"dx": softmax_backward(y, dy)}},
                   FD_TOLERANCE)


@exercise(
    "layernorm_backward", "03_backward_by_hand",
    '''
def layernorm_backward(dy, xhat, rstd, gamma):
    """dL/dx, dL/dgamma, dL/dbeta of LayerNorm over the last axis: y = xhat * gamma + beta.

    dy:    (..., C) float64  dL/dy; the leading axes are (N,) or (B, T)
    xhat:  (..., C)          (x - mean) * rstd, saved by the forward pass
    rstd:  (..., 1)          1 / sqrt(var + eps) of each row, saved by the forward pass
    gamma: (C,)              the scale (LayerNorm.weight)
    Returns (dx (..., C), dgamma (C,), dbeta (C,)).
    """''',
    hints=(
        "Start with the parameters. y = xhat * gamma + beta, so dbeta is the sum of dy and dgamma the sum of "
        "dy * xhat, over every axis but the last (all rows, whatever the leading shape: reshape to (-1, C)).",
        "For dx, let g = dy * gamma, the gradient with respect to xhat. xhat = (x − mean) * rstd depends on x "
        "three ways: directly, through the mean (d mean / dx_i = 1/C) and through the variance inside rstd "
        "(d rstd / dx_i = −rstd² xhat_i / C).",
        "The three terms together: dx = rstd * (g − mean(g) − xhat * mean(g * xhat)), both means over the last "
        "axis with keepdims=True. Drop the last term (the variance's) and the check fails.",
    ),
)
def check_layernorm_backward(function):
    rng = np.random.default_rng(5)
    error = max(_layernorm_case(function, rng, shape) for shape in [(4, 6), (2, 3, 5)])
    return ("dx, dgamma, dbeta match finite differences and numpy_bert.layers.LayerNorm.backward, "
            "for (N, C) and (B, T, C) inputs"), error, FD_TOLERANCE


def _layernorm_case(function, rng: np.random.Generator, shape: tuple[int, ...]) -> float:
    C = shape[-1]
    x = 2 * rng.standard_normal(shape) + 0.5
    norm = LayerNorm(C, eps=1e-12).to(np.float64)
    norm.weight.data, norm.bias.data = 1 + 0.5 * rng.standard_normal(C), rng.standard_normal(C)
    dy = rng.standard_normal(shape)
    norm.forward(x)
    xhat, rstd, gamma = norm.xhat.copy(), norm.rstd.copy(), norm.weight.data.copy()
    result = unpack(call(function, dy.copy(), xhat, rstd, gamma), ("dx", "dgamma", "dbeta"))
    got = {"dx": as_array(result[0], "dx", shape), "dgamma": as_array(result[1], "dgamma", (C,)),
           "dbeta": as_array(result[2], "dbeta", (C,))}
    library = {"dx": norm.backward(dy), "dgamma": norm.weight.grad, "dbeta": norm.bias.grad}

    def loss():
        return _loss(dy, norm.forward(x))

    numeric = {"dx": numerical_gradient(loss, x), "dgamma": numerical_gradient(loss, norm.weight.data),
               "dbeta": numerical_gradient(loss, norm.bias.data)}
    return compare(got, {FD: numeric, "LayerNorm.backward": library}, FD_TOLERANCE)


def padding_masks(B: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """A (B, T) attention mask whose last sequence ends in two padded tokens, and the additive
    (B, 1, 1, T) mask that BertModel makes of it (0, or float64's most negative number)."""
    attention_mask = np.ones((B, T), dtype=np.int64)
    attention_mask[-1, -2:] = 0
    return attention_mask, additive_attention_mask(attention_mask, np.float64)


@exercise(
    "attention_backward", "03_backward_by_hand",
    '''
def attention_backward(d_out, q, k, v, probs, scaling):
    """dL/dq, dL/dk, dL/dv of out = softmax(q k^T * scaling + mask) v, given dL/d(out).

    d_out, q, k, v: (B, nh, T, hs) float64
    probs:   (B, nh, T, T)  the softmax, saved by the forward pass (the mask is already in it)
    scaling: float          1 / sqrt(hs)
    Returns (dq, dk, dv), each (B, nh, T, hs).
    """''',
    hints=(
        "Go backwards through three steps: out = probs @ v, probs = softmax(scores), scores = q @ kᵀ * scaling "
        "(+ mask). The mask is a constant, with no gradient, and it is already inside probs. "
        "x.swapaxes(-1, -2) transposes the last two axes.",
        "For a product C = A @ B: dA = dC @ Bᵀ and dB = Aᵀ @ dC. So dv = probsᵀ @ d_out and "
        "d_probs = d_out @ vᵀ; your softmax_backward turns d_probs into d_scores.",
        "Multiply d_scores by scaling (the forward multiplied the scores by it); then dq = d_scores @ k and "
        "dk = d_scoresᵀ @ q, since scores_ij = q_i · k_j and key j collects over all the queries i.",
    ),
)
def check_attention_backward(function):
    rng = np.random.default_rng(7)
    shape = (2, 2, 4, 3)
    q, k, v = (rng.standard_normal(shape) for _ in range(3))
    _, mask = padding_masks(shape[0], shape[2])
    scaling = shape[-1] ** -0.5
    probs = softmax(q @ k.swapaxes(-1, -2) * scaling + mask)
    d_out = rng.standard_normal(shape)
    result = unpack(call(function, d_out.copy(), q.copy(), k.copy(), v.copy(), probs.copy(), scaling),
                    ("dq", "dk", "dv"))
    got = {name: as_array(value, name, shape) for name, value in zip(("dq", "dk", "dv"), result)}

    def loss():
        return _loss(d_out, softmax(q @ k.swapaxes(-1, -2) * scaling + mask) @ v)

    numeric = {"dq": numerical_gradient(loss, q), "dk": numerical_gradient(loss, k), "dv": numerical_gradient(loss, v)}
    error = compare(got, {FD: numeric}, FD_TOLERANCE)
    return "dq, dk, dv match finite differences, with two padded keys in the mask", error, FD_TOLERANCE


# ---- 06: the loss ---------------------------------------------------------------------------------


@exercise(
    "cross_entropy_backward", "06_numpy_vs_pytorch",
    '''
def cross_entropy_backward(logits, labels):
    """dL/d(logits) of L = the mean cross-entropy over the rows whose label is not -100.

    logits: (N, V) float64
    labels: (N,) int, a class in [0, V), or -100 for a row that is ignored (no loss, zero gradient)
    Returns dlogits (N, V).
    """''',
    hints=(
        "For one row with label y, the loss is −log softmax(logits)[y] and its gradient softmax(logits) − "
        "onehot(y). Compute the softmax stably: subtract the row's max first.",
        "L is a mean over the n rows that count (label != -100), not over all N rows: divide by n. Ignored "
        "rows get zero gradient; careful, -100 used as an index silently picks the last column.",
        "Softmax of every row; subtract 1 at (row, label) in the counted rows only; set the ignored rows to "
        "zero; divide everything by the number of counted rows.",
    ),
)
def check_cross_entropy_backward(function):
    rng = np.random.default_rng(11)
    logits = 2 * rng.standard_normal((6, 5))
    labels = np.array([2, IGNORE_INDEX, 0, 4, IGNORE_INDEX, 1])
    got = as_array(call(function, logits.copy(), labels.copy()), "dlogits", logits.shape)
    _, library = cross_entropy(logits, labels)
    numeric = numerical_gradient(lambda: float(cross_entropy(logits, labels)[0]), logits)
    error = compare({"dlogits": got}, {FD: {"dlogits": numeric}, "layers.cross_entropy": {"dlogits": library}},
                    FD_TOLERANCE)
    return ("dlogits matches finite differences and numpy_bert.layers.cross_entropy, two ignored rows included",
            error, FD_TOLERANCE)


# ---- 10: one encoder layer --------------------------------------------------------------------------


def small_layer(rng: np.random.Generator) -> BertLayer:
    """A float64 BertLayer (C = 8, 2 heads, I = 16, no dropout) with weights large enough that
    every path matters."""
    config = BertConfig(vocab_size=16, hidden_size=8, num_attention_heads=2, intermediate_size=16,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    layer = BertLayer(config).to(np.float64)
    for name, param in layer.named_parameters():
        param.data = (1.0 if "LayerNorm.weight" in name else 0.0) + 0.3 * rng.standard_normal(param.shape)
    return layer


@exercise(
    "bert_layer_backward", "10_bert_on_one_page",
    '''
def bert_layer_backward(layer, dy):
    """dL/dx of one numpy_bert.modeling.BertLayer, called after layer.forward(x, mask).

    Call the backward methods of the layer's parts; they also add each parameter's gradient
    into its .grad:
        layer.output.backward(d)       -> (d_intermediate_output, d_attention_output)
        layer.intermediate.backward(d) -> d_attention_output
        layer.attention.backward(d)    -> dx
    dy: (B, T, C) float64, dL/d(the layer's output). Returns dx (B, T, C).
    """''',
    hints=(
        "Write the forward down first: a = attention(x); h = intermediate(a); y = output(h, a), where output "
        "computes LayerNorm(dense(h) + a). Then run it in reverse: output first, attention last.",
        "a is used twice: by intermediate and, through the residual connection, by output. A value used twice "
        "receives the sum of the gradients of both uses.",
        "output.backward(dy) gives two gradients, one for h and one for a (the residual). Send the first "
        "through intermediate.backward, add the second to what comes out, and hand the sum to "
        "attention.backward (it adds its own residual inside). Call each backward once: they add into .grad.",
    ),
)
def check_bert_layer_backward(function):
    rng = np.random.default_rng(13)
    layer = small_layer(rng)
    x = rng.standard_normal((2, 4, 8))
    attention_mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    mask = additive_attention_mask(attention_mask, np.float64)
    dy = rng.standard_normal(x.shape)
    layer.forward(x, mask)
    got = {"dx": as_array(call(function, layer, dy.copy()), "dx", x.shape)}
    for name, param in layer.named_parameters():
        if param.grad is None:
            raise Failure(f"parameter {name!r} got no gradient",
                          note="call the backward of every part (output, intermediate, attention) once")
        got[name] = as_array(param.grad, f"the gradient of {name}", param.shape)

    numeric = numerical_gradient(lambda: _loss(dy, layer.forward(x, mask)), x)
    layer.zero_grad()
    layer.forward(x, mask)
    library = {"dx": layer.backward(dy), **layer.gradients()}
    error = compare(got, {FD: {"dx": numeric}, "BertLayer.backward": library}, FD_TOLERANCE)
    return (f"dx matches finite differences, and dx and all {len(library) - 1} parameter gradients match "
            "numpy_bert's BertLayer.backward"), error, FD_TOLERANCE
