"""What every pipeline shares: loading a model for its task, running it, and the call options.

A pipeline is text in and Python values out, in the shapes transformers' pipelines give.
The tokenizing before the model and the decoding after it are pure Python and NumPy,
written once for both libraries; only the model classes differ. A *backend* names those
classes and runs a forward pass into NumPy arrays: :class:`NumpyModels` here, its twin
``torch_bert.pipelines.TorchModels`` for PyTorch.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np

from ..checkpoint import LoadingInfo
from ..heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from ..modeling import BertForMaskedLM, BertModel
from ..text.tokenization import BertTokenizer

FINETUNE = "python -m numpy_bert finetune --task {task} --model MODEL"  # how to get a task head, in the errors


class NumpyModels:
    """numpy_bert's model classes behind the pipelines, in evaluation mode (no dropout)."""

    name = "numpy_bert"
    classes = {cls.__name__: cls for cls in (BertModel, BertForMaskedLM, BertForSequenceClassification,
                                             BertForTokenClassification, BertForQuestionAnswering)}

    def load(self, class_name: str, folder: str, **kwargs) -> tuple[Any, LoadingInfo]:
        model, info = self.classes[class_name].from_pretrained(folder, output_loading_info=True, **kwargs)
        return model.eval(), info

    def forward(self, model, **inputs) -> dict[str, np.ndarray]:
        """The fields of the model's output that it set."""
        return {name: value for name, value in vars(model(**inputs)).items() if value is not None}


def check_head(info: LoadingInfo, folder: str | os.PathLike, task: str, prefixes: tuple[str, ...],
               advice: str) -> None:
    """Refuse a model whose task head the checkpoint lacks: the head would be freshly initialised,
    so every answer would come from random weights (transformers only warns)."""
    missing = [p + "*" for p in prefixes if any(name.startswith(p) for name in info.missing_keys)]
    if missing:
        raise ValueError(f"{os.fspath(folder)} has no {task} head (no {' or '.join(missing)} tensors): its "
                         f"answers would come from random weights; {advice}")


class Pipeline:
    """A model, its tokenizer and a task's steps around them: ``pipe(inputs, **options)``.

    A task's subclass sets ``task``, ``model_class`` (the class's name, the same in both
    libraries) with its ``load_options``, ``heads`` (the name prefixes of the head's tensors,
    which the checkpoint must hold) and ``advice`` (how to get such a checkpoint), and
    writes ``run(inputs, *, options...)``. Options given to ``pipeline()`` are the defaults of
    every call, as in transformers.
    """

    task = ""
    model_class = ""
    load_options: dict[str, Any] = {}
    heads: tuple[str, ...] = ()
    advice = ""

    def __init__(self, model, tokenizer: BertTokenizer, backend=None, **options):
        self.model = model
        self.tokenizer = tokenizer
        self.backend = backend or NumpyModels()
        self.options = self.check_options(options)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, tokenizer: BertTokenizer | str | os.PathLike | None = None,
                        backend=None, **options) -> Pipeline:
        """The task's model from a checkpoint folder, refused without its head; the folder's tokenizer
        unless another (a folder or a BertTokenizer) is given."""
        backend = backend or NumpyModels()
        model, info = backend.load(cls.model_class, os.fspath(folder), **cls.load_options)
        check_head(info, folder, cls.task, cls.heads, cls.advice)
        if not isinstance(tokenizer, BertTokenizer):
            tokenizer = BertTokenizer.from_pretrained(folder if tokenizer is None else tokenizer)
        return cls(model, tokenizer, backend, **options)

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
        return self.backend.forward(self.model, **inputs)

    @property
    def max_length(self) -> int:
        """The most tokens an input may have: the tokenizer's limit, or the model's if that is lower."""
        return min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)

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
        return f"{type(self).__name__}(task={self.task!r}, backend={self.backend.name!r}, model={self.model_class})"


def as_list(inputs, kinds: type | tuple[type, ...] = str) -> tuple[list, bool]:
    """(the inputs as a list, whether a single one was given): pipelines take one input or a list of them."""
    if isinstance(inputs, kinds):
        return [inputs], True
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(x, kinds) for x in inputs):
        return list(inputs), False
    names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
    raise ValueError(f"expected a {names} or a non-empty list of them, got {type(inputs).__name__}: {inputs!r:.80}")
