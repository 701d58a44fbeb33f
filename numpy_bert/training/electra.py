"""ELECTRA's pre-training, replaced-token detection, behind the trainer's backend interface.

``python -m numpy_bert train --objective electra`` trains two models together (numpy_bert/electra.py
explains them): a small generator (ElectraForMaskedLM) and the discriminator (ElectraForPreTraining),
the model that is kept. One step on a batch of the masking collator (numpy_bert/data/masking.py:
``input_ids`` with [MASK] at the chosen positions, ``labels`` the original tokens there)::

    L_G, logits = generator(input_ids, labels)       masked-LM loss; logits at the N masked positions (N, V)
    sampled ~ softmax(logits)                        one token per masked position, seeded NumPy generator;
                                                     no gradient flows through the sampling
    corrupted = the original sentence, with the sampled tokens at the masked positions
    replaced = corrupted != original                 1 = replaced, 0 = original (a lucky sample is original)
    L_D = discriminator(corrupted, labels=replaced)  BCE over every real token
    loss = L_G + λ L_D                               λ = --discriminator-weight (the paper: 50)

Backward: ``discriminator.backward(λ)`` (the gradient of λ L_D), then ``generator.backward()``.
The two models share one set of embedding parameters (word, position and token type tables and
their LayerNorm, as ELECTRA's code shares its ``embeddings`` scope): the *same* Parameter objects
sit in both models, so both backward passes add into one ``.grad``, which is then
d(L_G + λ L_D)/dE, the sum the paper's shared embeddings get. The generator is
``--generator-size`` as wide as the discriminator (hidden size, feed-forward size and heads;
the paper's small models: 1/4), as deep, and projects the shared E-wide embeddings to its own width.

The run folder holds the discriminator where a BERT run holds its model (config.json +
model.safetensors, for ``transformers.ElectraForPreTraining``) and the generator in ``generator/``
(for ``transformers.ElectraForMaskedLM``); each checkpoint holds both. Resuming is bitwise, as for
BERT: the sampling generator's state is saved with the dropout generator's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import load_weights
from ..config import CONFIG_NAME, IGNORE_INDEX, BertConfig, ElectraConfig
from ..electra import ElectraForMaskedLM, ElectraForPreTraining
from ..layers import GeneratorMasks, KeyedMasks, softmax
from ..nn import Module
from ..optim import BERT_DEFAULTS, build_optimizer, scale_grads
from .arguments import BackendOptions, Options, TrainingArguments
from .pretraining import VALIDATION_SEED, NumpyBackend, lr_schedule
from .run_folder import GENERATOR_DIR

# The sampling generator's seed is the run's --seed and this: apart from the masks' and dropout's streams.
SAMPLING_STREAM = 2


# =============================================================================
# The two models, and one step of replaced-token detection
# =============================================================================


def discriminator_config(config: BertConfig) -> ElectraConfig:
    """The discriminator's config: an ElectraConfig as it is, or a BertConfig's fields with
    embedding_size = hidden_size (BERT's embeddings, no projection)."""
    if isinstance(config, ElectraConfig):
        return config
    fields = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "label2id")}
    return ElectraConfig.from_dict({**fields, "embedding_size": config.hidden_size})


def generator_config(discriminator: ElectraConfig, size: float) -> ElectraConfig:
    """The generator's config: ``size`` times the discriminator's heads, hidden and feed-forward sizes
    (at least one head; the hidden size a multiple of the heads), the same depth and embeddings."""
    heads = max(1, round(discriminator.num_attention_heads * size))
    hidden = heads * max(1, round(discriminator.hidden_size * size / heads))
    return discriminator.replace(hidden_size=hidden, num_attention_heads=heads,
                                 intermediate_size=max(1, round(discriminator.intermediate_size * size)))


