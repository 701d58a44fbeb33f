"""What pre-training buys: the demo tasks fine-tuned from python-docs, from the same model with
random weights, and from MiniLM, with the same data, steps and learning rate.

``python -m benchmarks.finetune_from [--tasks classify,tag,qa] [--epochs 3] [--plot]``

The random-weight model is python-docs' config and vocabulary with freshly drawn weights
(``BertForMaskedLM(config, seed=0)``, as python-docs is saved): the only difference is pre-training. Results go to
``benchmarks/results/finetune_from.json`` with the bar chart ``finetune_from.png``; each run's
folder (``runs/finetune_from/<task>-<model>``) keeps its metrics.json and plots.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy_bert
from numpy_bert.checkpoint import atomic_write_bytes, json_bytes

from .recipe import RESULTS, environment

RUNS = Path("runs") / "finetune_from"
MODELS = ("python-docs", "random", "minilm")
# The held-out figures reported per task, from the eval block of each run's metrics.json (tag: entity F1, as seqeval).
FIGURES = {"classify": ("accuracy", "macro_f1"), "tag": ("f1", "token_accuracy"), "qa": ("exact_match", "f1")}


def random_copy(folder: Path) -> Path:
    """python-docs' config and vocabulary, weights drawn afresh (seed 0)."""
    config = numpy_bert.BertConfig.from_pretrained("python-docs")
    numpy_bert.BertForMaskedLM(config, seed=0).save_pretrained(folder)
    numpy_bert.BertTokenizer.from_pretrained("python-docs").save_pretrained(folder)
    return folder


def run_numpy_bert(*arguments: str) -> float:
    """``python -m numpy_bert ARGUMENTS`` on one thread; returns the wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "numpy_bert", *arguments], env=environment(), check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def finetune(task: str, model: str, epochs: int) -> dict:
    data = RUNS / "data"
    run_numpy_bert("demo-data", "--task", task, "--out", str(data), "--overwrite-output-dir")
    source = str(random_copy(RUNS / "random-init")) if model == "random" else model
    out = RUNS / f"{task}-{model}"
    wall = run_numpy_bert("finetune", "--task", task, "--model", source, "--train", str(data / f"{task}-train.jsonl"),
                          "--eval", str(data / f"{task}-eval.jsonl"), "--out", str(out), "--epochs", str(epochs),
                          "--overwrite-output-dir", "--no-progress")
    return result_of(task, model, out, wall)


def result_of(task: str, model: str, out: Path, wall: float) -> dict:
    """The held-out figures of a finished fine-tuning run folder."""
    held_out = json.loads((out / "metrics.json").read_text())["eval"]
    result = {"task": task, "model": model, "wall_s": wall, "steps": held_out["step"],
              **{name: held_out[name] for name in FIGURES[task]}}
    print(json.dumps(result), flush=True)
    return result


def plot(document: dict, path: Path) -> Path:
    """One group of bars per task: its figures for each starting model."""
    from matplotlib.figure import Figure

    tasks = sorted({r["task"] for r in document["runs"]}, key=list(FIGURES).index)
    figure = Figure(figsize=(4 * len(tasks), 3.8))
    figure.subplots_adjust(left=0.08, right=0.98, top=0.86, bottom=0.14, wspace=0.3)
    for axes, task in zip(figure.subplots(1, len(tasks), squeeze=False)[0], tasks):
        runs = {r["model"]: r for r in document["runs"] if r["task"] == task}
        for offset, figure_name in zip((-0.2, 0.2), FIGURES[task]):
            axes.bar([i + offset for i in range(len(runs))], [r[figure_name] for r in runs.values()], 0.4,
                     label=figure_name)
        axes.set_xticks(range(len(runs)), list(runs))
        axes.set(title=f"{task}: fine-tuned from", ylim=(0, 1.18))
        axes.grid(alpha=0.3, axis="y")
        axes.legend(fontsize=8, loc="upper center", ncol=2)
    figure.suptitle(f"held-out figures after {document['epochs']} epochs of fine-tuning")
    figure.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finetune_from", description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="classify", help="comma-separated demo tasks (default: classify)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"starting points (default: {','.join(MODELS)})")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs for every run (default 3)")
    parser.add_argument("--plot", action="store_true", help="redraw the chart from the JSON, then exit")
    args = parser.parse_args(argv)
    path = RESULTS / "finetune_from.json"
    if not args.plot:
        pairs = [(task, model) for task in args.tasks.split(",") for model in args.models.split(",")]
        runs = [finetune(task, model, args.epochs) for task, model in pairs]
        earlier = json.loads(path.read_text())["runs"] if path.exists() else []
        kept = [r for r in earlier if (r["task"], r["model"]) not in pairs]
        atomic_write_bytes(path, json_bytes({"epochs": args.epochs, "runs": kept + runs}))
    print(f"wrote {path} and {plot(json.loads(path.read_text()), RESULTS / 'finetune_from.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
