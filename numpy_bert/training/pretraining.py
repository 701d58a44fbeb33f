"""Pre-training BERT: the data, the training loop, checkpoints, and the NumPy backend.

The loop is written once, for both backends. A *backend* (:class:`NumpyBackend` here,
``torch_bert.training.pretraining.TorchBackend`` for PyTorch) owns a model and its optimizer and
does the steps that need them; the :class:`Trainer` does everything else::

    for step in 1 .. steps:
        batches = the next grad_accum micro-batches of the example stream
        losses = backend.forward_backward(batches)    # gradients of the mean loss, summed over micro-batches
        stop if losses["loss"] is not finite           # before the update: the weights stay good
        grad_norm = backend.clip_gradients(clip)        # global L2 norm, before clipping
        backend.optimizer_step()                       # AdamW, and the lr schedule moves on
        every log_every steps: a row in metrics.jsonl   (means over the steps since the last row)
        every eval_every steps: validation metrics      (the same fixed batches every time)
        every checkpoint_every steps: a checkpoint      (see numpy_bert/training/run_folder.py)

A backend also provides: ``create(config, args)`` (a fresh model with its optimizer, from
the :class:`~numpy_bert.training.arguments.TrainingArguments`) and ``from_pretrained(folder,
options)`` (a model to use, with the :class:`~numpy_bert.training.arguments.BackendOptions`);
``predict`` (MLM logits at the masked positions and NSP or SOP logits, for evaluation and
fill-mask); ``save_model`` / ``load_model`` and ``training_state`` / ``load_training_state``
(optimizer moments and RNG states, for checkpoints); ``resolve_options(options, command)``
(the options completed for this machine, or a ValueError for one that cannot work here);
``name`` and ``scales_loss`` (fp16 loss scaling, which skips overflowing steps rather than
failing). Nothing in this file imports torch.

``--architecture roberta`` and ``albert`` (arguments.py) run through the same loop and backends: the
model is RobertaForMaskedLM (masked LM alone), AlbertForPreTraining (masked LM + sentence-order
prediction) or AlbertForMaskedLM (``--no-nsp``), found by name in either package
(:func:`pretraining_model_name`), and :func:`model_inputs`, :func:`training_losses` and
:func:`prediction_logits` translate between the data's names and each model's (ALBERT's pair label is
``sentence_order_label``, its metrics ``sop_loss`` and ``sop_accuracy`` where BERT's are ``nsp_*``).

A backend may run as one of several processes that train one model together
(torch_bert/training/distributed.py, under torchrun). It then also provides
``is_main_process()`` (a static method: only that process writes the run folder
and prints) and ``barrier()`` (the others wait there while the main process
evaluates or writes a checkpoint). Without them, the trainer is the only process.

Why the NumPy run resumes *bitwise*: everything that decides the next step is
saved - the weights and AdamW moments (exactly, in safetensors), the step counts,
the position in the example stream and its masking generator, the dropout
generator, and the running sums of the metrics window - and NumPy does the same
arithmetic in the same order when given the same numbers.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..albert import AlbertForMaskedLM, AlbertForPreTraining
from ..checkpoint import (
    LoadingInfo,
    json_bytes,
    load_weights,
    model_type,
    named_model_dir,
    read_json_object,
    save_tensors,
)
from ..config import CONFIG_NAME, PRESETS, AlbertConfig, BertConfig, ElectraConfig, RobertaConfig, max_sequence_length
from ..data.corpus import CORPUS_NAMES, DEFAULT_CORPUS_NAME, Corpus, load_corpus, load_named_corpus
from ..data.masking import MaskingCollator
from ..data.pretraining_data import ExampleStream, example_builder, fixed_batches
from ..fast import FastBertForPreTraining
from ..layers import GeneratorMasks
from ..modeling import BertForPreTraining
from ..optim import BERT_DEFAULTS, LinearWarmupDecay, build_optimizer, clip_grad_norm, scale_grads
from ..pipelines.base import check_head
from ..roberta import RobertaForMaskedLM
from ..text.tokenization import VOCAB_NAME, BertTokenizer
from ..text.wordpiece_trainer import train_wordpiece_vocab
from .arguments import MASKING_STRATEGIES, BackendOptions, Options, TrainingArguments
from .evaluation import evaluate, format_metrics
from .plots import plot_metrics
from .run_folder import STATE_JSON_NAME, STATE_TENSORS_NAME, RunFolder, write_json

# Validation batches are drawn with this seed whatever the run's --seed, so that
# validation numbers are comparable across runs, seeds and backends.
VALIDATION_SEED = 1234
# Next-sentence prediction draws its random B segments from another document, so
# each split needs at least two.
MIN_DOCUMENTS_PER_SPLIT = 2


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) stopped being a finite number."""


# =============================================================================
# Data: corpus splits, vocabulary, example streams
# =============================================================================


def load_corpus_splits(path: str | os.PathLike | None) -> tuple[Corpus, Corpus]:
    """(train, validation) parts of ``path`` (a text file or folder, or a corpus name), or of the embedded corpus."""
    named = path is None or path in CORPUS_NAMES
    corpus = load_named_corpus(path or DEFAULT_CORPUS_NAME) if named else load_corpus(path)
    return split_corpus(corpus)


