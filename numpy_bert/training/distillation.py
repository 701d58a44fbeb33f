"""Pre-training DistilBERT by distillation from a BERT teacher: the backend of ``train --objective distillation``.

    python -m numpy_bert train --objective distillation --teacher python-docs --out runs/distil

The student, numpy_bert/distilbert.py's DistilBertForMaskedLM, starts as its teacher (a BERT masked-LM
model: the shipped python-docs, or any run folder) with one layer out of two, reads the teacher's
vocabulary, and learns on the packed MLM-only sequences of ``--no-nsp``:

    L = α_ce  · τ² KL(softmax(t/τ) || softmax(s/τ))   the teacher's softened predictions, at the masked tokens
      + α_mlm · CE(s, labels)                          the masked tokens themselves
      + α_cos · mean(1 - cos(h_s, h_t))                the direction of the last hidden states, at real tokens

with s, t the student's and the teacher's MLM logits and h_s, h_t their last hidden states. The defaults
(τ = 2; α_ce, α_mlm, α_cos = 5, 2, 1) are those of the DistilBERT command in transformers'
examples/research_projects/distillation/README.md (the defaults of its train.py are for other students).
Like that script with ``--restrict_ce_to_mask``, the KL covers the masked positions only: without it,
both models would project every token onto the vocabulary, about 7 times the work at 15% masking.

The teacher runs forward only, in evaluation mode (no dropout), and no gradient reaches it. A checkpoint
holds the student and its optimizer, never the teacher: ``--resume`` reloads the teacher from ``--teacher``
(kept in args.json) and continues exactly where the run stopped, as a BERT run does. The run folder's model
is a DistilBertForMaskedLM that transformers' DistilBertForMaskedLM loads. Each metrics row names the loss
parts: loss, kl_loss, mlm_loss, cosine_loss (validation rows: the MLM metrics, kl_loss and cosine_loss).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..checkpoint import named_model_dir
from ..config import IGNORE_INDEX, BertConfig
from ..distilbert import (
    DistilBertForMaskedLM,
    cosine_embedding_loss,
    soft_target_loss,
    student_config,
    student_weights_from_teacher,
)
from ..modeling import BertForMaskedLM, mlm_targets
from ..optim import scale_grads
from ..pipelines.base import check_head
from .arguments import BackendOptions, TrainingArguments
from .evaluation import evaluate
from .pretraining import NumpyBackend, check_masked_lm_head


class Distiller:
    """A student, its teacher and the loss weights: one batch's loss parts, and the student's backward."""

    def __init__(self, student: DistilBertForMaskedLM, teacher: BertForMaskedLM, temperature: float = 2.0,
                 alpha_ce: float = 5.0, alpha_mlm: float = 2.0, alpha_cos: float = 1.0):
        self.student, self.teacher = student, teacher.eval()
        self.temperature = temperature
        self.alpha_ce, self.alpha_mlm, self.alpha_cos = alpha_ce, alpha_mlm, alpha_cos

    def teacher_outputs(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The teacher's MLM logits at the masked positions (N, V) and its last hidden states (B, T, C)."""
        self.teacher.eval()  # forward only: no dropout, and its backward is never called
        out = self.teacher(batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch.get("token_type_ids"), labels=batch["labels"],
                           output_hidden_states=True, labelled_positions_only=True)
        return out.logits, out.hidden_states[-1]

    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{loss, kl_loss, mlm_loss, cosine_loss} of one batch; keeps the student's gradients for backward()."""
        teacher_logits, teacher_hidden = self.teacher_outputs(batch)
        out = self.student(batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                           output_hidden_states=True, labelled_positions_only=True)
        targets = mlm_targets(batch["labels"], self.student.selected)  # the rows' labels, in the logits' order
        kl_loss, d_kl = soft_target_loss(out.logits, teacher_logits, targets, self.temperature)  # (N, V)
        (d_mlm,) = self.student.loss_grads  # (N, V)
        cosine_loss, d_cosine = cosine_embedding_loss(out.hidden_states[-1], teacher_hidden, batch["attention_mask"])
        self.grads = (self.alpha_ce * d_kl + self.alpha_mlm * d_mlm, self.alpha_cos * d_cosine)  # (N, V), (B, T, C)
        loss = self.alpha_ce * kl_loss + self.alpha_mlm * out.loss + self.alpha_cos * cosine_loss
        return {"loss": loss, "kl_loss": kl_loss, "mlm_loss": out.loss, "cosine_loss": cosine_loss}

    def backward(self) -> None:
        """Adds dL/d(parameter) into every student parameter's .grad, for the last forward call."""
        d_logits, d_hidden = self.grads
        self.student.backward(grad_logits=d_logits, grad_last_hidden_state=d_hidden)


