# %% [markdown]
# # 11 · The BERT family: RoBERTa, ALBERT, ELECTRA and DistilBERT
#
# BERT's network was kept, and changed in small ways, by the models that followed it. This
# notebook puts four of them next to BERT, each written in NumPy with its backward pass
# (`numpy_bert/roberta.py`, `albert.py`, `electra.py`, `distilbert.py`) and held to
# transformers' own classes in float64 by the parity tests:
#
# * **RoBERTa** (Liu et al. 2019): a byte-level BPE tokenizer; position ids that start after the
#   padding index. Pre-trained with MLM only (no next-sentence task), dynamic masking, packed
#   sequences.
# * **ALBERT** (Lan et al. 2019): embeddings E wide, projected to H; **one layer group shared by
#   every depth**. Pre-trained with MLM + sentence-order prediction (SOP).
# * **ELECTRA** (Clark et al. 2020): a small generator and the discriminator share their
#   embeddings. Pre-trained by **replaced-token detection** on every token.
# * **DistilBERT** (Sanh et al. 2019): half the layers, no token types, no pooler, its own names
#   (`q_lin`, `sa_layer_norm`, ...). Pre-trained by **distillation** from a BERT teacher: soft
#   targets + MLM + cosine.
#
# For each member we read what changes as a diff of the code against BERT's, count the
# parameters, check one batch against transformers, and then compare what they learn from
# the same text at the same compute.

# %%
import difflib
import inspect
import itertools
import json
import os
import re
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import transformers

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

import numpy_bert
from numpy_bert import (
    AlbertConfig,
    AlbertForPreTraining,
    BertConfig,
    BertForPreTraining,
    DistilBertConfig,
    DistilBertForMaskedLM,
    ElectraConfig,
    ElectraForPreTraining,
    RobertaConfig,
    RobertaForMaskedLM,
    albert,
    distilbert,
    electra,
    modeling,
    roberta,
)

plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: smaller models
rng = np.random.default_rng(0)


def diff(before, after, context: int = 1) -> None:
    """The unified diff of two functions' sources, as `git diff` would show the change."""
    a = inspect.getsource(before).splitlines()
    b = inspect.getsource(after).splitlines()
    names = f"{before.__module__}.{before.__qualname__}", f"{after.__module__}.{after.__qualname__}"
    print("\n".join(difflib.unified_diff(a, b, *names, n=context, lineterm="")))


# %% [markdown]
# ## 1 · RoBERTa: the same network, other positions
#
# RoBERTa's encoder *is* BERT's (`RobertaModel` builds a `BertModel` and swaps in its
# embeddings). What differs is the data (masked LM only, on packed sequences, with masks
# drawn afresh each time a sequence is seen) and the tokenizer (GPT-2's byte-level BPE,
# `numpy_bert/text/byte_level_bpe.py`, written by hand and matched token for token against
# transformers'). Inside the network only the position ids change: a token's position is
# `padding_idx + 1 +` the number of real tokens before it, and padding points at row
# `padding_idx`, which stays zero. That is why roberta-base has 514 positions for 512 tokens.

# %%
diff(modeling.BertEmbeddings.forward, roberta.RobertaEmbeddings.forward)
ids = np.array([[0, 31, 57, 2, 1, 1], [0, 44, 2, 2, 80, 2]])  # <s> ... </s> <pad> (pad id 1)
print("\ninput ids   ", ids.tolist())
print("position ids", roberta.create_position_ids_from_input_ids(ids, padding_idx=1).tolist())

# %% [markdown]
# The byte-level BPE tokenizer spells any text with 256 byte symbols and then merges the
# most frequent pairs, so nothing is ever unknown. Trained here on a slice of the embedded
# corpus (the trainer reproduces the `tokenizers` library's merges one for one):

# %%
from numpy_bert.data.corpus import load_default_corpus
from numpy_bert.text.bpe_trainer import train_bpe

texts = list(itertools.islice(load_default_corpus().texts(), 40 if FAST else 400))
vocab, merges = train_bpe(texts, vocab_size=1000 if FAST else 4000)
bpe = numpy_bert.RobertaTokenizer(vocab=vocab, merges=merges)
sentence = "Tokenizers split naïve text into bytes: 😀 too."
print(f"{len(vocab)} tokens, {len(merges)} merges; first merges: {merges[:6]}")
print(bpe.tokenize(sentence))
print("WordPiece (python-docs):", numpy_bert.BertTokenizer.from_pretrained("python-docs").tokenize(sentence))

# %% [markdown]
# ## 2 · ALBERT: one layer, used again and again
#
# ALBERT cuts parameters in two ways. The word table is E wide (128) instead of H, and one
# Linear maps it up to H: V·E + E·H weights instead of V·H. And the L layers share G
# parameter groups (G = 1: one layer run L times). The forward pass is BERT's loop, but the
# layer is picked by `group_index`; the backward pass is the lesson: a module used several
# times needs a cache *per use* (`shared_copy` makes a copy that shares the Parameters but
# keeps its own activations), and the shared weights' gradient is the **sum** over uses.

