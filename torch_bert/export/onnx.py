"""``python -m torch_bert export-onnx MODEL --out DIR``: a BERT checkpoint as an ONNX graph for ONNX Runtime.

    python -m torch_bert export-onnx minilm --out runs/minilm-onnx
    python -m torch_bert export-onnx runs/np-classify --out runs/classify-onnx

MODEL is any checkpoint folder (a run of either backend, one of its checkpoints, a transformers
BERT folder) or a name (``python-docs``, ``minilm``). Its ``architectures`` entry in config.json
picks the torch_bert class, and with it the outputs, named as transformers names them:

    BertModel                       last_hidden_state (B, T, C), pooler_output (B, C)
    BertForMaskedLM                 logits (B, T, V)
    BertForPreTraining              prediction_logits (B, T, V), seq_relationship_logits (B, 2)
    BertForSequenceClassification   logits (B, num_labels)
    BertForTokenClassification      logits (B, T, num_labels)
    BertForQuestionAnswering        start_logits (B, T), end_logits (B, T)

The inputs are int64 ``input_ids``, ``attention_mask`` and ``token_type_ids``, each (batch,
sequence), both axes dynamic. The graph always applies the attention mask (the eager model skips
it when nothing is padded, see ``torch_bert.modeling_utils.has_padding``), so one graph serves
padded and unpadded batches alike.

The exporter is torch.export's (``dynamo=True``, the default of torch.onnx.export since torch
2.9): it traces the model into an FX graph and translates each ATen operator with onnxscript.
The TorchScript exporter (``--exporter torchscript``, jit tracing) is the fallback for a model
torch.export cannot trace; it is deprecated in torch. The folder also gets the config and the
tokenizer files (a tokenizer and the graph are all ONNX Runtime needs) and ``onnx_export.json``:
what was exported, how, and the largest difference from torch_bert on a padded test batch,
measured right after the export when onnxruntime is installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import torch_bert
from numpy_bert.checkpoint import (
    atomic_write_bytes,
    json_bytes,
    named_model_dir,
    remove_stale_temporaries,
    temporary_name,
)
from numpy_bert.cli.deployment import EXPORTERS
from numpy_bert.config import CONFIG_NAME, BertConfig
from numpy_bert.text.tokenization import BertTokenizer
from numpy_bert.training.run_folder import RunFolder

MODEL_NAME = "model.onnx"
RECORD_NAME = "onnx_export.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# The outputs of each architecture, by transformers' names for them.
OUTPUTS = {
    "BertModel": ("last_hidden_state", "pooler_output"),
    "BertForMaskedLM": ("logits",),
    "BertForPreTraining": ("prediction_logits", "seq_relationship_logits"),
    "BertForSequenceClassification": ("logits",),
    "BertForTokenClassification": ("logits",),
    "BertForQuestionAnswering": ("start_logits", "end_logits"),
}
VERIFY_TOLERANCE = 1e-4  # relative to the largest output: float32 rounding in another order, not a bug


class OnnxOutputs(nn.Module):
    """The model called with positional int64 inputs, returning a tuple of tensors (what an exporter traces)."""

    def __init__(self, model: nn.Module, output_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return tuple(getattr(out, name) for name in self.output_names)


def architecture(folder: str | os.PathLike) -> str:
    """The checkpoint's class, from config.json's ``architectures``, or BertModel if it names none."""
    names = BertConfig.from_pretrained(folder).extra.get("architectures") or ["BertModel"]
    if names[0] not in OUTPUTS:
        raise ValueError(f"{Path(folder) / CONFIG_NAME}: architectures names {names[0]!r}; export-onnx exports "
                         f"{', '.join(OUTPUTS)}")
    return names[0]


def load_for_export(folder: str | os.PathLike) -> tuple[nn.Module, tuple[str, ...]]:
    """The checkpoint as its torch_bert class in evaluation mode (float32, CPU), and its output names."""
    name = architecture(folder)
    model = getattr(torch_bert, name).from_pretrained(folder).eval()
    outputs = OUTPUTS[name]
    if name == "BertModel" and model.pooler is None:
        outputs = ("last_hidden_state",)
    return model, outputs


def example_inputs(config: BertConfig, batch: int = 2, length: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """A padded batch of int64 inputs (the first row ends in padding), two segments where the model has them."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(min(1000, config.vocab_size // 2), config.vocab_size, (batch, length))
    mask = np.ones((batch, length), dtype=np.int64)
    mask[0, length // 2:] = 0
    types = np.zeros((batch, length), dtype=np.int64)
    if config.type_vocab_size > 1:
        types[:, length // 2:] = 1
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask, "token_type_ids": types}


def trace_to_onnx(wrapper: OnnxOutputs, inputs: dict[str, np.ndarray], exporter: str, path: Path) -> None:
    """Write ``wrapper``'s graph to ``path`` with dynamic batch and sequence axes.

    The exporters' warnings (about the attention probabilities kept for ``output_attentions``,
    operators of torchvision, a deprecated pytree class) say nothing about this model's graph,
    whose numbers :func:`largest_difference` checks, so they are silenced here.
    """
    args = tuple(torch.from_numpy(inputs[name]) for name in INPUT_NAMES)
    with warnings.catch_warnings(), quiet_logger("torch.onnx"):
        warnings.simplefilter("ignore")
        trace(wrapper, args, exporter, path)


@contextlib.contextmanager
def quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def trace(wrapper: OnnxOutputs, args: tuple[torch.Tensor, ...], exporter: str, path: Path) -> None:
    if exporter == "dynamo":
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        program = torch.onnx.export(wrapper, args, dynamo=True, input_names=list(INPUT_NAMES),
                                    output_names=list(wrapper.output_names), verbose=False,
                                    dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUT_NAMES})
        program.save(path)
    else:
        axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, *wrapper.output_names)}
        torch.onnx.export(wrapper, args, path, dynamo=False, input_names=list(INPUT_NAMES),
                          output_names=list(wrapper.output_names), dynamic_axes=axes)


