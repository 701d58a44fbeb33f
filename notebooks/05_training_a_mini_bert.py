# %% [markdown]
# # 05 · Training a Mini-BERT
#
# A short pre-training run with the project's real trainer: the same code as
# `python -m numpy_bert train`, called in-process. It trains a WordPiece vocabulary on
# the embedded corpus of Python's documentation, builds masked NSP pairs (notebook 04),
# and runs a tiny BERT (2 layers, hidden size 128) with AdamW, warm-up and linear
# decay, gradient clipping, and a fixed validation set. Then we read the curves from
# the run folder's `metrics.jsonl` and ask the model to fill in masked words, before and
# after training.
#
# The run is short (a few dozen steps with `MINI_BERT_FAST=1`, a couple of hundred
# otherwise), so expect a model that has learned the commonest tokens, not English.

# %%
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
from numpy_bert.text.tokenization import BertTokenizer
from numpy_bert.training.pretraining import NumpyBackend, Trainer, load_corpus_splits, validation_batches
from numpy_bert.training.run_folder import RunFolder

plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: a shorter run
workdir = tempfile.mkdtemp(prefix="mini-bert-05-")
run = os.path.join(workdir, "tiny")

# %% [markdown]
# ## 1 · One training step
#
# `Trainer.train` loops over `_train_step`: the next batch from the example stream, the
# forward and hand-written backward pass of `BertForPreTraining`, a stop if the loss is
# not finite (before the update, so the weights stay good), clipping of the global
# gradient norm, and one AdamW step, whose learning rate follows the warm-up/decay
# schedule:

# %%
print(inspect.getsource(Trainer._train_step))
print(inspect.getsource(NumpyBackend.forward_backward))

# %% [markdown]
# ## 2 · The run
#
# The command line, as a list: the `tiny` preset, a 4,000-token vocabulary, pairs of
# at most 64 tokens, batches of 16 pairs (8 with `MINI_BERT_FAST=1`), a peak learning
# rate of $10^{-3}$ with 10 % warm-up. Validation every few steps on the same fixed,
# seeded batches.

# %%
steps, batch_size, eval_batches = (20, 8, 2) if FAST else (200, 16, 8)
argv = ["train", "--out", run, "--config", "tiny", "--vocab-size", "4000", "--seq-len", "64",
        "--batch-size", str(batch_size), "--steps", str(steps), "--lr", "1e-3", "--warmup", "0.1",
        "--log-every", "2" if FAST else "5", "--eval-every", "10" if FAST else "25",
        "--eval-batches", str(eval_batches), "--no-progress", "--no-plots", "--seed", "0"]
print("python -m numpy_bert " + " ".join(argv), end="\n\n")
status = main(argv)
assert status == 0
print("\nthe run folder:", sorted(os.listdir(run)))

# %% [markdown]
# ## 3 · The curves
#
# `metrics.jsonl` has one row per `--log-every` steps (means over those steps) and one
# per evaluation. Reference lines help to read them. A model that spreads its
# probability evenly over the $V$ tokens has MLM loss $\ln V$. One that ignores the
# context and always predicts the corpus's token frequencies $p$ (a *unigram* model)
# has loss $H(p) = -\sum_t p_t \ln p_t$, the entropy of the token distribution, and
# accuracy $\max_t p_t$ (always guess the commonest token). For NSP, a 50/50 answer has
# loss $\ln 2$, and always answering the majority label gets the majority's share.

# %%
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

# %% [markdown]
# The MLM loss falls quickly from $\ln V$ to the unigram line: the first thing a
# language model learns is how often each token occurs (`the`, `.`, `,` ...), and its
# accuracy is that of always guessing the commonest token. Getting *below* the unigram
# line means using the context, and that takes far more steps. Likewise the NSP loss
# barely leaves $\ln 2$ in a run this short, and the NSP accuracy is that of always
# answering the majority label. The learning rate rises during warm-up and then decays
# linearly to zero; the dotted line at 1 is the clipping threshold, so every step above
# it was clipped.
#
# ## 4 · Held-out metrics and fill-mask, before and after
#
# `eval` reads any model folder and scores it on the validation split:

# %%
status = main(["eval", run, "--max-batches", "4"])

# %% [markdown]
# Before training, the model is its random initialisation. The trainer draws it from
# `--seed`, so `BertForPreTraining(config, seed=0)` rebuilds exactly the step-0 weights.
# `fill_mask` (what `python -m numpy_bert fill-mask` runs) gives the top 3 tokens for
# each `[MASK]`, with their probabilities:

# %%
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

# %% [markdown]
# Before training, the guesses are noise: even the top tokens get only a few times
# $1/V = 0.00025$. After, the model puts real probability on the most frequent tokens,
# whatever the sentence says: the unigram model again. To go beyond that, it needs far more steps: the project README
# reports what a half-hour run (`python -m numpy_bert train --steps 3600`, about 30
# minutes on one CPU core) reaches: 16% held-out accuracy, still mostly frequent words.
# `--fast` (`numpy_bert.fast`, the same model with fused kernels) makes each step cheaper.

# %%
shutil.rmtree(workdir)  # the run folder was temporary; comment this out to keep it

# %% [markdown]
# ## Exercises
#
# 1. Run 1,000 steps with `--fast` (a few minutes). When does the MLM accuracy pass the
#    unigram baseline (always predicting the most frequent token)? Compute that
#    baseline from the validation batches.
# 2. Set `--lr 1e-2`. What happens to the gradient norm and the loss? Does clipping
#    (`--clip 1`) save the run? Try `--clip 0`.
# 3. Interrupt a run (stop the cell) and continue it with `main(["train", "--out", run,
#    "--resume"])`. Check in `metrics.jsonl` that the resumed rows equal those of an
#    uninterrupted run (the NumPy run resumes bitwise).
# 4. Train with `--sop` instead of NSP. Is sentence order harder to learn than
#    next-sentence prediction? Compare the validation accuracies.
# 5. Train the same configuration with `python -m torch_bert train` and plot both
#    runs' losses on one figure. How close are they, and why are they not identical?
