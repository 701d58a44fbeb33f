"""Turning results.json into words: the headline figures, a console summary, and the README block.

The README block is the *Results* section of benchmarks/README.md. Every number in it is read from
results.json by :func:`render_readme` (``python -m benchmarks --readme``); nothing is typed by hand.
"""

from __future__ import annotations

import glob
import json
import os

from .backends import CONFIGS_BY_SIZE
from .matrix import DEPLOY

REFERENCE = "numpy"  # speed-ups are "how many times faster than the readable NumPy model"
FILL_MASK_TARGET_MS = 5.0
PEAK_FRACTION_TARGET = 0.5
BLOCK_HOME = os.path.dirname(os.path.abspath(__file__))  # the block lives in benchmarks/README.md: links start here


def _ok(cells: list[dict], **match) -> dict | None:
    for c in cells:
        if c["status"] == "ok" and all(c.get(k) == v for k, v in match.items()):
            return c
    return None


def _headline_shape(cells: list[dict], sweep: str, phase: str) -> tuple[int, int] | None:
    for c in cells:
        if sweep in c["sweeps"] and c["phase"] == phase:
            return c["batch_size"], c["seq_len"]
    return None


def headline(document: dict) -> dict:
    """Per config and phase: each backend's time and its speed-up over readable NumPy; and the targets."""
    cells = document["cells"]
    out: dict = {"reference": REFERENCE, "speedup_definition": "reference ms / backend ms (> 1: faster)",
                 "per_config": {}, "targets": {}}
    for sweep, phase, name in (("headline", "train", "train"), ("headline", "infer", "infer"),
                               ("latency", "infer", "latency"), ("fill_mask", "fill_mask", "fill_mask")):
        shape = _headline_shape(cells, sweep, phase)
        if shape is None:
            continue
        B, T = shape
        for c in cells:
            if sweep not in c["sweeps"] or c["phase"] != phase or c["status"] != "ok":
                continue
            entry = out["per_config"].setdefault(c["config"], {}).setdefault(name, {"batch_size": B, "seq_len": T})
            ref = _ok(cells, backend=REFERENCE, config=c["config"], phase=phase, batch_size=B, seq_len=T)
            entry[c["backend"]] = {"ms": c["ms_per_step"], "tokens_per_s": c["tokens_per_s"],
                                   "gflops_per_s": c["gflops_per_s"], "mfu": c["mfu"],
                                   "speedup_vs_numpy": ref["ms_per_step"] / c["ms_per_step"] if ref else None}

    targets = out["targets"]
    train_shape = _headline_shape(cells, "headline", "train")
    if train_shape:
        B, T = train_shape
        config = "mini" if any(c["config"] == "mini" for c in cells) else cells[0]["config"]
        cell = {b: _ok(cells, backend=b, config=config, phase="train", batch_size=B, seq_len=T)
                for b in ("numpy", "numpy_fast", "torch_bert", "transformers_sdpa", "transformers_eager")}
        fast, torch = cell["numpy_fast"], cell["torch_bert"]
        peak = document["peaks"].get("cpu_gflops")
        targets["training_step"] = {
            "config": config, "batch_size": B, "seq_len": T,
            **{f"{b}_ms": (c["ms_per_step"] if c else None) for b, c in cell.items()},
            "numpy_fast_gflops_per_s": fast["gflops_per_s"] if fast else None,
            "numpy_gflops_per_s": cell["numpy"]["gflops_per_s"] if cell["numpy"] else None,
            "cpu_peak_gflops": peak,
            "numpy_fast_fraction_of_peak": fast["gflops_per_s"] / peak if fast and peak else None,
            "fraction_target": PEAK_FRACTION_TARGET,
            "numpy_fast_vs_torch_bert": torch["ms_per_step"] / fast["ms_per_step"] if fast and torch else None,
            "numpy_fast_vs_numpy": (cell["numpy"]["ms_per_step"] / fast["ms_per_step"]
                                    if fast and cell["numpy"] else None),
        }
    faster = {}
    for c in cells:
        if c["backend"].startswith("transformers") and c["device"] == "cpu" and c["status"] == "ok" \
                and "headline" in c["sweeps"]:
            for ours in ("numpy", "numpy_fast"):
                mine = _ok(cells, backend=ours, config=c["config"], phase=c["phase"], batch_size=c["batch_size"],
                           seq_len=c["seq_len"])
                if mine:
                    faster[f"{c['phase']}/{c['config']}/{ours}_vs_{c['backend']}"] = c["ms_per_step"] / mine[
                        "ms_per_step"]
    targets["numpy_vs_transformers_cpu"] = faster
    for sweep, phase, key in (("fill_mask", "fill_mask", "fill_mask_latency"),
                              ("latency", "infer", "forward_latency_all_positions")):
        shape = _headline_shape(cells, sweep, phase)
        if shape:
            B, T = shape
            config = "mini" if any(c["config"] == "mini" for c in cells) else cells[0]["config"]
            lat = {b: _ok(cells, backend=b, config=config, phase=phase, batch_size=B, seq_len=T)
                   for b in ("numpy", "numpy_fast", "torch_bert", "transformers_sdpa")}
            targets[key] = {"config": config, "batch_size": B, "seq_len": T, "target_ms": FILL_MASK_TARGET_MS,
                            **{f"{b}_ms": (c["ms_per_step"] if c else None) for b, c in lat.items()}}
    return out


