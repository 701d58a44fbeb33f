"""``python -m numpy_bert quantize MODEL --out DIR``: a checkpoint's weights as int8, the rest as it was.

The arithmetic is numpy_bert/quantization.py's. Here it runs on the checkpoint's tensors by
name: every 2-D ``*.weight`` (the Linear layers' matrices and the word embeddings) becomes int8
with a ``*.weight_scale`` beside it, except the position and token-type tables, which stay
float32 with the biases and LayerNorms; config.json gains ``quantization_config``. That is the
tensor set ``quantize_model`` gives a model, so ``from_pretrained`` loads the folder into int8
layers. The files that describe the model but are not its weights (vocabulary, tokenizer and
pooling configs, a run's records and plots) are copied as they are.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..checkpoint import WEIGHTS_NAME, load_weights, read_json_object, save_model_files
from ..config import CONFIG_NAME
from ..quantization import QUANT_METHOD, QUANTIZATION_CONFIG, dequantize_rows, quantize_rows
from .export import MANIFEST_NAME
from .run_folder import RunFolder

FLOAT_TABLES = ("position_embeddings.weight", "token_type_embeddings.weight")  # small: kept float32
TIED_DECODER = "cls.predictions.decoder.weight"  # the word embeddings again, where a file repeats them
NOT_COPIED = {WEIGHTS_NAME, CONFIG_NAME, MANIFEST_NAME, "pytorch_model.bin", "numpy_bert_run.json", "latest"}


def is_quantized_name(name: str, array: np.ndarray) -> bool:
    return array.ndim == 2 and name.endswith(".weight") and not name.endswith(FLOAT_TABLES)


def quantize_tensors(tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
    """The int8 tensor set, and the largest weight error relative to its row's largest weight."""
    out, worst = {}, 0.0
    for name, array in tensors.items():
        if name.endswith(TIED_DECODER):
            continue  # tied: the int8 word-embedding table serves the decoder
        if not is_quantized_name(name, array):
            out[name] = array.astype(np.float32) if array.dtype.kind == "f" else array
            continue
        weights = array.astype(np.float32)
        q, scale = quantize_rows(weights)
        error = np.abs(dequantize_rows(q, scale) - weights).max(axis=1) / np.maximum(np.abs(weights).max(axis=1),
                                                                                    1e-30)
        worst = max(worst, float(error.max()))
        out[name], out[name + "_scale"] = q, scale
    return out, worst


def float32_bytes(tensors: dict[str, np.ndarray]) -> int:
    """The bytes of a checkpoint's tensors with every floating one in float32 (python-docs ships float16),
    the tied decoder counted once: what the int8 file is compared with."""
    return sum(a.size * 4 if a.dtype.kind == "f" else a.nbytes
               for name, a in tensors.items() if not name.endswith(TIED_DECODER))


def copy_model_files(source: Path, out: Path) -> None:
    """The folder's other files (vocabulary, tokenizer, pooling, records, plots); not a run's checkpoints."""
    for entry in source.iterdir():
        if entry.name in NOT_COPIED or entry.name.startswith((".", "checkpoint-")):
            continue
        if entry.is_dir():
            shutil.copytree(entry, out / entry.name, dirs_exist_ok=True)
        else:
            shutil.copyfile(entry, out / entry.name)


def quantize_checkpoint(model: str | os.PathLike, out: str | os.PathLike, overwrite_output_dir: bool = False) -> dict:
    """Write the int8 copy of the checkpoint folder ``model`` to ``out``; returns sizes and the weight error."""
    source, out = Path(model), Path(out)
    config = read_json_object(source / CONFIG_NAME)
    if (config.get("quantization_config") or {}).get("quant_method") == QUANT_METHOD:
        raise ValueError(f"{source} is already int8 (its config.json has quantization_config); quantize the "
                         "float32 model it came from")
    tensors = load_weights(source)
    quantized, worst = quantize_tensors(tensors)
    RunFolder(out).claim("quantize", "numpy_bert", overwrite_output_dir)
    copy_model_files(source, out)
    save_model_files(out, {**config, "quantization_config": QUANTIZATION_CONFIG}, quantized)
    written, reference = (out / WEIGHTS_NAME).stat().st_size, float32_bytes(tensors)
    return {"bytes": written, "float32_bytes": reference, "size_ratio": written / reference,
            "max_relative_weight_error": worst}
