"""The options of ``train`` and ``finetune`` as typed objects, like transformers' ``TrainingArguments``.

The command line (numpy_bert/cli/) parses them with argparse and makes one of these;
the trainers, the backends and the data code read its fields and never see argparse.
Every value is checked when the object is made: a bad one is refused with a ValueError
that names the option as the command line spells it ("--seq-len must be ...").

``to_dict()`` is what a run folder's args.json holds and ``from_dict()`` reads it back,
which is how ``--resume`` continues a run with the options it started with
(:meth:`TrainingArguments.resumed_from`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Set
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

from ..checkpoint import model_type, named_model_dir
from ..config import CONFIG_NAME, PRESETS
from ..data.corpus import CORPUS_NAMES
from ..data.finetune_data import TASKS as FINETUNING_TASKS
from ..data.pretraining_data import TASKS as PRETRAINING_TASKS
from .run_folder import RunFolder

DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")  # torch_bert's autocast dtypes, by name (torch_bert/training/pretraining.py)
# The --masking choices: which MaskingCollator strategy, and whether masks are static.
MASKING_STRATEGIES = {"dynamic": "token", "static": "token", "whole-word": "whole_word", "span": "span"}
# What ``train`` optimizes (--objective): "mlm" is BERT's masked LM (+ NSP/SOP, see --task); "electra" is
# ELECTRA's replaced-token detection (numpy_bert/training/electra.py). A new objective adds its name here
# and its backend in numpy_bert/training/pretraining.py's OBJECTIVE_BACKENDS.
OBJECTIVES = ("mlm", "electra", "distillation")  # distillation: DistilBERT's (numpy_bert/training/distillation.py)
# The network that --objective mlm pre-trains (--architecture), by config.json's model_type: BERT
# (BertForPreTraining), RoBERTa (RobertaForMaskedLM: MLM alone) or ALBERT (AlbertForPreTraining with
# sentence-order prediction, AlbertForMaskedLM with --no-nsp); numpy_bert/training/pretraining.py builds them.
ARCHITECTURES = ("bert", "roberta", "albert")
# The pair task each architecture trains when --nsp/--sop/--no-nsp is not given (RoBERTa: none, packed MLM).
ARCHITECTURE_TASKS = {"bert": "nsp", "roberta": "mlm", "albert": "sop"}
# [CLS] A [SEP] B [SEP] (or question and context) with room for both segments.
MIN_SEQUENCE_LENGTH = 8


# ---- what a value must be --------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What an option's value must be: a test, and the words that refuse a value failing it.

    The command line's argument types (numpy_bert/cli/arguments.py) apply the same rules.
    """

    accepts: Callable[[Any], bool]
    requirement: str  # follows the option's name: "--steps must be a positive integer"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not here


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def one_of(choices) -> Rule:
    choices = tuple(choices)
    return Rule(lambda value: value in choices, f"must be one of {', '.join(choices)}")


TEXT = Rule(lambda value: isinstance(value, str), "must be text")
SWITCH = Rule(lambda value: isinstance(value, bool), "must be true or false")
INTEGER = Rule(_is_int, "must be an integer")
POSITIVE_INT = Rule(lambda value: _is_int(value) and value >= 1, "must be a positive integer")
NON_NEGATIVE = Rule(lambda value: _is_number(value) and value >= 0, "must be >= 0")  # nan >= 0 is False
POSITIVE = Rule(lambda value: _is_number(value) and 0 < value < math.inf, "must be a positive number")
PROBABILITY = Rule(lambda value: _is_number(value) and 0 <= value < 1, "must be in [0, 1)")
DECAY_FACTOR = Rule(lambda value: _is_number(value) and 0 < value <= 1, "must be in (0, 1]")
OPEN_UNIT_INTERVAL = Rule(lambda value: _is_number(value) and 0 < value < 1, "must be in (0, 1)")
UNIT_INTERVAL = Rule(lambda value: _is_number(value) and 0 <= value <= 1, "must be in [0, 1]")


def option(rule: Rule, default: Any = MISSING) -> Any:
    """A field checked by ``rule``; with ``default=None`` the option is optional (None: not given)."""
    return field(default=default, metadata={"rule": rule})


