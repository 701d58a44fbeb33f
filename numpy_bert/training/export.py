"""Exporting a trained run as a model to share: its weights (float16 halves the size), vocabulary and
config, the record of how it was trained, and a manifest of SHA-256 sums.

    python -m numpy_bert export runs/python-docs numpy_bert/pretrained/python-docs --dtype float16

is how the shipped ``python-docs`` model was made. A run pre-trained with ``--no-nsp`` is written as
a BertForMaskedLM, the model transformers' run_mlm.py saves: its pooler and NSP head never
learned anything, so they are left out (a model that needs a pooler initialises one, and says
so). The folder loads like any checkpoint
(``from_pretrained`` upcasts float16 to the model's float32), in transformers too, and
``eval`` finds the training options in its args.json. A RoBERTa or ALBERT run is written as it was
trained (RobertaForMaskedLM; AlbertForPreTraining, or AlbertForMaskedLM with --no-nsp), and an
ELECTRA run (--objective electra) with its generator in generator/, cast the same way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write_bytes, json_bytes, load_weights, read_json_object, save_model_files
from ..config import CONFIG_NAME
from ..text.tokenization import BertTokenizer
from .run_folder import ARGS_NAME, ENVIRONMENT_NAME, GENERATOR_DIR, METRICS_NAME, PLOTS_DIR, RunFolder

MANIFEST_NAME = "manifest.json"
EXPORT_DTYPES = ("float16", "float32")
RECORDS = (ARGS_NAME, METRICS_NAME, ENVIRONMENT_NAME)  # how the model was trained, copied as they are
UNTRAINED_BY_MLM = ("bert.pooler.", "cls.seq_relationship.")  # no gradient reaches them without NSP


def export_run(run: str | os.PathLike, out: str | os.PathLike, dtype: str = "float16",
               overwrite_output_dir: bool = False) -> Path:
    """Write the model of ``run`` (a train or finetune run folder) to ``out``; returns the manifest's path."""
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    run, out = Path(run), Path(out)
    models = {Path(): model_files(run)}  # the model, and an ELECTRA run's generator beside it
    if (run / GENERATOR_DIR / CONFIG_NAME).is_file():
        models[Path(GENERATOR_DIR)] = model_files(run / GENERATOR_DIR)
    tokenizer = BertTokenizer.from_pretrained(run)
    tensors, config = models[Path()]
    if trained_mlm_only(run) and config.get("model_type", "bert") == "bert":
        models[Path()] = as_masked_lm(tensors, config)
    if dtype == "float16":
        for folder, (tensors, _) in models.items():
            check_representable(tensors, run / folder)
    RunFolder(out).claim("export", "numpy_bert", overwrite_output_dir)
    for folder, (tensors, config) in models.items():
        cast = {name: array.astype(dtype) if np.issubdtype(array.dtype, np.floating) else array
                for name, array in tensors.items()}
        save_model_files(out / folder, config, cast)
    tokenizer.save_pretrained(out)
    for name in RECORDS:
        if (run / name).is_file():
            shutil.copyfile(run / name, out / name)
    if (run / PLOTS_DIR).is_dir():
        shutil.copytree(run / PLOTS_DIR, out / PLOTS_DIR, dirs_exist_ok=True)
    return write_manifest(out, {"exported_from": os.fspath(run), "dtype": dtype})


def model_files(folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, config.json) of a model folder, its weights checked: whole, finite, saved with its config."""
    return load_weights(folder), read_json_object(folder / CONFIG_NAME)


def trained_mlm_only(run: Path) -> bool:
    """A pre-training run from scratch with ``--no-nsp``: its pooler and NSP head kept their random
    initial weights. (With ``--init-from`` they may hold what an earlier model learned: kept.)"""
    if not (run / ARGS_NAME).is_file():
        return False
    args = read_json_object(run / ARGS_NAME)
    return args.get("task") == "mlm" and args.get("init_from") is None


def as_masked_lm(tensors: dict[str, np.ndarray], config: dict) -> tuple[dict[str, np.ndarray], dict]:
    """The BertForMaskedLM checkpoint transformers' run_mlm.py would save: without the untrained layers."""
    kept = {name: array for name, array in tensors.items() if not name.startswith(UNTRAINED_BY_MLM)}
    return kept, {**config, "architectures": ["BertForMaskedLM"]}


def check_representable(tensors: dict[str, np.ndarray], source: Path) -> None:
    """float16 tops out at 65,504: a larger weight would become infinite."""
    limit = np.finfo(np.float16).max
    for name, array in tensors.items():
        if np.issubdtype(array.dtype, np.floating) and array.size and np.abs(array).max() > limit:
            raise ValueError(f"{source}: {name} holds values beyond float16's range ({limit:g}); "
                             "export with --dtype float32")


def file_digests(folder: Path) -> dict[str, dict[str, int | str]]:
    """{relative path: {"bytes", "sha256"}} of every file under ``folder`` but the manifest."""
    return {path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size,
                                                  "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST_NAME}


def write_manifest(folder: Path, about: dict) -> Path:
    path = folder / MANIFEST_NAME
    atomic_write_bytes(path, json_bytes({**about, "files": file_digests(folder)}))
    return path


def check_manifest(folder: str | os.PathLike) -> None:
    """Refuse a folder whose files are not those its manifest lists (missing, extra or changed)."""
    folder = Path(folder)
    listed = read_json_object(folder / MANIFEST_NAME).get("files", {})
    found = file_digests(folder)
    changed = sorted(name for name in listed.keys() | found.keys() if listed.get(name) != found.get(name))
    if changed:
        raise ValueError(f"{folder}: {', '.join(changed)} differ from {MANIFEST_NAME}; reinstall the model "
                         "or export it again")
