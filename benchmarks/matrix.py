"""Which cells each mode runs, and with which timing settings.

A cell is (backend, config, phase, batch size, sequence length); ``sweeps`` tags why it
is there: ``headline`` (the per-config comparison at the headline batch), ``latency``
(batch 1, a short sentence, logits at every position), ``fill_mask`` (the same sentence
with one [MASK], logits at the mask only), ``seq`` (sequence-length sweep), ``batch``
(batch sweep), ``deploy`` (the deployment peers - ONNX Runtime and the int8 models - next to
NumPy and torch_bert, at the latency and headline shapes, on mini and on MiniLM's shape).
A backend gets only the phases it has (``backends.phases_of``: no training step for an
inference engine). CUDA cells are always listed; without a GPU the worker marks them
skipped, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends import BACKENDS, phases_of

CPU_CONFIGS = ["tiny", "mini", "small"]
GPU_CONFIGS = ["tiny", "mini", "small", "base"]


@dataclass(frozen=True)
class Mode:
    name: str
    cpu_backends: list[str]
    gpu_backends: list[str]
    cpu_configs: list[str]
    gpu_configs: list[str]
    headline: tuple[int, int]  # (batch, seq_len)
    latency: tuple[int, int]
    seq_sweep: dict  # config, batch, lengths, phases (CPU); gpu_config, gpu_batch
    batch_sweep: dict  # config, seq_len, batches, phases; gpu_config, gpu_batches
    settings: dict = field(default_factory=dict)
    peak_n: int = 4096
    tokenizer: dict | None = None
    deploy_configs: list[str] = field(default_factory=list)  # the "deploy" sweep's configs (CPU)


CPU_ALL = ["numpy", "numpy_fast", "torch_bert", "torch_bert_sdpa", "transformers_eager", "transformers_sdpa"]
CPU_LEAN = ["numpy", "numpy_fast", "torch_bert", "transformers_sdpa"]
GPU_ALL = ["torch_bert_cuda", "transformers_cuda"]
DEPLOY = ["numpy", "numpy_fast", "numpy_int8", "torch_bert", "onnxruntime", "onnxruntime_int8", "torch_int8"]

MODES = {
    "full": Mode(
        "full", CPU_ALL, GPU_ALL, CPU_CONFIGS, GPU_CONFIGS, headline=(32, 128), latency=(1, 16),
        seq_sweep=dict(config="mini", batch=8, lengths=[32, 64, 128, 256, 512], phases=["train", "infer"],
                       gpu_config="base", gpu_batch=8),
        batch_sweep=dict(config="mini", seq_len=128, batches=[1, 4, 16, 64], phases=["infer", "train"],
                         gpu_config="base", gpu_batches=[1, 8, 32, 128]),
        settings=dict(warmup=2, min_repeats=5, max_repeats=30, min_time=3.0, budget_s=60.0),
        peak_n=4096, tokenizer=dict(max_bytes=None, repeats=5), deploy_configs=["mini", "minilm"]),
    "quick": Mode(
        "quick", CPU_LEAN, GPU_ALL, CPU_CONFIGS, GPU_CONFIGS, headline=(32, 128), latency=(1, 16),
        seq_sweep=dict(config="mini", batch=4, lengths=[32, 64, 128, 256, 512], phases=["train", "infer"],
                       gpu_config="base", gpu_batch=8),
        batch_sweep=dict(config="mini", seq_len=128, batches=[1, 4, 16], phases=["infer"],
                         gpu_config="base", gpu_batches=[1, 8, 32, 128]),
        settings=dict(warmup=1, min_repeats=3, max_repeats=15, min_time=1.0, budget_s=20.0),
        peak_n=2048, tokenizer=dict(max_bytes=None, repeats=3), deploy_configs=["mini", "minilm"]),
    "smoke": Mode(
        "smoke", CPU_LEAN, GPU_ALL, ["tiny"], ["tiny"], headline=(2, 16), latency=(1, 8),
        seq_sweep=dict(config="tiny", batch=2, lengths=[8, 16], phases=["train", "infer"],
                       gpu_config="tiny", gpu_batch=2),
        batch_sweep=dict(config="tiny", seq_len=16, batches=[1, 2], phases=["infer"],
                         gpu_config="tiny", gpu_batches=[1, 2]),
        settings=dict(warmup=1, min_repeats=2, max_repeats=2, min_time=0.0, budget_s=5.0),
        peak_n=512, tokenizer=dict(max_bytes=20_000, repeats=1), deploy_configs=["tiny"]),
}


def cell_id(backend: str, config: str, phase: str, batch: int, seq_len: int) -> str:
    return f"{phase}/{config}/{backend}/b{batch}/t{seq_len}"


def build_cells(mode: Mode, *, cpu: bool = True, gpu: bool = True, compile_: bool = False,
                backends: list[str] | None = None, configs: list[str] | None = None) -> list[dict]:
    """The cells of ``mode``, each once (with every sweep that wants it), in run order."""
    gpu_backends = list(mode.gpu_backends) + (["torch_bert_cuda_compile"] if compile_ else [])
    cells: dict[str, dict] = {}

    def add(backend: str, config: str, phase: str, batch: int, seq_len: int, sweep: str) -> None:
        if backends and backend not in backends:
            return
        if phase not in phases_of(backend):
            return
        if configs and config not in configs:
            return
        key = cell_id(backend, config, phase, batch, seq_len)
        cell = cells.setdefault(key, dict(id=key, backend=backend, config=config, phase=phase, batch_size=batch,
                                          seq_len=seq_len, sweeps=[]))
        if sweep not in cell["sweeps"]:
            cell["sweeps"].append(sweep)

    groups = ([("cpu", mode.cpu_backends, mode.cpu_configs)] if cpu else []) + \
             ([("gpu", gpu_backends, mode.gpu_configs)] if gpu else [])
    for kind, names, config_names in groups:
        for config in config_names:
            for name in names:
                for phase in ("train", "infer"):
                    add(name, config, phase, *mode.headline, "headline")
                add(name, config, "infer", *mode.latency, "latency")
                add(name, config, "fill_mask", *mode.latency, "fill_mask")
        s, b = mode.seq_sweep, mode.batch_sweep
        for name in names:
            for phase in s["phases"]:
                for length in s["lengths"]:
                    config, batch = (s["config"], s["batch"]) if kind == "cpu" else (s["gpu_config"], s["gpu_batch"])
                    add(name, config, phase, batch, length, "seq")
            for phase in b["phases"]:
                config, batches = (b["config"], b["batches"]) if kind == "cpu" else (b["gpu_config"], b["gpu_batches"])
                for batch in batches:
                    add(name, config, phase, batch, b["seq_len"], "batch")
    for config in mode.deploy_configs if cpu else []:
        for name in DEPLOY:
            add(name, config, "infer", *mode.latency, "deploy")
            add(name, config, "infer", *mode.headline, "deploy")
            add(name, config, "fill_mask", *mode.latency, "deploy")
    return list(cells.values())


def group_of(cell: dict) -> str:
    return BACKENDS[cell["backend"]]["group"]
