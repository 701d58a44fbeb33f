"""Worked solution of notebook 06's exercise: the gradient of the mean cross-entropy, with ignored rows.

Run it from the repository root: python notebooks/solutions/06_numpy_vs_pytorch.py
(it checks the function with ex.check and exits with 1 if the check fails).
"""

import sys

import numpy as np

from numpy_bert import exercises as ex


def cross_entropy_backward(logits, labels):
    counted = labels != -100  # (N,) the rows that have a loss
    rows = np.flatnonzero(counted)  # their indices
    shifted = logits - logits.max(axis=-1, keepdims=True)  # (N, V) a stable softmax
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)  # (N, V)
    # One row's loss is -log p[label]; its gradient with respect to the logits is p - onehot(label).
    dlogits = probs.copy()  # (N, V)
    dlogits[rows, labels[rows]] -= 1  # only counted rows: -100 as an index would pick the last column
    dlogits[~counted] = 0  # ignored rows: no loss, no gradient
    return dlogits / len(rows)  # the loss is the mean over the counted rows


if __name__ == "__main__":
    verdicts = [ex.check("cross_entropy_backward", cross_entropy_backward)]
    sys.exit(0 if all(verdicts) else 1)