def split_corpus(corpus: Corpus) -> tuple[Corpus, Corpus]:
    """Split by document: the corpus module's stable hash of titles (5% validation).

    A small corpus can end up with (almost) no validation documents that way; it
    then holds out every k-th document instead (k <= 20), which is just as
    deterministic.
    """
    train, validation = corpus.split("train"), corpus.split("validation")
    if len(train) >= MIN_DOCUMENTS_PER_SPLIT and len(validation) >= MIN_DOCUMENTS_PER_SPLIT:
        return train, validation
    if len(corpus) < 2 * MIN_DOCUMENTS_PER_SPLIT:
        raise ValueError(f"corpus {corpus.name!r} has {len(corpus)} document(s); pre-training needs at least "
                         f"{2 * MIN_DOCUMENTS_PER_SPLIT} (separate documents with blank lines)")
    every = min(20, len(corpus) // MIN_DOCUMENTS_PER_SPLIT)
    held_out = [i % every == every - 1 for i in range(len(corpus))]
    return (Corpus([d for d, h in zip(corpus, held_out) if not h], name=f"{corpus.name}/train"),
            Corpus([d for d, h in zip(corpus, held_out) if h], name=f"{corpus.name}/validation"))


def train_tokenizer(corpus: Corpus, vocab_size: int) -> BertTokenizer:
    """A WordPiece vocabulary learned from the training split (never from validation text)."""
    return BertTokenizer(vocab=train_wordpiece_vocab(corpus.texts(), vocab_size))


def make_collator(tokenizer: BertTokenizer, masking: str = "dynamic", seed: int = 0,
                  mlm_probability: float = 0.15) -> MaskingCollator:
    """The MLM masking collator for a ``--masking`` choice (BERT's 80/10/10 on ``mlm_probability`` of the tokens)."""
    return MaskingCollator(tokenizer, mlm_probability=mlm_probability, strategy=MASKING_STRATEGIES[masking],
                           static_seed=seed if masking == "static" else None)


def training_stream(corpus: Corpus, tokenizer: BertTokenizer, args: TrainingArguments) -> ExampleStream:
    """Endless masked batches of sentence pairs (NSP or SOP) or packed sequences (MLM only), resumable to the batch."""
    builder = example_builder(corpus, tokenizer, args.seq_len, args.task)
    collator = make_collator(tokenizer, args.masking, args.seed, args.mlm_probability)
    return ExampleStream(builder, collator, args.batch_size, seed=args.seed)


def validation_batches(corpus: Corpus, tokenizer: BertTokenizer, seq_len: int, batch_size: int,
                       task: str = "nsp", max_batches: int | None = None) -> list[dict[str, np.ndarray]]:
    """A fixed list of masked validation batches: one seeded epoch, cut to ``max_batches``.

    Always token-level dynamic masking of 15% drawn with :data:`VALIDATION_SEED`, so that
    the numbers mean the same thing whatever masking a run was trained with.
    """
    builder = example_builder(corpus, tokenizer, seq_len, task)
    batches = fixed_batches(builder, make_collator(tokenizer), batch_size, seed=VALIDATION_SEED)
    return batches[:max_batches]


# =============================================================================
# Model configuration and the learning-rate schedule
# =============================================================================


# The config class of each --architecture (arguments.ARCHITECTURES).
FAMILY_CONFIGS: dict[str, type[BertConfig]] = {"bert": BertConfig, "roberta": RobertaConfig, "albert": AlbertConfig}
# ALBERT's embedding width E when a preset or a BERT config gives only the hidden size (ALBERT's own: 128).
ALBERT_EMBEDDING_SIZE = 128


def model_config(args: TrainingArguments, vocab_size: int, tokenizer: BertTokenizer | None = None) -> BertConfig:
    """``--config`` (a preset name, or a folder with a config.json) as the --architecture's config class, with
    the vocabulary's size and ``--dropout`` filled in.

    A RoBERTa or an ALBERT reads the preset with its own class's defaults (ALBERT: no dropout, gelu_new,
    embedding_size = min(128, hidden_size), one layer group) and a BERT config folder's fields as its own;
    its pad, bos and eos ids are those of ``tokenizer``, the WordPiece vocabulary that ``train`` learns
    on the corpus ([PAD], [CLS], [SEP]): ``train`` never uses the byte-level BPE tokenizer.
    """
    architecture = args.architecture or "bert"  # --objective electra and distillation: their backends convert
    overrides: dict[str, Any] = {"vocab_size": vocab_size}
    if args.dropout is not None:
        overrides.update(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    if architecture != "bert":
        if tokenizer is None:
            raise ValueError(f"a {architecture} config takes its special token ids from the run's tokenizer")
        overrides.update(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                         eos_token_id=tokenizer.sep_token_id)
    if args.init_from:
        config = folder_config(named_model_dir(args.init_from))
    elif args.config in PRESETS:
        config = FAMILY_CONFIGS[architecture].from_preset(args.config, **overrides)
    else:
        config = folder_config(args.config)
    if isinstance(config, ElectraConfig) and args.objective != "electra":
        option = f"--init-from {args.init_from!r}" if args.init_from else f"--config {args.config!r}"
        raise ValueError(f"{option} holds an ELECTRA config; train it with --objective electra")
    config = as_family_config(config, architecture).replace(**overrides)
    if args.seq_len > max_sequence_length(config):
        raise ValueError(f"--seq-len {args.seq_len} exceeds the {max_sequence_length(config)} tokens of the model's "
                         f"max_position_embeddings ({config.max_position_embeddings})")
    return config


def as_family_config(config: BertConfig, architecture: str) -> BertConfig:
    """``config`` as the --architecture's class: a BertConfig's fields become a RoBERTa's or an ALBERT's
    (an ALBERT's embedding_size: min(128, hidden_size)); a config of that class, or any for bert, as it is."""
    family = FAMILY_CONFIGS[architecture]
    if architecture == "bert" or isinstance(config, family):
        return config
    if type(config) is not BertConfig:
        raise ValueError(f"a {config.model_type} config cannot be trained as --architecture {architecture}: "
                         f"give a BERT or {family.model_type} config folder, or a preset")
    fields = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "label2id", "architectures")}
    if architecture == "albert":
        fields["embedding_size"] = min(ALBERT_EMBEDDING_SIZE, config.hidden_size)
    return family.from_dict(fields)