# %%
diff(modeling.BertEncoder.forward, albert.AlbertTransformer.forward)
print()
print(inspect.getsource(albert.AlbertTransformer.backward))

# %% [markdown]
# Check that sum directly: a 3-layer ALBERT with one shared group, and the same weights with
# the sharing undone (three groups, each a copy of the one). Their forward passes are the
# same computation; the shared weight's gradient is the three copies' gradients added.

# %%
config = AlbertConfig(vocab_size=60, embedding_size=8, hidden_size=16, num_hidden_layers=3,
                      num_hidden_groups=1, num_attention_heads=2, intermediate_size=32,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
shared = numpy_bert.AlbertModel(config, seed=1, dtype=np.float64)
unshared = numpy_bert.AlbertModel(config.replace(num_hidden_groups=3), seed=2, dtype=np.float64)
weights = dict(shared.named_parameters())
for name, param in unshared.named_parameters():  # group g's copy of group 0's weights
    param.data[...] = weights[re.sub(r"albert_layer_groups\.\d+", "albert_layer_groups.0", name)].data
x = rng.integers(5, 60, size=(2, 7))
upstream = rng.standard_normal((2, 7, 16))
for model in (shared, unshared):
    out = model(x)
    model.zero_grad()
    model.backward(upstream, np.zeros_like(out.pooler_output))
name = "encoder.albert_layer_groups.{}.albert_layers.0.ffn.weight"
gradients = dict(unshared.named_parameters())
summed = sum(gradients[name.format(g)].grad for g in range(3))
print(f"{len(shared.encoder.calls)} uses of one group, each with its own cache")
print("outputs equal:", np.allclose(shared(x).last_hidden_state, unshared(x).last_hidden_state, rtol=0, atol=1e-13))
print(f"shared gradient vs the three copies' sum: max difference "
      f"{np.abs(weights[name.format(0)].grad - summed).max():.1e} (of {np.abs(summed).max():.1e})")

# %% [markdown]
# Parameter counts at the papers' base sizes (a 30,000-word vocabulary; with
# `MINI_BERT_FAST=1` the tiny shape instead): sharing makes ALBERT-base about a tenth of
# BERT-base, while its compute per token stays BERT's.

# %%
size = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512) if FAST else \
    dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
vocab_size = 30000
models = {
    "BERT": lambda: BertForPreTraining(BertConfig(vocab_size=vocab_size, **size)),
    "RoBERTa": lambda: RobertaForMaskedLM(RobertaConfig(vocab_size=vocab_size, **size)),
    "ALBERT": lambda: AlbertForPreTraining(AlbertConfig(vocab_size=vocab_size, embedding_size=128, **size)),
    "ELECTRA (discriminator)": lambda: ElectraForPreTraining(ElectraConfig(vocab_size=vocab_size, embedding_size=128,
                                                                           **size)),
    "DistilBERT": lambda: DistilBertForMaskedLM(DistilBertConfig(
        vocab_size=vocab_size, dim=size["hidden_size"], n_layers=size["num_hidden_layers"] // 2,
        n_heads=size["num_attention_heads"], hidden_dim=size["intermediate_size"])),
}
counts = {}
for label, build in models.items():
    counts[label] = build().num_parameters()
    print(f"{label:24s} {counts[label] / 1e6:7.1f} M parameters")

# %% [markdown]
# ## 3 · ELECTRA: learn from every token
#
# BERT learns from the 15 % of positions it masked. ELECTRA gives the masked positions to a
# small generator (an MLM a quarter as wide), *samples* a token from its softmax at each
# (no gradient flows through the sampling), and trains the discriminator to say, at **every**
# position, whether the token there is the original or a replacement:
#
# $$\mathcal{L} = \mathcal{L}_\text{MLM}(\text{generator}) + \lambda \cdot \frac{1}{n}\sum_{t}
# \big[\operatorname{softplus}(x_t) - y_t\,x_t\big], \qquad \lambda = 50,$$
#
# with $x_t$ the discriminator's logit and $y_t = 1$ where the token was replaced. The two
# models share the token, position and type embeddings, so those tables get both gradients.
# The discriminator's head and loss, against BERT's MLM loss:

# %%
print(inspect.getsource(electra.replaced_token_detection_loss))

# %% [markdown]
# Train a tiny ELECTRA for a few hundred steps with the real trainer
# (`python -m numpy_bert train --objective electra`, run in-process here) and look at what
# it does to one sentence: which tokens the generator replaced, and how sure the
# discriminator is about each. Most tokens are never replaced (the generator's sample is
# often the original word, and 85 % of positions are not masked), so the accuracy to beat
# is that of always answering "original", the dashed line.

