"""Which machine ran the benchmarks: CPU, BLAS, library versions, GPU; its label; the device peaks.

Nothing here imports torch (that takes seconds): the GPU name comes from ``nvidia-smi``
for the label, and the torch worker adds what torch itself reports.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess

# Dense (no sparsity) peak throughput from NVIDIA's datasheets, TFLOP/s, for the
# precision the CUDA cells run in (bf16 autocast). Matched against the device name,
# the longest matching key wins ("H100 NVL" over "H100", "L40S" over "L40" over "L4");
# a GPU not listed gets no MFU (the reason is recorded).
GPU_PEAK_TFLOPS_BF16: list[tuple[str, float, str]] = [
    ("H100 PCIe", 756.0, "NVIDIA H100 PCIe datasheet, BF16 dense"),
    ("H100 NVL", 835.0, "NVIDIA H100 NVL datasheet, BF16 dense"),
    ("H100", 989.4, "NVIDIA H100 SXM datasheet, BF16 dense (1979 with sparsity)"),
    ("H200 NVL", 835.0, "NVIDIA H200 NVL datasheet, BF16 dense"),
    ("H200", 989.4, "NVIDIA H200 SXM datasheet, BF16 dense (1979 with sparsity)"),
    ("GH200", 989.4, "NVIDIA GH200 datasheet, BF16 dense"),
    ("A100", 312.0, "NVIDIA A100 datasheet, BF16 dense"),
    ("L40S", 362.05, "NVIDIA L40S datasheet, BF16 dense"),
    ("L40", 181.05, "NVIDIA L40 datasheet, BF16 dense"),
    ("L4", 121.0, "NVIDIA L4 datasheet, BF16 dense"),
]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS")
# Variables that override OpenBLAS's own choice of kernel (CORETYPE) and of its cache blocking
# (L2_SIZE). A machine may set them for reasons of its own, to values that can halve numpy's
# sgemm; the benchmark workers run without them unless --keep-blas-env is given.
BLAS_KERNEL_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs ``nvidia-smi`` sees (empty without a driver); no torch import."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def sanitise(text: str) -> str:
    text = re.sub(r"\((?:R|TM|tm)\)", "", text)
    text = re.sub(r"[^a-z0-9]+", "-", text.lower())
    return text.strip("-") or "unknown"


def machine_label(threads: int | None = None, gpus: list[str] | None = None) -> str:
    """e.g. ``amd-epyc-2cpu`` or ``intel-xeon-platinum-8480c-16cpu--nvidia-h100-80gb-hbm3``."""
    gpus = gpu_names() if gpus is None else gpus
    label = f"{sanitise(cpu_model())}-{available_cpus() if threads is None else threads}cpu"
    if gpus:
        label += "--" + sanitise(gpus[0])
    return label


def gpu_peak(name: str) -> tuple[float | None, str]:
    """(dense bf16 TFLOP/s, source) for a GPU name, or (None, why not)."""
    matches = [entry for entry in GPU_PEAK_TFLOPS_BF16 if entry[0].lower() in name.lower()]
    if matches:
        _, tflops, source = max(matches, key=lambda entry: len(entry[0]))
        return tflops, source
    return None, f"no datasheet peak recorded for {name!r} in benchmarks/machine.py"


def numpy_details() -> dict:
    """numpy's version and the BLAS it was built with (from numpy.show_config)."""
    import numpy as np

    details: dict = {"numpy": np.__version__}
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        details["blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration") if blas.get(k)}
        simd = config.get("SIMD Extensions", {})
        details["simd_found"] = simd.get("found")
    except Exception as err:  # numpy < 1.26 has no mode="dicts"
        details["blas"] = {"error": repr(err)}
    return details


def describe(threads: int) -> dict:
    """Everything about this machine that does not need torch."""
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "available_cpus": available_cpus(),
        "threads": threads,
        "thread_env": {k: os.environ.get(k) for k in THREAD_VARIABLES},
        "platform": platform.platform(),
        "python": platform.python_version(),
        **numpy_details(),
        "gpus_nvidia_smi": gpu_names(),
    }
