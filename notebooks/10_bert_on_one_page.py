# %% [markdown]
# # 10 · BERT on one page: one encoder layer, forward and backward
#
# A BERT is embeddings, then the same block stacked $N$ times, then a head. This notebook
# follows one block, `numpy_bert.modeling.BertLayer`, all the way: every step of the
# forward pass with its shape, then the backward pass in reverse, step by step, with the
# two places where gradients *add* (the residual connections). At the end you write
# `BertLayer.backward` yourself and a checker tells you whether it is right.
#
# Read it after 03 (backward passes by hand), which derives the backward of each piece
# used here: softmax, LayerNorm, GELU, attention.
#
# The block is *post-LN*, as in the original BERT and in transformers' `BertLayer`:
#
# $$h = \operatorname{LN}\big(x + \operatorname{Attention}(x)\,W_O + b_O\big), \qquad
# y = \operatorname{LN}\big(h + \operatorname{GELU}(h W_1 + b_1)\,W_2 + b_2\big).$$

# %%
import inspect
import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

from numpy_bert import BertConfig, BertModel
from numpy_bert.exercises.core import numerical_gradient
from numpy_bert.modeling_utils import additive_attention_mask

plt.rcParams.update({"figure.dpi": 80, "font.size": 9})
np.set_printoptions(precision=4, linewidth=110)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1 · The block, drawn
#
# Data flows up. Blue boxes hold parameters; the two ⊕ are the residual sums. In the
# backward pass the arrows reverse, and at each ⊕ the incoming gradient is *copied* to
# both inputs; where one tensor fed two branches (x feeds the attention and the skip
# connection; h feeds the feed-forward and the skip), the two gradients coming back are
# *added*.

# %%
STEPS = [  # (label, shape, has parameters) from the input upwards
    ("x: the layer's input", "(B, T, C)", False),
    ("Q, K, V = x W_Q, x W_K, x W_V, split into heads", "(B, nh, T, hs)", True),
    ("softmax(Q Kᵀ / √hs + mask) V, heads merged", "(B, T, C)", False),
    ("output projection: · W_O + b_O", "(B, T, C)", True),
    ("⊕ x, then LayerNorm  →  h", "(B, T, C)", True),
    ("h W₁ + b₁, then GELU", "(B, T, 4C)", True),
    ("· W₂ + b₂", "(B, T, C)", True),
    ("⊕ h, then LayerNorm  →  y", "(B, T, C)", True),
]


def draw_block(ax):
    ax.set(xlim=(0, 10), ylim=(-0.6, len(STEPS) - 0.3))
    ax.axis("off")
    for i, (label, shape, has_params) in enumerate(STEPS):
        face = "#cfe2f3" if has_params else "#eeeeee"
        ax.add_patch(FancyBboxPatch((2.2, i - 0.3), 5.4, 0.6, boxstyle="round,pad=0.05", fc=face, ec="black"))
        ax.text(4.9, i, label, ha="center", va="center")
        ax.text(7.8, i, shape, ha="left", va="center", family="monospace", fontsize=8)
        if i:
            ax.add_patch(FancyArrowPatch((4.9, i - 1 + 0.33), (4.9, i - 0.33), arrowstyle="-|>", mutation_scale=10))
    for start, end in ((0, 4), (4, 7)):  # the two skip connections, drawn on the left
        ax.add_patch(FancyArrowPatch((2.1, start), (2.1, end), connectionstyle="arc3,rad=-0.45",
                                     arrowstyle="-|>", mutation_scale=12, color="#c0392b", lw=1.5))
    ax.text(0.2, 2.0, "residual:\nx skips\nattention", color="#c0392b", va="center")
    ax.text(0.2, 5.5, "residual:\nh skips the\nfeed-forward", color="#c0392b", va="center")
    ax.set_title("One post-LN BERT encoder layer (bottom to top)")


fig, ax = plt.subplots(figsize=(9, 5))
draw_block(ax)
plt.show()

# %% [markdown]
# ## 2 · A small layer in float64
#
# BERT-base has $C = 768$, 12 heads, $4C = 3072$; here $C = 16$ and 4 heads keep every
# number printable and the finite-difference check quick. Dropout is off (its backward is
# a multiply by the same mask; 06 shows it on). The layer comes from a `BertModel`, so it
# has BERT's initialisation; we then randomise every parameter, biases and LayerNorm's
# $\gamma, \beta$ included, so that no gradient passes the check just because a parameter
# is zero or one. The second sentence is padded: its last two tokens are masked out.

# %%
config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=16,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
layer = BertModel(config, dtype=np.float64).encoder.layer[0]
for name, param in layer.named_parameters():
    param.data = rng.standard_normal(param.data.shape) * (0.5 if param.data.ndim > 1 else 0.2)
    if name.endswith("LayerNorm.weight"):
        param.data += 1.0

