"""Text classification: a fine-tuned sequence classifier's labels with their scores, as transformers gives them."""

from __future__ import annotations

import numpy as np

from ..layers import log_softmax
from .auto import TaskModel
from .base import FINETUNE, Pipeline, as_list

FUNCTIONS = ("softmax", "sigmoid", "none")
TOP_ONE = object()  # top_k not given: the best label alone, as a dict (transformers' "legacy" output)


def label_names(config) -> dict[int, str]:
    """config.id2label, or transformers' default names LABEL_0, LABEL_1, ..."""
    return config.id2label or {i: f"LABEL_{i}" for i in range(config.num_labels)}


def default_function(config) -> str:
    """transformers' choice: none for regression, sigmoid for one label or multi-label, else softmax."""
    problem = config.extra.get("problem_type")
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def scores_of(logits: np.ndarray, function: str) -> np.ndarray:
    """softmax(logits), sigmoid(logits) or the logits themselves.  (K,) -> (K,)"""
    if function == "softmax":
        return np.exp(log_softmax(logits))
    if function == "sigmoid":
        return 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
    if function == "none":
        return logits
    raise ValueError(f"function_to_apply must be one of {FUNCTIONS} (or None: the model's default), got {function!r}")


class TextClassificationPipeline(Pipeline):
    """transformers' ``pipeline("text-classification")``: ``{"label", "score"}`` from config.id2label.

    An input is a text or a ``{"text": ..., "text_pair": ...}`` dict. Without ``top_k``, each
    input gives its best label as one dict (a single text: a list of that one dict). With
    ``top_k=n`` each gives its n best labels as a list, best first; ``top_k=None`` gives every
    label. ``function_to_apply`` turns logits into scores: by default softmax, or sigmoid
    for a single output or a multi-label model, and nothing for regression. A ``top_k`` given
    to ``pipeline()`` acts as if given to each call (transformers then also wraps a single
    text's list in another list).
    """

    task = "text-classification"
    models = {"bert": TaskModel("BertForSequenceClassification", heads=("classifier.", "bert.pooler."))}
    advice = "fine-tune it first: " + FINETUNE.format(task="classify")

    def run(self, inputs: str | dict | list, *, top_k: int | None = TOP_ONE, function_to_apply: str | None = None,
            truncation: bool = False):
        items, single = as_list(inputs, (str, dict))
        function = (function_to_apply or default_function(self.model.config)).lower()
        names = label_names(self.model.config)
        results = []
        for item in items:
            text, pair = (item, None) if isinstance(item, str) else _text_and_pair(item)
            logits = self.forward(**self.encode(text, pair, truncation))["logits"][0]  # (K,)
            scores = scores_of(logits, function)
            ranked = [{"label": names[int(i)], "score": float(scores[i])}
                      for i in np.argsort(-scores, kind="stable")]
            results.append(ranked[0] if top_k is TOP_ONE else ranked[:top_k])
        if not single:
            return results
        return [results[0]] if top_k is TOP_ONE and isinstance(inputs, str) else results[0]


def _text_and_pair(item: dict) -> tuple[str, str | None]:
    if not isinstance(item.get("text"), str) or set(item) - {"text", "text_pair"}:
        raise ValueError(f'a text pair is a dict {{"text": str, "text_pair": str}}, got {item!r:.80}')
    return item["text"], item.get("text_pair")
