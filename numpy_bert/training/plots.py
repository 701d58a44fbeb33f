"""Training curves from metrics.jsonl, as PNG files: loss, accuracy, perplexity, learning rate.

Figures are drawn with matplotlib's object-oriented API (``Figure``, no ``pyplot``), so
plotting never changes the global backend of a notebook or opens a window, and each
PNG is written atomically, so a viewer never shows half a file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write_bytes


def _series(rows: Sequence[dict[str, Any]], split: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` in the rows of one split, skipping rows without it."""
    points = [(row["step"], row[key]) for row in rows if row.get("split") == split and row.get(key) is not None]
    return [s for s, _ in points], [v for _, v in points]


def _pair_task(rows: Sequence[dict[str, Any]]) -> str | None:
    """"NSP", "SOP" (ALBERT's head), both, or None (an MLM-only run): the sentence task the rows' loss includes."""
    tasks = [name for name in ("NSP", "SOP") if any(f"{name.lower()}_loss" in row for row in rows)]
    return "/".join(tasks) or None


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def _figure(title: str, ylabel: str):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2))
    figure.subplots_adjust(left=0.12, right=0.97, top=0.91, bottom=0.12)  # fixed margins: no layout engine to run
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


def _plot(axes, steps: list[int], values: list[float], label: str, marker: str | None = None) -> bool:
    if not steps:
        return False
    axes.plot(steps, values, label=label, marker=marker, markersize=4)
    return True


def plot_metrics(rows: Sequence[dict[str, Any]], folder: str | os.PathLike, title: str = "") -> list[Path]:
    """Draw the curves of ``rows`` (metrics.jsonl) into ``folder``; returns the PNG paths.

    * loss.png: train loss, its MLM part, and validation loss (cross-entropy, nats); an ELECTRA run's
      generator (MLM) and discriminator losses instead (its total weighs the latter 50 times);
    * accuracy.png: validation MLM accuracy and next-sentence (BERT), sentence-order (ALBERT) or
      replaced-token detection (ELECTRA's discriminator) accuracy;
    * perplexity.png: validation MLM perplexity, exp(MLM loss), on a log scale;
    * learning_rate.png: the schedule (warm-up, then linear decay).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{title}: " if title else ""
    written = []

    figure, axes = _figure(prefix + "pre-training loss", "cross-entropy (nats)")
    pair = _pair_task(rows)
    if pair:  # an MLM-only run (--no-nsp) has one loss, not two
        _plot(axes, *_series(rows, "train", "loss"), f"train loss (MLM + {pair})")
        _plot(axes, *_series(rows, "validation", "loss"), f"validation loss (MLM + {pair})", marker="o")
    _plot(axes, *_series(rows, "train", "mlm_loss"), "train MLM loss")
    _plot(axes, *_series(rows, "train", "generator_loss"), "train generator (MLM) loss")  # ELECTRA
    _plot(axes, *_series(rows, "validation", "mlm_loss"), "validation MLM loss", marker="o")
    _plot(axes, *_series(rows, "train", "discriminator_loss"), "train discriminator loss")
    _plot(axes, *_series(rows, "validation", "discriminator_loss"), "validation discriminator loss", marker="o")
    axes.legend()
    written.append(folder / "loss.png")
    _save(figure, written[-1])

    figure, axes = _figure(prefix + "validation accuracy", "accuracy")
    _plot(axes, *_series(rows, "validation", "mlm_accuracy"), "masked-token accuracy (MLM)", marker="o")
    _plot(axes, *_series(rows, "validation", "nsp_accuracy"), "next-sentence accuracy (NSP/SOP)", marker="o")
    _plot(axes, *_series(rows, "validation", "sop_accuracy"), "sentence-order accuracy (ALBERT's SOP)", marker="o")
    _plot(axes, *_series(rows, "validation", "discriminator_accuracy"), "replaced-token detection accuracy "
          "(discriminator)", marker="o")
    axes.set_ylim(0, 1)
    axes.legend()
    written.append(folder / "accuracy.png")
    _save(figure, written[-1])

    figure, axes = _figure(prefix + "validation MLM perplexity", "perplexity (log scale)")
    if _plot(axes, *_series(rows, "validation", "perplexity"), "validation perplexity", marker="o"):
        axes.set_yscale("log")
    written.append(folder / "perplexity.png")
    _save(figure, written[-1])

    figure, axes = _figure(prefix + "learning rate", "learning rate")
    _plot(axes, *_series(rows, "train", "lr"), "learning rate")
    written.append(folder / "learning_rate.png")
    _save(figure, written[-1])
    return written


def plot_runs(runs: dict[str, Sequence[dict[str, Any]]], path: str | os.PathLike,
              title: str = "pre-training runs") -> Path:
    """Two panels, one line per run: training loss, and held-out masked-token accuracy.

    ``runs`` maps a label to the rows of that run's metrics.jsonl; the figure goes to ``path``.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    figure.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.13, wspace=0.22)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for label, rows in runs.items():
        line, = loss_axes.plot(*_series(rows, "train", "loss"), label=f"{label} (train)")
        loss_axes.plot(*_series(rows, "validation", "loss"), marker="o", markersize=4, linestyle="--",
                       color=line.get_color(), label=f"{label} (validation)")
        _plot(accuracy_axes, *_series(rows, "validation", "mlm_accuracy"), label, marker="o")
    pair = _pair_task([row for rows in runs.values() for row in rows])
    loss_axes.set(title=f"{title}: loss ({f'MLM + {pair}' if pair else 'MLM'})", xlabel="optimizer step",
                  ylabel="cross-entropy (nats)")
    accuracy_axes.set(title="held-out masked-token accuracy", xlabel="optimizer step", ylabel="MLM accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(figure, path)
    return path
