"""Worked solution of notebook 09's exercise: the forward FLOPs of one encoder layer.

Run it from the repository root: python notebooks/solutions/09_speed.py
(it checks the function with ex.check and exits with 1 if the check fails).
"""

import sys

from numpy_bert import exercises as ex


def layer_flops(hidden_size, intermediate_size, seq_len):
    C, I, T = hidden_size, intermediate_size, seq_len
    # (m x n) @ (n x p) is m n p multiply-adds, 2 m n p FLOPs.
    projections = 4 * 2 * T * C * C  # Q, K, V and the output projection: (T, C) @ (C, C) each
    scores = 2 * T * T * C  # q k^T: (T, hs) @ (hs, T) per head, and nh heads of hs make C
    weighted_values = 2 * T * T * C  # probs @ v: (T, T) @ (T, hs) per head
    feed_forward = 2 * 2 * T * C * I  # (T, C) @ (C, I), then (T, I) @ (I, C)
    return projections + scores + weighted_values + feed_forward


if __name__ == "__main__":
    verdicts = [ex.check("layer_flops", layer_flops)]
    sys.exit(0 if all(verdicts) else 1)
