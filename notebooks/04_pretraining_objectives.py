# %% [markdown]
# # 04 · Pre-training objectives: masked words and sentence pairs
#
# BERT learns from raw text with two self-supervised tasks, and this notebook builds
# their training examples with the library's data code (`numpy_bert.data.masking`,
# `numpy_bert.data.pretraining_data`) on real sentences of the embedded corpus:
#
# * **masked language modelling (MLM)**: hide 15 % of the tokens and predict them. Of
#   the hidden tokens, 80 % become `[MASK]`, 10 % a random token and 10 % stay as they
#   are (so the model cannot assume that only `[MASK]` positions matter). Variants hide
#   *whole words* or *spans* of words;
# * **next-sentence prediction (NSP)**: is segment B the text that follows A, or a
#   random segment from another document? ALBERT's **sentence-order prediction (SOP)**
#   asks instead whether two consecutive segments were swapped.

# %%
import inspect
import os
import textwrap
import warnings

import matplotlib.pyplot as plt
import numpy as np

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

from numpy_bert.checkpoint import named_model_dir
from numpy_bert.config import IGNORE_INDEX
from numpy_bert.data.corpus import load_default_corpus
from numpy_bert.data.masking import MaskingCollator
from numpy_bert.data.pretraining_data import ExampleBuilder
from numpy_bert.text.tokenization import BertTokenizer

plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: statistics on fewer documents
tokenizer = BertTokenizer.from_pretrained(named_model_dir("minilm"))  # BERT's uncased vocabulary
corpus = load_default_corpus()
documents = {d.title: d for d in corpus}
print(corpus)

# %% [markdown]
# ## 1 · Masking 15 %, then 80/10/10
#
# `MaskingCollator.mask` takes one sequence of ids, chooses
# `max(1, round(0.15 × candidates))` positions among the non-special tokens (the
# original BERT's data script rounds 0.15 × the whole length, `[CLS]` and `[SEP]`
# included, capped at `max_predictions_per_seq`), and replaces each: `[MASK]` with
# probability 0.8, a random token 0.1, unchanged 0.1. The labels hold the original id
# at the chosen positions and −100 (ignored by the loss) everywhere else.

# %%
print(inspect.getsource(MaskingCollator.mask))
print(inspect.getsource(MaskingCollator._replace))

# %%
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


# %%
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

# %% [markdown]
# A random replacement usually makes no sense in context (that is the point: the model
# must check every token, not only `[MASK]`), and an unchanged token still carries a
# label, so the model also learns to say "this one is right".
#
# ## 2 · The statistics over a big batch
#
# One sentence shows a handful of decisions; a batch of thousands shows the rates. Here
# are all the sentence pairs of one epoch over the corpus (a few hundred documents of
# it with `MINI_BERT_FAST=1`), masked by the collator in one call:

# %%
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

# %% [markdown]
# ## 3 · Whole-word and span masking
#
# Token masking can hide `##code` and leave `byte` visible, which makes the guess easy.
# **Whole-word masking** chooses words, hiding all the pieces of a word together (the
# 80/10/10 decision is still made per token, as in BERT's whole-word models).
# **Span masking** (SpanBERT) hides runs of whole words whose length in words follows a
# geometric distribution (p = 0.2, at most 10 words), with one decision per span. The
# budget is the same 15 % of tokens in all three. The same sentence, the same seed:

# %%
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

# %% [markdown]
# ## 4 · Next-sentence prediction
#
# `ExampleBuilder` follows google-research/bert's `create_instances_from_document`: it
# gathers whole sentences of a document into a chunk of about `max_seq_length` tokens,
# cuts the chunk in two at a random sentence boundary, and then, half of the time,
# replaces B by text from a random place in **another** document. Label 0 (IsNext)
# means B follows A; 1 (NotNext) means B is random. (A short `max_seq_length` of 48
# keeps the examples readable.)

# %%
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

# %% [markdown]
# Segments are cut at sentence boundaries, then truncated a token at a time from a
# random end to fit, so a segment may start or end in the middle of a word (`##le`).
# A random B usually changes topic, so NSP is easy, and RoBERTa found that dropping it
# does not hurt. Slightly more than half of the pairs are NotNext: a chunk that is a
# single sentence cannot be split, so it always gets a random B, as in the original.
#
# ## 5 · Sentence-order prediction
#
# ALBERT's SOP keeps A and B consecutive text of one document and swaps them half of
# the time (label 1). Topic gives nothing away; the model must learn what order of
# sentences makes sense.

# %%
small.task = "sop"
pairs = small.from_document(index, np.random.default_rng(2))
for label in (0, 1):
    show(next(e for e in pairs if e.next_sentence_label == label))

# %% [markdown]
# ## Exercises
#
# Each exercise below is checked: fill in the stub and run the cell. `ex.hint(name)` gives
# one hint per call; worked solutions are in
# [solutions/04_pretraining_objectives.py](solutions/04_pretraining_objectives.py).

# %% [markdown]
# ### Exercise · 80/10/10 masking
#
# Write `mask_tokens(input_ids, special_ids, mask_token_id, vocab_size, rng)` →
# `(masked_ids, labels)` for one sequence: choose 15 % of the non-special positions, put `[MASK]`
# at 80 % of them, a random id at 10 %, keep 10 %; labels hold the original id where chosen and
# −100 elsewhere. The checker draws thousands of sequences and tests every invariant exactly and
# every rate within 5 standard deviations.

# %%
from numpy_bert import exercises as ex


def mask_tokens(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability=0.15):
    raise NotImplementedError("your code here")


verdict = ex.check("mask_tokens", mask_tokens)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Change `mlm_probability` to 0.4 and redraw the batch statistics. How does the
#    number of chosen tokens per pair scale? Where does `max(1, ...)` matter?
# 2. With `static_seed=0`, the collator gives a pair the same mask in every epoch (BERT's
#    pre-computed data, which made `dupe_factor=10` differently masked copies). Check
#    that two calls with different generators agree; then think about why RoBERTa
#    preferred dynamic masks.
# 3. Histogram the lengths, in words, of the spans over a big batch with
#    `strategy="span"`, and compare with the truncated geometric distribution
#    `collator.span_length_probs`. Why is the measured mean lower?
# 4. With `short_seq_prob=0.1` (the default), how are the pair lengths distributed over
#    an epoch? Plot a histogram of `len(example.input_ids)`.
# 5. Predict the NotNext share for `max_seq_length=512`, then measure it. Why does it
#    move away from 50 %?
