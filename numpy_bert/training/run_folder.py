"""The folder a training run lives in: arguments, metrics, checkpoints; shared by both backends.

Layout (``RUN`` is the ``--out`` folder)::

    RUN/
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

Why a ``latest`` pointer rather than a fixed ``checkpoint/`` folder: a checkpoint is
several files, and no file system can replace a whole folder of files in one
atomic step. So a checkpoint is written completely into a temporary folder, renamed
to ``checkpoint-<step>``, and only then does ``latest`` (a one-line file, replaced
atomically) move to it. A crash at any moment leaves ``latest`` pointing at a
complete checkpoint: the previous one, or the new one. Older checkpoints are
deleted after the pointer has moved.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write_bytes, load_tensors

ARGS_NAME = "args.json"
METRICS_NAME = "metrics.jsonl"
LATEST_NAME = "latest"
PLOTS_DIR = "plots"
STATE_TENSORS_NAME = "training_state.safetensors"
STATE_JSON_NAME = "training_state.json"
CHECKPOINT_PREFIX = "checkpoint-"
TMP_SUFFIX = ".tmp"


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Pretty JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {os.fspath(path)!r}: {err}") from err


class RunFolder:
    """Paths and file formats of one run; see the module docstring for the layout."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

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

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Add one row; a crash can at worst leave a torn last line, which reading skips."""
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete rows, in order (an unparsable line - a torn write - is skipped)."""
        if not self.metrics_path.is_file():
            return []
        rows = []
        with open(self.metrics_path, encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
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
        folder = self.path / pointer.read_text(encoding="utf-8").strip()
        if not (folder / STATE_JSON_NAME).is_file():
            raise ValueError(f"{pointer} names {folder.name!r}, which is not a complete checkpoint")
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
                shutil.rmtree(stale)
        tmp.mkdir(parents=True)
        write_contents(tmp)
        os.replace(tmp, final)
        atomic_write_bytes(self.path / LATEST_NAME, (final.name + "\n").encode("utf-8"))
        self._remove_other_checkpoints(keep=final)
        return final

    def _remove_other_checkpoints(self, keep: Path) -> None:
        """Delete this run's older checkpoints: only folders holding our state file, or our own
        half-written ``.tmp`` folders, so another tool's ``checkpoint-*`` folders are never touched."""
        for folder in self.path.glob(CHECKPOINT_PREFIX + "*"):
            ours = (folder / STATE_JSON_NAME).is_file() or folder.name.endswith(TMP_SUFFIX)
            if folder.is_dir() and folder != keep and ours:
                shutil.rmtree(folder)

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
