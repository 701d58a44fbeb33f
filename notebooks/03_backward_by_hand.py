# %% [markdown]
# # 03 · Backward passes by hand, and how to check them
#
# `numpy_bert` has no autograd: every layer's `backward` is written out. This notebook
# derives the ones that matter (softmax, LayerNorm, GELU, attention, cross-entropy),
# prints the library's code next to each derivation, and checks it live against
# finite differences in float64. It ends with a check of a whole (tiny) BERT and two
# gradients that are zero for a reason.
#
# **The recipe.** For a function $y = f(x)$ and a fixed random $R$ with the shape of
# $y$, the scalar $L = \sum f(x) \odot R$ has $\partial L / \partial y = R$. So
# `backward(R)` must return $\partial L/\partial x$, which we compare with central
# differences
#
# $$\frac{\partial L}{\partial x_i} \approx \frac{L(x + h e_i) - L(x - h e_i)}{2h},$$
#
# whose error is about $h^2 |L'''|/6$ (truncation) plus $10^{-16}|L|/h$ (rounding): with
# $h = 10^{-5}$ in float64, a right formula shows a relative error near
# $10^{-9}$ or below, a wrong one near $10^{-1}$.

# %%
import inspect
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

from numpy_bert import BertConfig, BertForPreTraining, BertModel
from numpy_bert.erf import erf
from numpy_bert.exercises.core import numerical_gradient
from numpy_bert.layers import GELU, LayerNorm, Linear, cross_entropy, softmax, softmax_backward
from numpy_bert.modeling import BertSelfAttention
from numpy_bert.modeling_utils import additive_attention_mask

plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
np.set_printoptions(precision=4, linewidth=110)
rng = np.random.default_rng(0)


def relative_error(analytic, numeric, floor=0.0):
    # max |difference| / largest magnitude; floor: for gradients that are zero in exact arithmetic (section 7)
    return float(np.abs(analytic - numeric).max() / max(np.abs(analytic).max(), np.abs(numeric).max(), floor))


def report(name, analytic, numeric, floor=0.0):
    print(f"{name:<30} relative error {relative_error(analytic, numeric, floor):.1e}   "
          f"(max |gradient| {np.abs(analytic).max():.1e})")


print(inspect.getsource(numerical_gradient))  # the recipe above, as the exercises' checkers use it


# %% [markdown]
# ## 1 · Softmax
#
# $y_i = e^{x_i} / \sum_k e^{x_k}$. Differentiating the quotient,
#
# $$\frac{\partial y_i}{\partial x_j} = y_i(\delta_{ij} - y_j)
# \qquad\Longrightarrow\qquad
# dx_j = \sum_i dy_i\, y_i(\delta_{ij} - y_j) = y_j\Big(dy_j - \sum_i dy_i\, y_i\Big).$$
#
# The $T \times T$ Jacobian $\operatorname{diag}(y) - yy^\top$ is never built: the
# backward costs two elementwise products and a row sum.

# %%
print(inspect.getsource(softmax))
print(inspect.getsource(softmax_backward))

# %%
x = rng.standard_normal((3, 5))
R = rng.standard_normal((3, 5))
analytic = softmax_backward(softmax(x), R)
report("softmax: dx", analytic, numerical_gradient(lambda: (softmax(x) * R).sum(), x))

y = softmax(x[0])
jacobian = np.diag(y) - np.outer(y, y)  # the explicit Jacobian, for one row
print("explicit Jacobian, row 0: max |J^T R - softmax_backward| =", np.abs(jacobian.T @ R[0] - analytic[0]).max())

# %% [markdown]
# ## 2 · LayerNorm
#
# Over the $C$ entries of one row: $\mu = \frac1C\sum_k x_k$,
# $\sigma^2 = \frac1C\sum_k (x_k-\mu)^2$, $r = (\sigma^2+\varepsilon)^{-1/2}$,
# $\hat x_k = (x_k-\mu)\,r$, $y = \gamma\odot\hat x + \beta$.
#
# The parameters are easy: $d\beta = \sum_\text{rows} dy$, $d\gamma = \sum_\text{rows} dy\odot\hat x$.
# For the input, let $g = dy\odot\gamma$ (the gradient with respect to $\hat x$). Since
# $\partial\sigma^2/\partial x_j = 2(x_j-\mu)/C$ (the term through $\mu$ vanishes because
# $\sum_k (x_k - \mu) = 0$), $\partial r/\partial x_j = -r^3 (x_j-\mu)/C$, and
#
# $$\frac{\partial \hat x_k}{\partial x_j} = r\Big(\delta_{kj} - \frac1C\Big) - (x_k-\mu)\,r^3\,\frac{x_j-\mu}{C}
# = r\Big(\delta_{kj} - \frac1C - \frac{\hat x_k \hat x_j}{C}\Big),$$
#
# $$dx_j = \sum_k g_k \frac{\partial \hat x_k}{\partial x_j}
# = r\,\Big(g_j - \overline{g} - \hat x_j\,\overline{g\odot\hat x}\Big),$$
#
# with bars for means over the row: one term for the path through the mean, one for the
# path through the variance.

