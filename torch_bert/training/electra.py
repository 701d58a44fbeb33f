"""ELECTRA's pre-training in PyTorch: the twin of numpy_bert/training/electra.py (read it for the method).

``python -m torch_bert train --objective electra`` trains the generator and the discriminator of
torch_bert/electra.py together, with the same shared embeddings (the same nn.Parameter objects in
both models: autograd sums their two gradients), the same sampler (NumPy's, on the generator's
logits copied to the CPU, from the same seeded generator) and the same run folder, checkpoints and
metrics. It runs on CUDA and under bf16/fp16 autocast like the BERT objective, in one process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from numpy_bert.checkpoint import load_weights
from numpy_bert.config import IGNORE_INDEX, BertConfig, ElectraConfig
from numpy_bert.nn import check_state_dict
from numpy_bert.training.arguments import BackendOptions, TrainingArguments
from numpy_bert.training.electra import (
    SAMPLING_STREAM,
    ReplacedTokenDetectionOutput,
    check_has_generator,
    discriminator_config,
    generator_config,
    sample_tokens,
    validation_metrics,
)
from numpy_bert.training.pretraining import lr_schedule
from numpy_bert.training.run_folder import GENERATOR_DIR

from ..electra import ElectraForMaskedLM, ElectraForPreTraining
from ..optim import BERT_DEFAULTS, build_optimizer, build_scheduler, scale_grads
from .pretraining import DTYPES, TorchBackend, _to_numpy


def share_embeddings(generator: ElectraForMaskedLM, discriminator: ElectraForPreTraining) -> None:
    """Give the generator the discriminator's embedding parameters (the nn.Parameter objects themselves)."""
    ours, theirs = generator.electra.embeddings, discriminator.electra.embeddings
    for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        shape, expected = getattr(ours, table).weight.shape, getattr(theirs, table).weight.shape
        if shape != expected:
            raise ValueError(f"the generator's {table} are {tuple(shape)}, the discriminator's {tuple(expected)}: "
                             "shared embeddings need the same vocab_size, max_position_embeddings, "
                             "type_vocab_size and embedding_size")
        getattr(ours, table).weight = getattr(theirs, table).weight
    ours.LayerNorm.weight, ours.LayerNorm.bias = theirs.LayerNorm.weight, theirs.LayerNorm.bias
    generator.generator_lm_head.weight = theirs.word_embeddings.weight


class ReplacedTokenDetection(nn.Module):
    """ELECTRA's pre-training model: a generator and a discriminator that share their embeddings."""

    def __init__(self, discriminator: ElectraForPreTraining, generator: ElectraForMaskedLM,
                 discriminator_weight: float = 50.0):
        super().__init__()
        share_embeddings(generator, discriminator)
        self.discriminator = discriminator
        self.generator = generator
        self.discriminator_weight = discriminator_weight

    @classmethod
    def create(cls, config: ElectraConfig, generator_size: float = 0.25, discriminator_weight: float = 50.0,
               seed: int = 0, dtype=torch.float32) -> ReplacedTokenDetection:
        discriminator = ElectraForPreTraining(config, seed=seed, dtype=dtype)
        generator = ElectraForMaskedLM(generator_config(config, generator_size), seed=seed + 1, dtype=dtype)
        return cls(discriminator, generator, discriminator_weight)

    def use_sdpa(self, enabled: bool = True) -> None:
        self.discriminator.use_sdpa(enabled)
        self.generator.use_sdpa(enabled)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> ReplacedTokenDetectionOutput:
        generated = self.generator(input_ids, attention_mask, token_type_ids, labels=labels,
                                   labelled_positions_only=True)  # logits (N, V) at the masked positions
        masked = labels != IGNORE_INDEX
        original = torch.where(masked, labels, input_ids)
        corrupted = original.clone()
        sampled = sample_tokens(_to_numpy(generated.logits), rng)  # NumPy's sampler: no gradient, as numpy_bert's
        corrupted[masked] = torch.from_numpy(sampled).to(corrupted.device)
        replaced = (corrupted != original).long()
        judged = self.discriminator(corrupted, attention_mask, token_type_ids, labels=replaced)
        loss = generated.loss + self.discriminator_weight * judged.loss
        return ReplacedTokenDetectionOutput(loss, generated.loss, judged.loss, generated.logits, judged.logits,
                                            corrupted, replaced)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        self.discriminator.save_pretrained(folder)
        self.generator.save_pretrained(Path(folder) / GENERATOR_DIR)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, discriminator_weight: float = 50.0) -> ReplacedTokenDetection:
        discriminator = ElectraForPreTraining.from_pretrained(folder)
        generator = ElectraForMaskedLM.from_pretrained(Path(folder) / GENERATOR_DIR)
        return cls(discriminator, generator, discriminator_weight)

    def load_exact_weights(self, folder: str | os.PathLike) -> None:
        """Exactly the saved weights of both models (names and shapes must match: a resume, not a transfer)."""
        for model, where in ((self.discriminator, Path(folder)), (self.generator, Path(folder) / GENERATOR_DIR)):
            tensors = load_weights(where)
            params = dict(model.named_parameters())
            check_state_dict(tensors, {n: tuple(p.shape) for n, p in params.items()}, np.shape)
            with torch.no_grad():
                for name, param in params.items():
                    param.copy_(torch.tensor(tensors[name]))


