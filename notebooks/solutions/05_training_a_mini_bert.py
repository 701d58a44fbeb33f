"""Worked solution of notebook 05's exercise: one AdamW step.

Run it from the repository root: python notebooks/solutions/05_training_a_mini_bert.py
(it checks the function with ex.check and exits with 1 if the check fails).
"""

import sys

import numpy as np

from numpy_bert import exercises as ex


def adamw_step(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    beta1, beta2 = betas
    p = p * (1 - lr * weight_decay)  # decoupled weight decay, first: p shrinks whatever the gradient says
    m = beta1 * m + (1 - beta1) * g  # first moment: a running mean of g
    v = beta2 * v + (1 - beta2) * g * g  # second moment: a running mean of g^2
    m_hat = m / (1 - beta1**t)  # bias correction: both moments start at 0, so early means are too small
    v_hat = v / (1 - beta2**t)
    p = p - lr * m_hat / (np.sqrt(v_hat) + eps)  # eps outside the square root, as torch
    return p, m, v


if __name__ == "__main__":
    verdicts = [ex.check("adamw_step", adamw_step)]
    sys.exit(0 if all(verdicts) else 1)
