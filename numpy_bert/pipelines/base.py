"""What every pipeline shares: loading a model for its task, running it, and the call options.

A pipeline is text in and Python values out, in the shapes transformers' pipelines give.
The tokenizing before the model and the decoding after it are pure Python and NumPy,
written once for both libraries; only the model classes differ. A *backend* names those
classes and runs a forward pass into NumPy arrays: :class:`NumpyModels` here, its twin
``torch_bert.pipelines.TorchModels`` for PyTorch. Which class reads a folder (BERT or a
family member, by config.json's model_type) and which tokenizer (WordPiece or byte-level
BPE, by its files) is :mod:`numpy_bert.pipelines.auto`'s choice.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np

from ..albert import AlbertForMaskedLM, AlbertModel
from ..checkpoint import LoadingInfo, named_model_dir
from ..config import max_sequence_length
from ..distilbert import DistilBertForMaskedLM, DistilBertModel
from ..electra import ElectraForMaskedLM, ElectraModel
from ..heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from ..modeling import BertForMaskedLM, BertModel
from ..roberta import RobertaForMaskedLM, RobertaModel
from ..text.tokenization import TokenizerBase
from .auto import WITHOUT_TOKEN_TYPES, TaskModel, task_model, tokenizer_from_folder, what_it_holds

FINETUNE = "python -m numpy_bert finetune --task {task} --model MODEL"  # how to get a task head, in the errors


class NumpyModels:
    """numpy_bert's model classes behind the pipelines, in evaluation mode (no dropout)."""

    name = "numpy_bert"
    classes = {cls.__name__: cls for cls in (BertModel, BertForMaskedLM, BertForSequenceClassification,
                                             BertForTokenClassification, BertForQuestionAnswering,
                                             RobertaModel, RobertaForMaskedLM, AlbertModel, AlbertForMaskedLM,
                                             ElectraModel, ElectraForMaskedLM, DistilBertModel, DistilBertForMaskedLM)}

    def load(self, class_name: str, folder: str, **kwargs) -> tuple[Any, LoadingInfo]:
        model, info = self.classes[class_name].from_pretrained(folder, output_loading_info=True, **kwargs)
        return model.eval(), info

    def forward(self, model, **inputs) -> dict[str, np.ndarray]:
        """The fields of the model's output that it set."""
        return {name: value for name, value in vars(model(**inputs)).items() if value is not None}


def check_head(info: LoadingInfo, folder: str | os.PathLike, task: str, prefixes: tuple[str, ...],
               advice: str, holds: str | None = None) -> None:
    """Refuse a model whose task head the checkpoint lacks: the head would be freshly initialised,
    so every answer would come from random weights (transformers only warns). ``holds``: what the
    folder holds instead, for the message."""
    missing = [p + "*" for p in prefixes if any(name.startswith(p) for name in info.missing_keys)]
    if missing:
        holding = f" ({holds})" if holds else ""
        raise ValueError(f"{os.fspath(folder)}{holding} has no {task} head (no {' or '.join(missing)} tensors): "
                         f"its answers would come from random weights; {advice}")


class Pipeline:
    """A model, its tokenizer and a task's steps around them: ``pipe(inputs, **options)``.

    A task's subclass sets ``task``, ``models`` (for each config.json model_type it reads, the
    :class:`~numpy_bert.pipelines.auto.TaskModel` that runs the task: the class's name, the same in
    both libraries, and the name prefixes of its head's tensors, which the checkpoint must hold)
    and ``advice`` (how to get such a checkpoint), and writes ``run(inputs, *, options...)``.
    Options given to ``pipeline()`` are the defaults of every call, as in transformers.
    """

    task = ""
    models: dict[str, TaskModel] = {}
    advice = ""

    def __init__(self, model, tokenizer: TokenizerBase, backend=None, **options):
        self.model = model
        self.tokenizer = tokenizer
        self.backend = backend or NumpyModels()
        self.options = self.check_options(options)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, tokenizer: TokenizerBase | str | os.PathLike | None = None,
                        backend=None, **options) -> Pipeline:
        """The task's model from a checkpoint folder, the class chosen by its config.json's model_type
        and refused without its head; the tokenizer its files make unless another (a folder or a
        tokenizer) is given."""
        backend = backend or NumpyModels()
        folder = named_model_dir(folder)
        choice = task_model(cls.models, folder, cls.task)
        weights = cls.weights_folder(folder)
        model, info = backend.load(choice.class_name, weights, **choice.options)
        check_head(info, weights, cls.task, choice.heads, choice.advice or cls.advice, holds=what_it_holds(weights))
        if not isinstance(tokenizer, TokenizerBase):
            tokenizer = tokenizer_from_folder(folder if tokenizer is None else tokenizer)
        return cls(model, tokenizer, backend, **options)

    @classmethod
    def weights_folder(cls, folder: str) -> str:
        """Where in ``folder`` the task's weights are: the folder itself (fill-mask: an ELECTRA run's generator/)."""
        return folder

    def __call__(self, *inputs, **options):
        return self.run(*inputs, **{**self.options, **self.check_options(options)})

    def run(self, inputs, **options):
        raise NotImplementedError

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        known = [name for name, p in inspect.signature(self.run).parameters.items() if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"the {self.task} pipeline has no option {', '.join(map(repr, unknown))}; "
                             f"its options: {', '.join(known)}")
        return options

    def forward(self, **inputs) -> dict[str, np.ndarray]:
        if self.model.config.model_type in WITHOUT_TOKEN_TYPES:
            inputs.pop("token_type_ids", None)  # a WordPiece tokenizer writes them; the model has none
        return self.backend.forward(self.model, **inputs)

    @property
    def max_length(self) -> int:
        """The most tokens an input may have: the tokenizer's limit, or the model's if that is lower (RoBERTa's
        positions start after its padding index)."""
        return min(self.tokenizer.model_max_length, max_sequence_length(self.model.config))

    def encode(self, text: str, text_pair: str | None = None, truncation: bool = False) -> dict[str, np.ndarray]:
        """One input as (1, T) arrays; a too-long one is cut with ``truncation``, else refused by name."""
        encoding = self.tokenizer(text, text_pair, truncation=truncation, max_length=self.max_length,
                                  return_tensors="np")
        length = encoding["input_ids"].shape[1]
        if length > self.max_length:
            raise ValueError(f"the input has {length} tokens, more than the {self.max_length} the model takes: "
                             f"shorten it, or pass truncation=True to cut it: {text[:60]!r}...")
        return dict(encoding)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(task={self.task!r}, backend={self.backend.name!r}, "
                f"model={type(self.model).__name__})")


def as_list(inputs, kinds: type | tuple[type, ...] = str) -> tuple[list, bool]:
    """(the inputs as a list, whether a single one was given): pipelines take one input or a list of them."""
    if isinstance(inputs, kinds):
        return [inputs], True
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(x, kinds) for x in inputs):
        return list(inputs), False
    names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
    raise ValueError(f"expected a {names} or a non-empty list of them, got {type(inputs).__name__}: {inputs!r:.80}")
