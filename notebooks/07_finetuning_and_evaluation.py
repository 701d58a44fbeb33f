# %% [markdown]
# # 07 · Fine-tuning and evaluation
#
# Fine-tuning puts a small task head on the encoder (here a linear classifier on the
# pooled `[CLS]` vector, `numpy_bert.heads.BertForSequenceClassification`, with its
# hand-written backward) and trains everything on labelled examples. This notebook runs
# `python -m numpy_bert finetune` in-process on the offline demo task, then reads its
# report: the loss curves (and what over- and under-fitting look like there), the
# confusion matrix, per-class precision/recall/F1, and the examples it got wrong. It
# ends with what pre-training buys: the same fine-tuning from random weights, from the
# shipped `python-docs` model, and from MiniLM, side by side.

# %%
import contextlib
import inspect
import io
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
import warnings
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

import numpy_bert
from benchmarks.finetune_from import random_copy
from numpy_bert import BertConfig, BertForPreTraining
from numpy_bert.cli.main import main
from numpy_bert.data.demo_tasks import family
from numpy_bert.heads import BertForSequenceClassification
from numpy_bert.training.metrics import classification_report
from numpy_bert.training.pretraining import load_corpus_splits, train_tokenizer
from numpy_bert.training.run_folder import RunFolder

plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: fewer examples and epochs
workdir = tempfile.mkdtemp(prefix="mini-bert-07-")

# %% [markdown]
# ## 1 · The demo task: which part of the Python docs is this from?
#
# `demo-data --task classify` builds the task from the embedded corpus, with no download
# and no hand labelling: the text is two consecutive sentences of a document, the label
# is the part of the documentation it comes from (the language reference or one of five
# families of standard-library modules). Train and eval are split *by document*, so the
# evaluation measures transfer to unseen modules. Classes are balanced.

# %%
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

# %% [markdown]
# ## 2 · The starting point
#
# Fine-tuning normally starts from a pre-trained encoder. To keep this notebook quick
# and self-contained, it starts from a **freshly initialised** tiny BERT (2 layers,
# hidden size 128) with a 4,000-token vocabulary trained on the corpus: everything is
# learned from the few hundred labelled examples alone; section 7 starts from
# pre-trained models instead. The folder has what `finetune --model` needs:
# `config.json`, `model.safetensors` and `vocab.txt`.

# %%
train_corpus, _ = load_corpus_splits(None)
tokenizer = train_tokenizer(train_corpus, 4000)  # as the pre-training command does
start = os.path.join(workdir, "fresh")
BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=len(tokenizer)), seed=0).save_pretrained(start)
tokenizer.save_pretrained(start)
print(sorted(os.listdir(start)))
print()
print(inspect.getsource(BertForSequenceClassification.forward))

# %% [markdown]
# ## 3 · Two runs: a learning rate too low, and one that learns
#
# The same data and model, two peak learning rates, each for a fixed number of epochs
# with an evaluation after every epoch. The command prints which tensors are new (the
# classifier) and which are ignored (the pre-training heads).

# %%
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

# %% [markdown]
# ## 4 · Reading the loss curves
#
# The training loss (a running mean over the last few batches, in training mode, with
# dropout) and the validation loss (the whole eval file after each epoch, dropout off),
# against epochs. With six balanced classes, a model that knows nothing has loss
# $\ln 6 = 1.79$ and accuracy $1/6$.

# %%
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

# %% [markdown]
# How to read them:
#
# * **Under-fitting** (grey): with $10^{-5}$ the weights hardly move; train and
#   validation loss stay together near $\ln 6$. Both being high, and close to each
#   other, says "the model has not learned yet": train longer, or raise the learning
#   rate.
# * **Over-fitting** (blue): with $10^{-3}$ the training loss keeps falling while the
#   validation loss stops improving and drifts up. The widening gap between them is
#   the model memorising its few hundred training examples (a fresh model has nothing
#   else to go on). The validation loss can rise even while the accuracy still
#   creeps up: the model becomes over-confident on the examples it gets wrong.
#   The cures: fewer epochs (stop where the validation loss is lowest), more data,
#   more regularisation, or a pre-trained start.
#
# ## 5 · The final report
#
# The run folder holds `metrics.json` (the last evaluation: accuracy, macro averages,
# per-class scores and the confusion matrix, computed by `numpy_bert.training.metrics`),
# `misclassified.jsonl` and plots. The confusion matrix counts, for every true class
# (row), what the model predicted (column); the diagonal is right.

# %%
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

# %% [markdown]
# Precision of a class is its column's diagonal share (of the examples predicted as
# that class, how many are), recall its row's (of the examples of that class, how many
# were found), and F1 their harmonic mean. The code, with the conventions of
# scikit-learn:

# %%
print(inspect.getsource(classification_report))

# %% [markdown]
# ## 6 · What it got wrong
#
# `misclassified.jsonl` lists each eval example the model got wrong, with the predicted
# class and its probability. Reading them is the quickest way to see whether the
# errors are the model's or the labels': a sentence about file encodings could fairly
# be "text and data formats" or "files and the operating system".

# %%
wrong = [json.loads(line) for line in open(os.path.join(best, "misclassified.jsonl"), encoding="utf-8")]
print(f"{len(wrong)} of {matrix.sum()} eval examples misclassified")
print("most frequent confusions (true -> predicted):",
      Counter(f"{w['label']} -> {w['predicted']}" for w in wrong).most_common(3))