B, T, C = 2, 5, config.hidden_size
x = rng.standard_normal((B, T, C))
attention_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
mask = additive_attention_mask(attention_mask, np.float64)  # (B, 1, 1, T): 0, or the most negative float
print(f"B={B} sentences, T={T} tokens, C={C} features, {config.num_attention_heads} heads of "
      f"{config.head_size}, intermediate {config.intermediate_size}")
print(f"{sum(p.data.size for _, p in layer.named_parameters()):,} parameters:")
for name, param in layer.named_parameters():
    print(f"  {name:<34} {param.data.shape}")

# %% [markdown]
# ## 3 · Forward, one step per line
#
# The same modules the layer calls, called by hand in the same order, keeping every
# intermediate. `attention.self` is the multi-head attention of notebook 02; it keeps its
# `q`, `k`, `v` and `probs` for the backward pass.

# %%
self_attention = layer.attention.self
attention_out = layer.attention.output  # dense W_O, dropout, LayerNorm
intermediate = layer.intermediate  # dense W_1, GELU
output = layer.output  # dense W_2, dropout, LayerNorm

context = self_attention(x, mask)  # (B, T, C): attention, heads merged back
projected = attention_out.dense(context)  # (B, T, C)
h = attention_out.LayerNorm(projected + x)  # (B, T, C): first residual, then LayerNorm
widened = intermediate.dense(h)  # (B, T, 4C)
activated = intermediate.intermediate_act_fn(widened)  # (B, T, 4C): GELU
narrowed = output.dense(activated)  # (B, T, C)
y = output.LayerNorm(narrowed + h)  # (B, T, C): second residual, then LayerNorm

for label, tensor in [("x", x), ("q = heads of x W_Q", self_attention.q), ("scores → probs", self_attention.probs),
                      ("context", context), ("projected", projected), ("h", h), ("widened", widened),
                      ("activated", activated), ("narrowed", narrowed), ("y", y)]:
    print(f"{label:<22} {tensor.shape!s:<16}")
print("padded keys get attention weight", self_attention.probs[1, :, :, 3:].max())
print("same as layer(x, mask), bit for bit:", np.array_equal(y, layer(x, mask)))

# %% [markdown]
# ## 4 · Backward, in reverse, one step per line
#
# We differentiate $L = \sum y \odot R$ for a fixed random $R$, so $\partial L/\partial y = R$.
# Each `backward` takes the gradient of its output, adds its parameters' gradients into
# their `.grad`, and returns the gradient of its input. Read the two residual lines: a sum
# $a + b$ passes its gradient unchanged to both $a$ and $b$, and a tensor used twice
# ($h$, $x$) receives the sum of the gradients of its uses.

# %%
R = rng.standard_normal(y.shape)
layer.zero_grad()
# the forward above left each module's cache from this input; call backward in the reverse order
d_sum2 = output.LayerNorm.backward(R)  # (B, T, C): dL/d(narrowed + h)
d_narrowed, d_h_skip = d_sum2, d_sum2  # the residual sum copies its gradient to both inputs
d_activated = output.dense.backward(d_narrowed)  # (B, T, 4C), and dW_2, db_2
d_widened = intermediate.intermediate_act_fn.backward(d_activated)  # (B, T, 4C): times GELU'
d_h_ffn = intermediate.dense.backward(d_widened)  # (B, T, C), and dW_1, db_1
d_h = d_h_ffn + d_h_skip  # h fed the feed-forward and the skip: the gradients add
d_sum1 = attention_out.LayerNorm.backward(d_h)  # (B, T, C): dL/d(projected + x)
d_projected, d_x_skip = d_sum1, d_sum1
d_context = attention_out.dense.backward(d_projected)  # (B, T, C), and dW_O, db_O
d_x_attention = self_attention.backward(d_context)  # (B, T, C), and dW_Q, dW_K, dW_V (see 03)
dx = d_x_attention + d_x_skip  # x fed the attention and the skip: the gradients add
by_hand = {name: param.grad.copy() for name, param in layer.named_parameters()}

norms = {"dL/dy = R": R, "LN₂ → d(narrowed + h)": d_sum2, "d activated (4C)": d_activated,
         "d h via feed-forward": d_h_ffn, "d h via skip": d_h_skip, "d h (sum)": d_h,
         "LN₁ → d(projected + x)": d_sum1, "d x via attention": d_x_attention, "d x via skip": d_x_skip,
         "d x (sum)": dx}
