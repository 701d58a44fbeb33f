"""The parity report: one Mini-BERT, its weights loaded into numpy_bert, torch_bert and transformers.

    python -m parity_tests.report [--config mini] [--batch-size 4] [--seq-len 64] [--out runs/parity-report]

Builds a BERT miniature with random weights in float64, saves it once, loads that
checkpoint into all three implementations, runs the same masked-LM + NSP batch
through each and prints, for every tensor (loss, logits, each parameter's gradient),
the relative error of numpy_bert against torch_bert and against transformers. Then it
times a float32 training step (forward + backward) in each. Writes parity.json and a
histogram of the errors (errors.png) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import transformers

import numpy_bert
import torch_bert
from numpy_bert.config import PRESETS

from .builders import comparable_with_reference, outputs_and_gradients, random_batch, run_numpy, run_torch
from .compare import compare

TOLERANCE = 1e-10


def load_all(folder: str, dtype: str):
    np_dtype, torch_dtype = {"float64": (np.float64, torch.float64), "float32": (np.float32, torch.float32)}[dtype]
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return {
        "numpy_bert": numpy_bert.BertForPreTraining.from_pretrained(folder, dtype=np_dtype).eval(),
        "torch_bert": torch_bert.BertForPreTraining.from_pretrained(folder, dtype=torch_dtype).eval(),
        "transformers": transformers.BertForPreTraining.from_pretrained(
            folder, attn_implementation="eager", dtype=torch_dtype).eval(),
    }


def parity_rows(models: dict, batch: dict) -> list[dict]:
    results = {
        "numpy_bert": comparable_with_reference(outputs_and_gradients(*run_numpy(models["numpy_bert"], batch))),
        "torch_bert": comparable_with_reference(outputs_and_gradients(*run_torch(models["torch_bert"], batch))),
        "transformers": comparable_with_reference(outputs_and_gradients(*run_torch(models["transformers"], batch))),
    }
    vs_torch = compare(results["numpy_bert"], results["torch_bert"])
    vs_hf = compare(results["numpy_bert"], results["transformers"])
    return [{"tensor": a.name, "shape": list(a.shape), "vs_torch_bert": a.relative_error,
             "vs_transformers": b.relative_error} for a, b in zip(vs_torch, vs_hf)]


def step_seconds(run, model, batch, repeats: int) -> float:
    run(model, batch)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(model, batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(rows: list[dict]) -> None:
    width = max(len(r["tensor"]) for r in rows)
    print(f"{'tensor':<{width}}  {'shape':<14} {'vs torch_bert':>13} {'vs transformers':>15}")
    for r in rows:
        print(f"{r['tensor']:<{width}}  {tuple(r['shape'])!s:<14} "
              f"{r['vs_torch_bert']:13.2e} {r['vs_transformers']:15.2e}")


def plot_histogram(rows: list[dict], path: str) -> None:
    tiny = np.finfo(np.float64).eps / 16  # exact agreement, drawn at the left edge
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(-19, -8, 45)
    series = (("vs_torch_bert", "numpy_bert vs torch_bert", 3.0),
              ("vs_transformers", "numpy_bert vs transformers", 1.5))
    for key, label, width in series:  # outlines: the two often coincide exactly
        errors = np.log10(np.maximum([r[key] for r in rows], tiny))
        ax.hist(errors, bins=bins, histtype="step", linewidth=width, label=label)
    ax.axvline(np.log10(TOLERANCE), color="red", linestyle="--", label=f"tolerance {TOLERANCE:.0e}")
    ax.set(title="Per-tensor relative error, float64 (loss, logits, every gradient)",
           xlabel="log10 relative error", ylabel="number of tensors")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="mini", choices=sorted(PRESETS))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="runs/parity-report")
    args = parser.parse_args(argv)
    plt.switch_backend("Agg")  # files only; set here, not at import, so notebooks keep inline plots
    os.makedirs(args.out, exist_ok=True)

    config = numpy_bert.BertConfig.from_preset(args.config, initializer_range=0.1)
    checkpoint = os.path.join(args.out, "checkpoint")
    numpy_bert.BertForPreTraining(config, seed=0, dtype=np.float64).save_pretrained(checkpoint)
    batch = random_batch(config, args.batch_size, args.seq_len, np.random.default_rng(0))
    print(f"BERT-{args.config}: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"{config.num_attention_heads} heads, vocabulary {config.vocab_size}; "
          f"batch {args.batch_size} x {args.seq_len} tokens, float64\n")

    rows = parity_rows(load_all(checkpoint, "float64"), batch)
    print_table(rows)
    worst = {key: max(r[key] for r in rows) for key in ("vs_torch_bert", "vs_transformers")}
    passed = all(value <= TOLERANCE for value in worst.values())
    print(f"\nworst relative error: {worst['vs_torch_bert']:.2e} vs torch_bert, "
          f"{worst['vs_transformers']:.2e} vs transformers (tolerance {TOLERANCE:.0e}): "
          f"{'PASS' if passed else 'FAIL'}")

    models32 = load_all(checkpoint, "float32")
    runners = {"numpy_bert": run_numpy, "torch_bert": run_torch, "transformers": run_torch}
    timings = {name: step_seconds(runners[name], model, batch, args.repeats) for name, model in models32.items()}
    print(f"\nfloat32 forward + backward, median of {args.repeats} ({torch.get_num_threads()} torch threads):")
    for name, seconds in timings.items():
        print(f"  {name:<13} {seconds * 1000:8.1f} ms")

    with open(os.path.join(args.out, "parity.json"), "w") as f:
        json.dump({"config": args.config, "batch_size": args.batch_size, "seq_len": args.seq_len,
                   "tolerance": TOLERANCE, "worst": worst, "passed": passed, "tensors": rows,
                   "step_seconds_float32": timings}, f, indent=2)
    plot_histogram(rows, os.path.join(args.out, "errors.png"))
    print(f"\nwrote {args.out}/parity.json and {args.out}/errors.png")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
