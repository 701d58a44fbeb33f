"""Worked solution of notebook 08's exercise: mean pooling over the real tokens.

Run it from the repository root: python notebooks/solutions/08_pretrained_model_in_numpy.py
(it checks the function with ex.check and exits with 1 if the check fails).
"""

import sys

from numpy_bert import exercises as ex


def mean_pooling(hidden, attention_mask):
    weights = attention_mask[..., None].astype(hidden.dtype)  # (B, T, 1) 1 for a real token, 0 for padding
    summed = (hidden * weights).sum(axis=1)  # (B, C) padded positions add 0, whatever they hold
    counts = weights.sum(axis=1)  # (B, 1) real tokens per sentence
    return summed / counts  # (B, C)


if __name__ == "__main__":
    verdicts = [ex.check("mean_pooling", mean_pooling)]
    sys.exit(0 if all(verdicts) else 1)
