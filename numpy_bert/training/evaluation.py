"""Using a pre-trained BERT: held-out metrics and fill-mask, for either backend.

Both functions take a ``predict(batch)`` callable - a backend's ``predict`` method -
that returns NumPy arrays::

    mlm_logits, nsp_logits = predict(batch)   # (N, V) at the N positions where
                                              # batch["labels"] != -100, in row-major
                                              # order; (B, 2) next-sentence (or ALBERT's
                                              # sentence-order) logits, None without that head

so the arithmetic of the metrics lives here once, in float64, whichever backend
ran the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..config import IGNORE_INDEX
from ..layers import log_softmax

Predict = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]



def _nll_and_correct(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Summed negative log-likelihood of the labels, and how many argmax predictions are right."""
    log_probs = log_softmax(logits)
    nll = -log_probs[np.arange(len(labels)), labels].sum()
    return float(nll), int((log_probs.argmax(axis=-1) == labels).sum())


def evaluate(predict: Predict, batches: Iterable[dict[str, np.ndarray]], pair: str = "nsp") -> dict[str, Any]:
    """MLM and next-sentence metrics over all ``batches`` (MLM only when they hold no next_sentence_label).

    ``pair`` names the sentence-pair metrics after the model's head: "nsp" (nsp_loss, nsp_accuracy;
    BERT's head, whether the pairs are --nsp or --sop ones) or "sop" (ALBERT's sop_classifier).

    Losses are means over all masked tokens (MLM) and all pairs (NSP) of all the
    batches, not means of per-batch means, so they do not depend on how the data
    was cut into batches. ``perplexity = exp(mlm_loss)``: the model is as unsure
    as if it chose uniformly among that many tokens. ``loss = mlm_loss + nsp_loss``,
    the quantity the training loss estimates.
    """
    mlm_nll = nsp_nll = 0.0
    mlm_correct = nsp_correct = masked = pairs = 0
    for batch in batches:
        labels = batch["labels"][batch["labels"] != IGNORE_INDEX]
        mlm_logits, nsp_logits = predict(batch)
        nll, correct = _nll_and_correct(mlm_logits, labels)
        mlm_nll, mlm_correct, masked = mlm_nll + nll, mlm_correct + correct, masked + len(labels)
        if "next_sentence_label" in batch:
            if nsp_logits is None:
                raise ValueError("the model has no sentence-pair head to evaluate on next-sentence or "
                                 "sentence-order pairs; evaluate it with --no-nsp")
            nll, correct = _nll_and_correct(nsp_logits, batch["next_sentence_label"])
            nsp_nll, nsp_correct, pairs = nsp_nll + nll, nsp_correct + correct, pairs + len(nsp_logits)
    if masked == 0:
        raise ValueError("nothing to evaluate: the batches hold no masked token")
    mlm_loss = mlm_nll / masked
    metrics = {"loss": mlm_loss, "mlm_loss": mlm_loss, "mlm_accuracy": mlm_correct / masked,
               "perplexity": math.exp(mlm_loss), "masked_tokens": masked}
    if pairs:
        metrics.update({"loss": mlm_loss + nsp_nll / pairs, f"{pair}_loss": nsp_nll / pairs,
                        f"{pair}_accuracy": nsp_correct / pairs, "pairs": pairs})
    return metrics


# The accuracies besides MLM's that a run may report: BERT's NSP head, ALBERT's SOP head, ELECTRA's discriminator.
OTHER_ACCURACIES = {"nsp_accuracy": "NSP accuracy", "sop_accuracy": "SOP accuracy",
                    "discriminator_accuracy": "discriminator accuracy"}


def format_metrics(metrics: dict[str, Any]) -> str:
    text = (f"loss {metrics['loss']:.4f} | MLM accuracy {metrics['mlm_accuracy']:.4f}, "
            f"perplexity {metrics['perplexity']:.2f}")
    return text + "".join(f" | {name} {metrics[key]:.4f}" for key, name in OTHER_ACCURACIES.items() if key in metrics)
