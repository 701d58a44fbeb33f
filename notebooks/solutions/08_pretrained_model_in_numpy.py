"""Worked solutions of notebook 08's exercises: mean pooling over the real tokens, int8 rows.

Run it from the repository root: python notebooks/solutions/08_pretrained_model_in_numpy.py
(it checks the function with ex.check and exits with 1 if the check fails).
"""

import sys

import numpy as np

from numpy_bert import exercises as ex


def mean_pooling(hidden, attention_mask):
    weights = attention_mask[..., None].astype(hidden.dtype)  # (B, T, 1) 1 for a real token, 0 for padding
    summed = (hidden * weights).sum(axis=1)  # (B, C) padded positions add 0, whatever they hold
    counts = weights.sum(axis=1)  # (B, 1) real tokens per sentence
    return summed / counts  # (B, C)


def quantize_rows(w):
    largest = np.abs(w).max(axis=1)  # (rows,) the largest weight of each row sets its step
    scale = np.maximum(largest / 127, np.finfo(np.float32).tiny).astype(np.float32)  # (rows,) > 0: zero rows too
    q = np.rint(w / scale[:, None]).astype(np.int8)  # (rows, cols) round to nearest, within [-127, 127]
    return q, scale


if __name__ == "__main__":
    verdicts = [ex.check("mean_pooling", mean_pooling), ex.check("quantize_rows", quantize_rows)]
    sys.exit(0 if all(verdicts) else 1)
