# %% [markdown]
# # 09 · Speed: NumPy against PyTorch, CPU against GPU
#
# How fast is a hand-written NumPy BERT? This notebook plots the committed results of
# the benchmark suite (`benchmarks/`, run with `python -m benchmarks`; its
# [README](../benchmarks/README.md) gives the protocol and the `results.json` schema),
# explains how FLOPs and MFU are counted, and ends with a small live timing on
# whatever machine runs the notebook.
#
# The backends: `numpy` is the readable `numpy_bert` model, `numpy_fast` the same model
# with fused kernels (`numpy_bert.fast`), `torch_bert` its PyTorch twin, and
# transformers' `BertForPreTraining` as the outside reference; on a GPU, torch_bert and
# transformers in bf16 autocast. A *training step* is forward, backward and an AdamW
# update; *inference* is one forward pass.

# %%
import inspect
import json
import os
import timeit
import warnings
from pathlib import Path

import matplotlib.pyplot as plt

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
# The plots show the newest run only (the others are listed above, and in benchmarks/README.md).
shown = sorted(documents, key=lambda d: d["created"], reverse=True)[:1]


# %% [markdown]
# ## 1 · Throughput by backend and model size
#
# Tokens per second of the headline cells (batch and length in each title), for the
# BERT miniatures tiny (2 layers × 128),
# mini (4 × 256), small (4 × 512) and, on a GPU, base (12 × 768). Cells a machine
# could not run (no GPU) are recorded as skipped, never estimated.

# %%
def cells(doc, sweep, **match):
    return [c for c in doc["cells"] if c["status"] == "ok" and sweep in c["sweeps"]
            and all(c[k] == v for k, v in match.items())]


def plain(axis, locate=True):
    # label a log axis with plain numbers at 1, 2, 5, 10, 20, ... (not powers of ten)
    if locate:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


for doc in shown:
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

# %% [markdown]
# ## 2 · Time against sequence length
#
# Per token, the dense layers cost the same at any length, but attention compares every
# token with every other: its cost per sequence grows as $T^2$. On log-log axes a cost
# $\propto T$ is a line of slope 1, $\propto T^2$ slope 2. The dashed curve is the FLOP
# model below (section 4), scaled to the fastest backend's first point.

# %%
for doc in shown:
    for device in ("cpu", "cuda"):
        fig = seq_len_figure(doc, device)  # the figure `python -m benchmarks` saves as seq_len*.png
        if fig is not None:
            fig.suptitle(f"{device.upper()}: {doc['label']}")
            plt.show()

# %% [markdown]
# ## 3 · Speed-up over readable NumPy
#
# Reference time / backend time, from the `headline` block of `results.json`: 3.0 means
# three times faster than the readable NumPy model on the same machine and shape.

# %%
for doc in shown:
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

# %% [markdown]
# ## 4 · FLOPs and MFU
#
# Speeds in tokens per second depend on the model size; **FLOP/s** do not, so they
# compare backends and sizes on one scale. `benchmarks/flops.py` counts only the matrix
# products (2 FLOPs per multiply-add): with $L$ layers, hidden size $C$, feed-forward
# size $I = 4C$, vocabulary $V$, batch $B$, length $T$ and $P$ positions through the
# MLM decoder,
#
# $$\text{forward} = BT\,\big(2L(4C^2 + 2CI) + 4LTC\big) + 2B(C^2 + 2C) + 2P(C^2 + VC),
# \qquad \text{training step} = 3 \times \text{forward},$$
#
# the backward pass doing two products (input gradient and weight gradient) per forward
# one. **MFU** (model FLOPs utilisation) is the achieved model FLOP/s divided by the
# device's peak: on CPU the best float32 matrix-multiply rate measured in the same run,
# on GPU the datasheet bf16 figure. An MFU of 50 % means half of the machine's
# arithmetic went into the model's useful work.