# %%
print(inspect.getsource(LayerNorm.forward))
print(inspect.getsource(LayerNorm.backward))

# %%
norm = LayerNorm(6, eps=1e-12).to(np.float64)
norm.weight.data[...] = rng.standard_normal(6)  # a non-trivial gamma and beta
norm.bias.data[...] = rng.standard_normal(6)
x = rng.standard_normal((4, 6)) * 3 + 1
R = rng.standard_normal((4, 6))


def loss():
    return (norm(x) * R).sum()


norm.zero_grad()
norm(x)
dx = norm.backward(R)
report("LayerNorm: dx", dx, numerical_gradient(loss, x))
report("LayerNorm: dgamma", norm.weight.grad, numerical_gradient(loss, norm.weight.data))
report("LayerNorm: dbeta", norm.bias.grad, numerical_gradient(loss, norm.bias.data))

# %% [markdown]
# ## 3 · GELU, exactly, with erf
#
# BERT's activation is $\operatorname{GELU}(x) = x\,\Phi(x)$ with the normal CDF
# $\Phi(x) = \tfrac12\big(1 + \operatorname{erf}(x/\sqrt2)\big)$, as transformers' `"gelu"`
# computes it (Google's original TensorFlow code used the tanh approximation, here
# `"gelu_new"`). Its derivative, with the normal density
# $\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}$ (as $\Phi' = \varphi$):
#
# $$\frac{d}{dx}\,x\,\Phi(x) = \Phi(x) + x\,\varphi(x).$$
#
# NumPy has no `erf`, so `numpy_bert.erf` implements W. J. Cody's rational Chebyshev
# approximation (Math. Comp. 1969) on three intervals: $|x| \le 0.46875$, up to 4, and
# beyond. It is the algorithm of netlib's SPECFUN (`CALERF`); R's `pnorm` is built on
# the same package's normal CDF (`ANORM`). `math.erf`, our reference below, comes from
# the C library, which is another algorithm: glibc, musl and the BSDs all use Sun's
# fdlibm approximations. Two independent methods that agree to a few ulp are a stronger
# check than one alone.

# %%
print(inspect.getsource(GELU.forward))
print(inspect.getsource(GELU.backward))

# %%
grid = np.linspace(-7, 7, 28001)
reference = np.array([math.erf(v) for v in grid])  # the C library's erf, double precision
ours = erf(grid)
ulps = np.abs(ours - reference) / np.spacing(np.abs(reference))  # error in units in the last place
print(f"Cody erf vs math.erf on [-7, 7]: max |error| = {np.abs(ours - reference).max():.1e}, "
      f"max relative error = {(np.abs(ours - reference) / np.abs(reference).clip(1e-300)).max():.1e}, "
      f"max {ulps.max():.0f} ulp")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
gelu = GELU("gelu")
xs = np.linspace(-4, 4, 401)
axes[0].plot(xs, gelu(xs), label="GELU(x) = x Φ(x)")
axes[0].plot(xs, gelu.backward(np.ones_like(xs)), label="d GELU / dx = Φ(x) + x φ(x)")
axes[0].plot(xs, np.maximum(xs, 0), ":", color="gray", label="ReLU, for comparison")
axes[0].set(title="GELU and its derivative", xlabel="x", ylabel="value")
axes[0].legend()
axes[1].plot(grid, ulps, ".", markersize=1)
for edge in (-4, -0.46875, 0.46875, 4):
    axes[1].axvline(edge, color="gray", linestyle="--", linewidth=0.8)
axes[1].set(title="Cody's erf against math.erf (dashed: its interval edges)", xlabel="x",
            ylabel="|error| in ulp of math.erf(x)")
fig.tight_layout()
plt.show()

# %%
x = np.concatenate([rng.standard_normal(30) * 3, [-8.0, -4.1, -0.4, 0.0, 0.4, 4.1, 8.0]])
R = rng.standard_normal(x.shape)
gelu(x)
report("GELU (exact): dx", gelu.backward(R), numerical_gradient(lambda: (gelu(x) * R).sum(), x))