def numpy_output(out: ReplacedTokenDetectionOutput) -> ReplacedTokenDetectionOutput:
    """The output with NumPy arrays (half precision as float32), for the metrics."""
    return ReplacedTokenDetectionOutput(*(_to_numpy(value) for value in (
        out.loss, out.generator_loss, out.discriminator_loss, out.generator_logits, out.discriminator_logits,
        out.corrupted_input_ids, out.replaced)))


class ElectraTorchBackend(TorchBackend):
    """torch_bert's backend for --objective electra: both models, one torch.optim.AdamW over them."""

    def __init__(self, model: ReplacedTokenDetection, device: str = "cpu", precision: str = "fp32", seed: int = 0):
        super().__init__(model, device, precision)
        self.sampling_rng = np.random.default_rng([seed, SAMPLING_STREAM])

    @property
    def description(self) -> str:
        """What the trainer's first line says it pre-trains."""
        sizes = (f"{m.config.num_hidden_layers} x {m.config.hidden_size}" for m in (self.model.discriminator,
                                                                                   self.model.generator))
        return "an ELECTRA discriminator ({}) with its generator ({})".format(*sizes)

    @classmethod
    def create(cls, config: BertConfig, args: TrainingArguments) -> ElectraTorchBackend:
        torch.manual_seed(args.seed)  # dropout masks come from torch's global generator
        model = ReplacedTokenDetection.create(discriminator_config(config), args.generator_size,
                                              args.discriminator_weight, seed=args.seed, dtype=DTYPES[args.dtype])
        backend = cls(model, args.device, args.precision, args.seed)
        schedule = lr_schedule(args.warmup, args.steps)
        backend.optimizer = build_optimizer(
            backend.model, lr=args.lr, weight_decay=args.weight_decay, betas=BERT_DEFAULTS["betas"],
            eps=BERT_DEFAULTS["eps"], layerwise_lr_decay=args.layerwise_lr_decay)
        backend.scheduler = build_scheduler(backend.optimizer, schedule.warmup_steps, schedule.total_steps)
        return backend

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, options: BackendOptions) -> ElectraTorchBackend:
        check_has_generator(folder)
        return cls(ReplacedTokenDetection.from_pretrained(folder), options.device, options.precision)

    def _run(self, batch: dict[str, np.ndarray], rng: np.random.Generator) -> ReplacedTokenDetectionOutput:
        inputs = self._to_device(batch)
        with self._autocast():
            return self.model(inputs["input_ids"], inputs["labels"], rng, inputs["attention_mask"],
                              inputs["token_type_ids"])

    def forward_backward(self, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """Forward and backward over the micro-batches; leaves the mean of their gradients in ``.grad``."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        rows = []
        for batch in batches:
            out = self._run(batch, self.sampling_rng)
            (out.loss if self.scaler is None else self.scaler.scale(out.loss)).backward()
            values = numpy_output(out)  # one device sync per micro-batch (the sampling needed one already)
            right, judged = values.discriminator_correct(batch["attention_mask"])
            rows.append({"loss": float(values.loss), "generator_loss": float(values.generator_loss),
                         "discriminator_loss": float(values.discriminator_loss),
                         "discriminator_accuracy": right / judged})
        if len(batches) > 1:
            scale_grads(self.model.parameters(), 1 / len(batches))
        return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}

    @torch.inference_mode()
    def predict(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, None]:
        """(the generator's MLM logits at the labelled positions (N, V), None: there is no NSP head)."""
        self.model.eval()
        inputs = self._to_device({k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels")})
        with self._autocast():
            out = self.model.generator(**inputs, labelled_positions_only=True)
        return _to_numpy(out.logits), None

    @torch.inference_mode()
    def evaluate(self, batches: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        """numpy_bert.training.electra.validation_metrics, computed by PyTorch."""
        self.model.eval()
        return validation_metrics(lambda batch, rng: numpy_output(self._run(batch, rng)), batches,
                                  self.model.discriminator_weight)

    def save_model(self, folder: str | os.PathLike) -> None:
        self.model.save_pretrained(folder)

    def load_model(self, folder: str | os.PathLike) -> None:
        self.model.load_exact_weights(folder)

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors, scalars = super().training_state()
        return tensors, {**scalars, "sampling_rng": self.sampling_rng.bit_generator.state}

    def load_training_state(self, tensors: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        super().load_training_state(tensors, scalars)
        self.sampling_rng.bit_generator.state = scalars["sampling_rng"]
