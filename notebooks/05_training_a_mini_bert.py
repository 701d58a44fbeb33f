# %% [markdown]
# # 05 · Training a Mini-BERT
#
# A short pre-training run with the project's real trainer: the same code as
# `python -m numpy_bert train`, called in-process. It trains a WordPiece vocabulary on
# the embedded corpus of Python's documentation, masks packed text (notebook 04), and
# runs a tiny BERT (2 layers, hidden size 128) with AdamW, warm-up and linear decay,
# gradient clipping, and a fixed validation set. Then we read the curves from the run
# folder's `metrics.jsonl`, set them against the *unigram* baseline (a model that ignores
# the context) and against the full curves of the shipped `python-docs` model, and ask
# the models to fill in masked words.
#
# The run takes about three minutes on two cores (a few seconds with `MINI_BERT_FAST=1`,
# too short to learn anything): long enough to get below the unigram line, that is, to
# start using the context.

# %%
import inspect
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

import numpy_bert
from numpy_bert import BertConfig, BertForPreTraining, pipeline
from numpy_bert.cli.main import main
from numpy_bert.pipelines.fill_mask import fill_mask
from numpy_bert.text.tokenization import BertTokenizer
from numpy_bert.training.pretraining import NumpyBackend, Trainer, load_corpus_splits
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
# The command line, as a list. It takes the recipe that docs/python-docs.md measured
# for short runs on a CPU: masked-LM only on text packed into 128-token sequences
# (`--no-nsp`: next-sentence pairs cost tokens and teach little this early; RoBERTa
# dropped them too), no dropout (a model this small under-fits, it does not over-fit), a
# peak learning rate of $2 \cdot 10^{-3}$ with 6 % warm-up, batches of 32 sequences, a
# 4,096-token vocabulary, and the fused kernels of `numpy_bert.fast` (`--fast`, the same
# model and the same numbers as the readable one, parity-tested). Validation every 50
# steps on the same fixed, seeded batches.

