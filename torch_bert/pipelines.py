"""torch_bert's pipelines: numpy_bert's (numpy_bert/pipelines/), with torch_bert's models.

Tokenizing, decoding and every task's rules are pure Python and live once, in
numpy_bert (which class and tokenizer read a folder too: numpy_bert/pipelines/auto.py);
:class:`TorchModels`, the twin of ``numpy_bert.pipelines.base.NumpyModels``, only says
which classes to load and how to run them on a device: BERT's and the family's.

    from torch_bert import pipeline

    pipeline("fill-mask", model="runs/pt-tiny", device="cpu")("A list is a mutable [MASK].")
    pipeline("fill-mask", model="runs/roberta-bpe")("A list is a mutable <mask>.")   # a RoBERTa with its BPE
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from numpy_bert.checkpoint import LoadingInfo
from numpy_bert.pipelines.base import Pipeline
from numpy_bert.pipelines.pipeline import pipeline as numpy_pipeline
from numpy_bert.text.tokenization import TokenizerBase

from .albert import AlbertForMaskedLM, AlbertModel
from .distilbert import DistilBertForMaskedLM, DistilBertModel
from .electra import ElectraForMaskedLM, ElectraModel
from .heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from .modeling import BertForMaskedLM, BertModel
from .roberta import RobertaForMaskedLM, RobertaModel


class TorchModels:
    """torch_bert's model classes behind the pipelines, in evaluation mode, on ``device``."""

    name = "torch_bert"
    classes = {cls.__name__: cls for cls in (BertModel, BertForMaskedLM, BertForSequenceClassification,
                                             BertForTokenClassification, BertForQuestionAnswering,
                                             RobertaModel, RobertaForMaskedLM, AlbertModel, AlbertForMaskedLM,
                                             ElectraModel, ElectraForMaskedLM, DistilBertModel, DistilBertForMaskedLM)}

    def __init__(self, device: str | torch.device | None = None):
        self.device = torch.device(device or "cpu")  # transformers' default too

    def load(self, class_name: str, folder: str, **kwargs) -> tuple[Any, LoadingInfo]:
        model, info = self.classes[class_name].from_pretrained(folder, output_loading_info=True, **kwargs)
        return model.to(self.device).eval(), info

    def forward(self, model, **inputs) -> dict[str, np.ndarray]:
        """The fields of the model's output that it set, as float32 NumPy arrays (arrays in, flags as they are)."""
        inputs = {k: torch.from_numpy(v).to(self.device) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
        with torch.inference_mode():
            out = model(**inputs)
        return {name: value.float().cpu().numpy() for name, value in vars(out).items()
                if isinstance(value, torch.Tensor)}


def pipeline(task: str, model: str | os.PathLike, tokenizer: TokenizerBase | str | os.PathLike | None = None,
             device: str | torch.device | None = None, **options) -> Pipeline:
    """numpy_bert.pipeline with torch_bert's models, on ``device`` ("cpu" by default, or "cuda")."""
    return numpy_pipeline(task, model, tokenizer, backend=TorchModels(device), **options)
