"""The benchmark driver: builds the matrix, runs the workers, computes FLOPs/MFU, writes JSON and plots."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping

from . import matrix
from .backends import BACKENDS, EVERY_POSITION_IMPLS, benchmark_config, labelled_per_row
from .flops import Shape, step_flops
from .machine import BLAS_KERNEL_VARIABLES, describe, gpu_peak, machine_label

SCHEMA_VERSION = 1
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SMOKE_OUT = os.path.join("runs", "benchmarks-smoke")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a small matrix (a few minutes on 2 cores)")
    size.add_argument("--smoke", action="store_true", help="a tiny matrix (seconds), for the tests")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--gpu-only", action="store_true", help="only the CUDA cells (plus the GPU peak)")
    where.add_argument("--cpu-only", action="store_true", help="leave out the CUDA cells")
    p.add_argument("--compile", action="store_true", help="add torch.compile'd torch_bert on CUDA")
    p.add_argument("--threads", type=int, help="threads for every CPU backend (default: all available CPUs)")
    p.add_argument("--label", help="results folder name (default: from CPU model, CPU count and GPU name)")
    p.add_argument("--out", help=f"results root (default {DEFAULT_OUT}; --smoke: {SMOKE_OUT})")
    p.add_argument("--backends", help=f"comma-separated subset of: {', '.join(BACKENDS)}")
    p.add_argument("--configs", help="comma-separated subset of: tiny, mini, small, base, minilm")
    p.add_argument("--keep-blas-env", action="store_true",
                   help=f"leave {' and '.join(BLAS_KERNEL_VARIABLES)} in the workers' environment (default: unset)")
    p.add_argument("--no-tokenizer", action="store_true", help="skip the tokenizer throughput figure")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--readme", action="store_true", help="print the results block of benchmarks/README.md, then exit")
    p.add_argument("--profile", action="store_true",
                   help="pyinstrument profile of the NumPy training step (readable and fast), then exit")
    return p.parse_args(argv)


def worker_environment(environ: Mapping[str, str], keep_blas_env: bool) -> tuple[dict, dict]:
    """(a worker's environment, the BLAS kernel variables taken out of it, with their values).

    The worker finds this repository first on its path; ``environ`` (the parent's) is not changed.
    """
    env = dict(environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    unset = {} if keep_blas_env else {name: env.pop(name) for name in BLAS_KERNEL_VARIABLES if name in env}
    return env, unset


def run_worker(group: str, spec: dict, threads: int, env: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        print(f"[{group} worker] {len(spec['cells'])} cells, {threads} threads", flush=True)
        code = subprocess.run([sys.executable, "-m", "benchmarks.worker", spec_path, out_path], env=env,
                              check=False).returncode
        out = {"cells": {}, "peaks": {}, "info": {}, "tokenizer": None}
        if os.path.exists(out_path):
            with open(out_path, encoding="utf-8") as f:
                out = json.load(f)
        out["exit_code"] = code
        return out


def finish_cell(cell: dict, result: dict | None, threads: int, cpu_peak: float | None, gpu: dict) -> dict:
    """A cell's full record: its identity, the backend's settings, FLOPs and the derived figures."""
    spec = BACKENDS[cell["backend"]]
    config = benchmark_config(cell["config"])
    B, T = cell["batch_size"], cell["seq_len"]
    labelled = B if cell["phase"] == "fill_mask" else B * labelled_per_row(T)  # fill-mask: one [MASK]
    all_positions = spec["impl"] in EVERY_POSITION_IMPLS
    flops = step_flops(Shape.of(config), cell["phase"], B, T, labelled, all_positions_in_training=all_positions)
    result = result or {"status": "error", "reason": "the worker stopped before this cell (see its output)"}
    record = {
        **cell, "title": spec["title"], "implementation": spec["impl"], "device": spec["device"],
        "dtype": spec["dtype"], "attention": spec["attention"], "compiled": spec["compiled"],
        "threads": threads if spec["device"] == "cpu" else None,
        "mlm_positions": ("all" if cell["phase"] == "infer" or all_positions
                          else "masked" if cell["phase"] == "fill_mask" else "labelled"),
        "labelled_positions": 0 if cell["phase"] == "infer" else labelled,
        "status": result["status"], "reason": result.get("reason"),
        "timing": result.get("timing"), "params": result.get("params"),
        "flops": flops, "ms_per_step": None, "tokens_per_s": None, "gflops_per_s": None,
        "executed_gflops_per_s": None, "mfu": None, "mfu_basis": None,
        "peak_memory_bytes": result.get("peak_memory_bytes"), "memory_method": result.get("memory_method"),
    }
    if "traceback" in result:
        record["traceback"] = result["traceback"]
    if result["status"] == "ok":
        median = result["timing"]["median_s"]
        record["ms_per_step"] = median * 1000
        record["tokens_per_s"] = B * T / median
        record["gflops_per_s"] = flops["model"] / median / 1e9
        record["executed_gflops_per_s"] = flops["executed"] / median / 1e9
        if spec["dtype"] == "int8-dynamic":  # integer products: a float32 peak is not their ceiling
            record["mfu_basis"] = "none: int8 matrix products, no int8 peak measured"
        elif spec["device"] == "cpu" and cpu_peak:
            record["mfu"] = record["gflops_per_s"] / cpu_peak
            record["mfu_basis"] = f"measured float32 GEMM peak {cpu_peak:.1f} GFLOP/s"
        elif spec["device"] == "cuda" and gpu.get("peak_tflops"):
            record["mfu"] = record["gflops_per_s"] / (gpu["peak_tflops"] * 1000)
            record["mfu_basis"] = f"{gpu['peak_source']}: {gpu['peak_tflops']} TFLOP/s"
        else:
            record["mfu_basis"] = gpu.get("peak_source") if spec["device"] == "cuda" else "no CPU peak measured"
    return record


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def main(argv: list[str], threads: int) -> int:
    args = parse_args(argv)
    out_root = args.out or (SMOKE_OUT if args.smoke else DEFAULT_OUT)
    if args.readme:
        from .report import render_readme

        print(render_readme(out_root, args.label))
        return 0
    if args.profile:
        from .profile import profile_numpy_step

        return profile_numpy_step(os.path.join(out_root, args.label or machine_label(threads)))

    mode = matrix.MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    label = args.label or machine_label(threads)
    out_dir = os.path.join(out_root, label)
    os.makedirs(out_dir, exist_ok=True)
    cells = matrix.build_cells(mode, cpu=not args.gpu_only, gpu=not args.cpu_only, compile_=args.compile,
                               backends=args.backends.split(",") if args.backends else None,
                               configs=args.configs.split(",") if args.configs else None)
    started = time.time()
    load_start = _load_average()
    print(f"benchmarks: mode {mode.name}, {len(cells)} cells, {threads} threads, results in {out_dir}", flush=True)

    env, blas_unset = worker_environment(os.environ, args.keep_blas_env)
    outputs: dict[str, dict] = {}
    for group in ("numpy", "onnx", "torch"):
        group_cells = [c for c in cells if matrix.group_of(c) == group]
        want_tokenizer = group == "torch" and mode.tokenizer and not args.no_tokenizer and not args.gpu_only
        if not group_cells and not want_tokenizer:
            continue
        # The GEMM peak is numpy's and torch's; ONNX Runtime's cells are measured against it too.
        measure_peak = (group == "numpy" and not args.gpu_only) or group == "torch"
        spec = {"group": group, "threads": threads, "cells": group_cells, "settings": mode.settings,
                "peak_n": mode.peak_n, "measure_peak": measure_peak,
                "tokenizer": mode.tokenizer if want_tokenizer else None}
        outputs[group] = run_worker(group, spec, threads, env)

    numpy_out, torch_out = outputs.get("numpy", {}), outputs.get("torch", {})
    numpy_peaks = numpy_out.get("peaks", {}).get("numpy_sgemm_gflops", [])
    torch_peaks = torch_out.get("peaks", {}).get("torch_sgemm_gflops", [])
    cpu_peak = max(numpy_peaks + torch_peaks) if numpy_peaks or torch_peaks else None
    gpu_info = dict(torch_out.get("info", {}).get("gpu") or {})
    if gpu_info:
        gpu_info["peak_tflops"], gpu_info["peak_source"] = gpu_peak(gpu_info["name"])
        gpu_info["measured_bf16_matmul_tflops"] = torch_out.get("peaks", {}).get("cuda_bf16_matmul_tflops_measured")
    else:
        gpu_info = {"name": None, "peak_tflops": None, "peak_source": "no CUDA device"}

    results = {group: out.get("cells", {}) for group, out in outputs.items()}
    records = [finish_cell(c, results.get(matrix.group_of(c), {}).get(c["id"]), threads, cpu_peak, gpu_info)
               for c in cells]
    machine = describe(threads)
    machine["load_average_1min"] = {"start": load_start, "end": _load_average()}  # other processes' share
    for group in ("onnx", "torch"):  # library versions and settings that only the workers see
        machine.update({k: v for k, v in outputs.get(group, {}).get("info", {}).items()
                        if k not in ("gpu", "numpy", "blas_in_use")})
    machine["gpu"] = gpu_info if gpu_info.get("name") else None
    machine["blas_env"] = {"unset_in_workers": blas_unset,
                           "kept": {name: env[name] for name in BLAS_KERNEL_VARIABLES if name in env}}
    machine["blas_in_use"] = {group: out.get("info", {}).get("blas_in_use") for group, out in outputs.items()}
    document = {
        "schema_version": SCHEMA_VERSION,
        "label": label,
        "mode": mode.name + (" (gpu-only)" if args.gpu_only else ""),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(argv),
        "duration_s": round(time.time() - started, 1),
        "machine": machine,
        "settings": mode.settings,
        "peaks": {
            "cpu_gflops": cpu_peak,
            "cpu_method": (f"best of {len(numpy_peaks)} numpy and {len(torch_peaks)} torch float32 "
                           f"{mode.peak_n}x{mode.peak_n} matmuls in this run (start and end)"),
            "numpy_sgemm_gflops": numpy_peaks, "torch_sgemm_gflops": torch_peaks,
            "gpu_tflops": gpu_info.get("peak_tflops"), "gpu_source": gpu_info.get("peak_source"),
        },
        "flop_convention": "forward = B T (2 N_enc + 4 L T C) + 2 B (C^2 + 2C) + 2 P (C^2 + V C); training = "
                           "3 x forward; P = all positions (infer) or the labelled ones (train, model FLOPs); "
                           "see benchmarks/flops.py",
        "worker_exit_codes": {g: o.get("exit_code") for g, o in outputs.items()},
        "cells": records,
        "tokenizer": torch_out.get("tokenizer") or [],
    }
    from .report import headline, text_summary

    document["headline"] = headline(document)
    if not args.no_plots:
        from .plots import make_plots

        document["plots"] = make_plots(document, out_dir)
    else:
        document["plots"] = []
    path = os.path.join(out_dir, "results.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
    os.replace(tmp, path)
    print(text_summary(document))
    print(f"\nwrote {path}" + (f" and {len(document['plots'])} plots" if document["plots"] else ""))
    failed = [r["id"] for r in records if r["status"] == "error"]
    if failed:
        print(f"{len(failed)} cells failed: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}")
    return 1 if failed else 0
