"""The backends: how each one builds its model and batch and runs one step.

A step is one of three phases:

* ``infer``: a forward pass in evaluation mode without gradients (``torch.inference_mode``
  for torch), returning MLM logits for every position and the NSP logits; batch 1
  is the latency figure, larger batches the throughput.
* ``fill_mask``: the model call of ``numpy_bert.training.evaluation.fill_mask`` on one sentence with
  one [MASK]: evaluation mode, MLM logits only at the masked position
  (``labelled_positions_only=True`` with a label there). transformers has no such option
  and projects every position, as its fill-mask pipeline does.
* ``train``: a full training step in training mode (dropout on): forward with MLM labels
  at ~15% of positions and NSP labels, backward, AdamW update (``build_optimizer`` of
  numpy_bert.optim or torch_bert.optim, lr 1e-4), gradients cleared. numpy_bert and
  torch_bert gather the labelled positions before the vocabulary projection
  (``labelled_positions_only=True``); transformers' BertForPreTraining projects every
  position, which is what it really does.

CUDA cells run the float32 model under ``torch.autocast(dtype=torch.bfloat16)`` with
fused attention (torch_bert's ``use_sdpa()``, transformers' ``attn_implementation="sdpa"``);
``torch_bert_cuda_compile`` also compiles the encoder and the MLM head in place
(``nn.Module.compile``).

The deployment peers are inference engines and int8 models, timed for ``infer`` and
``fill_mask`` only (``phases`` in their entry; they have no training step):

* ``onnxruntime``: torch_bert exported to ONNX (torch.export, see benchmarks/onnx_graphs.py)
  and run by ONNX Runtime's CPU provider with every graph optimization (ORT_ENABLE_ALL);
* ``onnxruntime_int8``: that graph through ``onnxruntime.quantization.quantize_dynamic``:
  int8 weights with one scale per tensor, activations quantized to uint8 at run time;
* ``torch_int8``: torch_bert through ``torch.ao.quantization.quantize_dynamic``, every
  ``nn.Linear`` likewise (int8 weights per tensor, activations quantized at run time);
* ``numpy_int8``: the readable numpy_bert model through ``numpy_bert.quantization.quantize_model``:
  int8 weights with one scale per output channel, float32 activations and products.

Both ONNX graphs return the MLM logits at every position, fill-mask included, as transformers
does. Heavy imports happen inside the functions: the NumPy worker never imports torch, and
the ONNX Runtime worker imports it only in the short-lived process that exports the graphs.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

MLM_FRACTION = 0.15
LR = 1e-4
MASK_ID = 103  # [MASK] in BERT's uncased vocabulary
PHASES = ("train", "infer", "fill_mask")
INFERENCE_PHASES = ("infer", "fill_mask")
# Implementations that compute the MLM logits at every position even where only some are asked for:
# transformers has no labelled_positions_only option, and the ONNX graph's outputs are (B, T, V).
EVERY_POSITION_IMPLS = ("transformers", "onnxruntime")

BACKENDS: dict[str, dict[str, Any]] = {
    "numpy": dict(group="numpy", device="cpu", impl="numpy_bert", attention="eager", dtype="float32",
                  compiled=False, title="NumPy (readable)"),
    "numpy_fast": dict(group="numpy", device="cpu", impl="numpy_bert.fast", attention="eager", dtype="float32",
                       compiled=False, title="NumPy (fast)"),
    "torch_bert": dict(group="torch", device="cpu", impl="torch_bert", attention="eager", dtype="float32",
                       compiled=False, title="torch_bert CPU"),
    "torch_bert_sdpa": dict(group="torch", device="cpu", impl="torch_bert", attention="sdpa", dtype="float32",
                            compiled=False, title="torch_bert CPU (sdpa)"),
    "transformers_eager": dict(group="torch", device="cpu", impl="transformers", attention="eager",
                               dtype="float32", compiled=False, title="transformers CPU (eager)"),
    "transformers_sdpa": dict(group="torch", device="cpu", impl="transformers", attention="sdpa", dtype="float32",
                              compiled=False, title="transformers CPU (sdpa)"),
    "torch_bert_cuda": dict(group="torch", device="cuda", impl="torch_bert", attention="sdpa",
                            dtype="bf16-autocast", compiled=False, title="torch_bert GPU"),
    "torch_bert_cuda_compile": dict(group="torch", device="cuda", impl="torch_bert", attention="sdpa",
                                    dtype="bf16-autocast", compiled=True, title="torch_bert GPU (compiled)"),
    "transformers_cuda": dict(group="torch", device="cuda", impl="transformers", attention="sdpa",
                              dtype="bf16-autocast", compiled=False, title="transformers GPU"),
    # The deployment peers (see the module docstring). The ONNX Runtime worker is a process of its own so
    # that no torch thread pool shares the cores with ONNX Runtime's while it is timed; its attention is
    # the one torch_bert's graph was exported with.
    "numpy_int8": dict(group="numpy", device="cpu", impl="numpy_bert", attention="eager", dtype="int8-weights",
                       compiled=False, phases=INFERENCE_PHASES, title="NumPy int8 (weights)"),
    "torch_int8": dict(group="torch", device="cpu", impl="torch_bert", attention="eager", dtype="int8-dynamic",
                       compiled=False, phases=INFERENCE_PHASES, title="torch dynamic int8"),
    "onnxruntime": dict(group="onnx", device="cpu", impl="onnxruntime", attention="eager", dtype="float32",
                        compiled=False, phases=INFERENCE_PHASES, title="ONNX Runtime fp32"),
    "onnxruntime_int8": dict(group="onnx", device="cpu", impl="onnxruntime", attention="eager",
                             dtype="int8-dynamic", compiled=False, phases=INFERENCE_PHASES,
                             title="ONNX Runtime dynamic int8"),
}


def phases_of(backend: str) -> tuple[str, ...]:
    """The phases a backend runs: all three, or infer and fill_mask for an inference engine (no backward)."""
    return BACKENDS[backend].get("phases", PHASES)


CONFIGS_BY_SIZE = ("tiny", "mini", "minilm", "small", "medium", "base")  # the order of tables and plots


def benchmark_config(name: str):
    """The BertConfig of a config name: a preset (tiny, mini, small, base) or "minilm", the shape of
    all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads) read from its config.json. Every backend starts
    from random weights (seed 0): the time of a step depends on the shapes, not on the values."""
    import numpy_bert
    from numpy_bert.checkpoint import named_model_dir

    if name == "minilm":
        return numpy_bert.BertConfig.from_pretrained(named_model_dir("minilm"))
    return numpy_bert.BertConfig.from_preset(name)


def labelled_per_row(seq_len: int) -> int:
    """MLM-labelled positions per sequence: round(15% of T), at least 1."""
    return max(1, round(MLM_FRACTION * seq_len))


def make_batch(vocab_size: int, type_vocab_size: int, batch: int, seq_len: int, seed: int = 0) -> dict:
    """A deterministic pre-training batch of NumPy arrays: no padding, two segments, MLM and NSP labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    low = min(1000, vocab_size // 2)  # past BERT's special and unused ids
    ids = rng.integers(low, vocab_size, (batch, seq_len))
    types = np.zeros((batch, seq_len), dtype=np.int64)
    if type_vocab_size > 1:
        types[:, seq_len // 2:] = 1
    labels = np.full((batch, seq_len), -100, dtype=np.int64)
    k = labelled_per_row(seq_len)
    for row in range(batch):
        positions = rng.choice(seq_len, size=k, replace=False)
        labels[row, positions] = ids[row, positions]
    return dict(input_ids=ids, attention_mask=np.ones((batch, seq_len), dtype=np.int64), token_type_ids=types,
                labels=labels, next_sentence_label=rng.integers(0, 2, batch))


def fill_mask_batch(vocab_size: int, type_vocab_size: int, seq_len: int) -> dict:
    """One sentence with one [MASK] in the middle; ``labels`` mark it (their value is unused), as in fill_mask."""
    import numpy as np

    b = make_batch(vocab_size, type_vocab_size, 1, seq_len)
    b["token_type_ids"][...] = 0
    position = seq_len // 2
    b["input_ids"][0, position] = min(MASK_ID, vocab_size - 1)
    b["labels"] = np.full((1, seq_len), -100, dtype=np.int64)
    b["labels"][0, position] = b["input_ids"][0, position]
    return b


def cell_batch(cell: dict, config) -> dict:
    """The NumPy arrays a cell's step reads: the one-[MASK] sentence for fill_mask, else a pre-training batch."""
    if cell["phase"] == "fill_mask":
        return fill_mask_batch(config.vocab_size, config.type_vocab_size, cell["seq_len"])
    return make_batch(config.vocab_size, config.type_vocab_size, cell["batch_size"], cell["seq_len"])


@dataclass
class Prepared:
    step: Any  # () -> None, one step
    sync: Any  # () -> None, or None on CPU
    params: int
    device: str
    torch: Any = None


def prepare(cell: dict, threads: int | None = None) -> Prepared:
    """The model, batch and step of ``cell``; ``threads`` sets ONNX Runtime's (None: its own default)."""
    spec = BACKENDS[cell["backend"]]
    if spec["impl"].startswith("numpy_bert"):
        return _prepare_numpy(cell, spec)
    if spec["impl"] == "onnxruntime":
        return _prepare_onnxruntime(cell, spec, threads)
    return _prepare_torch(cell, spec)


def _prepare_numpy(cell: dict, spec: dict) -> Prepared:
    import numpy_bert
    from numpy_bert.optim import build_optimizer
    from numpy_bert.quantization import quantize_model

    config = benchmark_config(cell["config"])
    if spec["impl"] == "numpy_bert.fast":
        from numpy_bert.fast import FastBertForPreTraining as Model
    else:
        Model = numpy_bert.BertForPreTraining
    model = Model(config, seed=0)
    params = model.num_parameters()  # of the float32 model: quantizing adds scales, not parameters
    if spec["dtype"] == "int8-weights":
        quantize_model(model)
    b = cell_batch(cell, config)
    if cell["phase"] == "infer":
        model.eval()

        def step():
            model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    elif cell["phase"] == "fill_mask":
        model.eval()

        def step():
            model(b["input_ids"], b["attention_mask"], b["token_type_ids"], labels=b["labels"],
                  labelled_positions_only=True)
    else:
        model.train()
        optimizer = build_optimizer(model, lr=LR)

        def step():
            model(b["input_ids"], b["attention_mask"], b["token_type_ids"], b["labels"], b["next_sentence_label"],
                  labelled_positions_only=True)
            model.backward()
            optimizer.step()
            optimizer.zero_grad()

    return Prepared(step, None, params, "cpu")


def _prepare_onnxruntime(cell: dict, spec: dict, threads: int | None) -> Prepared:
    import onnxruntime

    from .onnx_graphs import exported

    graphs = exported(cell["config"])
    options = onnxruntime.SessionOptions()
    # The threads within an operator, as many as every backend gets; operators run one after another.
    options.intra_op_num_threads, options.inter_op_num_threads = threads or 0, 1  # 0: ONNX Runtime's default
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(graphs.serialized[spec["dtype"]], options,
                                           providers=["CPUExecutionProvider"])
    config = benchmark_config(cell["config"])
    arrays = cell_batch(cell, config)
    feed = {graph_input.name: arrays[graph_input.name] for graph_input in session.get_inputs()}

    def step():
        session.run(None, feed)

    return Prepared(step, None, graphs.params, "cpu")


def _dynamic_int8(torch, model):
    """Every nn.Linear as torch's dynamic int8 Linear: int8 weights, one scale per tensor, and the
    activations quantized at run time (the tied MLM decoder too; the embedding stays float32)."""
    with warnings.catch_warnings():
        # torch deprecates its eager-mode quantization in favour of torchao (not a dependency here); the
        # API still works, and it is the int8 path a torch user has without another package.
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, .* are deprecated")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _prepare_torch(cell: dict, spec: dict) -> Prepared:
    import torch

    import torch_bert
    from torch_bert.optim import build_optimizer

    device = spec["device"]
    config = benchmark_config(cell["config"])
    if spec["impl"] == "torch_bert":
        model = torch_bert.BertForPreTraining(config, seed=0)
        if spec["attention"] == "sdpa":
            model.use_sdpa()
    else:
        import transformers

        transformers.logging.set_verbosity_error()
        torch.manual_seed(0)
        hf_config = transformers.BertConfig(**config.to_dict())
        model = transformers.BertForPreTraining._from_config(hf_config, attn_implementation=spec["attention"])
    model.to(device)
    params = sum(p.numel() for p in model.parameters())
    if spec["dtype"] == "int8-dynamic":
        model = _dynamic_int8(torch, model)
    arrays = cell_batch(cell, config)
    b = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
    inputs = {k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device == "cuda" else contextlib.nullcontext
    if spec["compiled"]:
        # Compile the parts without data-dependent control flow (the input checks and the gathering of
        # labelled positions would break the graph), in place, so parameter names stay the same, for this
        # cell's fixed shapes. The compiled code hangs off forward functions that every cell's modules
        # share: a fresh cache per cell, and an error rather than a silent eager fallback at torch's
        # recompile limit, keep "compiled" true of every compiled cell.
        torch._dynamo.reset()
        torch._dynamo.config.fail_on_recompile_limit_hit = True
        model.bert.encoder.compile(dynamic=False)
        model.cls.predictions.compile(dynamic=False)
    run = model
    sync = torch.cuda.synchronize if device == "cuda" else None

    if cell["phase"] in ("infer", "fill_mask"):
        model.eval()
        extra = {}
        if cell["phase"] == "fill_mask" and spec["impl"] == "torch_bert":
            extra = {"labels": b["labels"], "labelled_positions_only": True}

        def step():
            with torch.inference_mode(), autocast():
                run(**inputs, **extra)
    else:
        model.train()
        optimizer = build_optimizer(model, lr=LR)
        extra = {"labelled_positions_only": True} if spec["impl"] == "torch_bert" else {}

        def step():
            with autocast():
                out = run(**inputs, labels=b["labels"], next_sentence_label=b["next_sentence_label"], **extra)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return Prepared(step, sync, params, device, torch)