# %% [markdown]
# ## 4 · Attention
#
# Per head, with $s = 1/\sqrt{h_s}$ and a constant additive mask $M$:
# $S = s\,QK^\top + M$, $P = \operatorname{softmax}_\text{rows}(S)$, $O = PV$. Going backward
# through each product ($C = AB \Rightarrow dA = dC\,B^\top,\ dB = A^\top dC$):
#
# $$dV = P^\top dO,\qquad dP = dO\,V^\top,\qquad dS = \operatorname{softmax\_backward}(P, dP),$$
# $$dQ = s\,dS\,K,\qquad dK = s\,dS^\top Q .$$
#
# Then each projection $Q = XW_q^\top + b_q$ is a `Linear`: $dW_q = dQ^\top X$,
# $db_q = \sum_\text{rows} dQ$, and $X$ feeds all three projections, so
# $dX = dQ\,W_q + dK\,W_k + dV\,W_v$. (With attention dropout,
# $\tilde P = P \odot \text{keep}/(1-p)$ and $dP = d\tilde P \odot \text{keep}/(1-p)$.)

# %%
print(inspect.getsource(BertSelfAttention.backward))
print(inspect.getsource(Linear.backward))

# %%
small = BertConfig(vocab_size=31, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
                   max_position_embeddings=16, type_vocab_size=3, hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0)
attention = BertSelfAttention(small).to(np.float64)
for _, p in attention.named_parameters():
    p.data[...] = rng.standard_normal(p.shape) * 0.5  # large enough that softmax is far from uniform
x = rng.standard_normal((2, 5, 12))
mask = additive_attention_mask(np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]), np.float64)  # row 0 padded
R = rng.standard_normal((2, 5, 12))


def loss():
    return (attention(x, mask) * R).sum()


attention.zero_grad()
attention(x, mask)
dx = attention.backward(R)
floor = 1e-3 * max(np.abs(p.grad).max() for _, p in attention.named_parameters())
report("attention: dx", dx, numerical_gradient(loss, x))
for name, p in attention.named_parameters():
    report(f"attention: d {name}", p.grad, numerical_gradient(loss, p.data), floor)

# %% [markdown]
# One line stands out: the key bias gradient is zero up to rounding ($10^{-16}$), in the
# backward *and* in the finite differences. Its relative error is therefore measured
# against a floor ($10^{-3}$ × the largest gradient of the layer) instead of its own
# (noise-sized) magnitude. Section 7 explains why it is zero.
#
# ## 5 · Cross-entropy
#
# With $p = \operatorname{softmax}(z)$ per row and $n$ counted rows (label ≠ −100),
# $\mathcal L = -\frac1n\sum_i \log p_{i, y_i}$. Because
# $\log p_{i,y} = z_{i,y} - \log\sum_k e^{z_{i,k}}$,
#
# $$\frac{\partial \mathcal L}{\partial z_{ik}} = \frac{p_{ik} - [k = y_i]}{n},$$
#
# and ignored rows get zero. The log-softmax is computed as
# $z - \max z - \log\sum e^{z - \max z}$, so nothing overflows.

# %%
print(inspect.getsource(cross_entropy))

# %%
logits = rng.standard_normal((6, 4)) * 2
labels = np.array([1, -100, 3, 0, -100, 2])  # rows 1 and 4 ignored
loss_value, d_logits = cross_entropy(logits, labels)
print(f"loss = {float(loss_value):.6f}")
numeric = numerical_gradient(lambda: float(cross_entropy(logits, labels)[0]), logits)
report("cross-entropy: dlogits", d_logits, numeric)
print("ignored rows get no gradient:", np.all(d_logits[[1, 4]] == 0))

# %% [markdown]
# ## 6 · A whole BERT
#
# Now everything at once: a tiny `BertForPreTraining` (2 layers, hidden size 12, 3 heads,
# vocabulary 31) in float64, with padding, two token types, ignored MLM labels, and the
# tied decoder (the word-embedding matrix used again as the MLM output layer, so its
# gradient is the sum of both uses). As in PyTorch, `model.backward()` (the loss's
# backward pass) *adds* every parameter's gradient into `.grad`, `model.zero_grad()` clears
# them, and `model.gradients()` returns them by name. A few random entries of each tensor
# are compared with finite differences. Here the
# fourth-order formula
# $\big(-L(\theta{+}2h) + 8L(\theta{+}h) - 8L(\theta{-}h) + L(\theta{-}2h)\big)/12h$ with
# $h = 10^{-4}$ is used, as in `tests/test_gradcheck.py`: its truncation error is
# $O(h^4)$, so tiny gradient entries deep in the model are still measured well.
# The weights are drawn with standard deviation 0.3 (BERT's 0.02 would leave GELU and
# softmax nearly linear, and a wrong derivative could hide). `tests/test_gradcheck.py`
# runs the same check and fails above a relative error of $10^{-6}$.