# %%
print(inspect.getsource(forward_flops))
shape = Shape.of(numpy_bert.BertConfig.from_preset("mini"))
flops = step_flops(shape, "train", 32, 128, 32 * round(0.15 * 128))["model"]
print(f"BERT-mini training step, batch 32 x 128: {flops / 1e9:.1f} GFLOP; attention equals the dense layers at "
      f"T = {attention_crossover(shape):.0f} tokens")

for doc in shown:
    peak = doc["peaks"].get("cpu_gflops")
    print(f"\n{doc['label']}: CPU peak {peak or float('nan'):.1f} GFLOP/s (measured), "
          f"GPU peak {doc['peaks'].get('gpu_tflops') or '-'} TFLOP/s (datasheet)")
    print(f"  {'cell':<40} {'ms/step':>9} {'GFLOP/step':>10} {'GFLOP/s':>9} {'MFU':>7}")
    for c in cells(doc, "headline"):
        mfu = "-" if c["mfu"] is None else f"{c['mfu']:.1%}"
        print(f"  {c['id']:<40} {c['ms_per_step']:9.1f} {c['flops']['model'] / 1e9:10.2f} "
              f"{c['gflops_per_s']:9.1f} {mfu:>7}")

# %% [markdown]
# MFU would be 100 % if the machine did nothing but the counted matrix products, at its
# best matrix-multiply rate. The gap is the work FLOP counts leave out but the clock
# does not (softmax, LayerNorm, GELU, dropout, the optimizer, copies and reshapes,
# Python overhead) and smaller matrices running below the peak rate. That is why the
# training step (more of that work per FLOP) usually sits lower than inference, why
# bigger models (bigger matrices) sit higher, and what `numpy_bert.fast` wins back by
# fusing the element-wise work.
#
# ## 5 · A live timing on this machine (indicative)
#
# The benchmark's own training step (`benchmarks.backends.prepare`: forward, backward,
# AdamW) for BERT-tiny with its 30,522-token vocabulary, batch 8 × 64, best of a few
# runs. It runs in *this* process with NumPy and torch side by side (the benchmark
# keeps them in separate processes, so that torch's idle threads do not compete), on
# whatever machine executes the notebook: the committed outputs come from a shared
# 2-core CPU. Indicative only.

# %%
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

# %% [markdown]
# ## Exercises
#
# Each exercise below is checked: fill in the stub and run the cell. `ex.hint(name)` gives
# one hint per call; worked solutions are in
# [solutions/09_speed.py](solutions/09_speed.py).

# %% [markdown]
# ### Exercise · the FLOPs of one encoder layer
#
# Write `layer_flops(hidden_size, intermediate_size, seq_len)` → the forward matmul FLOPs of one
# layer for one sequence (2 per multiply-add): the four projections, the scores and `probs @ v`,
# and the feed-forward. The checker compares with the count the benchmarks use for MFU, over
# several shapes.

# %%
from numpy_bert import exercises as ex


def layer_flops(hidden_size, intermediate_size, seq_len):
    raise NotImplementedError("your code here")


verdict = ex.check("layer_flops", layer_flops)  # prints the verdict

# %% [markdown]
# ### More to try
#
# 1. Run `python -m benchmarks --quick` on your machine and re-run this notebook: how
#    do your CPU's numbers compare with the committed ones? Which backend gains most
#    from more cores (`--threads`)?
# 2. From the sequence-length sweep, estimate the slope of each curve between the two
#    longest lengths. At what length would attention dominate BERT-mini's step
#    (`attention_crossover`)?
# 3. Compute the MFU of the live timing above, with the GEMM peak of this machine:
#    time `a @ b` for two float32 1024 × 1024 matrices and use $2n^3$ FLOPs.
# 4. Profile the readable NumPy step (`python -m benchmarks --profile`, needs
#    `pyinstrument`). Which layers take the time, and which of them does
#    `numpy_bert/fast/` fuse?
# 5. The training FLOPs count only the 15 % labelled positions in the MLM decoder.
#    How much more would transformers' full projection cost for BERT-tiny at
#    32 × 128 (`step_flops(..., all_positions_in_training=True)`)?