def folder_config(folder: str | os.PathLike) -> BertConfig:
    """The config.json of a --config folder: a BertConfig, or the config of its model_type (ELECTRA, RoBERTa,
    ALBERT). --objective electra reads an ElectraConfig's embedding_size; from a BertConfig it makes
    embedding_size = hidden_size."""
    path = os.path.join(folder, CONFIG_NAME)
    kind = read_json_object(path).get("model_type") if os.path.isfile(path) else None
    classes = {cls.model_type: cls for cls in (ElectraConfig, RobertaConfig, AlbertConfig)}
    return classes.get(kind, BertConfig).from_pretrained(folder)


def lr_schedule(warmup: float, steps: int) -> LinearWarmupDecay:
    """Linear warm-up then linear decay to 0 over ``steps``; ``warmup`` below 1 is a fraction of them."""
    return LinearWarmupDecay(round(warmup * steps) if warmup < 1 else int(warmup), steps)


def check_same_structure(saved: Any, expected: Any, where: str) -> None:
    """TypeError unless ``saved`` has the keys, lengths and value types of ``expected`` (a JSON state
    that this run would write), so that a damaged or hand-edited state file is refused up front."""
    if isinstance(expected, dict):  # an empty one is a table filled as training goes (AdamW's step counts)
        if not isinstance(saved, dict) or (expected and saved.keys() != expected.keys()):
            raise TypeError(f"{where or 'the state'} should have the keys {sorted(expected)}")
        for key in expected:
            check_same_structure(saved[key], expected[key], f"{where}.{key}".lstrip("."))
    elif isinstance(expected, list):
        if not isinstance(saved, list) or len(saved) != len(expected):
            raise TypeError(f"{where} should be a list of {len(expected)}")
        for i, (a, b) in enumerate(zip(saved, expected)):
            check_same_structure(a, b, f"{where}[{i}]")
    elif expected is not None and not (type(saved) is type(expected) or (type(expected) is float
                                                                          and type(saved) is int)):
        raise TypeError(f"{where} should be a {type(expected).__name__}, not {saved!r}")


def check_masked_lm_head(info: LoadingInfo, folder: str | os.PathLike, head: str = "cls.predictions.") -> None:
    """Refuse a model whose MLM head (the tensors named ``head``...) would be freshly initialised: its
    predictions would be random."""
    check_head(info, folder, "masked-LM", (head,), "pre-train it first (train --init-from MODEL)")


# ---- the models of each --architecture, the same for both backends ----------------------------------
# Both packages have these classes under the same names; a backend looks its own up by name.

# The masked-LM head's tensors (their name prefix) in each pre-training class.
MASKED_LM_HEADS = {"BertForPreTraining": "cls.predictions.", "FastBertForPreTraining": "cls.predictions.",
                   "RobertaForMaskedLM": "lm_head.", "AlbertForPreTraining": "predictions.",
                   "AlbertForMaskedLM": "predictions."}
# The argument that takes the data's pair label (next_sentence_label, for --nsp and --sop alike), by class;
# a masked-LM class takes none.
PAIR_LABEL_ARGUMENTS = {"BertForPreTraining": "next_sentence_label", "FastBertForPreTraining": "next_sentence_label",
                        "AlbertForPreTraining": "sentence_order_label"}


def pretraining_model_name(architecture: str | None, task: str) -> str:
    """The class that ``train --architecture`` pre-trains on ``task`` (a name of both packages)."""
    if architecture == "roberta":
        return "RobertaForMaskedLM"  # no sentence head: masked LM alone
    if architecture == "albert":
        return "AlbertForMaskedLM" if task == "mlm" else "AlbertForPreTraining"
    return "BertForPreTraining"  # with --no-nsp too: export leaves its untrained NSP head out


