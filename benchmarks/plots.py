"""The figures, drawn from results.json alone (so they can be redrawn from any stored run)."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt

from .backends import CONFIGS_BY_SIZE, benchmark_config, labelled_per_row
from .flops import Shape, attention_crossover, step_flops
from .report import config_title, deployment_views

COLOURS = {  # and the order of the bars
    "numpy": "#1f77b4", "numpy_fast": "#17becf", "numpy_int8": "#aec7e8", "torch_bert": "#d62728",
    "torch_bert_sdpa": "#ff9896", "transformers_eager": "#2ca02c", "transformers_sdpa": "#98df8a",
    "torch_bert_cuda": "#9467bd", "torch_bert_cuda_compile": "#c5b0d5", "transformers_cuda": "#8c564b",
    "onnxruntime": "#ff7f0e", "onnxruntime_int8": "#ffbb78", "torch_int8": "#e377c2",
}


def _ok(document: dict, sweep: str, **match) -> list[dict]:
    return [c for c in document["cells"] if c["status"] == "ok" and sweep in c["sweeps"]
            and all(c[k] == v for k, v in match.items())]


def _by_backend(cells: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for c in cells:
        groups.setdefault(c["backend"], []).append(c)
    return groups


def _save(fig, out_dir: str, name: str, written: list[str]) -> None:
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    written.append(name)


def plot_seq_len(document: dict, out_dir: str, device: str, name: str, written: list[str]) -> None:
    fig = seq_len_figure(document, device)
    if fig is not None:
        _save(fig, out_dir, name, written)


def seq_len_figure(document: dict, device: str):
    """Time per step against sequence length on ``device`` (log-log), with the FLOP model; None without data."""
    cells = [c for c in _ok(document, "seq") if c["device"] == device]
    phases = [p for p in ("train", "infer") if any(c["phase"] == p for c in cells)]
    if not phases:
        return None
    fig, axes = plt.subplots(1, len(phases), figsize=(6.2 * len(phases), 4.6), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        rows = [c for c in cells if c["phase"] == phase]
        config_name, batch = rows[0]["config"], rows[0]["batch_size"]
        shape = Shape.of(benchmark_config(config_name))
        for backend, group in _by_backend(rows).items():
            group.sort(key=lambda c: c["seq_len"])
            xs = [c["seq_len"] for c in group]
            ax.errorbar(xs, [c["ms_per_step"] for c in group],
                        yerr=[[c["ms_per_step"] - c["timing"]["q1_s"] * 1000 for c in group],
                              [c["timing"]["q3_s"] * 1000 - c["ms_per_step"] for c in group]],
                        marker="o", capsize=3, label=group[0]["title"], color=COLOURS.get(backend))
        # The FLOP model through the fastest backend's first point: where its slope turns from 1 to 2
        # is where the quadratic attention term takes over.
        fastest = min(_by_backend(rows).values(), key=lambda g: min(c["ms_per_step"] for c in g))
        fastest.sort(key=lambda c: c["seq_len"])
        anchor = fastest[0]
        lengths = sorted({c["seq_len"] for c in rows})

        model = {T: step_flops(shape, phase, batch, T, batch * labelled_per_row(T))["model"]
                 for T in {*lengths, anchor["seq_len"]}}
        ax.plot(lengths, [anchor["ms_per_step"] * model[T] / model[anchor["seq_len"]] for T in lengths],
                linestyle="--", color="grey", label=f"FLOP model (scaled to {anchor['title']})")
        T_star = attention_crossover(shape)
        share = [4 * shape.layers * T * shape.hidden / (2 * shape.encoder_matmul_params + 4 * shape.layers * T *
                                                       shape.hidden) for T in (lengths[0], lengths[-1])]
        note = (f"encoder attention share of FLOPs: {share[0]:.0%} at T={lengths[0]}, {share[1]:.0%} at "
                f"T={lengths[-1]};\nattention FLOPs = dense FLOPs at T = 6C = {T_star:.0f}")
        if lengths[0] <= T_star <= lengths[-1]:
            ax.axvline(T_star, color="grey", linestyle=":")
        ax.text(0.02, 0.98, note, transform=ax.transAxes, va="top", fontsize=7.5, color="dimgrey")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(title=f"{'Training step' if phase == 'train' else 'Inference forward'}: BERT-{config_name}, "
                     f"batch {batch}", xlabel="sequence length T (tokens, log scale)",
               ylabel="time per step (ms, log scale; bars: IQR)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5, loc="lower right")
    return fig


def plot_speedup(document: dict, out_dir: str, written: list[str]) -> None:
    panels = [("headline", "train", "Training step"), ("headline", "infer", "Inference throughput"),
              ("latency", "infer", "Latency, all positions"), ("fill_mask", "fill_mask", "Fill-mask")]
    panels = [p for p in panels if _ok(document, p[0], phase=p[1], backend="numpy")]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, (sweep, phase, title) in zip(axes[0], panels):
        cells = _ok(document, sweep, phase=phase)
        configs = [c for c in CONFIGS_BY_SIZE if any(x["config"] == c for x in cells)]
        backends = [b for b in COLOURS if b != "numpy" and any(x["backend"] == b for x in cells)]
        width = 0.8 / max(1, len(backends))
        B, T = cells[0]["batch_size"], cells[0]["seq_len"]
        for j, backend in enumerate(backends):
            xs, ys = [], []
            for i, config in enumerate(configs):
                ref = next((x for x in cells if x["backend"] == "numpy" and x["config"] == config), None)
                mine = next((x for x in cells if x["backend"] == backend and x["config"] == config), None)
                if ref and mine:
                    xs.append(i + (j - (len(backends) - 1) / 2) * width)
                    ys.append(ref["ms_per_step"] / mine["ms_per_step"])
            if xs:
                title_b = next(x["title"] for x in cells if x["backend"] == backend)
                bars = ax.bar(xs, ys, width, label=title_b, color=COLOURS[backend])
                ax.bar_label(bars, labels=[f"{y:.1f}" for y in ys], fontsize=6.5)
        ax.axhline(1, color="black", linewidth=0.8)
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, 0.8), high * 2.5)  # head room for the legend above the bars
        ax.set_xticks(range(len(configs)), [config_title(c) for c in configs])
        ax.set(title=f"{title} (batch {B} x {T})", ylabel="speed-up over readable NumPy (x, log scale)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, out_dir, "speedup.png", written)


def plot_memory(document: dict, out_dir: str, written: list[str]) -> None:
    seq = [c for c in _ok(document, "seq", phase="train") if c.get("peak_memory_bytes") is not None]
    head = [c for c in _ok(document, "headline", phase="train") if c.get("peak_memory_bytes") is not None]
    if not seq and not head:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    ax = axes[0]
    for backend, group in _by_backend(seq).items():
        group.sort(key=lambda c: c["seq_len"])
        ax.plot([c["seq_len"] for c in group], [c["peak_memory_bytes"] / 2**20 for c in group], marker="o",
                label=f"{group[0]['title']} ({group[0]['config']}, batch {group[0]['batch_size']})",
                color=COLOURS.get(backend))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(title="Training step: peak memory against sequence length", xlabel="sequence length T (tokens)",
           ylabel="peak memory growth (MiB, log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    grouped_bars(ax, head, lambda cell: cell["peak_memory_bytes"] / 2**20)
    if head:
        ax.set_title(f"Training step: peak memory (batch {head[0]['batch_size']} x {head[0]['seq_len']})")
    ax.set(ylabel="peak memory growth (MiB)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.text(0.5, 0.005, "peak memory growth over the model + batch: CPU peak RSS (VmHWM), GPU max_memory_allocated",
             ha="center", fontsize=7, color="dimgrey")
    _save(fig, out_dir, "memory.png", written)


def grouped_bars(ax, cells: list[dict], value) -> list:
    """One group of bars per config along x, one bar per backend in it; ``value(cell)`` is a bar's height.
    Returns the bars, one container per backend (for their labels)."""
    configs = [c for c in CONFIGS_BY_SIZE if any(x["config"] == c for x in cells)]
    backends = [b for b in COLOURS if any(x["backend"] == b for x in cells)]
    width = 0.8 / max(1, len(backends))
    containers = []
    for j, backend in enumerate(backends):
        offset = (j - (len(backends) - 1) / 2) * width
        bars = [(i + offset, value(x), x["title"]) for i, config in enumerate(configs)
                for x in cells if x["backend"] == backend and x["config"] == config]
        containers.append(ax.bar([x for x, _, _ in bars], [y for _, y, _ in bars], width, color=COLOURS[backend],
                                 label=bars[0][2]))
    ax.set_xticks(range(len(configs)), [config_title(c) for c in configs])
    return containers


def plot_batch(document: dict, out_dir: str, written: list[str]) -> None:
    cells = _ok(document, "batch")
    if not cells:
        return
    phases = [p for p in ("infer", "train") if any(c["phase"] == p for c in cells)]
    fig, axes = plt.subplots(1, len(phases), figsize=(6.2 * len(phases), 4.6), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        for backend, group in _by_backend([c for c in cells if c["phase"] == phase]).items():
            group.sort(key=lambda c: c["batch_size"])
            ax.plot([c["batch_size"] for c in group], [c["tokens_per_s"] for c in group], marker="o",
                    color=COLOURS.get(backend), label=f"{group[0]['title']} (BERT-{group[0]['config']}, "
                                                      f"T={group[0]['seq_len']})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(title=f"{'Inference' if phase == 'infer' else 'Training'}: throughput against batch size",
               xlabel="batch size (sequences, log scale)", ylabel="tokens per second (log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, out_dir, "batch_size.png", written)


def plot_deploy(document: dict, out_dir: str, written: list[str]) -> None:
    """The deployment peers' speed-up over readable NumPy, per config, for latency, throughput and fill-mask."""
    panels = [(view, cells) for view, phase, B, T in deployment_views(document["cells"])
              if (cells := _ok(document, "deploy", phase=phase, batch_size=B, seq_len=T))]
    panels = [(view, cells) for view, cells in panels if any(c["backend"] == "numpy" for c in cells)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.8), squeeze=False)
    for ax, (view, cells) in zip(axes[0], panels):
        speedup_panel(ax, view, cells)
    fig.text(0.5, 0.005, "the same CPU threads for every backend; int8: dynamic (ONNX Runtime, torch) or weights only "
                         "(NumPy); ONNX Runtime computes every position's logits in fill-mask too", ha="center",
             fontsize=7, color="dimgrey")
    _save(fig, out_dir, "deploy.png", written)


def speedup_panel(ax, view: str, cells: list[dict]) -> None:
    """Bars of readable NumPy's time / each backend's, per config (the configs where NumPy ran)."""
    reference = {c["config"]: c["ms_per_step"] for c in cells if c["backend"] == "numpy"}
    compared = [c for c in cells if c["config"] in reference]
    for bars in grouped_bars(ax, compared, lambda c: reference[c["config"]] / c["ms_per_step"]):
        ax.bar_label(bars, fmt="{:.2f}", fontsize=6)
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.4)  # head room for the legend above the bars
    B, T = compared[0]["batch_size"], compared[0]["seq_len"]
    ax.set(title=f"{view.capitalize()} (batch {B} x {T})", ylabel="speed-up over readable NumPy (x)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=6.5, ncols=2, loc="upper left")


def make_plots(document: dict, out_dir: str) -> list[str]:
    written: list[str] = []
    plot_seq_len(document, out_dir, "cpu", "seq_len.png", written)
    plot_seq_len(document, out_dir, "cuda", "seq_len_gpu.png", written)
    plot_speedup(document, out_dir, written)
    plot_memory(document, out_dir, written)
    plot_batch(document, out_dir, written)
    plot_deploy(document, out_dir, written)
    return written