fig, ax = plt.subplots(figsize=(9, 3.4))
colors = ["#c0392b" if "skip" in k else "#2c3e50" if "sum" in k else "#7f8c8d" for k in norms]
ax.barh(list(norms)[::-1], [np.linalg.norm(v) for v in norms.values()][::-1], color=colors[::-1])
ax.set(xlabel="Frobenius norm of the gradient", title="The gradient on its way down (red: through a skip connection)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Each skip connection carries exactly what the LayerNorm above it passes down, and the
# branch beside it adds its own share. In this post-LN block every gradient also goes
# through both LayerNorms' backward, which rescales it (by $\gamma \cdot$ rstd, minus
# its projections on the mean and on $\hat x$): here that shrinks it. A pre-LN block
# (GPT-2's order, $h = x + \operatorname{Attention}(\operatorname{LN}(x))$) keeps the skip
# outside the LayerNorm, so an identity path runs from the top of the stack to the
# embeddings. Xiong et al. (2020) showed that pre-LN gradients are well-behaved at
# initialisation while post-LN's are large near the output, which is why pre-LN stacks
# can train without the learning-rate warm-up that post-LN needs.

# %% [markdown]
# ## 5 · Checked twice: the library's `BertLayer.backward` and finite differences
#
# The library's own `layer.backward(R)` does the same in three lines (below); its gradients
# must equal ours exactly (the same operations), and $dx$ must match central differences in
# float64 to about $10^{-9}$.

# %%
print(inspect.getsource(type(layer).backward))
layer(x, mask)
layer.zero_grad()
dx_library = layer.backward(R)
worst = max((float(np.abs(by_hand[n] - p.grad).max()), n) for n, p in layer.named_parameters())
print(f"dx equal to the library's: {np.array_equal(dx, dx_library)}; "
      f"largest parameter-gradient difference {worst[0]:.1e} ({worst[1]})")

dx_numeric = numerical_gradient(lambda: float((layer(x, mask) * R).sum()), x)
print(f"dx against central differences: relative error "
      f"{np.abs(dx - dx_numeric).max() / np.abs(dx_numeric).max():.1e}")
weight = layer.intermediate.dense.weight.data
dW1_numeric = numerical_gradient(lambda: float((layer(x, mask) * R).sum()), weight)
print(f"dW_1 against central differences: relative error "
      f"{np.abs(by_hand['intermediate.dense.weight'] - dW1_numeric).max() / np.abs(dW1_numeric).max():.1e}")

# %% [markdown]
# ## 6 · Where the parameters and the work are
#
# A layer has $4C^2$ attention weights and $2 \cdot C \cdot 4C = 8C^2$ feed-forward
# weights (and as many multiply-adds per token): two thirds of a layer is the
# feed-forward. The attention scores cost $2 T^2 C$ multiply-adds per sequence on top,
# which overtakes all the dense layers ($12TC^2$) once $T$ grows past $6C$ (09 computes
# this crossover).

# %%
groups = {"attention Q, K, V": "attention.self.", "attention output W_O": "attention.output.dense.",
          "feed-forward W_1": "intermediate.dense.", "feed-forward W_2": "output.dense.",
          "LayerNorms": ("attention.output.LayerNorm.", "output.LayerNorm.")}
for label, prefixes in groups.items():
    count = sum(p.data.size for n, p in layer.named_parameters() if n.startswith(prefixes))
    print(f"{label:<22} {count:>6,} parameters")
bert_base = BertConfig()  # transformers' defaults: BERT-base
C_base, I_base = bert_base.hidden_size, bert_base.intermediate_size
print(f"BERT-base, per layer: attention {4 * C_base * C_base + 4 * C_base:,}, "
      f"feed-forward {2 * C_base * I_base + I_base + C_base:,} parameters")

# %% [markdown]
# ## Exercises
#
# ### Exercise · the whole layer's backward
# Write `bert_layer_backward(layer, dy)` → `dx` for a layer whose forward has just run,
# from its three parts' own `backward` methods: `layer.output.backward(dy)` returns
# `(d_intermediate_output, d_input)` (the gradient into its dense layer's input and into its
# residual input), `layer.intermediate.backward(...)` returns the gradient of its input, and
# `layer.attention.backward(...)` the gradient of the layer's input. The checker builds its
# own float64 layer and compares your $dx$ with finite differences and every parameter
# gradient, by name, with the library's. Stuck? `ex.hint("bert_layer_backward")` gives a
# hint per call; a worked solution is in
# [solutions/10_bert_on_one_page.py](solutions/10_bert_on_one_page.py).

# %%
from numpy_bert import exercises as ex


def bert_layer_backward(layer, dy):
    raise NotImplementedError("your code here")


verdict = ex.check("bert_layer_backward", bert_layer_backward)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Make the block pre-LN (GPT-2's order: $h = x + \operatorname{Attention}(\operatorname{LN}(x))$):
#    write its forward from the same modules and its backward by hand, and check it with
#    `numerical_gradient` as in section 5. Where does the skip gradient go now?
# 2. Turn dropout on (`hidden_dropout_prob=0.1`, `layer.train()` or as in notebook 06 with
#    `KeyedMasks`) and redo section 5: which line of section 4 changes?
# 3. Stack two layers and check that the gradient of the first layer's input equals
#    `layer0.backward(layer1.backward(R))`.