def folder_model_name(folder: str | os.PathLike) -> str:
    """The pre-training class that reads a model folder, by its model_type; an ALBERT folder whose
    config.json lists AlbertForMaskedLM (trained --no-nsp, or transformers' albert-base-v2) has no
    pooler and no sentence-order head."""
    kind = model_type(folder)
    if kind == "roberta":
        return "RobertaForMaskedLM"
    if kind == "albert":
        architectures = read_json_object(os.path.join(named_model_dir(folder), CONFIG_NAME)).get("architectures")
        return "AlbertForMaskedLM" if "AlbertForMaskedLM" in (architectures or ()) else "AlbertForPreTraining"
    return "BertForPreTraining"


def pair_task(model) -> str:
    """What the metrics call the model's sentence-pair head: "sop" for ALBERT's sop_classifier; "nsp" for
    BERT's (trained on --nsp or --sop pairs) and for models without one."""
    return "sop" if type(model).__name__ == "AlbertForPreTraining" else "nsp"


def evaluation_task(model) -> str:
    """The data to evaluate a model on when its run does not say (a transformers folder): pairs for its
    sentence head (ALBERT's: sentence order), packed MLM sequences for a model without one."""
    return pair_task(model) if type(model).__name__ in PAIR_LABEL_ARGUMENTS else "mlm"


def model_inputs(model, batch: dict[str, Any], pair_label: bool = True) -> dict[str, Any]:
    """A batch of the data under the names ``model``'s forward takes: the pair label (if ``pair_label``) as
    ALBERT's sentence_order_label, or BERT's next_sentence_label; none for a masked-LM model."""
    # a byte-level BPE tokenizer (RoBERTa's) writes no token_type_ids: the model then uses its zero default
    names = ("input_ids", "attention_mask", "token_type_ids", "labels")
    inputs = {name: batch[name] for name in names if name in batch}
    argument = PAIR_LABEL_ARGUMENTS.get(type(model).__name__)
    if pair_label and argument and "next_sentence_label" in batch:
        inputs[argument] = batch["next_sentence_label"]
    return inputs


def _first(output, *names: str):
    """The first of the output's fields ``names`` that it has and that is not None."""
    values = (getattr(output, name, None) for name in names)
    return next((value for value in values if value is not None), None)


def training_losses(output) -> tuple:
    """(loss, mlm_loss, pair_loss) of a pre-training output (BERT's NSP, ALBERT's SOP, or a masked-LM
    model's, whose loss is the MLM loss); an MLM-only batch (no pair label) has loss = mlm_loss and
    pair_loss 0. The models keep transformers' loss=None for it."""
    mlm_loss = _first(output, "mlm_loss", "loss")
    pair_loss = _first(output, "nsp_loss", "sop_loss")
    if pair_loss is None:
        return mlm_loss, mlm_loss, 0 * mlm_loss
    return output.loss, mlm_loss, pair_loss


def prediction_logits(output) -> tuple:
    """(MLM logits, pair logits or None: a masked-LM model has no sentence head) of a pre-training output."""
    return _first(output, "prediction_logits", "logits"), _first(output, "seq_relationship_logits", "sop_logits")


def mean_losses(per_batch: list[tuple[float, float, float]], pair: str = "nsp") -> dict[str, float]:
    """Mean (loss, mlm_loss, {pair}_loss) over micro-batches, as Python floats (``pair``: see :func:`pair_task`)."""
    return {key: sum(row[i] for row in per_batch) / len(per_batch)
            for i, key in enumerate(("loss", "mlm_loss", f"{pair}_loss"))}


