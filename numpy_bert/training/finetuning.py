"""Fine-tuning BERT on a task: the loop, the evaluation report, and the NumPy backend.

    python -m numpy_bert finetune --task classify|tag|qa --model RUN_OR_CHECKPOINT \\
        --train FILE --eval FILE --out DIR [--epochs 3 --lr 1e-4 --layerwise-lr-decay 0.9 ...]

(``python -m torch_bert ...`` the same with PyTorch, plus ``--device``/``--precision``;
the command line is numpy_bert/cli/finetune.py, the options
:class:`~numpy_bert.training.arguments.FinetuningArguments`.)

The model is loaded from any folder with config.json, model.safetensors and vocab.txt: a
pre-training run of either backend, a checkpoint, a transformers model, a fine-tuned
model. The task head (``classifier`` or ``qa_outputs``) is new unless the folder has
it; the new tensors are listed. The loop is written once for both backends; a
*fine-tuning backend* (:class:`NumpyFinetuneBackend` here, ``torch_bert.training.finetuning.
TorchFinetuneBackend``) extends the pre-training backend of ``numpy_bert/training/pretraining.py``
(whose gradient clipping, optimizer step and saving it reuses) with::

    load(task, folder, labels, args)       the head model, and which tensors are new
    build_optimizer(args, total_steps)      AdamW and its warm-up/decay schedule
    forward_backward(batch, distill)        one step's gradients; returns the loss
    predict(batch)                          loss and logits in evaluation mode, as NumPy arrays

Per step: AdamW with linear warm-up and decay (BERT's recipe; layer-wise lr decay as
an option), gradients clipped to norm 1. With ``--distill-from TEACHER`` (classify)
the loss is numpy_bert.heads.distillation_loss against the teacher's logits.

The run folder ``DIR`` ends up holding the fine-tuned model (it loads in transformers'
BertFor... class) with its vocabulary, and the report::

    args.json             the arguments
    metrics.jsonl         train loss every --log-every steps, validation loss and metrics per evaluation
    metrics.json          the final evaluation: every metric, per class / entity type
    misclassified.jsonl   each eval example the model got wrong, with its prediction
    plots/loss.png        train and validation loss
    plots/validation.png  the task's main metric per evaluation
    plots/confusion_matrix.png   (classify, tag)
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import heads
from ..checkpoint import atomic_write_bytes, named_model_dir
from ..config import IGNORE_INDEX, BertConfig
from ..data.finetune_data import (
    OUTSIDE,
    Example,
    Feature,
    batches,
    check_known_labels,
    encode,
    label_list,
    read_examples,
)
from ..heads import best_span, distillation_loss
from ..layers import GeneratorMasks, log_softmax
from ..optim import BERT_DEFAULTS, build_optimizer
from ..text.tokenization import VOCAB_NAME, BertTokenizer
from .arguments import FinetuningArguments
from .metrics import (
    classification_report,
    entity_report,
    exact_match,
    plot_confusion_matrix,
    plot_curves,
    squad_report,
)
from .pretraining import NumpyBackend, TrainingDiverged, lr_schedule
from .run_folder import RunFolder, write_json

MODEL_CLASSES = {"classify": "BertForSequenceClassification", "tag": "BertForTokenClassification",
                 "qa": "BertForQuestionAnswering"}
OUTPUT_NAMES = ("logits", "start_logits", "end_logits")


# =============================================================================
# Tasks: from model outputs to predictions, and from predictions to a report
# =============================================================================


class ClassifyTask:
    """Sequence classification: the most probable class of each example, with its probability."""

    metric, metric_name = "accuracy", "accuracy"

    def predict(self, outputs: dict[str, np.ndarray], features: Sequence[Feature],
                args: FinetuningArguments) -> list[Any]:
        probabilities = np.exp(log_softmax(outputs["logits"]))
        return [(int(k), float(p[k])) for p, k in zip(probabilities, probabilities.argmax(axis=-1))]

    def loss_weight(self, batch: dict[str, np.ndarray]) -> int:
        return len(batch["input_ids"])

    def report(self, examples: Sequence[Example], predicted: Sequence[tuple[int, float]], labels: Sequence[str]):
        """(metrics, misclassified rows, (confusion matrix, its labels))."""
        label_ids = {label: i for i, label in enumerate(labels)}
        metrics = classification_report([label_ids[e.label] for e in examples], [k for k, _ in predicted], labels)
        wrong = [{"where": e.where, "text": e.text, "text_pair": e.text_pair, "label": e.label,
                  "predicted": labels[k], "probability": p}
                 for e, (k, p) in zip(examples, predicted) if labels[k] != e.label]
        return metrics, wrong, (metrics["confusion_matrix"], metrics["labels"], "examples")


class TagTask:
    """Token classification: each word's tag is the argmax at its first piece; a word cut off by truncation
    is predicted "O". Scored by entities (seqeval) and, for the confusion matrix, word by word."""

    metric, metric_name = "f1", "entity F1 (micro, as seqeval)"

    def predict(self, outputs: dict[str, np.ndarray], features: Sequence[Feature],
                args: FinetuningArguments) -> list[Any]:
        best = outputs["logits"].argmax(axis=-1)  # (B, T)
        return [[int(best[b, t]) if t >= 0 else OUTSIDE for t in f.word_starts] for b, f in enumerate(features)]

    def loss_weight(self, batch: dict[str, np.ndarray]) -> int:
        return int((batch["labels"] != IGNORE_INDEX).sum())

    def report(self, examples: Sequence[Example], predicted: Sequence[list[int]], labels: Sequence[str]):
        tags = [[labels[k] for k in row] for row in predicted]
        metrics = entity_report([e.tags for e in examples], tags)
        label_ids = {label: i for i, label in enumerate(labels)}
        words = classification_report([label_ids[t] for e in examples for t in e.tags],
                                      [k for row in predicted for k in row], labels)
        metrics["words"] = {k: words[k] for k in ("accuracy", "macro_f1", "per_class", "confusion_matrix")}
        wrong = [{"where": e.where, "tokens": e.tokens, "tags": e.tags, "predicted": t}
                 for e, t in zip(examples, tags) if t != e.tags]
        return metrics, wrong, (words["confusion_matrix"], labels, "words")


class QATask:
    """Span QA: the best valid span of context tokens (heads.best_span), mapped back to the context's text."""

    metric, metric_name = "f1", "token F1 (SQuAD)"

    def predict(self, outputs: dict[str, np.ndarray], features: Sequence[Feature],
                args: FinetuningArguments) -> list[Any]:
        spans = []
        for b, f in enumerate(features):
            allowed = np.array([offset is not None for offset in f.offsets])
            T = len(f.offsets)
            spans.append(best_span(outputs["start_logits"][b, :T], outputs["end_logits"][b, :T],
                                   args.max_answer_length, allowed))
        return [(f.offsets[i][0], f.offsets[j][1]) for f, (i, j) in zip(features, spans)]

    def loss_weight(self, batch: dict[str, np.ndarray]) -> int:
        return len(batch["input_ids"])

    def report(self, examples: Sequence[Example], predicted: Sequence[tuple[int, int]], labels: Sequence[str]):
        texts = [e.context[start:end] for e, (start, end) in zip(examples, predicted)]
        metrics = squad_report(texts, [e.answer for e in examples])
        wrong = [{"where": e.where, "question": e.question, "context": e.context, "answer": e.answer,
                  "predicted": text} for e, text in zip(examples, texts) if not exact_match(text, e.answer)]
        return metrics, wrong, None