for w in sorted(wrong, key=lambda w: -w["probability"])[:5]:  # the most confident mistakes first
    print(f"\ntrue: {w['label']} | predicted: {w['predicted']} (p = {w['probability']:.2f})")
    print(textwrap.fill(w["text"], 110, max_lines=3, placeholder=" ..."))

# %% [markdown]
# ## 7 · What pre-training buys
#
# The same data, epochs, learning rate ($10^{-4}$, the command's default) and seed from
# three starting points:
#
# * **random weights**: `python-docs`' architecture (BERT-mini, 4 layers, hidden 256) and
#   vocabulary with freshly drawn weights, so the only difference from the next one is
#   pre-training;
# * **python-docs**: the model numpy_bert pre-trained for 96 minutes on this corpus
#   (shipped in the package; notebook 05 shows its curves);
# * **MiniLM**: all-MiniLM-L6-v2 (6 layers, hidden 384), pre-trained at scale on
#   English and tuned for sentence embeddings.

# %%
compare_epochs = 1 if FAST else 3
starts = {"random weights": str(random_copy(Path(workdir) / "random-init")), "python-docs": "python-docs",
          "MiniLM": "minilm"}
compared = {}
for name, model in starts.items():
    out = os.path.join(workdir, "from-" + name.replace(" ", "-"))
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # quiet runs
        status = main(["finetune", "--task", "classify", "--model", model, "--train", train_file,
                       "--eval", eval_file, "--out", out, "--epochs", str(compare_epochs), "--batch-size", "16",
                       "--max-length", "64", "--log-every", "5", "--no-progress", "--seed", "0"])
    assert status == 0
    compared[name] = (RunFolder(out).read_metrics(), time.perf_counter() - began)
    final = json.load(open(os.path.join(out, "metrics.json"), encoding="utf-8"))["eval"]
    print(f"{name:<15} accuracy {final['accuracy']:.3f}, macro F1 {final['macro_f1']:.3f} "
          f"after {compare_epochs} epoch(s), {compared[name][1]:.0f} s")

committed = json.loads((Path(numpy_bert.__file__).parent.parent / "benchmarks" / "results" / "finetune_from.json")
                       .read_text())
committed = {r["model"]: r for r in committed["runs"] if r["task"] == "classify"}
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for (name, (rows, _)), colour in zip(compared.items(), ("tab:grey", "tab:green", "tab:purple")):
    validation = [r for r in rows if r["split"] == "validation"]
    axes[0].plot([r["step"] / steps_per_epoch for r in validation], [r["accuracy"] for r in validation], "o-",
                 color=colour, label=name)
    axes[1].bar(name, validation[-1]["accuracy"], color=colour)
for x, key in enumerate(("random", "python-docs", "minilm")):
    axes[1].plot(x, committed[key]["accuracy"], "k_", ms=30, mew=2)
axes[0].axhline(1 / 6, color="black", ls=":", lw=0.8, label="chance (1/6)")
axes[0].set(title="Validation accuracy while fine-tuning", xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
axes[0].legend(fontsize=8)
axes[1].axhline(1 / 6, color="black", ls=":", lw=0.8)
axes[1].set(title="Final accuracy (black bars: benchmarks/results/finetune_from.json)", ylabel="accuracy",
            ylim=(0, 1))
fig.tight_layout()
plt.show()

# %% [markdown]
# With the same few hundred examples, the pre-trained start is far ahead from the first
# epoch: the encoder already groups words by what they mean in this corpus, so the
# classifier only has to learn where the classes lie. Random weights must learn the
# words and the task from the labels alone. MiniLM, pre-trained on far more (and more
# varied) text, is better still. The black bars are the committed benchmark
# (`python -m benchmarks.finetune_from`: 1,000 training examples, 3 epochs, 128 tokens),
# so they need not equal the bars of this smaller run.

# %%
shutil.rmtree(workdir)  # the runs were temporary; comment this out to keep them

# %% [markdown]
# ## Exercises
#
# Each exercise below is checked: fill in the stub and run the cell. `ex.hint(name)` gives
# one hint per call; worked solutions are in
# [solutions/07_finetuning_and_evaluation.py](solutions/07_finetuning_and_evaluation.py).

# %% [markdown]
# ### Exercise · precision, recall and F1 per class
#
# Write `f1_scores(gold, predicted, num_classes)` → `(per_class_f1, macro_f1)` from the
# confusion counts of section 5, with `classification_report`'s conventions (a ratio with
# nothing to divide by is 0; the macro mean runs over the classes that occur). The checker
# compares with the library on random and awkward label sets (a class never predicted, a
# class absent from the gold labels).

# %%
from numpy_bert import exercises as ex


def f1_scores(gold, predicted, num_classes):
    raise NotImplementedError("your code here")


verdict = ex.check("f1_scores", f1_scores)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Pre-train a tiny model for a few hundred steps (notebook 05's recipe) and add its
#    folder to section 7's starting points. Where does it land between random weights
#    and python-docs?
# 2. Find the epoch with the lowest validation loss in the `lr 1e-3` run and fine-tune
#    again with that many epochs (early stopping). Compare accuracy and macro F1.
# 3. Try `--layerwise-lr-decay 0.8` (lower learning rates for the lower layers) and
#    `--dropout`-free training. Which reduces the train/validation gap?
# 4. The confusion matrix is not symmetric. Pick the largest off-diagonal cell and read
#    its examples in `misclassified.jsonl`: is the model wrong, or the label ambiguous?
# 5. Run the same fine-tuning with `python -m torch_bert finetune` and compare the
#    `metrics.json` files. Why are they close but not identical?