def share_embeddings(generator: ElectraForMaskedLM, discriminator: ElectraForPreTraining) -> None:
    """Give the generator the discriminator's embedding parameters (the Parameter objects themselves):
    the three tables and their LayerNorm; the generator's tied head follows its word table."""
    ours, theirs = generator.electra.embeddings, discriminator.electra.embeddings
    for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        shape, expected = getattr(ours, table).weight.shape, getattr(theirs, table).weight.shape
        if shape != expected:
            raise ValueError(f"the generator's {table} are {shape}, the discriminator's {expected}: shared "
                             "embeddings need the same vocab_size, max_position_embeddings, type_vocab_size "
                             "and embedding_size")
        getattr(ours, table).weight = getattr(theirs, table).weight
    ours.LayerNorm.weight, ours.LayerNorm.bias = theirs.LayerNorm.weight, theirs.LayerNorm.bias
    generator.generator_lm_head.weight = theirs.word_embeddings.weight


def sample_tokens(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token id per row of ``logits`` (N, V), drawn from softmax(logits): the first index where the
    cumulative probability exceeds a uniform number (one per row, in float64)."""
    cdf = np.cumsum(softmax(np.asarray(logits, dtype=np.float64)), axis=-1)  # (N, V)
    u = rng.random((len(cdf), 1)) * cdf[:, -1:]  # scaled to the last entry, which is 1 up to rounding
    return np.minimum((cdf <= u).sum(axis=-1), cdf.shape[-1] - 1)  # (N,)


@dataclass
class ReplacedTokenDetectionOutput:
    loss: Any  # generator_loss + λ · discriminator_loss
    generator_loss: Any  # masked-LM cross-entropy over the masked positions
    discriminator_loss: Any  # BCE over the real tokens
    generator_logits: np.ndarray  # (N, V) at the masked positions, row-major
    discriminator_logits: np.ndarray  # (B, T)
    corrupted_input_ids: np.ndarray  # (B, T): what the discriminator read
    replaced: np.ndarray  # (B, T): its labels, 1 where a token was replaced

    def discriminator_correct(self, attention_mask: np.ndarray) -> tuple[int, int]:
        """(right guesses, tokens judged) of the discriminator over the real tokens (logit > 0: replaced)."""
        real = np.asarray(attention_mask) == 1
        right = ((self.discriminator_logits > 0) == (self.replaced == 1)) & real
        return int(right.sum()), int(real.sum())


class ReplacedTokenDetection(Module):
    """ELECTRA's pre-training model: a generator and a discriminator that share their embeddings.

    Parameters are named ``discriminator.*`` and ``generator.*`` (the shared ones under the
    discriminator's names, where named_parameters meets them first).
    """

    def __init__(self, discriminator: ElectraForPreTraining, generator: ElectraForMaskedLM,
                 discriminator_weight: float = 50.0):
        super().__init__()
        share_embeddings(generator, discriminator)
        self.discriminator = discriminator
        self.generator = generator
        self.discriminator_weight = discriminator_weight

    @classmethod
    def create(cls, config: ElectraConfig, generator_size: float = 0.25, discriminator_weight: float = 50.0,
               seed: int = 0, dtype=np.float32) -> ReplacedTokenDetection:
        """Both models freshly initialised (the shared embeddings are the discriminator's draw)."""
        discriminator = ElectraForPreTraining(config, seed=seed, dtype=dtype)
        generator = ElectraForMaskedLM(generator_config(config, generator_size), seed=seed + 1, dtype=dtype)
        return cls(discriminator, generator, discriminator_weight)

    def set_dropout_masks(self, source: GeneratorMasks | KeyedMasks) -> None:
        self.discriminator.set_dropout_masks(source)
        self.generator.set_dropout_masks(source)

    def forward(self, input_ids: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                attention_mask: np.ndarray | None = None,
                token_type_ids: np.ndarray | None = None) -> ReplacedTokenDetectionOutput:
        """One replaced-token-detection pass over a masked batch (see the module docstring)."""
        generated = self.generator(input_ids, attention_mask, token_type_ids, labels=labels,
                                   labelled_positions_only=True)  # logits (N, V) at the masked positions
        masked = labels != IGNORE_INDEX  # (B, T), N of them
        original = np.where(masked, labels, input_ids)
        corrupted = original.copy()
        corrupted[masked] = sample_tokens(generated.logits, rng)  # row-major, as the logits' rows
        replaced = (corrupted != original).astype(np.int64)
        judged = self.discriminator(corrupted, attention_mask, token_type_ids, labels=replaced)
        loss = generated.loss + judged.loss * judged.loss.dtype.type(self.discriminator_weight)
        return ReplacedTokenDetectionOutput(loss, generated.loss, judged.loss, generated.logits, judged.logits,
                                            corrupted, replaced)

    def backward(self) -> None:
        """Adds d(L_G + λ L_D)/d(parameter) into every .grad; the shared embeddings get both terms."""
        self.discriminator.backward(self.discriminator_weight)  # λ L_D: nothing flows back into the sampling
        self.generator.backward()

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """The discriminator in ``folder``, the generator in ``folder``/generator, each in transformers' layout."""
        self.discriminator.save_pretrained(folder)
        self.generator.save_pretrained(Path(folder) / GENERATOR_DIR)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, discriminator_weight: float = 50.0,
                        dtype=np.float32) -> ReplacedTokenDetection:
        """A pair saved by :meth:`save_pretrained` (the generator's copy of the shared embeddings is not read)."""
        discriminator = ElectraForPreTraining.from_pretrained(folder, dtype=dtype)
        generator = ElectraForMaskedLM.from_pretrained(Path(folder) / GENERATOR_DIR, dtype=dtype)
        return cls(discriminator, generator, discriminator_weight)

    def load_exact_weights(self, folder: str | os.PathLike) -> None:
        """Exactly the saved weights of both models (names and shapes must match: a resume, not a transfer)."""
        self.discriminator.load_state_dict(load_weights(folder))
        self.generator.load_state_dict(load_weights(Path(folder) / GENERATOR_DIR))  # shared: the same values


def check_has_generator(folder: str | os.PathLike) -> None:
    """Refuse an ELECTRA folder without generator/ (a discriminator alone): eval and fill-mask need both models."""
    if not (Path(folder) / GENERATOR_DIR / CONFIG_NAME).is_file():
        raise ValueError(f"{os.fspath(folder)} holds an ELECTRA discriminator without its generator "
                         f"({GENERATOR_DIR}/): eval and fill-mask need the generator's masked-LM head; give the "
                         "folder of a train --objective electra run")


def validation_metrics(run, batches: list[dict[str, np.ndarray]], discriminator_weight: float) -> dict[str, Any]:
    """The generator's metrics (BERT's MLM ones) and the discriminator's, over all masked tokens and all
    real tokens of all ``batches``; ``run(batch, rng)`` is a :class:`ReplacedTokenDetectionOutput` of
    NumPy arrays. The replacements are drawn with :data:`~numpy_bert.training.pretraining.VALIDATION_SEED`,
    the same at every evaluation and for both backends."""
    rng = np.random.default_rng(VALIDATION_SEED)
    nll = bce = 0.0
    masked = mlm_right = judged = judged_right = replaced = 0
    for batch in batches:
        out = run(batch, rng)
        targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
        right, real = out.discriminator_correct(batch["attention_mask"])
        nll += float(out.generator_loss) * len(targets)
        bce += float(out.discriminator_loss) * real
        masked, judged = masked + len(targets), judged + real
        mlm_right += int((out.generator_logits.argmax(axis=-1) == targets).sum())
        judged_right += right
        replaced += int(out.replaced.sum())
    mlm_loss, discriminator_loss = nll / masked, bce / judged
    return {"loss": mlm_loss + discriminator_weight * discriminator_loss, "mlm_loss": mlm_loss,
            "mlm_accuracy": mlm_right / masked, "perplexity": float(np.exp(mlm_loss)), "masked_tokens": masked,
            "discriminator_loss": discriminator_loss, "discriminator_accuracy": judged_right / judged,
            "replaced_fraction": replaced / judged}


# =============================================================================
# The backend
# =============================================================================


class ElectraNumpyBackend(NumpyBackend):
    """numpy_bert's backend for --objective electra: the generator and the discriminator, one AdamW over both."""

    @property
    def description(self) -> str:
        """What the trainer's first line says it pre-trains."""
        sizes = (f"{m.config.num_hidden_layers} x {m.config.hidden_size}" for m in (self.model.discriminator,
                                                                                   self.model.generator))
        return "an ELECTRA discriminator ({}) with its generator ({})".format(*sizes)

    def __init__(self, model: ReplacedTokenDetection, seed: int = 0):
        super().__init__(model)
        self.sampling_rng = np.random.default_rng([seed, SAMPLING_STREAM])

    @classmethod
    def create(cls, config: BertConfig, args: TrainingArguments) -> ElectraNumpyBackend:
        """Both models freshly initialised (seeded by ``--seed``), with BERT's AdamW and the lr schedule."""
        model = ReplacedTokenDetection.create(discriminator_config(config), args.generator_size,
                                              args.discriminator_weight, seed=args.seed, dtype=np.dtype(args.dtype))
        backend = cls(model, args.seed)
        backend.dropout_masks = GeneratorMasks(args.seed + 1)  # one stream for both models, saved in checkpoints
        model.set_dropout_masks(backend.dropout_masks)
        schedule = lr_schedule(args.warmup, args.steps)
        backend.optimizer = build_optimizer(
            model, lr=args.lr, weight_decay=args.weight_decay, betas=BERT_DEFAULTS["betas"],
            eps=BERT_DEFAULTS["eps"], warmup_steps=schedule.warmup_steps, total_steps=schedule.total_steps,
            layerwise_lr_decay=args.layerwise_lr_decay)
        return backend

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, options: BackendOptions) -> ElectraNumpyBackend:
        """A run folder (or checkpoint) of --objective electra: the discriminator and generator/."""
        check_has_generator(folder)
        return cls(ReplacedTokenDetection.from_pretrained(folder))

    @staticmethod
    def resolve_options(options: Options, command: str) -> Options:
        return options

    # ---- one training step ------------------------------------------------------------

    def forward_backward(self, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """Forward and backward over the micro-batches; leaves the mean of their gradients in ``.grad``."""
        self.model.train()
        self.model.zero_grad()
        rows = []
        for batch in batches:
            out = self.model(batch["input_ids"], batch["labels"], self.sampling_rng, batch["attention_mask"],
                             batch["token_type_ids"])
            self.model.backward()
            right, judged = out.discriminator_correct(batch["attention_mask"])
            rows.append({"loss": float(out.loss), "generator_loss": float(out.generator_loss),
                         "discriminator_loss": float(out.discriminator_loss),
                         "discriminator_accuracy": right / judged})
        if len(batches) > 1:
            scale_grads(self.model.parameters(), 1 / len(batches))
        return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}

    def predict(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, None]:
        """(the generator's MLM logits at the labelled positions (N, V), None: there is no NSP head)."""
        self.model.eval()
        out = self.model.generator(batch["input_ids"], attention_mask=batch["attention_mask"],
                                   token_type_ids=batch["token_type_ids"], labels=batch["labels"],
                                   labelled_positions_only=True)
        return out.logits, None

    def evaluate(self, batches: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        """Validation metrics (see :func:`validation_metrics`), in evaluation mode."""
        self.model.eval()
        return validation_metrics(lambda batch, rng: self.model(batch["input_ids"], batch["labels"], rng,
                                                                batch["attention_mask"], batch["token_type_ids"]),
                                  batches, self.model.discriminator_weight)

    # ---- checkpoints ----------------------------------------------------------------------

    def save_model(self, folder: str | os.PathLike) -> None:
        self.model.save_pretrained(folder)

    def load_model(self, folder: str | os.PathLike) -> None:
        self.model.load_exact_weights(folder)

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """NumpyBackend's (AdamW, the dropout generator) and the sampling generator's state."""
        tensors, scalars = super().training_state()
        return tensors, {**scalars, "sampling_rng": self.sampling_rng.bit_generator.state}

    def load_training_state(self, tensors: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        super().load_training_state(tensors, scalars)
        self.sampling_rng.bit_generator.state = scalars["sampling_rng"]
