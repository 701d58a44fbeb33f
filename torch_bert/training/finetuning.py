"""Fine-tuning with torch_bert: the PyTorch twin of ``numpy_bert.training.finetuning.NumpyFinetuneBackend``.

The loop, the data, the metrics, the report and the command line are numpy_bert's
(numpy_bert/training/finetuning.py, numpy_bert/cli/finetune.py); this backend extends the pre-training ``TorchBackend``
(device, mixed precision, clipping, optimizer step, saving) with the head models of
``torch_bert/heads.py``, autograd in place of the hand-written backward::

    python -m torch_bert finetune --task tag --model RUN --train FILE --eval FILE --out DIR [--device cuda]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from numpy_bert.training.arguments import FinetuningArguments
from numpy_bert.training.finetuning import OUTPUT_NAMES, label_arguments, model_class
from numpy_bert.training.pretraining import lr_schedule

from .. import heads
from ..heads import distillation_loss
from ..optim import BERT_DEFAULTS, build_optimizer, build_scheduler
from .pretraining import DTYPES, TorchBackend, _to_numpy


class TorchFinetuneBackend(TorchBackend):
    """torch_bert's head models with torch.optim.AdamW + LambdaLR, on CPU or CUDA."""

    @classmethod
    def load(cls, task: str, folder: str | os.PathLike, labels: Sequence[str], args: FinetuningArguments):
        """(backend, LoadingInfo): the head model from ``folder``; dropout draws from torch's generator,
        seeded by ``--seed``."""
        torch.manual_seed(args.seed)
        model, info = model_class(heads, task).from_pretrained(
            folder, dtype=DTYPES[args.dtype], output_loading_info=True, **label_arguments(task, labels))
        return cls(model, args.device, args.precision), info

    def build_optimizer(self, args: FinetuningArguments, total_steps: int) -> None:
        schedule = lr_schedule(args.warmup, total_steps)
        self.optimizer = build_optimizer(self.model, lr=args.lr, weight_decay=args.weight_decay,
                                         betas=BERT_DEFAULTS["betas"], eps=BERT_DEFAULTS["eps"],
                                         layerwise_lr_decay=args.layerwise_lr_decay)
        self.scheduler = build_scheduler(self.optimizer, schedule.warmup_steps, schedule.total_steps)

    def forward_backward(self, batch: dict[str, np.ndarray], distill: dict[str, Any] | None = None) -> float:
        """Gradients of the batch's loss (or of the distillation loss) into ``.grad``; returns the loss."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        inputs = self._to_device(batch)
        with self._autocast():
            if distill is None:
                loss = self.model(**inputs).loss
            else:
                labels = inputs.pop("labels")
                teacher = torch.from_numpy(distill["teacher_logits"]).to(self.device)
                loss = distillation_loss(self.model(**inputs).logits, teacher, labels,
                                         distill["temperature"], distill["alpha"])
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        return float(loss.detach())

    @torch.inference_mode()
    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The loss (when the batch has targets) and the logits, in evaluation mode, as float64 NumPy arrays."""
        self.model.eval()
        with self._autocast():
            out = self.model(**self._to_device(batch))
        result = {name: _to_numpy(getattr(out, name)).astype(np.float64) for name in OUTPUT_NAMES
                  if getattr(out, name, None) is not None}
        if out.loss is not None:
            result["loss"] = float(out.loss)
        return result


FINETUNE_BACKEND = TorchFinetuneBackend