def load_teacher(name: str | os.PathLike, dtype) -> BertForMaskedLM:
    """The teacher: a BERT with its masked-LM head (a BertForPreTraining folder's NSP head is left out)."""
    teacher, info = BertForMaskedLM.from_pretrained(named_model_dir(name), dtype=np.dtype(dtype),
                                                    output_loading_info=True)
    check_masked_lm_head(info, name)
    return teacher.eval()


class DistillationNumpyBackend(NumpyBackend):
    """NumpyBackend training a DistilBertForMaskedLM student from a frozen BERT teacher (the module docstring)."""

    distiller: Distiller | None = None  # None in a backend made by from_pretrained, for evaluation only

    @classmethod
    def create(cls, config: BertConfig, args: TrainingArguments) -> DistillationNumpyBackend:
        """The student made from ``--teacher``, with BERT's AdamW. ``config`` (the trainer's, from --config) is not
        used: the student's config comes from the teacher's."""
        teacher = load_teacher(args.teacher, args.dtype)
        student_cfg = student_config(teacher.config)
        if args.dropout is not None:
            student_cfg = student_cfg.replace(dropout=args.dropout, attention_dropout=args.dropout)
        if args.seq_len > student_cfg.max_position_embeddings:
            raise ValueError(f"--seq-len {args.seq_len} exceeds the teacher's max_position_embeddings "
                             f"({student_cfg.max_position_embeddings})")
        student = DistilBertForMaskedLM(student_cfg, seed=args.seed, dtype=np.dtype(args.dtype))
        student.load_state_dict(student_weights_from_teacher(teacher.state_dict(), student_cfg))
        backend = cls.for_model(student, args)
        backend.distiller = Distiller(student, teacher, args.temperature, args.alpha_ce, args.alpha_mlm,
                                      args.alpha_cos)
        backend.description = (f"a DistilBERT student of {Path(args.teacher).name} ({teacher.config.num_hidden_layers}"
                               f" layers -> {student_cfg.n_layers})")
        return backend

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, options: BackendOptions) -> DistillationNumpyBackend:
        """For evaluation and fill-mask: a DistilBertForMaskedLM folder (a distillation run, or transformers')."""
        if options is not None and options.fast:
            raise ValueError(f"{os.fspath(folder)} holds a DistilBERT, which has no fused path: drop --fast")
        model, info = DistilBertForMaskedLM.from_pretrained(folder, dtype=np.float32, output_loading_info=True)
        check_head(info, folder, "masked-LM", ("vocab_",), "distil one first (train --objective distillation)")
        return cls(model)

    def forward_backward(self, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """Forward and backward over the micro-batches; leaves the mean of their gradients in ``.grad``."""
        self.model.train()
        self.model.zero_grad()
        rows = []
        for batch in batches:
            rows.append({name: float(value) for name, value in self.distiller.forward(batch).items()})
            self.distiller.backward()
        if len(batches) > 1:
            scale_grads(self.model.parameters(), 1 / len(batches))
        return {name: sum(row[name] for row in rows) / len(rows) for name in rows[0]}

    def predict(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, None]:
        """(the student's MLM logits at the labelled positions (N, V), None: it has no NSP head), in evaluation mode."""
        self.model.eval()
        out = self.model(batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                         labelled_positions_only=True)
        return out.logits, None

    def evaluate(self, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """The MLM metrics of :func:`~numpy_bert.training.evaluation.evaluate`, and the KL and cosine terms,
        means over all the batches' masked tokens and real tokens (in evaluation mode)."""
        metrics = evaluate(self.predict, batches)
        if self.distiller is None:  # a model loaded to evaluate (python -m numpy_bert eval): no teacher to compare
            return metrics
        masked = [int((batch["labels"] != IGNORE_INDEX).sum()) for batch in batches]
        real = [int(batch["attention_mask"].sum()) for batch in batches]
        parts = [self.distiller.forward(batch) for batch in batches]  # the model is in evaluation mode (predict)
        metrics["kl_loss"] = float(sum(p["kl_loss"] * n for p, n in zip(parts, masked)) / sum(masked))
        metrics["cosine_loss"] = float(sum(p["cosine_loss"] * m for p, m in zip(parts, real)) / sum(real))
        return metrics
