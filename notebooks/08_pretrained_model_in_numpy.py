# %% [markdown]
# # 08 · A real pretrained model in pure NumPy: sentence embeddings
#
# [all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2) is a
# small BERT (6 layers, hidden size 384, 22.7 M parameters) that sentence-transformers
# trained so that sentences with similar meanings get nearby vectors. Its checkpoint is
# a plain transformers `BertModel`, so numpy_bert loads it as it is. A sentence vector
# is the **mean of the last layer's token vectors** (over the real tokens, not the
# padding), **L2-normalised**; the cosine similarity of two sentences is then the dot
# product of their vectors.
#
# This notebook uses `numpy_bert.pipelines.sentence_embeddings.SentenceEncoder` to show
# that a word's token vector depends on its sentence, for a small semantic search over
# sentences of the embedded corpus, a similarity heat map and a 2-D map of the demo
# task's passages, and checks the vectors against transformers.

# %%
import inspect
import os
import textwrap
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, without ipywidgets

from numpy_bert.checkpoint import named_model_dir
from numpy_bert.data.corpus import load_default_corpus
from numpy_bert.data.demo_tasks import demo_dataset
from numpy_bert.pipelines.sentence_embeddings import SentenceEncoder, mean_pool

plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: fewer sentences and passages
encoder = SentenceEncoder.from_pretrained("minilm")  # float32
config = encoder.model.config
print(f"{config.num_hidden_layers} layers, hidden size {config.hidden_size}, "
      f"{encoder.model.num_parameters() / 1e6:.1f} M parameters; pooling: {encoder.pooling}")

# %% [markdown]
# ## 1 · From token vectors to one sentence vector
#
# The pooling is read from the model's sentence-transformers files (`1_Pooling/config.json`,
# `modules.json`); the encoder sorts the sentences by length so that each batch needs
# little padding:

# %%
print(inspect.getsource(mean_pool))
print(inspect.getsource(SentenceEncoder.encode))

# %% [markdown]
# ## 2 · One word, two meanings
#
# The token vectors that the pooling averages are *contextual*: each layer mixes every
# token with the others, so the same word gets a different vector in every sentence.
# Take "class" in four sentences about a school and four about Python, and compare its
# vectors by cosine similarity: as a row of the input embedding table (the lookup before
# any layer: the same row in every sentence, whatever it means there) and as the last
# layer's output at its position.

# %%
word = "class"
contexts = ["The teacher asked the class to sit down.", "Our class went on a trip to the museum.",
            "The whole class passed the exam.", "She is the best student in her class.",
            "Define a class with an __init__ method.", "Every instance of the class shares its methods.",
            "This class inherits from object.", "Call the class to create a new object."]
sense = np.array([0] * 4 + [1] * 4)  # 0: a group of pupils, 1: a Python class
tokenizer, model = encoder.tokenizer, encoder.model
word_id = tokenizer.convert_tokens_to_ids(word)  # "class" is one WordPiece token
batch = tokenizer(contexts, padding=True, return_tensors="np")
where = np.array([list(row).index(word_id) for row in batch["input_ids"]])  # its position in each sentence
states = model(batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True).hidden_states
rows = np.arange(len(contexts))
table_rows = model.embeddings.word_embeddings(batch["input_ids"])[rows, where]  # (8, 384): the lookup
per_layer = [state[rows, where] for state in states]  # embeddings output (position added, LayerNorm), layers 1-6


def cosines(vectors):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit @ unit.T


def within_and_across(similarity):
    # mean cosine of pairs with the same sense (the diagonal left out), and of pairs with different senses
    same = np.equal.outer(sense, sense)
    return similarity[same & ~np.eye(len(sense), dtype=bool)].mean(), similarity[~same].mean()


print(f"'{word}' at positions {where.tolist()}; the table row is the same in all 8: "
      f"{all(np.array_equal(r, table_rows[0]) for r in table_rows)}")