TASK_LOGIC = {"classify": ClassifyTask(), "tag": TagTask(), "qa": QATask()}


# =============================================================================
# The NumPy fine-tuning backend
# =============================================================================


def model_class(backend_module, task: str):
    return getattr(backend_module, MODEL_CLASSES[task])


def label_arguments(task: str, labels: Sequence[str]) -> dict[str, Any]:
    """from_pretrained's label set for the classifiers (QA has none)."""
    return {} if task == "qa" else {"id2label": dict(enumerate(labels))}


class NumpyFinetuneBackend(NumpyBackend):
    """numpy_bert's head models with hand-written backward; clipping, AdamW step and saving as in pre-training."""

    @classmethod
    def load(cls, task: str, folder: str | os.PathLike, labels: Sequence[str], args: FinetuningArguments):
        """(backend, LoadingInfo): the head model from ``folder``, its dropout seeded by ``--seed``."""
        model, info = model_class(heads, task).from_pretrained(
            folder, dtype=np.dtype(args.dtype), output_loading_info=True, **label_arguments(task, labels))
        backend = cls(model)
        backend.dropout_masks = GeneratorMasks(args.seed + 1)
        model.set_dropout_masks(backend.dropout_masks)
        return backend, info

    def build_optimizer(self, args: FinetuningArguments, total_steps: int) -> None:
        schedule = lr_schedule(args.warmup, total_steps)
        self.optimizer = build_optimizer(
            self.model, lr=args.lr, weight_decay=args.weight_decay, betas=BERT_DEFAULTS["betas"],
            eps=BERT_DEFAULTS["eps"], warmup_steps=schedule.warmup_steps, total_steps=schedule.total_steps,
            layerwise_lr_decay=args.layerwise_lr_decay)

    def forward_backward(self, batch: dict[str, np.ndarray], distill: dict[str, Any] | None = None) -> float:
        """Gradients of the batch's loss into ``.grad``; with ``distill`` (teacher_logits, temperature,
        alpha) the loss is the distillation loss, back-propagated from its logits gradient."""
        self.model.train()
        self.model.zero_grad()
        if distill is None:
            out = self.model(**batch)
            self.model.backward()
            return float(out.loss)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        out = self.model(**inputs)
        loss, d_logits = distillation_loss(out.logits, labels=batch["labels"], **distill)
        self.model.backward(d_logits)
        return float(loss)

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The loss (when the batch has targets) and the logits, in evaluation mode, as float64."""
        self.model.eval()
        out = self.model(**batch)
        result = {name: np.asarray(getattr(out, name), np.float64) for name in OUTPUT_NAMES
                  if getattr(out, name, None) is not None}
        if out.loss is not None:
            result["loss"] = float(out.loss)
        return result


# =============================================================================
# The fine-tuning loop
# =============================================================================


def _read_tokenizer(folder: str | os.PathLike) -> BertTokenizer:
    if not (Path(folder) / VOCAB_NAME).is_file():
        raise ValueError(f"{os.fspath(folder)!r} has no {VOCAB_NAME}: give the vocabulary's folder with --tokenizer")
    return BertTokenizer.from_pretrained(folder)


class Finetuner:
    """Fine-tunes ``args.model`` on ``args.train`` with a fine-tuning backend, evaluating on ``args.eval``."""

    def __init__(self, args: FinetuningArguments, backend_cls):
        args = replace(args, model=named_model_dir(args.model))  # "minilm": the real all-MiniLM-L6-v2 encoder
        self.args, self.task = args, TASK_LOGIC[args.task]
        self.run = RunFolder(args.out)
        self.run.check_writable("finetune", args.overwrite_output_dir)  # before the work, to fail early
        self.tokenizer = _read_tokenizer(args.tokenizer or args.model)
        self.train_examples = read_examples(args.train, args.task)
        self.eval_examples = read_examples(args.eval, args.task)
        self.labels = label_list(self.train_examples, args.task)
        check_known_labels(self.eval_examples, self.labels)
        self.backend, self.loading_info = backend_cls.load(args.task, args.model, self.labels, args)
        self._check_model()
        self.train_features = self._encode(self.train_examples)
        self.eval_features = self._encode(self.eval_examples)
        batches_per_epoch = math.ceil(len(self.train_features) / args.batch_size)
        self.total_steps = args.steps or args.epochs * batches_per_epoch
        self.backend.build_optimizer(args, self.total_steps)
        self.teacher = None
        if args.distill_from:
            self.teacher = self._load_teacher(backend_cls)
        self.run.claim("finetune", backend_cls.name, args.overwrite_output_dir)
        self.run.write_args(args.to_dict())

    def _encode(self, examples: Sequence[Example]) -> list[Feature]:
        return encode(examples, self.args.task, self.tokenizer, self.labels, self.args.max_length)

    def _check_model(self) -> None:
        config = self.backend.model.config
        if len(self.tokenizer) > config.vocab_size:
            raise ValueError(f"the vocabulary has {len(self.tokenizer)} tokens but the model only {config.vocab_size}")
        if self.args.max_length > config.max_position_embeddings:
            raise ValueError(f"--max-length {self.args.max_length} exceeds the model's max_position_embeddings "
                             f"({config.max_position_embeddings})")

    def _load_teacher(self, backend_cls):
        """The --distill-from model: a fine-tuned classifier with the same labels as the training file."""
        folder = self.args.distill_from
        saved = BertConfig.from_pretrained(folder).id2label
        if saved is None or [saved[i] for i in sorted(saved)] != self.labels:
            raise ValueError(f"--distill-from {folder}: the teacher's labels "
                             f"{None if saved is None else [saved[i] for i in sorted(saved)]} are not the training "
                             f"file's {self.labels}")
        teacher, info = backend_cls.load("classify", folder, self.labels, self.args)
        if info.missing_keys:
            raise ValueError(f"--distill-from {folder}: the teacher lacks a trained classifier "
                             f"({', '.join(info.missing_keys)} missing)")
        return teacher

    # ---- the loop --------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Train for the planned steps, evaluating every ``--eval-every`` steps and at the end; returns the report."""
        from tqdm.auto import tqdm

        self._print_header()
        stream, window = self._training_batches(), []
        progress = tqdm(total=self.total_steps, desc=f"{self.backend.name} finetune {self.args.task}", unit="step",
                        dynamic_ncols=True, disable=not self.args.progress, file=sys.stderr)
        try:
            for step in range(1, self.total_steps + 1):
                window.append(self._train_step(next(stream), step))
                progress.update(1)
                last = step == self.total_steps
                if step % self.args.log_every == 0 or last:
                    self.run.append_metrics({"split": "train", "step": step, "loss": float(np.mean(window))})
                    progress.set_postfix(loss=f"{np.mean(window):.4f}")
                    window = []
                if step % self.eval_every == 0 or last:
                    evaluation = self.evaluate(step, progress.write)
        finally:
            progress.close()
        self._finish(*evaluation)
        return evaluation[0]

    def _training_batches(self):
        """Endless training batches: the examples reshuffled every epoch, by a generator seeded with --seed."""
        rng = np.random.default_rng(self.args.seed)
        while True:
            order = rng.permutation(len(self.train_features))
            for _, batch in batches(self.train_features, self.args.batch_size, self.tokenizer.pad_token_id, order):
                yield batch

    @property
    def eval_every(self) -> int:
        """``--eval-every`` steps, by default once per epoch."""
        return self.args.eval_every or math.ceil(len(self.train_features) / self.args.batch_size)

    def _train_step(self, batch: dict[str, np.ndarray], step: int) -> float:
        distill = None
        if self.teacher is not None:
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            distill = {"teacher_logits": self.teacher.predict(inputs)["logits"],
                       "temperature": self.args.temperature, "alpha": self.args.alpha}
        loss = self.backend.forward_backward(batch, distill)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"fine-tuning stopped at step {step}: the loss is {loss}; try a lower --lr")
        self.backend.clip_gradients(self.args.clip)
        self.backend.optimizer_step()
        return loss

    def evaluate(self, step: int, write=print) -> tuple[dict[str, Any], list[dict], tuple | None]:
        """Loss and metrics on the eval file, and one metrics.jsonl row.

        Returns (report, misclassified examples, (confusion matrix, labels, what is counted) or None).
        """
        loss_sum, weight, predicted = 0.0, 0, []
        for indices, batch in batches(self.eval_features, self.args.batch_size, self.tokenizer.pad_token_id):
            outputs = self.backend.predict(batch)
            n = self.task.loss_weight(batch)
            if n:  # a tagging batch without labelled words has no loss
                loss_sum, weight = loss_sum + outputs["loss"] * n, weight + n
            predicted += self.task.predict(outputs, [self.eval_features[i] for i in indices], self.args)
        metrics, wrong, confusion = self.task.report(self.eval_examples, predicted, self.labels)
        report = {"step": step, "loss": loss_sum / max(weight, 1), **metrics}
        self.run.append_metrics({"split": "validation", "step": step, "loss": report["loss"],
                                 self.task.metric: metrics[self.task.metric]})
        write(f"step {step}: validation loss {report['loss']:.4f}, {self.task.metric} {metrics[self.task.metric]:.4f}")
        return report, wrong, confusion

    # ---- the report ----------------------------------------------------------------------------

    def _finish(self, report: dict[str, Any], misclassified: list[dict], confusion: tuple | None) -> None:
        """Save the model and vocabulary, metrics.json, misclassified.jsonl and the plots."""
        self.backend.save_model(self.run.path)
        self.tokenizer.save_pretrained(self.run.path)
        summary = {"task": self.args.task, "model": os.fspath(self.args.model), "backend": self.backend.name,
                   "train_examples": len(self.train_examples), "eval_examples": len(self.eval_examples),
                   "labels": self.labels, "new_head_tensors": self.loading_info.missing_keys,
                   "distilled_from": self.args.distill_from, "eval": report}
        write_json(self.run.path / "metrics.json", summary)
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in misclassified)
        atomic_write_bytes(self.run.path / "misclassified.jsonl", text.encode("utf-8"))
        title = f"{self.backend.name} {self.args.task}"
        plot_curves(self.run.read_metrics(), self.run.plots_path, self.task.metric, self.task.metric_name, title)
        if confusion is not None:
            plot_confusion_matrix(*confusion, self.run.plots_path / "confusion_matrix.png",
                                  f"{title}: confusion matrix (eval, step {report['step']})")
        print(f"done: {self.run.path} holds the fine-tuned model, metrics.json, misclassified.jsonl "
              f"({len(misclassified)} examples) and plots/")

    def _print_header(self) -> None:
        """What is about to happen; from_pretrained has already logged the new and the ignored tensors."""
        print(f"{self.backend.name}: fine-tuning {self.args.model} as {type(self.backend.model).__name__} "
              f"on {len(self.train_examples)} examples ({len(self.labels) or 'no'} labels), {self.total_steps} steps "
              f"of {self.args.batch_size}; eval on {len(self.eval_examples)} examples")


FINETUNE_BACKEND = NumpyFinetuneBackend