def evaluate_backend(backend, batches: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Held-out metrics of a backend's model: the backend's own ``evaluate`` where its objective has
    figures of its own (ELECTRA's discriminator, a distillation's loss terms), else :func:`evaluate` on its
    ``predict``, the pair metrics named after the model's head (ALBERT: sop_loss, sop_accuracy)."""
    own = getattr(backend, "evaluate", None)
    if own is not None:
        return own(batches)
    return evaluate(backend.predict, batches, pair=pair_task(backend.model))


# =============================================================================
# The NumPy backend
# =============================================================================


class NumpyBackend:
    """numpy_bert behind the trainer's interface: hand-written forward, backward and AdamW."""

    name = "numpy_bert"
    scales_loss = False  # no loss scaling, so a non-finite gradient norm is always a failure

    def __init__(self, model: BertForPreTraining):
        self.model = model
        self.optimizer = None
        self.dropout_masks: GeneratorMasks | None = None

    # ---- construction -----------------------------------------------------------------

    @staticmethod
    def resolve_options(options: Options, command: str) -> Options:
        """As given: NumPy computes on this machine's CPU, with nothing to choose or refuse."""
        return options

    @classmethod
    def create(cls, config: BertConfig, args: TrainingArguments) -> NumpyBackend:
        """A freshly initialised model of ``--architecture`` (seeded by ``--seed``) with BERT's AdamW and the lr
        schedule."""
        model_class = _model_class(args, pretraining_model_name(args.architecture, args.task))
        return cls.for_model(model_class(config, seed=args.seed, dtype=np.dtype(args.dtype)), args)

    @classmethod
    def for_model(cls, model, args: TrainingArguments) -> NumpyBackend:
        """A backend that trains ``model``: its dropout drawn from ``--seed`` + 1, BERT's AdamW, the lr schedule."""
        backend = cls(model)
        backend.dropout_masks = GeneratorMasks(args.seed + 1)  # kept, to save its generator's state
        backend.model.set_dropout_masks(backend.dropout_masks)
        schedule = lr_schedule(args.warmup, args.steps)
        backend.optimizer = build_optimizer(
            backend.model, lr=args.lr, weight_decay=args.weight_decay, betas=BERT_DEFAULTS["betas"],
            eps=BERT_DEFAULTS["eps"], warmup_steps=schedule.warmup_steps, total_steps=schedule.total_steps,
            layerwise_lr_decay=args.layerwise_lr_decay)
        return backend

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, options: BackendOptions) -> NumpyBackend:
        """For evaluation and fill-mask: any folder with config.json + model.safetensors and an MLM head: a
        BERT, RoBERTa or ALBERT (by its model_type); an ELECTRA (train --objective electra: the discriminator
        and generator/) or a DistilBERT (train --objective distillation, or transformers') goes to that
        objective's backend."""
        objective = {"electra": "electra", "distilbert": "distillation"}.get(model_type(folder))
        if objective:
            return objective_backend(cls, objective).from_pretrained(folder, options)
        name = folder_model_name(folder)
        model, info = _model_class(options, name, folder).from_pretrained(folder, dtype=np.float32,
                                                                           output_loading_info=True)
        check_masked_lm_head(info, folder, MASKED_LM_HEADS[name])
        return cls(model)

    # ---- one training step ------------------------------------------------------------

    def forward_backward(self, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """Forward and backward over the micro-batches; leaves the mean of their gradients in ``.grad``.

        ``model.backward()`` adds into ``.grad``, so the micro-batches' gradients sum;
        dividing by their number gives the gradient of the mean loss.
        """
        self.model.train()
        self.model.zero_grad()
        losses = []
        for batch in batches:
            out = self.model(**model_inputs(self.model, batch), labelled_positions_only=True)
            self.model.backward()
            losses.append(tuple(map(float, training_losses(out))))
        if len(batches) > 1:
            scale_grads(self.model.parameters(), 1 / len(batches))
        return mean_losses(losses, pair_task(self.model))

    def clip_gradients(self, max_norm: float) -> float:
        """Clip to global norm ``max_norm`` (0: no clipping); returns the norm before clipping."""
        return clip_grad_norm(self.model.parameters(), max_norm or math.inf)

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()

    def predict(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(MLM logits at the labelled positions (N, V), NSP or SOP logits (B, 2), None for a masked-LM model),
        in evaluation mode."""
        self.model.eval()
        out = self.model(**model_inputs(self.model, batch, pair_label=False), labelled_positions_only=True)
        return prediction_logits(out)

    # ---- checkpoints ----------------------------------------------------------------------

    def save_model(self, folder: str | os.PathLike) -> None:
        self.model.save_pretrained(folder)

    def load_model(self, folder: str | os.PathLike) -> None:
        """Exactly the saved weights (names and shapes must match: this is a resume, not a transfer)."""
        self.model.load_state_dict(load_weights(folder))

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(tensors, JSON scalars): AdamW's moments and counters, and the dropout generator."""
        state = self.optimizer.state_dict()
        return state["tensors"], {"optimizer": state["scalars"],
                                  "dropout_rng": self.dropout_masks.rng.bit_generator.state}

    def load_training_state(self, tensors: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        self.optimizer.load_state_dict({"tensors": tensors, "scalars": scalars["optimizer"]})
        self.dropout_masks.rng.bit_generator.state = scalars["dropout_rng"]


# numpy_bert's pre-training classes, by name (see pretraining_model_name).
NUMPY_MODELS = {cls.__name__: cls for cls in (BertForPreTraining, RobertaForMaskedLM, AlbertForPreTraining,
                                             AlbertForMaskedLM)}


def _model_class(options: BackendOptions | None, name: str = "BertForPreTraining", folder=None):
    """numpy_bert's class ``name``; with --fast, BERT's fused twin (refused for the others: it is BERT's alone)."""
    if options is None or not options.fast:
        return NUMPY_MODELS[name]
    if name != "BertForPreTraining":
        raise ValueError(f"{os.fspath(folder)}: --fast is BERT's fused path (numpy_bert/fast/), and this model's "
                         f"model_type is {NUMPY_MODELS[name].config_class.model_type!r}; drop --fast")
    return FastBertForPreTraining


# =============================================================================
# Objectives: the training backend of each --objective
# =============================================================================

# The backend class that trains each --objective (arguments.OBJECTIVES) other than "mlm", BERT's own
# (which is the backend the command line runs with, NumpyBackend or TorchBackend), by the ``name`` of that
# backend: "module:class", imported when chosen (these modules import this one, and numpy_bert never
# imports torch_bert). A new objective adds its line here, e.g. "distillation": {...}.
OBJECTIVE_BACKENDS: dict[str, dict[str, str]] = {
    "electra": {"numpy_bert": "numpy_bert.training.electra:ElectraNumpyBackend",
                "torch_bert": "torch_bert.training.electra:ElectraTorchBackend"},
    "distillation": {"numpy_bert": "numpy_bert.training.distillation:DistillationNumpyBackend"},
}


def objective_backend(backend_cls, objective: str):
    """The backend class that trains ``objective`` the way ``backend_cls`` computes (``backend_cls`` itself for mlm)."""
    if objective == "mlm":
        return backend_cls
    backends = OBJECTIVE_BACKENDS[objective]
    if backend_cls.name not in backends or hasattr(backend_cls, "barrier"):  # barrier: several processes
        raise ValueError(f"--objective {objective} trains with {' or '.join(f'python -m {name}' for name in backends)} "
                         f"in one process, not with {backend_cls.__name__}")
    module, _, name = backends[backend_cls.name].partition(":")
    return getattr(importlib.import_module(module), name)


# =============================================================================
# The trainer
# =============================================================================


@dataclass
class MetricsWindow:
    """Sums over the steps since the last logged row; a row reports their means.

    It is part of a checkpoint, so a resumed run logs the very same rows.
    """

    steps: int = 0
    loss: float = 0.0
    mlm_loss: float | None = None  # None: not reported by this run's backend (ELECTRA's reports other figures)
    nsp_loss: float | None = None
    grad_norm: float = 0.0
    tokens: int = 0  # real (non-padding) tokens
    seconds: float = 0.0
    # The sums of the other figures a backend reports (ELECTRA: generator_loss, ...; ALBERT: sop_loss), by name.
    objective: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every sum a number (the optional ones may be None): a window read back from a hand-edited or
        damaged training_state.json is refused here, in one line, rather than failing at the next step."""
        if not isinstance(self.objective, dict):
            raise TypeError(f"metrics_window.objective should be a dict, not {self.objective!r}")
        for f in fields(self):
            values = self.objective.items() if f.name == "objective" else [(f.name, getattr(self, f.name))]
            for name, value in values:
                if value is None and f.name in ("mlm_loss", "nsp_loss"):
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"metrics_window.{name} should be a number, not {value!r}")

    def add(self, losses: dict[str, float], grad_norm: float, tokens: int, seconds: float) -> None:
        self.steps += 1
        self.loss += losses["loss"]
        for name in ("mlm_loss", "nsp_loss"):
            if name in losses:
                setattr(self, name, (getattr(self, name) or 0.0) + losses[name])
        for name in losses.keys() - {"loss", "mlm_loss", "nsp_loss"}:
            self.objective[name] = self.objective.get(name, 0.0) + losses[name]
        self.grad_norm += grad_norm
        self.tokens += tokens
        self.seconds += seconds

    def row(self, step: int, lr: float, with_nsp: bool = True) -> dict[str, Any]:
        """The logged row; ``with_nsp`` False for an MLM-only run, which has no NSP loss to report."""
        n = self.steps
        reported = {"mlm_loss": self.mlm_loss, "nsp_loss": self.nsp_loss if with_nsp else None, **self.objective}
        row = {"split": "train", "step": step, "loss": self.loss / n,
               **{name: total / n for name, total in sorted(reported.items()) if total is not None},
               "lr": lr, "grad_norm": self.grad_norm / n,
               "tokens": self.tokens, "tokens_per_s": self.tokens / max(self.seconds, 1e-9)}
        return row


# Row fields that measure the machine, not the computation: they differ between
# two runs that are otherwise bitwise identical.
TIMING_FIELDS = ("tokens_per_s",)


def computed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metrics rows without what measures the machine: equal for two bitwise-identical runs."""
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]
# Variables that choose OpenBLAS's kernels; a long run may unset them for speed (docs/python-docs.md).
BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def environment_row(step: int) -> dict[str, Any]:
    """What computes the steps from ``step`` on (environment.jsonl): the BLAS libraries loaded,
    with the kernel each chose (threadpoolctl), and the variables that steer them."""
    from threadpoolctl import threadpool_info

    libraries = [{key: info.get(key) for key in ("internal_api", "version", "architecture", "num_threads")}
                 for info in threadpool_info()]
    return {"step": step, "numpy": np.__version__, "blas": libraries,
            "variables": {name: os.environ.get(name) for name in BLAS_VARIABLES}}


class Trainer:
    """Pre-trains a BERT with the given backend, in the run folder ``args.out``.

    ``args`` holds the ``train`` command's options; with ``resume`` the run continues
    from its latest checkpoint (with the options of its args.json: see
    :meth:`TrainingArguments.for_run_folder`).
    """

    def __init__(self, args: TrainingArguments, backend_cls, resume: bool = False):
        self.args, self.resume = args, resume
        backend_cls = objective_backend(backend_cls, args.objective)
        # With several processes (torch_bert/training/distributed.py) only the main one writes files and prints.
        self.is_main_process = getattr(backend_cls, "is_main_process", lambda: True)()
        self.run = RunFolder(args.out)
        train_corpus, validation_corpus = load_corpus_splits(args.corpus)
        if self.is_main_process:  # before the first file is written; the others only read (for_run_folder)
            self.run.claim("train", backend_cls.name, args.overwrite_output_dir, resume)
        self.corpus_name = train_corpus.name
        self.tokenizer = self._tokenizer(train_corpus)
        self.stream = training_stream(train_corpus, self.tokenizer, args)
        self.validation = validation_batches(validation_corpus, self.tokenizer, args.seq_len, args.batch_size,
                                             args.task, args.eval_batches)
        if not self.validation:
            raise ValueError(f"the validation split ({validation_corpus.name}) yields no {args.task} examples; "
                             "use a larger corpus or a shorter --seq-len")
        self.config = model_config(args, len(self.tokenizer), self.tokenizer)
        self.backend = backend_cls.create(self.config, args)
        if args.init_from and not resume:  # on resume the checkpoint holds the weights
            self.backend.model.load_pretrained_weights(named_model_dir(args.init_from))
        self.schedule = lr_schedule(args.warmup, args.steps)
        self.step = 0  # optimizer steps taken
        self.window = MetricsWindow()
        self.checkpoint_step: int | None = None  # the step of the latest checkpoint on disk
        if resume:
            self._restore()
        elif self.is_main_process:  # only now that the data and the model are ready: a failed start leaves no run
            self.run.write_args(args.to_dict())

    def _tokenizer(self, corpus: Corpus) -> BertTokenizer:
        """The run's vocabulary: trained once, then read back from the run folder (on resume)."""
        if self.resume and (self.run.path / VOCAB_NAME).is_file():
            return BertTokenizer.from_pretrained(self.run.path)
        pretrained = self.args.init_from or self.args.teacher  # a distillation's student reads its teacher's
        if pretrained:  # a pretrained model comes with its own vocabulary
            tokenizer = BertTokenizer.from_pretrained(named_model_dir(pretrained))
        else:
            tokenizer = train_tokenizer(corpus, self.args.vocab_size)
        if self.is_main_process:
            tokenizer.save_pretrained(self.run.path)
        return tokenizer

    def _print(self, message: str) -> None:
        if self.is_main_process:
            print(message)

    def _wait_for_main_process(self) -> None:
        """With several processes, a meeting point: the main one evaluates and writes checkpoints alone."""
        barrier = getattr(self.backend, "barrier", None)
        if barrier is not None:
            barrier()

    # ---- the loop --------------------------------------------------------------------------

    def train(self) -> dict[str, Any] | None:
        """Run to ``args.steps``; returns the last validation metrics (None if there was nothing to do)."""
        from tqdm.auto import tqdm

        if self.step >= self.args.steps:
            self._print(f"{self.run.path}: the run already finished its {self.args.steps} steps; nothing to do")
            return None
        if self.is_main_process:
            self._print_header()
            self.run.append_environment(environment_row(self.step))
        progress = tqdm(total=self.args.steps, initial=self.step, desc=f"{self.backend.name} train", unit="step",
                        dynamic_ncols=True, disable=not (self.args.progress and self.is_main_process), file=sys.stderr)
        metrics = None
        try:
            while self.step < self.args.steps:
                lr = self._train_step()
                progress.update(1)
                last = self.step == self.args.steps
                if self.step % self.args.log_every == 0 or last:
                    row = self._log(lr)
                    progress.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{lr:.2e}",
                                         tok_s=f"{row['tokens_per_s']:.0f}")
                if self.step % self.args.eval_every == 0 or last:
                    metrics = self._evaluate(progress)
                if self.step % self.args.checkpoint_every == 0 or last:
                    self._save_checkpoint()
        finally:
            progress.close()
        self._print(f"done: {self.run.path} holds the model, its vocabulary, metrics.jsonl and plots/")
        return metrics

    def _train_step(self) -> float:
        """One optimizer step over ``grad_accum`` micro-batches; returns the lr it used."""
        start = time.perf_counter()
        batches = [next(self.stream) for _ in range(self.args.grad_accum)]
        lr = self.args.lr * self.schedule(self.step)
        losses = self.backend.forward_backward(batches)
        if not math.isfinite(losses["loss"]):
            if self.args.objective != "mlm":
                self._stop(f"the loss is {losses['loss']} (" + ", ".join(
                    f"{name} {value}" for name, value in losses.items() if name != "loss") + ")")
            pair = "sop_loss" if "sop_loss" in losses else "nsp_loss"  # ALBERT's head, or BERT's
            self._stop(f"the loss is {losses['loss']} (MLM {losses['mlm_loss']}, {pair[:3].upper()} {losses[pair]})"
                       if self.args.task != "mlm" else f"the MLM loss is {losses['mlm_loss']}")
        grad_norm = self.backend.clip_gradients(self.args.clip)
        if not math.isfinite(grad_norm) and not self.backend.scales_loss:  # fp16 loss scaling skips such steps
            self._stop(f"the gradient norm is {grad_norm}")
        self.backend.optimizer_step()
        self.step += 1
        tokens = sum(int(batch["attention_mask"].sum()) for batch in batches)
        self.window.add(losses, grad_norm, tokens, time.perf_counter() - start)
        return lr

    def _stop(self, problem: str) -> None:
        """Stop before the bad update is applied; the checkpoints on disk stay as they are."""
        if self.checkpoint_step is None:
            where = "no checkpoint had been written yet"
        else:
            folder = self.run.checkpoint_path(self.checkpoint_step)
            where = f"the last good checkpoint (step {self.checkpoint_step}) is intact in {folder}"
        raise TrainingDiverged(f"training stopped at step {self.step + 1}: {problem}; {where}. "
                               "Try a lower --lr, a longer --warmup or gradient clipping (--clip).")

    def _log(self, lr: float) -> dict[str, Any]:
        row = self.window.row(self.step, lr, with_nsp=self.args.task != "mlm")
        if self.is_main_process:
            self.run.append_metrics(row)
        self.window = MetricsWindow()
        return row

    def _evaluate(self, progress) -> dict[str, Any] | None:
        if not self.is_main_process:  # the main process evaluates alone (None here)
            self._wait_for_main_process()
            return None
        metrics = evaluate_backend(self.backend, self.validation)
        self.run.append_metrics({"split": "validation", "step": self.step, **metrics})
        progress.write(f"step {self.step}: validation {format_metrics(metrics)}")
        if self.args.plots:
            title = f"{self.backend.name} {Path(self.args.config).name}"  # a preset, or a config folder's name
            if self.args.architecture not in (None, "bert"):
                title += f" {self.args.architecture}"
            plot_metrics(self.run.read_metrics(), self.run.plots_path, title=title)
        self._wait_for_main_process()
        return metrics

    # ---- checkpoints ------------------------------------------------------------------------

    def _save_checkpoint(self) -> None:
        if self.is_main_process:
            self.run.save_checkpoint(self.step, self._write_checkpoint)
            self.backend.save_model(self.run.path)  # the run folder itself always holds the latest model
        self.checkpoint_step = self.step
        self._wait_for_main_process()

    def _write_checkpoint(self, folder: Path) -> None:
        """Everything the next step depends on (see the module docstring)."""
        self.backend.save_model(folder)
        self.tokenizer.save_pretrained(folder)
        tensors, scalars = self.backend.training_state()
        save_tensors(folder / STATE_TENSORS_NAME, tensors)
        write_json(folder / STATE_JSON_NAME, self._state_json(scalars))

    def _state_json(self, backend_state: dict[str, Any]) -> dict[str, Any]:
        """training_state.json: the step, where the data stream is, the logging window, the backend's RNGs."""
        return {"step": self.step, "backend": self.backend.name, "data_stream": self.stream.state_dict(),
                "metrics_window": asdict(self.window), "backend_state": backend_state}

    def _restore(self) -> None:
        folder = self.run.latest_checkpoint()
        if folder is None:
            self._print(f"{self.run.path} has no checkpoint yet: starting from step 0")
            if self.is_main_process:
                self.run.truncate_metrics(0)
            return
        state, tensors = RunFolder.read_checkpoint_state(folder)
        if state.get("backend") != self.backend.name:
            raise ValueError(f"{folder} was written by {state.get('backend')}; resume it with "
                             f"python -m {state.get('backend')} (the RNG states differ between backends)")
        self.backend.load_model(folder)
        try:
            self._load_state(state, tensors)
        except (KeyError, TypeError, IndexError, ValueError) as err:  # a state file we did not write so
            raise ValueError(f"{folder / STATE_JSON_NAME} does not hold a training state that this version can "
                             f"resume ({type(err).__name__}: {err}); start afresh with --overwrite-output-dir") from err
        self.checkpoint_step = self.step
        if self.is_main_process:
            self.run.truncate_metrics(self.step)  # rows logged after the checkpoint will be logged again
        self._print(f"resuming {self.run.path} from step {self.step} ({folder.name})")

    def _load_state(self, state: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        """Everything of a checkpoint but the weights: optimizer, RNGs, data position, logging window."""
        written = json.loads(json_bytes(self._state_json(self.backend.training_state()[1])))  # as JSON has it
        if isinstance(state.get("metrics_window"), dict):  # a checkpoint of a version without it
            state["metrics_window"].setdefault("objective", {})
        check_same_structure(state, written, "")
        step = state["step"]
        if not 0 < step <= self.args.steps:
            raise ValueError(f"step {step!r} is not a step of this run")
        self.backend.load_training_state(tensors, state["backend_state"])
        self.stream.load_state_dict(state["data_stream"])
        self.window = MetricsWindow(**state["metrics_window"])
        self.step = step

    def _print_header(self) -> None:
        params = sum(int(np.prod(p.shape)) for _, p in self.backend.model.named_parameters())
        tokens = self.args.batch_size * self.args.grad_accum * self.args.seq_len
        size = Path(self.args.init_from or self.args.config).name  # a preset, or a model or config folder's name
        family = {"roberta": "RoBERTa", "albert": "ALBERT"}.get(self.args.architecture, "BERT")
        model = getattr(self.backend, "description", f"a {size} {family}")  # an --objective's backend may say more
        print(f"{self.backend.name}: pre-training {model} ({params / 1e6:.2f}M parameters, "
              f"vocabulary {self.config.vocab_size}) on {self.corpus_name} "
              f"({self.stream.examples_per_epoch} {'sequences' if self.args.task == 'mlm' else 'pairs'} per epoch), "
              f"{self.args.steps} steps of "
              f"{self.args.batch_size * self.args.grad_accum} sequences (up to {tokens} tokens); run folder "
              f"{self.run.path}")
