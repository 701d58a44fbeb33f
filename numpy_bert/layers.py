"""BERT's building blocks in NumPy: each forward next to its hand-written backward.

Conventions (as in llm.c and torch.nn):
  * ``forward`` keeps what ``backward`` needs on ``self``; ``backward(dy)`` takes
    dL/d(output) and returns dL/d(input), adding parameter gradients into
    ``Parameter.grad``.
  * Shapes in comments: B batch, T sequence length, C channels (hidden size),
    V vocabulary, nh heads, hs head size.
  * Parameters are created in float32; a model casts the whole tree once
    (``Module.to``), and arithmetic stays in the parameters' dtype.
"""

from __future__ import annotations

import zlib

import numpy as np

from .config import IGNORE_INDEX
from .erf import erf
from .nn import Module, Parameter

SQRT_HALF = 0.7071067811865476  # 1/sqrt(2)
SQRT_TWO_OVER_PI = 0.7978845608028654  # sqrt(2/pi)
INV_SQRT_TWO_PI = 0.3989422804014327  # 1/sqrt(2 pi)


class Linear(Module):
    """y = x W^T + b, with W of shape (out, in) as in torch.nn.Linear.

    Backward, with x and dy flattened to rows (N, in) and (N, out):
        dx = dy W        dW = dy^T x        db = sum_rows dy
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = Parameter(np.zeros((out_features, in_features), dtype=np.float32))
        self.bias = Parameter(np.zeros(out_features, dtype=np.float32))

    @classmethod
    def tied(cls, weight: Parameter, bias: Parameter) -> Linear:
        """A Linear whose parameters are shared with other modules (the MLM decoder)."""
        layer = cls.__new__(cls)
        Module.__init__(layer)
        layer.weight, layer.bias = weight, bias
        return layer

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x  # (..., in)
        y = x.reshape(-1, x.shape[-1]) @ self.weight.data.T  # (N, out): one product over all rows (a 3-D x
        y += self.bias.data  # would make NumPy multiply sequence by sequence); the bias added in place
        return y.reshape(*x.shape[:-1], y.shape[-1])  # (..., out)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x_rows = self.x.reshape(-1, self.x.shape[-1])  # (N, in)
        dy_rows = dy.reshape(-1, dy.shape[-1])  # (N, out)
        self.weight.accumulate_grad(dy_rows.T @ x_rows)  # (out, in)
        self.bias.accumulate_grad(dy_rows.sum(axis=0))  # (out,)
        return (dy_rows @ self.weight.data).reshape(self.x.shape)  # (..., in)


class Embedding(Module):
    """y[..., :] = W[ids[...], :], a table lookup.

    Backward: dW[v] = sum of dy over the positions where ids == v (a scatter-add).
    Like torch.nn.Embedding(padding_idx=p), the row of the padding token gets no
    gradient, so [PAD]'s vector stays as initialised (zeros).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.padding_idx = padding_idx
        self.weight = Parameter(np.zeros((num_embeddings, embedding_dim), dtype=np.float32))

    def forward(self, ids: np.ndarray) -> np.ndarray:
        self.ids = ids  # (B, T) integers
        return self.weight.data[ids]  # (B, T, C)

    def backward(self, dy: np.ndarray) -> None:
        """Adds dW; returns None: the input ids are integers, with no gradient."""
        grad = np.zeros_like(self.weight.data)  # (V, C)
        np.add.at(grad, self.ids.ravel(), dy.reshape(-1, dy.shape[-1]))
        if self.padding_idx is not None:
            grad[self.padding_idx] = 0
        self.weight.accumulate_grad(grad)


class LayerNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * gamma + beta, over the last axis (C values).

    With xhat = (x - mean) * rstd and g = dy * gamma, the backward is
        dgamma = sum dy * xhat      dbeta = sum dy
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    (the two means are the gradient flowing through the mean and the variance;
    derivation as in llm.c's doc/layernorm).
    """

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(np.ones(hidden_size, dtype=np.float32))
        self.bias = Parameter(np.zeros(hidden_size, dtype=np.float32))

    def forward(self, x: np.ndarray) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
        centered = x - mean
        var = (centered * centered).mean(axis=-1, keepdims=True)  # biased, as torch
        self.rstd = 1 / np.sqrt(var + self.eps)  # (..., 1)
        self.xhat = centered * self.rstd  # (..., C)
        return self.xhat * self.weight.data + self.bias.data

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dy_rows = dy.reshape(-1, dy.shape[-1])  # (N, C)
        self.weight.accumulate_grad((dy_rows * self.xhat.reshape(dy_rows.shape)).sum(axis=0))  # (C,)
        self.bias.accumulate_grad(dy_rows.sum(axis=0))  # (C,)
        g = dy * self.weight.data  # dL/dxhat, (..., C)
        g_mean = g.mean(axis=-1, keepdims=True)  # through the mean, (..., 1)
        g_xhat_mean = (g * self.xhat).mean(axis=-1, keepdims=True)  # through the variance, (..., 1)
        return self.rstd * (g - g_mean - self.xhat * g_xhat_mean)  # (..., C)


class GELU(Module):
    """Gaussian Error Linear Unit, in transformers' two flavours.

    "gelu" (exact):  y = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2
        dy/dx = Phi(x) + x * phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    "gelu_new" (tanh approximation, GPT-2's):
        y = x/2 * (1 + t),  t = tanh(u),  u = sqrt(2/pi) * (x + 0.044715 x^3)
        dy/dx = (1 + t)/2 + x/2 * (1 - t^2) * sqrt(2/pi) * (1 + 3 * 0.044715 x^2)
    """

    def __init__(self, approximate: str = "gelu"):
        super().__init__()
        if approximate not in ("gelu", "gelu_new"):
            raise ValueError(f"unknown GELU variant {approximate!r}; use 'gelu' or 'gelu_new'")
        self.approximate = approximate

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        if self.approximate == "gelu":
            self.cdf = 0.5 * (1 + erf(x * SQRT_HALF))  # kept: the backward needs Phi(x) too
            return x * self.cdf
        self.t = np.tanh(SQRT_TWO_OVER_PI * (x + 0.044715 * x**3))
        return 0.5 * x * (1 + self.t)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x = self.x
        if self.approximate == "gelu":
            pdf = INV_SQRT_TWO_PI * np.exp(-0.5 * x * x)
            return dy * (self.cdf + x * pdf)
        t = self.t
        du_dx = SQRT_TWO_OVER_PI * (1 + 3 * 0.044715 * x * x)
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du_dx)


class Tanh(Module):
    """y = tanh(x);  dy/dx = 1 - y^2."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy * (1 - self.y * self.y)


def softmax(x: np.ndarray) -> np.ndarray:
    """exp(x) / sum exp(x) over the last axis; the max is subtracted first so exp never overflows."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)

def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p over the last axis, in float64 (the max is subtracted first, so exp never overflows)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """With y = softmax(x), the Jacobian is diag(y) - y y^T, so dx = y * (dy - sum(dy * y))."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy over rows whose label is not IGNORE_INDEX, and its gradient.

    logits (N, K), labels (N,). With p = softmax(logits) and n the number of counted rows:
        loss = -1/n sum_i log p[i, label_i]      dlogits[i] = (p[i] - onehot(label_i)) / n
    and zero rows where the label is ignored. Like torch, n = 0 gives nan (0/0).
    Returns (loss as a 0-d array in the logits' dtype, dlogits).
    """
    rows = np.flatnonzero(labels != IGNORE_INDEX)
    every_row = rows.size == len(logits)  # the MLM head on the masked rows only: nothing to gather or scatter
    counted = logits if every_row else logits[rows]  # (n, K)
    n = logits.dtype.type(rows.size)
    targets = labels[rows]
    shifted = counted - counted.max(axis=-1, keepdims=True)  # (n, K): the max subtracted, so exp never overflows
    shifted_at_label = shifted[np.arange(rows.size), targets]  # (n,)
    probs = np.exp(shifted, out=shifted)  # in place: each pass over (n, K) costs, and shifted is done
    sums = probs.sum(axis=-1, keepdims=True)  # (n, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = (np.log(sums[:, 0]) - shifted_at_label).sum() / n  # -log p[label] = log sum exp - shifted[label]
        d_counted = np.divide(probs, sums * n, out=probs)  # p / n, in place
        d_counted[np.arange(rows.size), targets] -= 1 / n
    if every_row:
        return loss, d_counted
    dlogits = np.zeros_like(logits)
    dlogits[rows] = d_counted
    return loss, dlogits


# ---- dropout -------------------------------------------------------------------------


class GeneratorMasks:
    """Dropout masks drawn in call order from one seeded NumPy generator (the default)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def keep_mask(self, name: str, shape: tuple[int, ...], p: float) -> np.ndarray:
        # float32 uniforms: half the random bits of float64 for the same Bernoulli(1 - p), up to 2^-24
        return self.rng.random(shape, dtype=np.float32) >= p


class KeyedMasks:
    """Dropout masks that depend only on (seed, module name, how many times that module ran).

    Both backends can draw the very same masks from this, in any order, which is how
    parity tests compare numpy_bert and torch_bert with dropout switched on.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self.calls: dict[str, int] = {}

    def keep_mask(self, name: str, shape: tuple[int, ...], p: float) -> np.ndarray:
        count = self.calls.get(name, 0)
        self.calls[name] = count + 1
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode()), count])
        return rng.random(shape) >= p


class Dropout(Module):
    """Inverted dropout: y = x * keep / (1 - p) in training, y = x in evaluation.

    keep ~ Bernoulli(1 - p) comes from ``mask_source`` (set by the model), so the
    expected value of y equals x. Backward: dx = dy * keep / (1 - p).
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.name = ""  # the module's dotted name, set by the model: masks are keyed by it
        self.mask_source: GeneratorMasks | KeyedMasks | None = None

    def keep_mask(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """This call's keep mask (None when dropout is off: in evaluation, or p = 0). The fast path
        draws its masks here too, so both models see the same ones."""
        if not self.training or self.p == 0:
            return None
        if self.mask_source is None:
            raise ValueError(f"dropout layer {self.name!r} has no mask source: a model sets one when it is "
                             "built; a layer used on its own needs layer.mask_source = GeneratorMasks(seed)")
        return self.mask_source.keep_mask(self.name, shape, self.p)

    def forward(self, x: np.ndarray) -> np.ndarray:
        keep = self.keep_mask(x.shape)
        if keep is None:
            self.scale = None
            return x
        self.scale = keep.astype(x.dtype) / x.dtype.type(1 - self.p)
        return x * self.scale

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy if self.scale is None else dy * self.scale
