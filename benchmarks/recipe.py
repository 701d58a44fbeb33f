"""The pre-training recipe study: which changes make BERT learn fastest on a CPU budget.

``python -m benchmarks.recipe [--minutes M] [--parallel P] [--only NAME,...]``

A ladder of variants, each adding one change to the one before (the Cramming paper's method:
Geiping & Goldstein 2022), all trained by ``python -m numpy_bert train --fast`` for the same wall
time. The time budget becomes a number of steps per variant from a short calibration run, so
that each learning-rate schedule completes (warm-up, then decay to zero) inside the budget.
Variants run ``--parallel`` at a time, each on one thread, so that each gets one core.

Every finished model is then scored the same way, whatever it trained on: held-out MLM accuracy
on packed validation text (``eval --no-nsp``: 15% of the tokens masked, a fixed seed), and the
cloze set when ``python -m numpy_bert cloze`` exists. Results go to
``benchmarks/results/recipe.json`` with the plot ``recipe.png``.

OpenBLAS's kernel variables are unset in the runs (a current OpenBLAS picks its kernels itself);
each run folder's environment.jsonl records the kernel that ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from numpy_bert.checkpoint import atomic_write_bytes, json_bytes

from .machine import BLAS_KERNEL_VARIABLES

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = Path("runs") / "recipe"
COMMON = ["--fast", "--no-progress", "--no-plots", "--eval-batches", "10", "--log-every", "20"]
BASE = ["--config", "tiny"]
CALIBRATION_STEPS = 40
CALIBRATED: dict[tuple[str, str], float] = {}
CALIBRATION_LOCK = threading.Lock()
# name, what changes, the arguments (each rung keeps the changes above it).
LADDER = [
    ("baseline", "BERT's recipe: NSP pairs, dropout 0.1, lr 1e-3", BASE),
    ("mlm-packed", "MLM only, sequences packed to 128 tokens (--no-nsp)", [*BASE, "--no-nsp"]),
    ("no-dropout", "no dropout in pre-training (--dropout 0)", [*BASE, "--no-nsp", "--dropout", "0"]),
    ("lr-2e-3", "peak lr 2e-3 instead of 1e-3", [*BASE, "--no-nsp", "--dropout", "0", "--lr", "2e-3"]),
    ("lr-5e-4", "peak lr 5e-4 instead of 1e-3", [*BASE, "--no-nsp", "--dropout", "0", "--lr", "5e-4"]),
    ("mask-25", "25% of tokens masked (--mlm-probability 0.25)",
     [*BASE, "--no-nsp", "--dropout", "0", "--mlm-probability", "0.25"]),
    ("mini", "the mini model (4 layers, hidden 256) instead of tiny (2, 128)",
     ["--config", "mini", "--no-nsp", "--dropout", "0"]),
    ("vocab-4096", "a 4,096-token vocabulary instead of 8,192",
     [*BASE, "--no-nsp", "--dropout", "0", "--vocab-size", "4096"]),
]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in BLAS_KERNEL_VARIABLES}
    return env | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train(out: Path, arguments: list[str], steps: int) -> float:
    """Train a run folder afresh; returns the wall time in seconds."""
    command = [sys.executable, "-m", "numpy_bert", "train", "--out", str(out), "--overwrite-output-dir",
               "--steps", str(steps), "--eval-every", str(max(steps // 5, 1)), *COMMON, *arguments]
    start = time.perf_counter()
    subprocess.run(command, env=environment(), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def shape_of(arguments: list[str]) -> tuple[str, str]:
    """(config, vocabulary size): what sets the cost of a step at a fixed batch and length."""
    value = dict(zip(arguments, [*arguments[1:], None]))
    return value.get("--config", "tiny"), value.get("--vocab-size", "8192")


def seconds_per_step(arguments: list[str]) -> float:
    """The median step time of a short run (start-up left out), measured once per model shape:
    variants of one shape get the same number of steps, so their figures differ by their change alone."""
    shape = shape_of(arguments)
    with CALIBRATION_LOCK:
        if shape not in CALIBRATED:
            run = RUNS / f"calibrate-{'-'.join(shape)}"
            train(run, [*arguments, "--log-every", "5"], CALIBRATION_STEPS)
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            speeds = sorted(r["tokens_per_s"] for r in rows if r.get("split") == "train")
            tokens_per_step = rows[0]["tokens"] / 5
            CALIBRATED[shape] = tokens_per_step / speeds[len(speeds) // 2]
    return CALIBRATED[shape]


def last_json_line(command: list[str]) -> dict:
    output = subprocess.run(command, env=environment(), check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def score(run: Path) -> dict:
    """Held-out figures that mean the same for every variant."""
    held_out = last_json_line([sys.executable, "-m", "numpy_bert", "eval", str(run), "--no-nsp", "--seq-len", "128",
                               "--batch-size", "32", "--max-batches", "40"])
    figures = {"mlm_accuracy": held_out["mlm_accuracy"], "mlm_loss": held_out["mlm_loss"]}
    cloze = subprocess.run([sys.executable, "-m", "numpy_bert", "cloze", str(run)], env=environment(),
                           capture_output=True, text=True)
    if cloze.returncode == 0:
        figures["cloze"] = json.loads(cloze.stdout.strip().splitlines()[-1])
    return figures


def run_variant(name: str, note: str, arguments: list[str], budget_s: float) -> dict:
    per_step = seconds_per_step(arguments)
    steps = max(int(budget_s / per_step), 20)
    out = RUNS / name
    wall = train(out, arguments, steps)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tokens = sum(r.get("tokens", 0) for r in rows if r.get("split") == "train")
    curve = [[r["step"], r["mlm_accuracy"]] for r in rows if r.get("split") == "validation"]
    result = {"name": name, "change": note, "arguments": arguments, "steps": steps, "wall_s": wall,
              "tokens": tokens, "tokens_per_s": tokens / wall, "validation_curve": curve, **score(out)}
    print(json.dumps(result), flush=True)
    return result


def plot(document: dict, path: Path) -> Path:
    """Left: held-out MLM accuracy of each variant against wall-clock time (its in-run validation,
    token-level masks of its own data); right: the common scores of the finished models."""
    from matplotlib.figure import Figure

    variants = list(document["variants"].values())
    figure = Figure(figsize=(12, 4.4))
    figure.subplots_adjust(left=0.06, right=0.99, top=0.9, bottom=0.3, wspace=0.2)
    curves, bars = figure.subplots(1, 2)
    for variant in variants:
        points = [(step / variant["steps"] * variant["wall_s"] / 60, accuracy)
                  for step, accuracy in variant.get("validation_curve", [])]
        if points:  # (results written before the curves were kept in the JSON have none)
            curves.plot(*zip(*points), marker="o", markersize=3, label=variant["name"])
    curves.set(title="in-run validation MLM accuracy", xlabel="wall time (minutes)", ylabel="MLM accuracy")
    curves.legend(fontsize=8)
    names = [v["name"] for v in variants]
    x = range(len(names))
    bars.bar([i - 0.2 for i in x], [v["mlm_accuracy"] for v in variants], 0.4, label="held-out MLM accuracy")
    bars.bar([i + 0.2 for i in x], [v.get("cloze", {}).get("top_k_accuracy", 0) for v in variants], 0.4,
             label="cloze top-5")
    bars.set_xticks(list(x), names, rotation=40, ha="right", fontsize=8)
    bars.set(title=f"after {document['minutes_per_variant']:g} minutes each", ylabel="accuracy")
    bars.legend(fontsize=8)
    for axes in (curves, bars):
        axes.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipe", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="wall time per variant (default 8)")
    parser.add_argument("--parallel", type=int, default=2, help="variants at a time, one thread each")
    parser.add_argument("--only", help="comma-separated variant names (default: the whole ladder)")
    parser.add_argument("--plot", action="store_true", help="redraw recipe.png from recipe.json, then exit")
    args = parser.parse_args(argv)
    path = RESULTS / "recipe.json"
    if args.plot:
        print(f"wrote {plot(json.loads(path.read_text()), RESULTS / 'recipe.png')}")
        return 0
    chosen = [v for v in LADDER if not args.only or v[0] in args.only.split(",")]
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda v: run_variant(*v, budget_s=60 * args.minutes), chosen))
    RESULTS.mkdir(exist_ok=True)
    earlier = json.loads(path.read_text()) if path.exists() else {}
    merged = {**earlier.get("variants", {}), **{r["name"]: r for r in results}}
    document = {"minutes_per_variant": args.minutes, "parallel": args.parallel, "variants": merged}
    atomic_write_bytes(path, json_bytes(document))
    print(f"wrote {path} and {plot(document, RESULTS / 'recipe.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
