"""The ONNX Runtime backends' graphs: torch_bert exported once per config, in a process of its own.

Exporting needs torch, and a process that has run torch keeps torch's OpenMP threads. The
ONNX Runtime worker is there to time ONNX Runtime alone, so it never imports torch: a
short-lived child process (``spawn``: a fresh interpreter) builds the model, exports and
quantizes it, and hands back the serialized graphs. Their batch and sequence axes are
dynamic, so one export serves every cell of a config.
"""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Graphs:
    serialized: dict[str, bytes]  # by the backend's dtype: "float32" and "int8-dynamic"
    params: int  # the torch_bert model's parameters (the tied decoder weight counted once)


@functools.cache
def exported(config_name: str) -> Graphs:
    """The graphs of ``config_name``, exported in a child process on first use, then kept."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(export_graphs, config_name).result()


def export_graphs(config_name: str) -> Graphs:
    """torch_bert's BertForPreTraining (seed 0, evaluation mode) as ONNX, float32 and dynamic int8.

    ``quantize_dynamic`` stores int8 weights with one scale per tensor, and the graph quantizes
    each MatMul's input at run time. Its pre-processing (``quant_pre_process``, which
    onnxruntime's quantizer itself recommends) folds the transpose of the tied decoder weight
    into a constant first: without it the quantizer does not see that weight as a constant
    and the graph dequantizes the whole shared (V, C) table at every call, which made the int8
    graph slower than the float32 one (figures in benchmarks/README.md). Its symbolic shape
    inference is skipped: dynamic quantization needs no shapes, and it takes seconds.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import torch_bert
    from torch_bert.export.onnx import OUTPUTS, OnnxOutputs, example_inputs, trace_to_onnx

    from .backends import benchmark_config

    config = benchmark_config(config_name)
    model = torch_bert.BertForPreTraining(config, seed=0).eval()
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        float32, folded, int8 = (Path(tmp, name) for name in ("float32.onnx", "folded.onnx", "int8.onnx"))
        trace_to_onnx(OnnxOutputs(model, OUTPUTS["BertForPreTraining"]).eval(), example_inputs(config), "dynamo",
                      float32)
        quant_pre_process(float32, folded, skip_symbolic_shape=True)
        quantize_dynamic(folded, int8, weight_type=QuantType.QInt8)
        return Graphs({"float32": float32.read_bytes(), "int8-dynamic": int8.read_bytes()},
                      sum(p.numel() for p in model.parameters()))