def flag(name: str) -> str:
    """A field's option as the command line spells it: seq_len is --seq-len."""
    return "--" + name.replace("_", "-")


def _check_warmup(warmup: float) -> None:
    if warmup >= 1 and not float(warmup).is_integer():
        raise ValueError(f"--warmup {warmup}: a value of 1 or more is a number of steps and must be whole")


def _check_precision(precision: str, dtype: str) -> None:
    if precision != "fp32" and dtype == "float64":
        raise ValueError(f"--precision {precision} mixes half precision into float32 training; use --dtype float32")


def folder_model_type(folder: str | None) -> str | None:
    """The model_type in ``folder``/config.json (a --config or --init-from folder); None for a preset, a named
    model (python-docs and minilm are BERTs) or a folder without one."""
    if not folder or not os.path.isfile(os.path.join(folder, CONFIG_NAME)):
        return None
    return model_type(folder) or "bert"  # a config.json of numpy_bert before model_type was written: a BERT


# ---- the options -----------------------------------------------------------------------------

Options = TypeVar("Options", bound="BackendOptions")  # any of the classes below


@dataclass(kw_only=True)
class BackendOptions:
    """The options that only one backend reads; eval and fill-mask take just these."""

    fast: bool = option(SWITCH, False)  # numpy_bert: compute with FastBertForPreTraining (fused forward/backward)
    device: str | None = option(one_of(DEVICES), None)  # torch_bert: None is cuda when torch sees a GPU, else cpu
    precision: str = option(one_of(PRECISIONS), "fp32")  # torch_bert: bf16 or fp16 autocast (fp16: loss scaling)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue  # an optional option, not given
            rule = f.metadata["rule"]
            if not rule.accepts(value):
                raise ValueError(f"{flag(f.name)} {rule.requirement}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields by name, ready for JSON: what a run folder's args.json holds."""
        return asdict(self)

    @classmethod
    def from_dict(cls: type[Options], data: Mapping[str, Any], source: str = "args.json") -> Options:
        """The options that :meth:`to_dict` gave (read from ``source``); a key left out takes its default."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{source}: unknown key {', '.join(map(repr, unknown))} (not an option of "
                             f"{cls.__name__})")
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in data]
        if missing:
            raise ValueError(f"{source}: {', '.join(map(repr, missing))} missing")
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None


@dataclass(kw_only=True)
class TrainingArguments(BackendOptions):
    """The options of ``train`` (numpy_bert/training/pretraining.py); the defaults give a tiny BERT
    on the embedded corpus in minutes."""

    # Options that a resumed run may change: they do not change what is computed (``out``: the
    # folder that args.json was read from, wherever the run is now).
    RESUMABLE_CHANGES: ClassVar[frozenset[str]] = frozenset({"out", "overwrite_output_dir", "progress", "plots",
                                                             "device", "checkpoint_every"})

    # the run
    out: str = option(TEXT)  # the run folder (numpy_bert/training/run_folder.py)
    overwrite_output_dir: bool = option(SWITCH, False)  # write into an `out` that is not a train run of ours
    seed: int = option(INTEGER, 0)  # seeds the weights, the data order, masks and dropout
    progress: bool = option(SWITCH, True)  # a progress bar on stderr
    plots: bool = option(SWITCH, True)  # redraw plots/*.png at every evaluation
    # the model
    objective: str = option(one_of(OBJECTIVES), "mlm")  # BERT's MLM (+ --task), or ELECTRA's replaced-token detection
    # mlm: the network pre-trained; None (not given): the --config/--init-from folder's model_type, else bert.
    # The other objectives choose their own models and keep None.
    architecture: str | None = option(one_of(ARCHITECTURES), None)
    generator_size: float = option(DECAY_FACTOR, 0.25)  # electra: the generator's width, a fraction of the model's
    discriminator_weight: float = option(POSITIVE, 50.0)  # electra: λ in generator loss + λ · discriminator loss
    # distillation: the BERT teacher, and L = α_ce τ² KL + α_mlm MLM + α_cos (1 - cos) with the defaults of the
    # DistilBERT training command in transformers' examples/research_projects/distillation/README.md
    teacher: str | None = option(TEXT, None)  # a BERT masked-LM folder or a named model (made absolute)
    temperature: float = option(POSITIVE, 2.0)  # τ, softening both distributions (train.py's default)
    alpha_ce: float = option(NON_NEGATIVE, 5.0)  # the weight of the soft-target KL term
    alpha_mlm: float = option(NON_NEGATIVE, 2.0)  # the weight of the student's own masked-LM loss
    alpha_cos: float = option(NON_NEGATIVE, 1.0)  # the weight of the cosine loss between last hidden states
    config: str = option(TEXT, "tiny")  # a preset, or a folder holding a config.json (made absolute)
    init_from: str | None = option(TEXT, None)  # continue pre-training this model folder (or 'minilm')
    dropout: float | None = option(PROBABILITY, None)  # both dropout rates; None: the config's
    dtype: str = option(one_of(DTYPES), "float32")  # the parameters' dtype
    # the data
    corpus: str | None = option(TEXT, None)  # a corpus name, a text file or a folder of them (made absolute)
    vocab_size: int = option(POSITIVE_INT, 8192)  # of the WordPiece vocabulary trained on the corpus
    seq_len: int = option(POSITIVE_INT, 128)  # maximum tokens per sentence pair
    batch_size: int = option(POSITIVE_INT, 32)  # pairs per micro-batch (under torchrun: all processes together)
    masking: str = option(one_of(MASKING_STRATEGIES), "dynamic")  # how MLM masks are drawn
    # --nsp, --sop, or mlm (--no-nsp: packed, MLM only); None (not given): nsp, or mlm for --objective distillation
    # and electra
    task: str | None = option(one_of(PRETRAINING_TASKS), None)
    mlm_probability: float = option(OPEN_UNIT_INTERVAL, 0.15)  # the fraction of tokens masked
    # the optimization
    steps: int = option(POSITIVE_INT, 2000)  # optimizer steps
    lr: float = option(POSITIVE, 1e-3)  # the peak learning rate
    warmup: float = option(NON_NEGATIVE, 0.1)  # below 1 a fraction of the steps, else a number of steps
    weight_decay: float = option(NON_NEGATIVE, 0.01)  # AdamW's decoupled weight decay
    layerwise_lr_decay: float | None = option(DECAY_FACTOR, None)  # lr factor per layer, top down; None: off
    clip: float = option(NON_NEGATIVE, 1.0)  # clip the global gradient norm to this; 0: no clipping
    grad_accum: int = option(POSITIVE_INT, 1)  # micro-batches per optimizer step
    # logging, evaluation, checkpoints
    log_every: int = option(POSITIVE_INT, 10)  # steps per metrics.jsonl row
    eval_every: int = option(POSITIVE_INT, 200)  # steps between evaluations
    eval_batches: int = option(POSITIVE_INT, 20)  # validation batches per evaluation
    checkpoint_every: int = option(POSITIVE_INT, 500)  # steps between checkpoints

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_warmup(self.warmup)
        if self.seq_len < MIN_SEQUENCE_LENGTH:
            raise ValueError(f"--seq-len {self.seq_len} is too short for [CLS] A [SEP] B [SEP]; "
                             f"use at least {MIN_SEQUENCE_LENGTH}")
        if self.config not in PRESETS:
            if not os.path.isfile(os.path.join(self.config, CONFIG_NAME)):
                raise ValueError(f"--config {self.config!r} is neither a preset ({', '.join(PRESETS)}) nor a "
                                 "folder with a config.json")
            self.config = os.path.abspath(self.config)  # so that --resume finds it from any folder
        if self.corpus is not None and self.corpus not in CORPUS_NAMES:  # absolute: --resume and eval find it anywhere
            self.corpus = os.path.abspath(self.corpus)
        _check_precision(self.precision, self.dtype)
        self._check_architecture()
        if self.task is None:  # not given: the objective's own, or the architecture's
            self.task = ("mlm" if self.objective in ("distillation", "electra")  # ELECTRA: no NSP, packed
                         else ARCHITECTURE_TASKS[self.architecture])
        self._check_distillation()
        if self.objective == "electra" and (self.init_from or self.fast):
            raise ValueError(f"--objective electra trains a generator and a discriminator from fresh weights with "
                             f"numpy_bert/electra.py; drop {'--init-from' if self.init_from else '--fast'}")

    def _check_architecture(self) -> None:
        """--architecture: given, or the model_type of the --config (or --init-from) folder, or bert; what
        each family member cannot train is refused here, before any file is written."""
        if self.objective != "mlm":
            if self.architecture is not None:
                raise ValueError(f"--architecture is for --objective mlm: --objective {self.objective} trains "
                                 f"its own models (numpy_bert/training/{self.objective}.py); drop --architecture")
            return
        folder_option, folder = (("--init-from", self.init_from) if self.init_from else
                                 ("--config", None if self.config in PRESETS else self.config))
        family = folder_model_type(folder)  # a BERT config's sizes serve any architecture; a family's, its own
        if self.init_from and self.architecture not in (None, family or "bert"):  # named models are BERTs
            raise ValueError(f"--init-from {self.init_from!r} holds a {family or 'bert'} model, whose weights do not "
                             f"fit --architecture {self.architecture}; drop --architecture (it follows the model)")
        if family in ARCHITECTURES and family != "bert" and self.architecture not in (None, family):
            raise ValueError(f"--architecture {self.architecture} contradicts {folder_option} {folder!r}, whose "
                             f"config.json has model_type {family!r}; drop one of them")
        self.architecture = self.architecture or (family if family in ARCHITECTURES else "bert")
        if self.architecture == "bert":
            return
        if self.fast:
            raise ValueError(f"--fast is BERT's fused path (numpy_bert/fast/); drop it for --architecture "
                             f"{self.architecture}")
        if self.architecture == "roberta" and self.task not in (None, "mlm"):
            raise ValueError(f"--architecture roberta trains masked LM alone on packed sequences (RoBERTa has no "
                             f"sentence task); drop --{self.task}")
        if self.architecture == "albert" and self.task == "nsp":
            raise ValueError("--architecture albert's sentence head predicts sentence order: use --sop (the "
                             "default) or --no-nsp, not --nsp")

    def _check_distillation(self) -> None:
        """--objective distillation: a teacher folder, packed MLM-only sequences, a student made from the teacher."""
        if self.objective != "distillation":
            if self.teacher is not None:
                raise ValueError("--teacher is for --objective distillation")
            return
        if self.teacher is None:
            raise ValueError("--objective distillation needs --teacher MODEL: a BERT masked-LM folder, or python-docs")
        if self.task != "mlm":
            raise ValueError(f"--objective distillation trains on packed MLM-only sequences (--no-nsp); "
                             f"drop --{self.task}: DistilBERT has no next-sentence or sentence-order head")
        if self.init_from or self.fast:
            raise ValueError(f"--objective distillation initialises the student from --teacher with "
                             f"numpy_bert/distilbert.py; drop {'--init-from' if self.init_from else '--fast'}")
        if self.alpha_ce + self.alpha_mlm + self.alpha_cos == 0:
            raise ValueError("--alpha-ce, --alpha-mlm and --alpha-cos are all 0: nothing to learn")
        if not os.path.isfile(os.path.join(named_model_dir(self.teacher), CONFIG_NAME)):
            raise ValueError(f"--teacher {self.teacher!r} is neither a named model (python-docs) nor a folder with a "
                             "config.json")
        if os.path.isdir(self.teacher):  # so that --resume finds it from any folder
            self.teacher = os.path.abspath(self.teacher)

    def for_run_folder(self, resume: bool, explicit: Set[str] = frozenset()) -> TrainingArguments:
        """The options a ``train`` command runs with, after a look at the run folder ``out``.

        A new run needs a folder that holds no run yet (the Trainer saves :meth:`to_dict`
        there as args.json); ``resume`` continues the run there with its saved options
        (:meth:`resumed_from`; ``explicit``: the options the command line gave).
        """
        run = RunFolder(self.out)
        run.check_writable("train", self.overwrite_output_dir, resume)
        return self.resumed_from(run.read_args(), explicit) if resume else self

    def resumed_from(self, saved: Mapping[str, Any], explicit: Set[str]) -> TrainingArguments:
        """The options of a resumed run: its args.json's (``saved``), but the resumable ones
        (:attr:`RESUMABLE_CHANGES`) given on the command line (``explicit``) win.

        Any other option given must agree with the saved one, because the resumed run must
        compute what the uninterrupted one would have. An option that an older args.json
        lacks takes this command line's value.
        """
        # An args.json from before --architecture: its run's own options decide it (its model_type), not this command's.
        restored = self.from_dict({**self.to_dict(), "architecture": None, **saved})
        conflicts = [f"{flag(name)} {getattr(self, name)!r} (the run has {getattr(restored, name)!r})"
                     for name in sorted(explicit & (saved.keys() - self.RESUMABLE_CHANGES))
                     if getattr(self, name) != getattr(restored, name)]
        if conflicts:
            raise ValueError("a resumed run keeps its arguments; these differ from args.json: " + ", ".join(conflicts))
        return replace(restored, **{name: getattr(self, name) for name in explicit & self.RESUMABLE_CHANGES})


@dataclass(kw_only=True)
class FinetuningArguments(BackendOptions):
    """The options of ``finetune`` (numpy_bert/training/finetuning.py); the defaults follow BERT's
    fine-tuning recipe, with a higher lr for small models."""

    task: str = option(one_of(FINETUNING_TASKS))  # classify: a label per text (pair); tag: BIO tags; qa: a span
    model: str = option(TEXT)  # a model folder with its vocab.txt, or 'minilm' (all-MiniLM-L6-v2)
    tokenizer: str | None = option(TEXT, None)  # the folder of vocab.txt; None: the model's
    train: str = option(TEXT)  # the training examples, .jsonl or .csv
    eval: str = option(TEXT)  # the evaluation examples, .jsonl or .csv
    out: str = option(TEXT)  # the run folder for the model, metrics.json and plots
    overwrite_output_dir: bool = option(SWITCH, False)  # write into an `out` that is not a new finetune folder
    max_length: int = option(POSITIVE_INT, 128)  # tokens per example, [CLS]/[SEP] included
    batch_size: int = option(POSITIVE_INT, 16)  # examples per optimizer step
    epochs: int = option(POSITIVE_INT, 3)  # passes over the training file
    steps: int | None = option(POSITIVE_INT, None)  # optimizer steps; None: as many as the epochs take
    lr: float = option(POSITIVE, 1e-4)  # the peak learning rate
    warmup: float = option(NON_NEGATIVE, 0.1)  # below 1 a fraction of the steps, else a number of steps
    weight_decay: float = option(NON_NEGATIVE, 0.01)  # AdamW's decoupled weight decay
    layerwise_lr_decay: float | None = option(DECAY_FACTOR, None)  # lr factor per layer, top down; None: off
    clip: float = option(NON_NEGATIVE, 1.0)  # clip the global gradient norm to this; 0: no clipping
    log_every: int = option(POSITIVE_INT, 10)  # steps per train-loss row
    eval_every: int | None = option(POSITIVE_INT, None)  # steps between evaluations; None: once per epoch
    max_answer_length: int = option(POSITIVE_INT, 30)  # qa: the longest answer, in tokens
    distill_from: str | None = option(TEXT, None)  # classify: a fine-tuned teacher, whose softened logits it learns
    temperature: float = option(POSITIVE, 2.0)  # the distillation temperature τ
    alpha: float = option(UNIT_INTERVAL, 0.5)  # the distillation weight α of the teacher's term
    seed: int = option(INTEGER, 0)  # seeds the data order and dropout
    dtype: str = option(one_of(DTYPES), "float32")  # the parameters' dtype
    progress: bool = option(SWITCH, True)  # a progress bar on stderr

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_warmup(self.warmup)
        if self.max_length < MIN_SEQUENCE_LENGTH:
            raise ValueError(f"--max-length {self.max_length} is too short; use at least {MIN_SEQUENCE_LENGTH}")
        if self.distill_from and self.task != "classify":
            raise ValueError("--distill-from is for --task classify")
        if self.fast:
            raise ValueError("--fast is for pre-training, eval and fill-mask: the fine-tuning heads have no fused path")
        _check_precision(self.precision, self.dtype)
