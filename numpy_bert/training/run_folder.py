"""The folder a training run lives in: arguments, metrics, checkpoints; shared by both backends.

Layout (``RUN`` is the ``--out`` folder)::

    RUN/
      numpy_bert_run.json         the marker: this folder holds a run of this project (which command)
      args.json                   the training arguments, to resume with the same ones
      config.json                 } the latest model, in transformers' layout: it loads in
      model.safetensors           } transformers.BertForPreTraining.from_pretrained(RUN)
      vocab.txt                   } the WordPiece vocabulary trained on the corpus
      tokenizer_config.json       }
      metrics.jsonl               one JSON object per logged step and per evaluation
      plots/*.png                 loss, accuracy, perplexity and learning-rate curves
      latest                      one line: the name of the newest complete checkpoint
      checkpoint-<step>/          config.json, model.safetensors, vocab.txt, tokenizer_config.json,
                                  training_state.safetensors (optimizer moments, RNG states),
                                  training_state.json (step, data-stream position, RNG states, ...)
      generator/                  --objective electra: the generator (the model above is the
                                  discriminator); checkpoints hold one too

Why a ``latest`` pointer rather than a fixed ``checkpoint/`` folder: a checkpoint is
several files, and no file system can replace a whole folder of files in one
atomic step. So a checkpoint is written completely into a temporary folder, renamed
to ``checkpoint-<step>``, and only then does ``latest`` (a one-line file, replaced
atomically) move to it. A crash at any moment leaves ``latest`` pointing at a
complete checkpoint: the previous one, or the new one. Older checkpoints are
deleted after the pointer has moved.

What is never lost: a run writes only into a folder it created or one its marker
shows to be a run of this project (:meth:`RunFolder.claim`); another folder that is
not empty is refused unless the user says ``--overwrite-output-dir``, and even then
only files of the names above are replaced. Deleting is limited to what a run wrote:
its own older checkpoints (they hold training_state.json) and the temporary files and
folders of its interrupted writes, which the next run clears away.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..checkpoint import (
    GENERATOR_DIR,
    WEIGHTS_NAME,
    atomic_write_bytes,
    is_temporary_of,
    json_bytes,
    load_tensors,
    read_json_object,
    remove_stale_temporaries,
)
from ..config import CONFIG_NAME
from ..text.tokenization import TOKENIZER_CONFIG_NAME, VOCAB_NAME

MARKER_NAME = "numpy_bert_run.json"
ARGS_NAME = "args.json"
METRICS_NAME = "metrics.jsonl"
ENVIRONMENT_NAME = "environment.jsonl"  # one row per start or resume: the BLAS kernel, the variables steering it
LATEST_NAME = "latest"
PLOTS_DIR = "plots"
STATE_TENSORS_NAME = "training_state.safetensors"
STATE_JSON_NAME = "training_state.json"
CHECKPOINT_PREFIX = "checkpoint-"
TMP_SUFFIX = ".tmp"
# The files a run writes, by name: the only ones it replaces or deletes (with their temporaries).
MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, VOCAB_NAME, TOKENIZER_CONFIG_NAME)
CHECKPOINT_FILES = (*MODEL_FILES, STATE_TENSORS_NAME, STATE_JSON_NAME, GENERATOR_DIR)
PLOT_NAMES = ("loss.png", "accuracy.png", "perplexity.png", "learning_rate.png", "validation.png",
              "confusion_matrix.png")
RUN_FILES = (MARKER_NAME, ARGS_NAME, METRICS_NAME, ENVIRONMENT_NAME, LATEST_NAME, *MODEL_FILES, GENERATOR_DIR,
             "metrics.json", "misclassified.jsonl", "manifest.json")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Pretty JSON, written atomically."""
    atomic_write_bytes(path, json_bytes(data))


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object of the run (a ValueError naming the file if it is missing or not one)."""
    if not os.path.isfile(path):
        raise ValueError(f"{os.fspath(path)} is missing")
    return read_json_object(path)


class RunFolder:
    """Paths and file formats of one run; see the module docstring for the layout."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ---- whose folder it is ---------------------------------------------------------

    @property
    def marker_path(self) -> Path:
        return self.path / MARKER_NAME

    def owner_command(self) -> str | None:
        """The command whose run this folder holds (by its marker), or None for a folder that is not ours."""
        if not self.marker_path.is_file():
            return None
        marker = read_json(self.marker_path)
        return marker.get("command") if isinstance(marker, dict) else None

    def check_writable(self, command: str, overwrite_output_dir: bool = False, resume: bool = False) -> None:
        """Raise ValueError unless ``command`` may write here: a new or empty folder, one of its own runs
        that it continues (``resume``), or (``overwrite_output_dir``) any folder. Only reads, so that
        every process of a distributed run may ask."""
        if resume:
            self._check_resumable(command, overwrite_output_dir)
        elif self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--out {str(self.path)!r} is a file, not a folder")
        elif self.path.exists() and not overwrite_output_dir:
            self._check_new_run(command)

    def _check_resumable(self, command: str, overwrite_output_dir: bool) -> None:
        if not self.has_run():
            raise ValueError(f"nothing to resume: {self.path} holds no run ({ARGS_NAME} is missing)")
        if self.owner_command() != command and not overwrite_output_dir:
            raise ValueError(f"{self.path} has no {MARKER_NAME} saying it is a {command} run of this project; "
                             "if it is one (from a version before markers), resume with --overwrite-output-dir")

    def _check_new_run(self, command: str) -> None:
        owner = self.owner_command()
        if owner == command and self.has_run():
            resume = "continue it with --resume, " if command == "train" else ""
            article = "an" if command[0] in "aeiou" else "a"
            raise ValueError(f"{self.path} already holds {article} {command} run (it has {ARGS_NAME}): {resume}"
                             "start it afresh with --overwrite-output-dir, or choose another --out")
        if owner not in (None, command):
            raise ValueError(f"{self.path} holds a {owner} run of this project, not a {command} one; choose "
                             "another --out (or pass --overwrite-output-dir to write into it)")
        # Our own temporaries are not others' files: another process of a distributed run may be writing.
        others = sorted(entry.name for entry in os.scandir(self.path) if not is_temporary_of(entry.name, RUN_FILES))
        if owner is None and others:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise ValueError(f"{self.path} holds files this project did not write ({shown}); choose a new or empty "
                             "--out, or pass --overwrite-output-dir to write into it (files of the names a run "
                             "writes are replaced, nothing else is touched)")

    def claim(self, command: str, backend: str, overwrite_output_dir: bool = False, resume: bool = False) -> None:
        """Make this folder ``command``'s (see :meth:`check_writable`), clear what an interrupted write
        left behind and, for a new run, what an earlier run of the same command would mix into it."""
        self.check_writable(command, overwrite_output_dir, resume)
        previous_owner = self.owner_command() if self.path.is_dir() else None
        self.path.mkdir(parents=True, exist_ok=True)
        if previous_owner != command:
            write_json(self.marker_path, {"written_by": "numpy_bert", "command": command, "backend": backend})
        remove_stale_temporaries(self.path, RUN_FILES)
        self._remove_other_checkpoints(only_unfinished=True)
        if self.plots_path.is_dir():
            remove_stale_temporaries(self.plots_path, PLOT_NAMES)
        if not resume:
            self._start_afresh(forget_checkpoints=previous_owner == command)

    def _start_afresh(self, forget_checkpoints: bool) -> None:
        """A new run's metrics start empty; over an earlier run of the same command (``--overwrite-output-dir``)
        its ``latest`` pointer and checkpoints go too, so that a later ``--resume`` cannot mix two runs."""
        self.metrics_path.unlink(missing_ok=True)
        (self.path / ENVIRONMENT_NAME).unlink(missing_ok=True)
        if forget_checkpoints:
            (self.path / LATEST_NAME).unlink(missing_ok=True)
            self._remove_other_checkpoints()

    # ---- arguments -----------------------------------------------------------------

    @property
    def args_path(self) -> Path:
        return self.path / ARGS_NAME

    def has_run(self) -> bool:
        """True once a training run has started here (it wrote args.json)."""
        return self.args_path.is_file()

    def write_args(self, args: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.args_path, args)

    def read_args(self) -> dict[str, Any]:
        return read_json(self.args_path)

    # ---- metrics.jsonl ----------------------------------------------------------------

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_NAME

    def append_environment(self, row: dict[str, Any]) -> None:
        """Record what computes the steps from now on (a resumed run may run on another machine)."""
        with open(self.path / ENVIRONMENT_NAME, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Add one row; a crash can at worst leave a torn last line, which reading skips."""
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete rows, in order. A line that is not a row (a torn write, a damaged byte) is skipped."""
        if not self.metrics_path.is_file():
            return []
        rows = []
        for line in self.metrics_path.read_bytes().splitlines():
            try:
                row = json.loads(line)  # UTF-8 bytes, or a ValueError
            except (ValueError, RecursionError):
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
        return rows

    def truncate_metrics(self, step: int) -> None:
        """Keep only rows up to ``step``: a resumed run re-logs what came after its checkpoint."""
        kept = [row for row in self.read_metrics() if row["step"] <= step]
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(row) + "\n" for row in kept).encode("utf-8"))

    # ---- checkpoints --------------------------------------------------------------------

    def checkpoint_path(self, step: int) -> Path:
        return self.path / f"{CHECKPOINT_PREFIX}{step}"

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint folder, or None before the first one."""
        pointer = self.path / LATEST_NAME
        if not pointer.is_file():
            return None
        name = pointer.read_text(encoding="utf-8", errors="replace").strip()
        if not re.fullmatch(re.escape(CHECKPOINT_PREFIX) + r"[0-9]+", name):  # never a path out of the run
            raise ValueError(f"{pointer} names {name!r}, which is not a checkpoint of this run ({CHECKPOINT_PREFIX}"
                             "<step>); fix or delete the pointer")
        folder = self.path / name
        if not (folder / STATE_JSON_NAME).is_file():
            raise ValueError(f"{pointer} names {name!r}, which is not a complete checkpoint")
        return folder

    def save_checkpoint(self, step: int, write_contents: Callable[[Path], None]) -> Path:
        """Write checkpoint ``step`` with ``write_contents(folder)``, then make it the latest, atomically.

        The order is what makes a crash harmless: (1) everything goes into
        ``checkpoint-<step>.tmp``; (2) that folder is renamed; (3) ``latest`` is
        replaced; (4) older checkpoints are deleted. Until (3) the previous
        checkpoint is the latest one, and it is complete.
        """
        final = self.checkpoint_path(step)
        tmp = final.with_name(final.name + TMP_SUFFIX)
        for stale in (tmp, final):  # left by a crash, or by a run that was resumed from an earlier step
            if stale.exists():
                self._remove_checkpoint(stale)
        tmp.mkdir(parents=True)
        try:
            write_contents(tmp)
        except BaseException:  # a full disk, say: leave nothing half-written behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.replace(tmp, final)
        atomic_write_bytes(self.path / LATEST_NAME, (final.name + "\n").encode("utf-8"))
        self._remove_other_checkpoints(keep=final)
        return final

    @staticmethod
    def is_our_checkpoint(folder: Path) -> bool:
        """A complete checkpoint of ours holds our state file; a half-written one holds nothing but files
        of ours (another tool's ``checkpoint-*`` folders hold others)."""
        if not folder.is_dir() or folder.is_symlink():
            return False
        if (folder / STATE_JSON_NAME).is_file():
            return True
        names = [entry.name for entry in os.scandir(folder)]
        return folder.name.endswith(TMP_SUFFIX) and all(
            name in CHECKPOINT_FILES or is_temporary_of(name, CHECKPOINT_FILES) for name in names)

    def _remove_checkpoint(self, folder: Path) -> None:
        """Delete a checkpoint of ours. It is renamed to a temporary name first: a crash halfway through
        deleting its files then leaves a ``.tmp`` folder of our files, which the next run recognises
        and clears, rather than a ``checkpoint-<step>`` without its state file, which it could not."""
        if not self.is_our_checkpoint(folder):
            raise ValueError(f"{folder} is in the way of a checkpoint and was not written by this project; "
                             "move it elsewhere and resume")
        doomed = folder.with_name(f"{folder.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
        os.rename(folder, doomed)
        shutil.rmtree(doomed)

    def _remove_other_checkpoints(self, keep: Path | None = None, only_unfinished: bool = False) -> None:
        """Delete this run's other checkpoints (``only_unfinished``: the half-written or half-deleted
        ``.tmp`` ones), never another tool's folders."""
        for folder in self.path.glob(CHECKPOINT_PREFIX + "*"):
            unfinished = folder.name.endswith(TMP_SUFFIX)
            if folder != keep and self.is_our_checkpoint(folder) and (unfinished or not only_unfinished):
                self._remove_checkpoint(folder)

    @staticmethod
    def read_checkpoint_state(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the JSON state, the tensors) of a checkpoint folder."""
        tensors_path = folder / STATE_TENSORS_NAME
        tensors = load_tensors(tensors_path) if tensors_path.is_file() else {}
        return read_json(folder / STATE_JSON_NAME), tensors

    # ---- plots --------------------------------------------------------------------------

    @property
    def plots_path(self) -> Path:
        return self.path / PLOTS_DIR