# %%
model = BertForPreTraining(small, seed=0, dtype=np.float64)
for _, p in model.named_parameters():
    p.data[...] = rng.standard_normal(p.shape) * 0.3
batch = dict(
    input_ids=np.array([[2, 5, 7, 9, 0, 0], [2, 4, 4, 3, 8, 1]]),  # id 0 is [PAD], only where padded
    attention_mask=np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]),
    token_type_ids=np.array([[0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]]),
    labels=np.array([[-100, 6, -100, -100, -100, -100], [-100, 6, -100, 30, 1, -100]]),
    next_sentence_label=np.array([1, 0]),
)


def model_loss():
    return float(model(**batch).loss)


def numeric_entries(loss, array, indices, h=1e-4):
    # fourth-order central differences at the given entries
    values = []
    for i in indices:
        old = array[i]
        f = {}
        for k in (-2, -1, 1, 2):
            array[i] = old + k * h
            f[k] = loss()
        array[i] = old
        values.append((-f[2] + 8 * f[1] - 8 * f[-1] + f[-2]) / (12 * h))
    return np.array(values)


print(f"loss = {model_loss():.6f}")
model.zero_grad()
model.backward()
grads = model.gradients()
scale = max(np.abs(g).max() for g in grads.values())
errors = {}
for name, p in model.named_parameters():
    flat = rng.choice(p.data.size, size=min(5, p.data.size), replace=False)
    indices = [np.unravel_index(f, p.shape) for f in flat]
    numeric = numeric_entries(model_loss, p.data, indices)
    analytic = np.array([grads[name][i] for i in indices])
    floor = 1e-3 * scale  # for entries that are zero in exact arithmetic (see section 7)
    errors[name] = float((np.abs(numeric - analytic) / np.maximum(np.maximum(np.abs(numeric), np.abs(analytic)),
                                                                   floor)).max())
width = max(map(len, errors))
for name, err in errors.items():
    print(f"{name:<{width}}  {grads[name].shape!s:<9} {err:8.1e}")
print(f"\n{len(errors)} tensors; worst relative error {max(errors.values()):.1e}")

# %% [markdown]
# ## 7 · Two gradients that are zero, and why
#
# **The attention key bias.** The key of token $u$ is $k_u = W_k x_u + b_k$, so the
# score of query $t$ against key $u$ is
#
# $$S_{tu} = s\,q_t\cdot W_k x_u + s\,q_t\cdot b_k .$$
#
# The second term is the same for every key $u$ in row $t$: it adds a constant to a
# whole row, and softmax does not see constants, $\operatorname{softmax}(z + c) =
# \operatorname{softmax}(z)$. So the loss does not depend on $b_k$ at all and its
# gradient is exactly 0. The backward agrees: $db_k = \sum_u dK_u = s\sum_t q_t\sum_u dS_{tu}$,
# and every row of $dS$ sums to zero, $\sum_j y_j(dy_j - \sum_i dy_i y_i) = 0$ because
# $\sum_j y_j = 1$. In floating point both sides show rounding noise instead of an exact
# 0, which is why `parity_tests.compare` measures this gradient's error against the
# largest magnitude of all the tensors compared, not against its own.

# %%
for part in ("query", "key", "value"):
    g = grads[f"bert.encoder.layer.0.attention.self.{part}.bias"]
    print(f"layer 0 {part:>5} bias: max |gradient| = {np.abs(g).max():.1e}")
row_sums = softmax_backward(softmax(rng.standard_normal((4, 7))), rng.standard_normal((4, 7))).sum(axis=-1)
print("row sums of softmax_backward(y, dy):", row_sums)

# %% [markdown]
# **The `[PAD]` row of the word embeddings.** `Embedding.backward` zeroes the gradient
# of row `padding_idx` (0, `[PAD]`), torch's `nn.Embedding(padding_idx=0)` convention,
# so the `[PAD]` vector stays at its initial zeros. At padded positions nothing is lost
# by this: a padded token is never attended to (probability exactly 0), its MLM label is
# −100, and the pooler only reads `[CLS]`, so the true derivative is 0 anyway (below,
# a loss on `BertModel`'s output that, like the MLM loss, ignores padded positions). Only if
# `[PAD]` appeared at a *real* position would the convention differ from the maths. In
# `BertForPreTraining` the same matrix is also the tied MLM decoder, where row 0 scores
# "[PAD]" as a candidate word, and that use does get a gradient.

