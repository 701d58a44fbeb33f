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
# This notebook uses `numpy_bert.pipelines.sentence_embeddings.SentenceEncoder` for a small
# semantic search over sentences of the embedded corpus, draws a similarity heat map,
# and checks the vectors against transformers.

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
from numpy_bert.pipelines.sentence_embeddings import SentenceEncoder, mean_pool

plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: search fewer sentences
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
# ## 2 · Semantic search over the corpus
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
# ## 3 · A similarity heat map
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
# ## 4 · Agreement with transformers
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
# ## Exercises
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
# 5. Use the corpus vectors for a *classifier*: for each sentence, predict the demo
#    label of notebook 07 from its 5 nearest neighbours among the others. How does it
#    compare with the fine-tuned tiny BERT?