# %%
import shutil
import tempfile

from numpy_bert.cli.main import main
from numpy_bert.training.electra import ReplacedTokenDetection

run = Path(tempfile.mkdtemp(prefix="electra-")) / "run"
status = main(["train", "--objective", "electra", "--out", str(run), "--steps", "30" if FAST else "400",
               "--seq-len", "64", "--batch-size", "16", "--eval-every", "30" if FAST else "200",
               "--eval-batches", "4", "--no-progress", "--no-plots"])
rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
train_rows = [r for r in rows if r["split"] == "train"]
replaced = np.mean([r["replaced_fraction"] for r in rows if r["split"] == "validation"])
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 2.8))
left.plot([r["step"] for r in train_rows], [r["discriminator_accuracy"] for r in train_rows],
          label="discriminator accuracy (all real tokens)")
left.axhline(1 - replaced, color="gray", ls="--", label=f"always 'original': {1 - replaced:.3f}")
left.set(xlabel="step", title="ELECTRA-tiny's discriminator")
left.legend(fontsize=8)
right.plot([r["step"] for r in train_rows], [r["discriminator_loss"] for r in train_rows], label="discriminator")
right.plot([r["step"] for r in train_rows], [r["generator_loss"] for r in train_rows], label="generator (MLM)")
right.set(xlabel="step", ylabel="loss (nats)", yscale="log", title="its two losses")
right.legend(fontsize=8)
plt.show()

# %%
pair = ReplacedTokenDetection.from_pretrained(run).eval()
tokenizer = numpy_bert.BertTokenizer.from_pretrained(run)
text = "The function returns a list of the keys in the dictionary, sorted by their values."
batch = tokenizer(text, return_tensors="np")
ids = batch["input_ids"].copy()
labels = np.full_like(ids, -100)
masked = [3, 6, 9, 12]  # positions to mask: the generator fills them
labels[0, masked] = ids[0, masked]
ids[0, masked] = tokenizer.mask_token_id
out = pair(ids, labels, np.random.default_rng(3), batch["attention_mask"], batch["token_type_ids"])
p_replaced = 1 / (1 + np.exp(-out.discriminator_logits[0]))
tokens = tokenizer.convert_ids_to_tokens(out.corrupted_input_ids[0].tolist())
originals = tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
for t, (token, original, p) in enumerate(zip(tokens, originals, p_replaced)):
    mark = ("replaced: was " + original) if token != original else ("masked, sampled back" if t in masked else "")
    print(f"{token:>14s}  P(replaced) = {p:.2f}  {mark}")
shutil.rmtree(run.parent)

# %% [markdown]
# After these few hundred steps the discriminator still answers about the base rate, the
# fraction of replaced tokens, almost everywhere; only [CLS] and [SEP], which are never
# masked, it already knows to be original. Section 6 shows that at this scale it stays so.

# %% [markdown]
# ## 4 · DistilBERT: half the layers, taught by a BERT
#
# DistilBERT is BERT with every other layer and no token types, under XLM's names. The
# block is BERT's layer with the LayerNorms moved into it:

# %%
diff(modeling.BertLayer.forward, distilbert.TransformerBlock.forward)

# %% [markdown]
# It is pre-trained by distillation (`python -m numpy_bert train --objective distillation
# --teacher python-docs`): the student starts from every other layer of the teacher and
# learns from the teacher's softened predictions,
#
# $$\mathcal{L} = \alpha_{ce}\,\tau^2\,\mathrm{KL}\big(\operatorname{softmax}(z_t/\tau)\,\|\,
# \operatorname{softmax}(z_s/\tau)\big) + \alpha_{mlm}\,\mathcal{L}_\text{MLM}
# + \alpha_{cos}\,\big(1 - \cos(h_s, h_t)\big),$$
#
# with τ = 2 and α = 5, 2, 1 (the DistilBERT command of transformers' distillation example).
# Its soft-target term, whose gradient is $\alpha_{ce}\tau\,(p_s - p_t)/n$ per logit:

# %%
print(inspect.getsource(distilbert.soft_target_loss))

# %% [markdown]
# ## 5 · Held to transformers
#
# Every member's logits and gradients match transformers' classes in float64 to 1e-10 in
# `parity_tests/`. Here is one batch of each, our random weights saved with
# `save_pretrained` and loaded by transformers:

# %%
shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=99)
ours = {
    "RobertaForMaskedLM": RobertaForMaskedLM(RobertaConfig(**shape), seed=0, dtype=np.float64),
    "AlbertForPreTraining": AlbertForPreTraining(AlbertConfig(embedding_size=16, **shape), seed=0, dtype=np.float64),
    "ElectraForPreTraining": ElectraForPreTraining(ElectraConfig(embedding_size=16, **shape), seed=0,
                                                   dtype=np.float64),
    "DistilBertForMaskedLM": DistilBertForMaskedLM(DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                                    vocab_size=99), seed=0, dtype=np.float64),
}
ids = rng.integers(3, 99, size=(2, 9))
mask = np.ones_like(ids)
mask[1, 6:] = 0
with tempfile.TemporaryDirectory() as folder:
    for name, model in ours.items():
        model.eval().save_pretrained(folder)
        reference = getattr(transformers, name).from_pretrained(folder, dtype=torch.float64).eval()
        mine = model(ids, attention_mask=mask)
        logits = mine.logits if hasattr(mine, "logits") else mine.prediction_logits
        with torch.no_grad():
            theirs = reference(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        their_logits = (theirs.logits if hasattr(theirs, "logits") else theirs.prediction_logits).numpy()
        real = mask.astype(bool)
        error = np.abs(logits[real] - their_logits[real]).max() / np.abs(their_logits[real]).max()
        print(f"{name:22s} max relative error of the logits on real tokens: {error:.1e}")

# %% [markdown]
# ## 6 · Side by side: what each one learns from the same text
#
# `python -m benchmarks.family` pre-trains every member from fresh weights on the embedded
# corpus at the tiny shape (2 layers, hidden 128), at two compute budgets (the FLOPs of 300 and
# 900 BERT steps of 32 sequences; each member gets the steps that cost as much), and DistilBERT from
# python-docs next to its own shape trained from scratch. The objectives' losses are not
# comparable to each other, so the yardstick is a **linear probe**: a softmax regression on
# each encoder's mean-pooled vectors of the demo task's passages, trained on 1000 and
# scored on 400 held out. The committed results:

# %%
from benchmarks.family import PATH, plot, table

document = json.loads(PATH.read_text())
print(table(document))
figure_path = plot(document, Path(tempfile.mkdtemp()) / "family.png")
plt.figure(figsize=(12, 4.2))
plt.imshow(plt.imread(figure_path))
plt.axis("off")
plt.show()

# %% [markdown]
# At this budget (about $10^{13}$ FLOPs, minutes of one CPU core; the papers spent $10^{18}$ and
# more) RoBERTa and ALBERT probe better than BERT at equal compute, DistilBERT keeps most of
# its teacher while the same shape from scratch stays near its floor, and ELECTRA has not
# started: its discriminator gives the base-rate answer, "original" everywhere. The figures
# say so: its accuracy is one minus the fraction of replaced tokens, and its loss barely under
# the binary entropy of that fraction (it has learned that [CLS] and [SEP] are never
# replaced). Its generator is still barely better than word frequencies, so a replacement
# looks like any other word until the discriminator learns context.
# ([The family](../docs/family.md#side-by-side) discusses the numbers.)

# %%
last = document["members"]["electra"]["runs"][-1]["validation"][-1]
q = last["replaced_fraction"]
entropy = -(q * np.log(q) + (1 - q) * np.log(1 - q))
print(f"ELECTRA, step {last['step']}: discriminator accuracy {last['discriminator_accuracy']:.4f}, "
      f"= 1 - replaced fraction {1 - q:.4f}; its loss {last['discriminator_loss']:.4f} nats, just under the "
      f"{entropy:.4f} of answering the base rate {q:.4f} everywhere (the binary entropy)")

# %% [markdown]
# ## Exercise · RoBERTa's position ids
#
# Write `roberta_position_ids(input_ids, padding_idx)` of section 1: the real tokens of each
# row count up from `padding_idx + 1`, padding gets `padding_idx`, wherever it sits in the
# row. The checker compares with `numpy_bert.roberta.create_position_ids_from_input_ids`
# (itself held to transformers) on right, left and middle padding. Stuck? `ex.hint(
# "roberta_position_ids")`; a worked solution is in
# [solutions/11_bert_family.py](solutions/11_bert_family.py).

# %%
from numpy_bert import exercises as ex


def roberta_position_ids(input_ids, padding_idx):
    raise NotImplementedError("your code here")


verdict = ex.check("roberta_position_ids", roberta_position_ids)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Give ALBERT `num_hidden_groups=3` for 3 layers: the parameters triple and the model is
#    BERT with factorised embeddings. Does the shared-weight gradient check of section 2
#    still need `shared_copy`?
# 2. Train `--objective electra` with `--generator-size 1.0`: the paper found a generator as
#    large as the discriminator makes the task too hard. What happens to the discriminator's
#    accuracy, and to its probe?
# 3. Distil with `--alpha-cos 0` and with `--alpha-mlm 0`: which term carries the student?
# 4. Tokenize the same paragraph with the BPE tokenizer of section 1 and with WordPiece:
#    which one needs fewer tokens, and on what kind of text?