# %%
steps, batch_size, seq_len, eval_batches = (20, 8, 64, 2) if FAST else (500, 32, 128, 8)
argv = ["train", "--out", run, "--config", "tiny", "--fast", "--no-nsp", "--dropout", "0", "--vocab-size", "4096",
        "--seq-len", str(seq_len), "--batch-size", str(batch_size), "--steps", str(steps), "--lr", "2e-3",
        "--warmup", "0.06", "--log-every", "2" if FAST else "10", "--eval-every", "10" if FAST else "50",
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
# accuracy $\max_t p_t$ (always guess the commonest token). Below that line, the model
# is using the words around the mask.

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
print(f"unigram model: loss H(p) = {unigram_loss:.3f} nats, accuracy {unigram_accuracy:.3f} "
      f"(always {tokenizer.convert_ids_to_tokens(int(p.argmax()))!r})")
last = validation[-1]
verdict = "below" if last["mlm_loss"] < unigram_loss else "not yet below (a fast run is too short)"
print(f"after {last['step']} steps: validation MLM loss {last['mlm_loss']:.3f}, accuracy {last['mlm_accuracy']:.3f}: "
      f"{verdict} the unigram line")


def series(rows, key):
    return [r["step"] for r in rows], [r[key] for r in rows]


fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
ax = axes[0]
ax.plot(*series(train, "mlm_loss"), label="train MLM")
ax.plot(*series(validation, "mlm_loss"), "o-", label="validation MLM")
ax.axhline(np.log(vocab_size), color="grey", ls="--", lw=0.8)
ax.text(0, np.log(vocab_size), f" ln V = ln {vocab_size}: uniform guess", va="bottom", fontsize=8, color="grey")
ax.axhline(unigram_loss, color="tab:blue", ls=":", lw=0.8)
ax.text(0, unigram_loss, " H(p): unigram model", va="top", fontsize=8, color="tab:blue")
ax.set(title="Losses", xlabel="optimizer step", ylabel="cross-entropy (nats)")
ax.legend(fontsize=8)

ax = axes[1]
ax.plot(*series(validation, "mlm_accuracy"), "o-", label="masked-token accuracy (MLM)")
ax.axhline(unigram_accuracy, color="tab:blue", ls=":", lw=0.8, label="unigram model (MLM)")
ax.set(title="Validation accuracy", xlabel="optimizer step", ylabel="accuracy", ylim=(0, 0.5))
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
print(f"throughput: {speed:,.0f} tokens/s on this machine (--fast: the fused kernels of numpy_bert.fast)")

# %% [markdown]
# The MLM loss falls quickly from $\ln V$ to the unigram line: the first thing a
# language model learns is how often each token occurs (`the`, `.`, `,` ...). Getting
# *below* that line means using the context; with this recipe it happens within the
# first couple of hundred steps. The learning rate rises during warm-up and then decays
# linearly to zero; the dotted line at 1 is the clipping threshold, so every step above
# it was clipped.
#
# ### The same curves, two hours long
#
# The shipped `python-docs` model (BERT-mini: 4 layers, hidden 256) was trained with
# this recipe on the same corpus for 96 minutes on 2 cores, and its run folder ships
# with it: `metrics.jsonl` holds its whole record. Its vocabulary has 8,192 tokens, so
# its unigram line sits higher; both runs see 32 × 128 tokens per step, so the x-axes
# (tokens seen) line up.

# %%
shipped = Path(numpy_bert.__file__).parent / "pretrained" / "python-docs"
shipped_args = json.loads((shipped / "args.json").read_text())
shipped_rows = RunFolder(shipped).read_metrics()
shipped_validation = [r for r in shipped_rows if r["split"] == "validation"]
shipped_train = [r for r in shipped_rows if r["split"] == "train"]
shipped_tokenizer = BertTokenizer.from_pretrained(shipped)
shipped_ids = [i for s in train_corpus.texts() for i in shipped_tokenizer.convert_tokens_to_ids(
    shipped_tokenizer.tokenize(s))]
q = np.bincount(shipped_ids, minlength=len(shipped_tokenizer)) / len(shipped_ids)
shipped_unigram_loss, shipped_unigram_accuracy = -(q[q > 0] * np.log(q[q > 0])).sum(), q.max()


def tokens_seen(rows, batch, length):
    return [r["step"] * batch * length / 1e6 for r in rows]


shipped_tokens = shipped_args["batch_size"] * shipped_args["seq_len"]
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
ax = axes[0]
ax.plot(tokens_seen(shipped_train, shipped_args["batch_size"], shipped_args["seq_len"]),
        [r["mlm_loss"] for r in shipped_train], color="tab:green", alpha=0.5, label="python-docs: train")
ax.plot(tokens_seen(shipped_validation, shipped_args["batch_size"], shipped_args["seq_len"]),
        [r["mlm_loss"] for r in shipped_validation], "o-", ms=3, color="tab:green", label="python-docs: validation")
ax.plot(tokens_seen(validation, batch_size, seq_len), [r["mlm_loss"] for r in validation], "o-", ms=3,
        color="tab:blue", label="this notebook's run: validation")
ax.axhline(shipped_unigram_loss, color="tab:green", ls=":", lw=0.8)
ax.text(0.01, shipped_unigram_loss, " unigram, python-docs' vocabulary", va="bottom", fontsize=8, color="tab:green",
        transform=ax.get_yaxis_transform())
ax.axhline(unigram_loss, color="tab:blue", ls=":", lw=0.8)
ax.text(0.01, unigram_loss, " unigram, this run's vocabulary", va="top", fontsize=8, color="tab:blue",
        transform=ax.get_yaxis_transform())
ax.set(title="MLM loss", xlabel="tokens seen (millions, log scale)", ylabel="cross-entropy (nats)", xscale="log",
       ylim=(2.5, 9))
ax.legend(fontsize=8)
ax = axes[1]
ax.plot(tokens_seen(shipped_validation, shipped_args["batch_size"], shipped_args["seq_len"]),
        [r["mlm_accuracy"] for r in shipped_validation], "o-", ms=3, color="tab:green", label="python-docs")
ax.plot(tokens_seen(validation, batch_size, seq_len), [r["mlm_accuracy"] for r in validation], "o-", ms=3,
        color="tab:blue", label="this notebook's run")
ax.axhline(shipped_unigram_accuracy, color="tab:green", ls=":", lw=0.8, label="unigram, python-docs' vocabulary")
ax.axhline(unigram_accuracy, color="tab:blue", ls=":", lw=0.8, label="unigram, this run's vocabulary")
ax.set(title="Validation masked-token accuracy", xlabel="tokens seen (millions, log scale)", ylabel="accuracy",
       xscale="log", ylim=(0, 0.5))
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
print(f"python-docs: {shipped_validation[-1]['step']:,} steps, "
      f"{shipped_validation[-1]['step'] * shipped_tokens / 1e6:.0f} M tokens, validation MLM loss "
      f"{shipped_validation[-1]['mlm_loss']:.2f}, accuracy {shipped_validation[-1]['mlm_accuracy']:.3f}")

# %% [markdown]
# For the first two million tokens the two runs follow almost the same line, just below
# the unigram level: this is the plateau, where a model has learned token frequencies and
# little else. The tiny run stops there. python-docs stays near it for about 2,000 steps
# (8 M tokens), then breaks through: its loss falls by 2 nats and its accuracy triples,
# which is when it starts to fill masks from the context. Bigger models are slower to
# leave the plateau and go much further, which is why the final recipe spent its two
# hours on BERT-mini (docs/python-docs.md measures the alternatives).
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
shipped_fill = pipeline("fill-mask", model="python-docs")  # the shipped model, as transformers' pipeline
texts = ["A list is a mutable [MASK].", "The [MASK] statement is used for repeated execution.",
         "Return the number of items in the [MASK]."]
for text in texts:
    print(text)
    for name, backend in (("before", before), ("after", after)):
        (top,) = fill_mask(backend.predict, tokenizer, text, top_k=3)
        print(f"  {name:<12}" + "".join(f"{token:>14} {p:6.3f}" for token, p in top))
    top = [(c["token_str"], c["score"]) for c in shipped_fill(text, top_k=3)]
    print(f"  {'python-docs':<12}" + "".join(f"{token:>14} {p:6.3f}" for token, p in top))
print()
status = main(["fill-mask", run, texts[0], "--top-k", "3"])  # the same, from the command line

# %% [markdown]
# Before training, the guesses are noise: even the top tokens get only a few times
# $1/V = 0.00024$. After this short run the top guesses are still the most frequent
# tokens: a loss below the unigram line means the context shifts the probabilities a
# little, not yet enough to change the top three. The shipped model, after 96 minutes,
# fills the sentences sensibly; its `"` for the second one is right too, since the
# language reference writes `The "for" statement is used ...`. What runs of each length
# reach is measured in [docs/pretraining.md](../docs/pretraining.md#measured-quality) and
# [docs/python-docs.md](../docs/python-docs.md).

# %%
shutil.rmtree(workdir)  # the run folder was temporary; comment this out to keep it

# %% [markdown]
# ## Exercises
#
# Each exercise below is checked: fill in the stub and run the cell. `ex.hint(name)` gives
# one hint per call; worked solutions are in
# [solutions/05_training_a_mini_bert.py](solutions/05_training_a_mini_bert.py).

# %% [markdown]
# ### Exercise · one AdamW step
#
# Write `adamw_step(p, g, m, v, t, lr, betas, eps, weight_decay)` → `(p, m, v)`: one update of
# a parameter `p` with gradient `g`, moments `m`, `v` and step number `t` (from 1), as
# `numpy_bert.optim.AdamW` and `torch.optim.AdamW` do it: decoupled weight decay first, then
# the moments, then the bias-corrected step. The checker runs several steps in float64
# against the library's optimizer.

# %%
from numpy_bert import exercises as ex


def adamw_step(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    raise NotImplementedError("your code here")


verdict = ex.check("adamw_step", adamw_step)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Run the same recipe on the `mini` preset (4 layers, hidden 256) for 1,000 steps.
#    When does it get below the unigram line, compared with `tiny`? Plot both against
#    tokens seen.
# 2. Set `--lr 1e-2`. What happens to the gradient norm and the loss? Does clipping
#    (`--clip 1`) save the run? Try `--clip 0`.
# 3. Interrupt a run (stop the cell) and continue it with `main(["train", "--out", run,
#    "--resume"])`. Check in `metrics.jsonl` that the resumed rows equal those of an
#    uninterrupted run (the NumPy run resumes bitwise).
# 4. Train with `--nsp` (BERT's pairs) and with `--sop` instead of `--no-nsp`. Is sentence
#    order harder to learn than next-sentence prediction? Compare the validation accuracies.
# 5. Train the same configuration with `python -m torch_bert train` and plot both
#    runs' losses on one figure. How close are they, and why are they not identical?