for name, vectors in [("embedding table row", table_rows), ("embeddings output (+ position)", per_layer[0]),
                      *[(f"layer {i}", v) for i, v in enumerate(per_layer[1:], 1)]]:
    within, across = within_and_across(cosines(vectors))
    print(f"{name:<31} mean cosine, same sense {within:.3f}, different senses {across:.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
short = [f"{k + 1}. {textwrap.shorten(c, 30, placeholder='...')}" for k, c in enumerate(contexts)]
for ax, (title, vectors) in zip(axes, [("input embedding table (same row everywhere)", table_rows),
                                        (f"last layer ({config.num_hidden_layers})", per_layer[-1])]):
    similarity = cosines(vectors)
    image = ax.imshow(similarity, cmap="viridis", vmin=0.5, vmax=1)
    for (i, j), value in np.ndenumerate(similarity):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if value < 0.8 else "black")
    ax.axhline(3.5, color="white", linewidth=1)
    ax.axvline(3.5, color="white", linewidth=1)
    ax.set_xticks(range(8), range(1, 9))
    ax.set_yticks(range(8), short if ax is axes[0] else [])
    ax.set(title=f"'{word}': {title}", xlabel="sentence (1-4 school, 5-8 Python)")
fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity of the token vectors")
plt.show()

# %% [markdown]
# The table gives "class" one vector: cosine 1 everywhere, blind to the meaning. After six
# layers the two senses separate: the school sentences are closer to one another than to
# the Python ones. The gap opens in the first layer, where "class" starts to mix with
# its neighbours, and is widest after the last (the table above). All the cosines
# stay high, because a model's token vectors share a few large common directions; it is
# the difference between the blocks that carries the meaning. This is what lets the
# mean of the token vectors, the sentence vector, tell sentences apart.
#
# ## 3 · Semantic search over the corpus
#
# A thousand sentences (120 with `MINI_BERT_FAST=1`) drawn at random from
# the embedded corpus of Python's documentation, embedded once; a query is embedded the
# same way and the sentences are ranked by cosine similarity. No word has to match:

# %%
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

# %% [markdown]
# ## 4 · A similarity heat map
#
# Eight sentences, two on each of four topics, with few words in common within a pair.
# Pairs on the same topic should light up next to the diagonal:

# %%
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

# %% [markdown]
# ## 5 · The demo task's passages on a map
#
# Notebook 07 fine-tunes a classifier on the offline demo task: which part of the Python
# docs does a passage (two consecutive sentences) come from, the language reference or
# one of five families of library modules (`numpy_bert.data.demo_tasks`; train and eval
# are split by document). Here no model is trained: the passages are embedded with
# MiniLM (300 for training, 150 held out; 72 and 36 with `MINI_BERT_FAST=1`) and
# projected to 2-D with PCA, written in NumPy: centre the matrix, take its SVD, keep the
# two right singular vectors of the largest singular values (the two directions of
# largest variance).

# %%
train_rows, eval_rows = demo_dataset("classify", train_size=72 if FAST else 300, eval_size=36 if FAST else 150)
labels = sorted({row["label"] for row in train_rows})


def embed(rows):
    return (encoder.encode([row["text"] for row in rows], progress=False),
            np.array([labels.index(row["label"]) for row in rows]))


start = time.perf_counter()
X_train, y_train = embed(train_rows)  # (N, 384) unit vectors, (N,) label indices
X_eval, y_eval = embed(eval_rows)
print(f"embedded {len(X_train)} + {len(X_eval)} passages in {time.perf_counter() - start:.1f} s")

mean = X_train.mean(axis=0)
_, singular, Vt = np.linalg.svd(X_train - mean, full_matrices=False)  # rows of Vt: directions, largest first
components = Vt[:2]                                                    # (2, 384)
P_train, P_eval = (X_train - mean) @ components.T, (X_eval - mean) @ components.T  # (N, 2)
explained = singular ** 2 / (singular ** 2).sum()
print(f"variance along the two components: {explained[0]:.1%} and {explained[1]:.1%} of the total")


def nearest_centroid_accuracy(train, evaluation):
    # the fraction of held-out passages whose nearest label centroid (mean of the training passages) is theirs
    centroids = np.stack([train[y_train == c].mean(axis=0) for c in range(len(labels))])
    distances = ((evaluation[:, None, :] - centroids[None]) ** 2).sum(axis=-1)  # (N_eval, labels)
    return (distances.argmin(axis=1) == y_eval).mean()


