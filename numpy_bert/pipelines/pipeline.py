"""``pipeline(task, model=...)``: transformers' entry point to a task, for numpy_bert and (through
``torch_bert.pipeline``) torch_bert.

    from numpy_bert import pipeline

    fill = pipeline("fill-mask", model="python-docs")     # the shipped model; or a run folder
    fill("A list is a mutable [MASK].")     # [{"score": ..., "token": ..., "token_str": ..., "sequence": ...}, ...]
    pipeline("fill-mask", model="runs/electra")("A list is a mutable [MASK].")   # an ELECTRA run: its generator
    pipeline("fill-mask", model="roberta-bpe")("A list is a mutable <mask>.")    # a RoBERTa with its BPE files
    pipeline("feature-extraction", model="minilm")("A list is mutable.")   # [[[...], ...]]: 1 x T x C
    pipeline("text-classification", model="runs/np-classify")("...")    # [{"label": ..., "score": ...}]
    pipeline("ner", model="runs/np-tag", aggregation_strategy="simple")("...")
    pipeline("question-answering", model="runs/np-qa")(question="...", context="...")

``model`` is a checkpoint folder (config.json + model.safetensors + a tokenizer's files: a
pre-training or fine-tuning run folder, or a transformers folder) or a name that
:func:`numpy_bert.checkpoint.named_model_dir` knows ("python-docs", "minilm"). fill-mask and
feature-extraction read BERT and the family (RoBERTa, ALBERT, ELECTRA, DistilBERT), the class chosen by
config.json's model_type and the tokenizer by the folder's files (vocab.txt: WordPiece; vocab.json +
merges.txt: byte-level BPE), as transformers' Auto classes do (:mod:`numpy_bert.pipelines.auto`); the
other tasks read BERT. Other keyword arguments are the task's call options, used as defaults for every call.
"""

from __future__ import annotations

import os

from ..checkpoint import named_model_dir
from ..text.tokenization import TokenizerBase
from .base import Pipeline
from .feature_extraction import FeatureExtractionPipeline
from .fill_mask import FillMaskPipeline
from .question_answering import QuestionAnsweringPipeline
from .text_classification import TextClassificationPipeline
from .token_classification import TokenClassificationPipeline

TASKS = {cls.task: cls for cls in (FeatureExtractionPipeline, FillMaskPipeline, QuestionAnsweringPipeline,
                                   TextClassificationPipeline, TokenClassificationPipeline)}
ALIASES = {"ner": "token-classification", "sentiment-analysis": "text-classification"}  # transformers' aliases


def pipeline(task: str, model: str | os.PathLike, tokenizer: TokenizerBase | str | os.PathLike | None = None,
             backend=None, **options) -> Pipeline:
    """The pipeline for ``task`` on ``model``, run by ``backend`` (numpy_bert's models by default).

    ``tokenizer`` (a folder, or a BertTokenizer or RobertaTokenizer) defaults to the model folder's. A
    task this project does not have, a model_type the task does not read, or a model folder without the
    task's head, is a ValueError that says what to do instead.
    """
    name = ALIASES.get(task, task)
    if name not in TASKS:
        raise ValueError(f"unknown task {task!r}: the tasks are {', '.join(sorted(TASKS))} "
                         f"(and the aliases {', '.join(sorted(ALIASES))})")
    return TASKS[name].from_pretrained(named_model_dir(model), tokenizer, backend, **options)
