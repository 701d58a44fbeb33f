"""Evaluation metrics of the fine-tuning tasks, and the figures of their reports.

* Classification: accuracy, and precision, recall, F1 per class and macro-averaged,
  from the confusion matrix (rows: true class, columns: predicted class)::

      precision_k = C[k, k] / sum_i C[i, k]     (of the examples predicted k, how many are k)
      recall_k    = C[k, k] / sum_j C[k, j]     (of the examples that are k, how many were found)
      F1_k        = 2 P_k R_k / (P_k + R_k)     (0 where a denominator is 0, as scikit-learn)

  Macro averages are plain means over the classes that occur in the gold labels or
  the predictions (scikit-learn's default label set).
* Tagging: entities, not tokens, are scored, the way seqeval does by default (the
  conlleval.pl rules): an entity is a maximal run B-X I-X ... I-X; an I-X that does
  not continue an entity of type X (after O, or after another type) starts one; a
  change of type ends one. A predicted entity counts only if its type, start and end
  are all right. Precision, recall and F1 per type, micro-averaged (seqeval's
  ``f1_score`` default, the headline number) and macro-averaged.
* Question answering: SQuAD's exact match and token F1 after its normalisation
  (lowercase, no punctuation, no articles "a", "an", "the", single spaces).

All functions take plain Python lists and return plain Python numbers, so that
metrics.json is readable and the tests can compare with hand-computed values.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .plots import _figure, _plot, _save, _series

# =============================================================================
# Classification
# =============================================================================


def confusion_matrix(gold: Sequence[int], predicted: Sequence[int], num_classes: int) -> np.ndarray:
    """C[i, j] = how many examples of true class i were predicted as class j."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(gold, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def _scores(true_positives: int, predicted: int, support: int) -> dict[str, Any]:
    precision, recall = _ratio(true_positives, predicted), _ratio(true_positives, support)
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall), "support": int(support)}


def _macro(per_class: dict[str, dict[str, Any]]) -> dict[str, float]:
    return {f"macro_{name}": float(np.mean([s[name] for s in per_class.values()])) if per_class else 0.0
            for name in ("precision", "recall", "f1")}


def classification_report(gold: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, per-class scores and the confusion matrix."""
    if len(gold) != len(predicted) or not gold:
        raise ValueError(f"need as many predictions as gold labels (and at least one): {len(predicted)} vs {len(gold)}")
    matrix = confusion_matrix(gold, predicted, len(labels))
    support, predicted_count, correct = matrix.sum(axis=1), matrix.sum(axis=0), np.diag(matrix)
    present = [k for k in range(len(labels)) if support[k] or predicted_count[k]]
    per_class = {labels[k]: _scores(correct[k], predicted_count[k], support[k]) for k in present}
    return {"accuracy": float(correct.sum() / matrix.sum()), **_macro(per_class), "per_class": per_class,
            "labels": list(labels), "confusion_matrix": matrix.tolist()}


# =============================================================================
# Tagging: entities from BIO tags, scored as seqeval does
# =============================================================================


def bio_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) of each entity in a BIO sequence (conlleval rules, see the module docstring).

    >>> bio_entities(["B-CODE", "I-CODE", "O", "I-CODE", "B-X", "I-CODE"])
    [('CODE', 0, 1), ('CODE', 3, 3), ('X', 4, 4), ('CODE', 5, 5)]
    """
    entities, kind, first = [], None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, tag_type = tag[0], tag[2:]
        if kind is not None and (prefix != "I" or tag_type != kind):  # B, O or a change of type ends it
            entities.append((kind, first, i - 1))
            kind = None
        if prefix in "BI" and kind is None:  # B always starts one; so does an I that continues nothing
            kind, first = tag_type, i
    return entities


def entity_report(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """seqeval's scores over sentences of BIO tags: micro P/R/F1 (the headline), macro F1, per type.

    Also the token accuracy (share of tags that are right, "O" included), seqeval's
    ``accuracy_score``.
    """
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted tag sequences must have the same lengths")
    true_entities = {(n, *e) for n, tags in enumerate(gold) for e in bio_entities(tags)}
    predicted_entities = {(n, *e) for n, tags in enumerate(predicted) for e in bio_entities(tags)}
    types = sorted({e[1] for e in true_entities | predicted_entities})

    def count(entities, kind):
        return sum(e[1] == kind for e in entities)

    per_type = {kind: _scores(count(true_entities & predicted_entities, kind), count(predicted_entities, kind),
                              count(true_entities, kind)) for kind in types}
    micro = _scores(len(true_entities & predicted_entities), len(predicted_entities), len(true_entities))
    tokens = sum(len(g) for g in gold)
    right = sum(g == p for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps))
    return {"precision": micro["precision"], "recall": micro["recall"], "f1": micro["f1"],
            "macro_f1": _macro(per_type)["macro_f1"], "token_accuracy": _ratio(right, tokens),
            "entities": micro["support"], "per_type": per_type}


# =============================================================================
# Question answering: SQuAD exact match and F1
# =============================================================================

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, drop punctuation, drop articles, collapse whitespace."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """F1 of the bag of normalised words: overlap / predicted words and overlap / gold words.

    When either side normalises to nothing, F1 is 1 if both do, else 0 (SQuAD 2.0's rule).
    """
    predicted_words, gold_words = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted_words or not gold_words:
        return float(predicted_words == gold_words)
    overlap = sum((Counter(predicted_words) & Counter(gold_words)).values())
    return _f1(_ratio(overlap, len(predicted_words)), _ratio(overlap, len(gold_words)))


def squad_report(predictions: Sequence[str], golds: Sequence[str]) -> dict[str, Any]:
    """Mean exact match and mean token F1, over the examples."""
    if len(predictions) != len(golds) or not golds:
        raise ValueError("need one prediction per gold answer (and at least one)")
    return {"exact_match": float(np.mean([exact_match(p, g) for p, g in zip(predictions, golds)])),
            "f1": float(np.mean([token_f1(p, g) for p, g in zip(predictions, golds)])), "examples": len(golds)}


# =============================================================================
# Figures
# =============================================================================


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], unit: str, path: str | Path,
                          title: str) -> Path:
    """The confusion matrix as a heat map with the count (of ``unit``: examples, words) in every cell."""
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    size = max(4.0, 0.6 * len(labels) + 2.5)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, label=unit)
    axes.set_title(title)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    for (i, j), count in np.ndenumerate(matrix):
        dark = count > matrix.max() / 2
        axes.text(j, i, str(count), ha="center", va="center", color="white" if dark else "black", fontsize=8)
    _save(figure, Path(path))
    return Path(path)


def plot_curves(rows: Sequence[dict[str, Any]], folder: str | Path, metric: str, metric_name: str,
                title: str) -> list[Path]:
    """loss.png (train and validation loss per step) and validation.png (the ``metric`` column per evaluation)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figure, axes = _figure(f"{title}: loss", "cross-entropy loss (nats)")
    _plot(axes, *_series(rows, "train", "loss"), "train loss")
    _plot(axes, *_series(rows, "validation", "loss"), "validation loss", marker="o")
    axes.legend()
    _save(figure, folder / "loss.png")
    figure, axes = _figure(f"{title}: validation {metric_name}", metric_name)
    _plot(axes, *_series(rows, "validation", metric), f"validation {metric_name}", marker="o")
    axes.set_ylim(0, 1.02)
    _save(figure, folder / "validation.png")
    return [folder / "loss.png", folder / "validation.png"]