neighbours = np.argsort(-(X_eval @ X_train.T), axis=1)[:, :5]  # the 5 most similar training passages
votes = np.array([np.bincount(y_train[row], minlength=len(labels)).argmax() for row in neighbours])
print(f"\nheld-out accuracy ({len(y_eval)} passages of documents never seen in training, {len(labels)} labels):")
print(f"  nearest centroid, 384-D sentence vectors: {nearest_centroid_accuracy(X_train, X_eval):.1%}")
print(f"  5 nearest neighbours (cosine), 384-D:     {(votes == y_eval).mean():.1%}")
print(f"  nearest centroid, the 2-D PCA map:        {nearest_centroid_accuracy(P_train, P_eval):.1%}")
print(f"  chance: 1/{len(labels)} = {1 / len(labels):.1%}; always the most common eval label: "
      f"{np.bincount(y_eval).max() / len(y_eval):.1%}")

# %%
fig, ax = plt.subplots(figsize=(8.5, 5.6), layout="constrained")
for c, label in enumerate(labels):
    colour = plt.cm.tab10(c)
    ax.scatter(*P_train[y_train == c].T, s=16, color=colour, alpha=0.7, label=label)
    ax.scatter(*P_eval[y_eval == c].T, s=30, color=colour, marker="x")
ax.set(title="Demo-task passages, MiniLM sentence vectors projected on their two main directions (PCA)",
       xlabel=f"component 1 ({explained[0]:.1%} of the variance)",
       ylabel=f"component 2 ({explained[1]:.1%} of the variance)")
ax.legend(title="label (dots: train, crosses: held out)", fontsize=8, loc="best")
plt.show()

# %% [markdown]
# MiniLM was never told about these labels, yet passages of one part of the docs lie
# near one another: a nearest-centroid rule in the 384-dimensional space gets far above
# chance on documents it has not seen. The 2-D map shows only a few percent of the
# variance, so the groups overlap there much more than they do in 384 dimensions, and
# the same rule on the map alone does much worse: a picture of an embedding shows its
# main directions, not everything a classifier can use.
#
# ## 6 · Agreement with transformers
#
# The same checkpoint in transformers' `BertModel` (PyTorch), pooled and normalised the
# sentence-transformers way in torch, on the eight sentences and the queries. In float32
# the two should agree to rounding, about $10^{-6}$ to $10^{-7}$ on vectors of unit
# length (`parity_tests/test_minilm_reference.py` holds this to $10^{-5}$ relative):

# %%
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

# %% [markdown]
# ## 7 · A quarter of the size: int8 weights
#
# `python -m numpy_bert quantize` stores every weight matrix of the model (and the word
# embeddings) as int8, one float32 scale per row: row $i$ gets the step
# $s_i = \max_j |W_{ij}| / 127$ and each weight becomes the integer
# $Q_{ij} = \mathrm{round}(W_{ij}/s_i) \in [-127, 127]$. A layer then computes
# $y_i = s_i \sum_j x_j Q_{ij} + b_i$: the scale belongs to the output $i$, so it leaves the sum,
# and the matrix product runs on the integers. Each weight is off by at most half a step,
# $|W_{ij} - s_i Q_{ij}| \le s_i/2$ ([numpy_bert/quantization.py](../numpy_bert/quantization.py)
# derives the rest; [docs/deployment.md](../docs/deployment.md) measures it on more models).

# %%
import shutil
import tempfile
from pathlib import Path

from numpy_bert.cli.main import main
from numpy_bert.quantization import dequantize_rows, quantize_rows

int8_dir = Path(tempfile.mkdtemp(prefix="minilm-int8-"))
status = main(["quantize", "minilm", "--out", str(int8_dir / "model")])
int8_encoder = SentenceEncoder.from_pretrained(int8_dir / "model")  # int8 layers, float32 activations
subset = sentences[:200]
cosine = (int8_encoder.encode(subset, progress=False) * vectors[:200]).sum(axis=1)  # both unit length
print(f"cosine of int8 to float32 sentence vectors, {len(subset)} sentences: "
      f"mean {cosine.mean():.5f}, lowest {cosine.min():.5f}")