def largest_difference(path: Path, wrapper: OnnxOutputs, inputs: dict[str, np.ndarray]) -> dict[str, float] | None:
    """Per output, max |onnx - torch| / max |torch| on ``inputs``; None without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    got = session.run(list(wrapper.output_names), inputs)
    with torch.inference_mode():
        expected = wrapper(*(torch.from_numpy(inputs[name]) for name in INPUT_NAMES))
    return {name: float(np.abs(g - e.numpy()).max() / max(np.abs(e.numpy()).max(), 1e-30))
            for name, g, e in zip(wrapper.output_names, got, expected, strict=True)}


def export_onnx(model: str | os.PathLike, out: str | os.PathLike, exporter: str = "dynamo",
                overwrite_output_dir: bool = False) -> dict:
    """Export ``model`` (a folder or a name) to ``out``/model.onnx with its config and tokenizer; returns the record."""
    if exporter not in EXPORTERS:
        raise ValueError(f"--exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    folder, out = Path(named_model_dir(model)), Path(out)
    torch_model, output_names = load_for_export(folder)
    tokenizer = BertTokenizer.from_pretrained(folder)
    wrapper = OnnxOutputs(torch_model, output_names).eval()
    inputs = example_inputs(torch_model.config)
    RunFolder(out).claim("export-onnx", "torch_bert", overwrite_output_dir)
    remove_stale_temporaries(out, [MODEL_NAME])  # what a killed export left behind
    # Staged under a temporary name, then renamed: a reader never sees half a graph.
    with tempfile.TemporaryDirectory(dir=out, prefix=temporary_name(MODEL_NAME), suffix=".tmp") as tmp:
        staged = Path(tmp, MODEL_NAME)
        trace_to_onnx(wrapper, inputs, exporter, staged)
        differences = largest_difference(staged, wrapper, inputs)
        if differences and max(differences.values()) > VERIFY_TOLERANCE:
            raise ValueError(f"the exported graph differs from torch_bert by {differences} (relative) on a test "
                             f"batch, beyond {VERIFY_TOLERANCE:g}; try --exporter "
                             f"{'torchscript' if exporter == 'dynamo' else 'dynamo'}")
        os.replace(staged, out / MODEL_NAME)
    shutil.copyfile(folder / CONFIG_NAME, out / CONFIG_NAME)
    tokenizer.save_pretrained(out)
    record = {"exported_from": os.fspath(folder), "architecture": type(torch_model).__name__,
              "exporter": exporter, "torch": torch.__version__, "inputs": list(INPUT_NAMES),
              "outputs": list(output_names), "dynamic_axes": ["batch", "sequence"],
              "max_relative_difference_from_torch_bert": differences}
    atomic_write_bytes(out / RECORD_NAME, json_bytes(record))
    return record