# ---- formatting helpers -------------------------------------------------------------------


def _ms(c: dict) -> str:
    t = c["timing"]
    if t["repeats"] >= 2:
        return f"{c['ms_per_step']:.1f} [{t['q1_s'] * 1000:.1f}-{t['q3_s'] * 1000:.1f}]"
    return f"{c['ms_per_step']:.1f}"


def _mem(c: dict) -> str:
    b = c.get("peak_memory_bytes")
    return "-" if b is None else f"{b / 2**20:.0f} MiB"


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _speedup(cells: list[dict], c: dict) -> str:
    ref = _ok(cells, backend=REFERENCE, config=c["config"], phase=c["phase"], batch_size=c["batch_size"],
              seq_len=c["seq_len"])
    return f"{ref['ms_per_step'] / c['ms_per_step']:.2f}x" if ref else "-"


def text_summary(document: dict) -> str:
    cells = document["cells"]
    lines = [f"\n{'cell':<46} {'ms (median)':>12} {'tokens/s':>10} {'GFLOP/s':>8} {'MFU':>6} {'peak mem':>9}"]
    skipped: dict[str, int] = {}
    for c in cells:
        if c["status"] != "ok":
            skipped[f"{c['status']}: {c['reason']}"] = skipped.get(f"{c['status']}: {c['reason']}", 0) + 1
            continue
        lines.append(f"{c['id']:<46} {c['ms_per_step']:12.2f} {c['tokens_per_s']:10.0f} {c['gflops_per_s']:8.1f} "
                     f"{_num(c['mfu'], '.1%'):>6} {_mem(c):>9}")
    for reason, count in skipped.items():
        lines.append(f"{count} cells {reason}")
    for t in document.get("tokenizer", []):
        shown = f"{t['mb_per_s']:.2f} MB/s" if t["status"] == "ok" else f"skipped: {t['reason']}"
        lines.append(f"tokenizer {t['backend']:<20} {shown}")
    lines.append(f"CPU peak (measured float32 GEMM): {_num(document['peaks']['cpu_gflops'], '.1f')} GFLOP/s")
    lines.append("targets: " + json.dumps(document["headline"]["targets"], indent=1, default=str))
    return "\n".join(lines)