w = encoder.model.encoder.layer[0].intermediate.dense.weight.data  # (1536, 384)
q, scale = quantize_rows(w)
steps = (w - dequantize_rows(q, scale)) / scale[:, None]  # each weight's rounding error, in steps
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
axes[0].hist(steps.ravel(), bins=60, color="tab:gray")
axes[0].set(title="rounding error of layer 0's feed-forward weights, in steps $s_i$", xlabel="(W - sQ) / s",
            ylabel="weights")
axes[1].hist(cosine, bins=30, color="tab:purple")
axes[1].set(title="int8 vs float32: cosine of sentence vectors", xlabel="cosine similarity", ylabel="sentences")
fig.tight_layout()
plt.show()

# %% [markdown]
# The errors spread evenly over $[-\tfrac12, \tfrac12]$ of a step, as rounding does, and
# they do not pile up: the sentence vectors barely move (a cosine of 1 would be no change),
# so search and the nearest-centroid classifier above rank alike in int8. The file shrinks
# to about a quarter because each weight takes one byte instead of four.

# %%
print(f"model.safetensors: {(Path(named_model_dir('minilm')) / 'model.safetensors').stat().st_size / 1e6:.1f} MB "
      f"in float32, {(int8_dir / 'model' / 'model.safetensors').stat().st_size / 1e6:.1f} MB in int8")
shutil.rmtree(int8_dir)  # the int8 copy was temporary

# %% [markdown]
# ## Exercises
#
# ### Exercise · Mean pooling
# Write `mean_pooling(hidden, attention_mask)`, the pooling of section 1: `hidden` (B, T, C)
# the last layer's token vectors, `attention_mask` (B, T) with 1 for a real token and 0 for
# padding; return (B, C), for each sentence the mean of its real tokens' vectors only.
# The checker compares with `numpy_bert.pipelines.sentence_embeddings.mean_pool` and with a
# mean taken row by row, with padding on the right, on the left and none (and huge values
# in the padded positions, so averaging them cannot go unnoticed).
# Stuck? `ex.hint("mean_pooling")` gives a hint per call; a worked solution is in
# [solutions/08_pretrained_model_in_numpy.py](solutions/08_pretrained_model_in_numpy.py).

# %%
from numpy_bert import exercises as ex


def mean_pooling(hidden, attention_mask):
    raise NotImplementedError("your code here")


verdict = ex.check("mean_pooling", mean_pooling)  # prints the verdict

# %% [markdown]
# ### Exercise · int8 rows
# Write `quantize_rows(w)` of section 7: for a float32 matrix `w` (rows, cols), return
# `q` (int8, in [-127, 127]) and `scale` (float32, one per row) with `w ≈ scale[:, None] * q`,
# each row's largest |w| on ±127. The checker compares with `numpy_bert.quantization` on a
# matrix with rows of very different sizes, an all-zero row and a row with one outlier.

# %%
def quantize_rows(w):
    raise NotImplementedError("your code here")


verdict = ex.check("quantize_rows", quantize_rows)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Replace mean pooling by the `[CLS]` vector (`encoder.pooling.mode = "cls"`) and
#    redraw the heat map. Why does the model's own pooling work better?
# 2. Load the encoder in float64 (`SentenceEncoder.from_pretrained("minilm",
#    dtype=np.float64)`) and compare with transformers in float64
#    (`reference.double()`). How small does the difference get?
# 3. Search with a query that shares words with wrong answers but not with right ones
#    (e.g. "a list of the weather"). How does embedding search compare with counting
#    shared words?
# 4. Time `encoder.encode` with `batch_size` 1, 8, 32 and 128 on the same sentences.
#    Where does the time per sentence stop improving, and why does sorting by length
#    matter?
# 5. Section 5 classifies without training. Vary k of the nearest-neighbour vote (1, 5,
#    15) and the number of training passages: where does the accuracy stop improving?
#    Compare with notebook 07's fine-tuned tiny BERT on the same task.
# 6. Quantize with one scale for the whole matrix instead of one per row: how much
#    larger is the rounding error of the rows with small weights, and the change in the
#    sentence vectors?
# 7. Find another word with two senses (e.g. "set", "return", "bank") and measure, layer
#    by layer, when its senses separate. Does a word split into WordPieces behave the
#    same (average its pieces)?