# %%
encoder = BertModel(small, seed=0, dtype=np.float64)
for _, p in encoder.named_parameters():
    p.data[...] = rng.standard_normal(p.shape) * 0.3
R = rng.standard_normal((2, 6, 12)) * batch["attention_mask"][:, :, None]  # a loss that ignores padded outputs
table = encoder.embeddings.word_embeddings.weight
for ids, where in ((batch["input_ids"], "only at padded positions"),
                   (np.array([[2, 5, 0, 9, 0, 0], [2, 4, 4, 3, 8, 1]]), "also at a real position")):
    def encoder_loss(ids=ids):
        return float((encoder(ids, attention_mask=batch["attention_mask"]).last_hidden_state * R).sum())

    encoder.zero_grad()
    encoder(ids, attention_mask=batch["attention_mask"])
    encoder.backward(R)  # the gradient of sum(R * last_hidden_state), added into .grad
    analytic = table.grad[0]
    numeric = numeric_entries(encoder_loss, table.data, [(0, c) for c in range(4)])
    print(f"[PAD] {where:<24} backward: {analytic[:4]}   finite differences: {numeric}")

print("\nBertForPreTraining, [PAD] row (tied decoder):")
print("  backward:           ", grads["bert.embeddings.word_embeddings.weight"][0, :4])
print("  finite differences: ", numeric_entries(model_loss, model.bert.embeddings.word_embeddings.weight.data,
                                                  [(0, c) for c in range(4)]))

# %% [markdown]
# ## Exercises
#
# Each exercise below is checked: fill in the stub and run the cell. `ex.hint(name)` gives
# one hint per call; worked solutions are in
# [solutions/03_backward_by_hand.py](solutions/03_backward_by_hand.py).

# %% [markdown]
# ### Exercise · softmax's backward
#
# Write `softmax_backward(y, dy)` → `dx` for $y = \operatorname{softmax}(x)$ over the last axis, from
# $y$ alone (section 1's formula, without building the $K \times K$ Jacobian). The checker compares
# with central differences in float64.

# %%
from numpy_bert import exercises as ex


def softmax_backward(y, dy):
    raise NotImplementedError("your code here")


verdict = ex.check("softmax_backward", softmax_backward)  # prints the verdict

# %% [markdown]
# ### Exercise · LayerNorm's backward
#
# Write `layernorm_backward(dy, xhat, rstd, gamma)` → `(dx, dgamma, dbeta)` from what the forward
# pass saved (section 2). The checker compares all three with central differences in float64;
# forgetting the gradient that flows through the mean or through the variance shows at once.

# %%
def layernorm_backward(dy, xhat, rstd, gamma):
    raise NotImplementedError("your code here")


verdict = ex.check("layernorm_backward", layernorm_backward)  # prints the verdict

# %% [markdown]
# ### Exercise · attention's backward
#
# Write `attention_backward(d_out, q, k, v, probs, scaling)` → `(dq, dk, dv)` for
# $\text{out} = \operatorname{softmax}(q k^\top \cdot \text{scaling} + \text{mask})\, v$ (section 4), with
# your own softmax backward. The checker uses a padded batch and central differences in float64.

# %%
def attention_backward(d_out, q, k, v, probs, scaling):
    raise NotImplementedError("your code here")


verdict = ex.check("attention_backward", attention_backward)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Break a backward on purpose: subclass `LayerNorm` and drop the
#    $-\hat x\,\overline{g\odot\hat x}$ term. How large does the relative error become?
#    Which inputs make the bug invisible (hint: $\hat x$ of a constant row)?
# 2. Plot the error of the one-sided difference $(L(x+h)-L(x))/h$ and of the central
#    difference against $h$ from $10^{-1}$ to $10^{-12}$ on log axes. Where is each
#    best, and why (truncation against rounding)?
# 3. Repeat the softmax or LayerNorm check in float32. Which $h$ works best now, and how
#    small can the error get?
# 4. Derive the backward of the tanh approximation `GELU("gelu_new")` and check it
#    with `numerical_gradient`.
# 5. The query bias gradient is not zero. Why does the shift-invariance argument not
#    apply to it? Does the key bias gradient stay zero under a causal mask (notebook 02)?