def _find_results(out_root: str, label: str | None) -> list[dict]:
    pattern = os.path.join(out_root, label or "*", "results.json")
    docs = []
    for path in glob.glob(pattern):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        doc["_dir"] = os.path.dirname(path)
        docs.append(doc)
    return sorted(docs, key=lambda d: d.get("created", ""), reverse=True)


def _table(cells: list[dict], rows: list[dict]) -> list[str]:
    out = ["| config | backend | ms / step, median [IQR] | tokens/s | GFLOP/s | MFU | peak memory | vs NumPy |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in rows:
        out.append(f"| {c['config']} | {c['title']} | {_ms(c)} | {c['tokens_per_s']:,.0f} | "
                   f"{c['gflops_per_s']:.1f} | {_num(c['mfu'], '.1%')} | {_mem(c)} | {_speedup(cells, c)} |")
    return out


def _load_note(machine: dict) -> str:
    load = machine.get("load_average_1min") or {}
    if load.get("start") is None:
        return ""
    return (f" 1-minute load average {load['start']:.1f} at the start and {_num(load.get('end'), '.1f')} at the "
            f"end (the run itself adds up to {machine['threads']}).")


def deployment_views(cells: list[dict]) -> list[tuple[str, str, int, int]]:
    """The deploy sweep's views as (name, phase, batch, seq_len): latency and throughput (its infer cells at
    their smallest and largest batch, the matrix's latency and headline shapes) and fill-mask; [] without it."""
    deploy = [c for c in cells if "deploy" in c["sweeps"]]
    infer = sorted({(c["batch_size"], c["seq_len"]) for c in deploy if c["phase"] == "infer"})
    fill_mask = sorted({(c["batch_size"], c["seq_len"]) for c in deploy if c["phase"] == "fill_mask"})
    views = []
    if infer:
        views += [("latency", "infer", *infer[0]), ("throughput", "infer", *infer[-1])]
    if fill_mask:
        views.append(("fill-mask", "fill_mask", *fill_mask[0]))
    return views


def config_title(name: str) -> str:
    """A config's name in tables and plots: BERT-mini, ..., and MiniLM (the shape of all-MiniLM-L6-v2)."""
    return "MiniLM" if name == "minilm" else f"BERT-{name}"


def _short_ms(ms: float) -> str:
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _deployment_table(cells: list[dict]) -> list[str]:
    """Backends down, per config the latency, the throughput (tokens/s and ms) and fill-mask across; a cell that
    was not scheduled (an inference engine has no training step) or did not run is a dash."""
    views = deployment_views(cells)
    if not views:
        return []
    deploy = [c for c in cells if "deploy" in c["sweeps"]]
    configs = [name for name in CONFIGS_BY_SIZE if any(c["config"] == name for c in deploy)]
    columns = []  # (config, phase, batch, seq_len, heading, figure of a cell)
    for config in configs:
        for view, phase, B, T in views:
            if view == "throughput":
                columns.append((config, phase, B, T, f"{config_title(config)}: {view} {B}x{T}, tokens/s",
                                lambda c: f"{c['tokens_per_s']:,.0f}"))
            columns.append((config, phase, B, T, f"{config_title(config)}: {view} {B}x{T}, ms",
                            lambda c: _short_ms(c["ms_per_step"])))
    lines = ["| backend | " + " | ".join(col[4] for col in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for backend in [name for name in DEPLOY if any(c["backend"] == name for c in deploy)]:
        figures = []
        for config, phase, B, T, _, figure in columns:
            c = _ok(cells, backend=backend, config=config, phase=phase, batch_size=B, seq_len=T)
            figures.append(figure(c) if c else "-")
        title = next(c["title"] for c in deploy if c["backend"] == backend)
        lines.append(f"| {title} | " + " | ".join(figures) + " |")
    return lines


def _blas_note(machine: dict) -> str:
    """The BLAS each worker loaded (threadpoolctl), with OpenBLAS's kernel, and the OpenBLAS variables the
    workers ran without; "" for results recorded before the workers reported it."""
    in_use = machine.get("blas_in_use")
    if not in_use:
        return ""
    workers: dict[str, list[str]] = {}  # description: the workers that loaded it
    for group, found in in_use.items():
        if found is None:  # the worker stopped before it could say
            continue
        if found["libraries"] is None:
            workers.setdefault(found["reason"], []).append(group)
        for library in found["libraries"] or []:
            if library["user_api"] == "blas":
                kernel = f", kernel {library['architecture']}" if library.get("architecture") else ""
                threads = library["num_threads"]
                description = (f"{library['internal_api']} {library['version']}{kernel}, {threads} "
                               f"thread{'s' if threads != 1 else ''}")
                workers.setdefault(description, []).append(group)
    note = "BLAS loaded (threadpoolctl): " + "; ".join(f"{what} ({', '.join(groups)})"
                                                        for what, groups in workers.items()) + "."
    env = machine.get("blas_env", {})
    if env.get("unset_in_workers"):
        note += " Unset in the workers: " + ", ".join(f"`{k}={v}`" for k, v in env["unset_in_workers"].items()) + "."
    if env.get("kept"):
        note += " Kept (`--keep-blas-env`): " + ", ".join(f"`{k}={v}`" for k, v in env["kept"].items()) + "."
    return note


def render_document(doc: dict) -> str:
    cells, m, peaks = doc["cells"], doc["machine"], doc["peaks"]
    gpu = (m.get("gpu") or {}).get("name")
    blas = (m.get("blas") or {})
    lines = [f"#### {m['cpu_model']}, {m['threads']} threads" + (f", {gpu}" if gpu else ", no GPU"),
             "",
             f"`{doc['command'].strip()}` ({doc['mode']}), {doc['created'][:10]}; numpy {m.get('numpy')} "
             f"({blas.get('name', '?')} {blas.get('version', '')}), torch {m.get('torch', '-')} "
             f"(BLAS {m.get('torch_blas', '?')}), transformers {m.get('transformers', '-')}. "
             f"Measured float32 GEMM peak: {_num(peaks.get('cpu_gflops'), '.1f')} GFLOP/s"
             + (f"; GPU peak (datasheet, bf16 dense): {peaks['gpu_tflops']} TFLOP/s" if peaks.get("gpu_tflops")
                else "") + "." + _load_note(m), ""]
    if blas := _blas_note(m):
        lines += [blas, ""]
    for sweep, phase, what in (("headline", "train", "Training step: forward + backward + AdamW"),
                               ("headline", "infer", "Inference: forward, logits at every position"),
                               ("latency", "infer", "Latency: forward of one short sentence, logits at every "
                                                    "position"),
                               ("fill_mask", "fill_mask", "Fill-mask: the same sentence with one [MASK], logits "
                                                          "at the mask (transformers: at every position)")):
        rows = [c for c in cells if sweep in c["sweeps"] and c["phase"] == phase and c["status"] == "ok"]
        if not rows:
            continue
        B, T = rows[0]["batch_size"], rows[0]["seq_len"]
        lines += [f"**{what}** (batch {B} x {T} tokens; CPU float32, GPU bf16 autocast)", ""]
        lines += [*_table(cells, rows), ""]
    deployment = _deployment_table(cells)
    if deployment:
        lines += ["**Deployment peers** (CPU, the same threads): ONNX Runtime on torch_bert's exported graph, "
                  "float32 and dynamic int8 (`quantize_dynamic`: int8 weights with one scale per tensor, activations "
                  "quantized at run time); torch's dynamic int8 (the same scheme); NumPy with int8 weights (one "
                  "scale per row, float32 activations); against NumPy and torch_bert in float32. Latency and "
                  "fill-mask: one sentence; throughput: a batch. ONNX Runtime computes the logits at every "
                  "position, in fill-mask too. MiniLM: the shape of all-MiniLM-L6-v2 (6 layers, hidden 384), "
                  "random weights.", "", *deployment, ""]
    t = doc["headline"]["targets"]
    step = t.get("training_step")
    bullets = []
    if step and step.get("numpy_fast_ms"):
        bullets.append(
            f"- Training step, {step['config']}, batch {step['batch_size']} x {step['seq_len']}: NumPy fast "
            f"{step['numpy_fast_ms']:.0f} ms ({_num(step['numpy_fast_gflops_per_s'], '.1f')} GFLOP/s = "
            f"{_num(step['numpy_fast_fraction_of_peak'], '.0%')} of the measured GEMM peak), readable NumPy "
            f"{_num(step.get('numpy_ms'), '.0f')} ms, torch_bert {_num(step.get('torch_bert_ms'), '.0f')} ms "
            f"(NumPy fast is {_num(step.get('numpy_fast_vs_torch_bert'), '.2f')}x the speed of torch_bert).")
    if t.get("numpy_vs_transformers_cpu"):
        parts = [f"{k.replace('_vs_', ' vs ')} {v:.2f}x" for k, v in t["numpy_vs_transformers_cpu"].items()]
        bullets.append("- NumPy against transformers on CPU (transformers ms / NumPy ms): " + ", ".join(parts) + ".")
    lat = t.get("fill_mask_latency")
    if lat and lat.get("numpy_fast_ms"):
        bullets.append(f"- Fill-mask, {lat['config']}, one sentence of {lat['seq_len']} tokens: NumPy fast "
                       f"{lat['numpy_fast_ms']:.2f} ms, readable {_num(lat.get('numpy_ms'), '.2f')} ms, torch_bert "
                       f"{_num(lat.get('torch_bert_ms'), '.2f')} ms, transformers "
                       f"{_num(lat.get('transformers_sdpa_ms'), '.2f')} ms (target <= {lat['target_ms']:.0f} ms).")
    if bullets:
        lines += ["**Headline**", "", *bullets, ""]
    tok = doc.get("tokenizer", [])
    if tok:
        lines += ["**Tokenizer** (pydoc topics, real BERT vocabulary)", "", "| tokenizer | MB/s | how | same ids |",
                  "|---|---:|---|---|"]
        for r in tok:
            if r["status"] == "ok":
                lines.append(f"| {r['backend']} | {r['mb_per_s']:.2f} | {r['mode']} | {r.get('ids_match', '-')} |")
            else:
                lines.append(f"| {r['backend']} | skipped | {r['reason']} | - |")
        lines.append("")
    reasons: dict[str, int] = {}
    for c in cells:
        if c["status"] != "ok":
            reasons[f"{c['status']}: {c['reason']}"] = reasons.get(f"{c['status']}: {c['reason']}", 0) + 1
    if reasons:
        lines += ["Not run: " + "; ".join(f"{n} cells {r}" for r, n in reasons.items()) + ".", ""]
    rel = os.path.relpath(doc["_dir"], BLOCK_HOME).replace(os.sep, "/")
    captions = {"seq_len.png": "Time against sequence length", "speedup.png": "Speed-up over NumPy",
                "memory.png": "Peak memory", "batch_size.png": "Throughput against batch size",
                "seq_len_gpu.png": "GPU: time against sequence length", "deploy.png": "Deployment peers"}
    for name in doc.get("plots", []):
        lines.append(f"![{captions.get(name, name)}]({rel}/{name})")
    return "\n".join(lines).rstrip() + "\n"


def render_readme(out_root: str, label: str | None = None) -> str:
    docs = _find_results(out_root, label)
    if not docs:
        return f"(no results.json under {out_root}; run `python -m benchmarks --quick` first)"
    body = "\n".join(render_document(d) for d in docs)
    return ("<!-- BEGIN benchmarks: generated by `python -m benchmarks --readme` from results.json; "
            "do not edit by hand -->\n" + body + "<!-- END benchmarks -->")
