"""Worked solutions of notebook 03's exercises: the backward passes of softmax, LayerNorm and attention.

Run it from the repository root: python notebooks/solutions/03_backward_by_hand.py
(it checks each function with ex.check and exits with 1 if a check fails).
"""

import sys

from numpy_bert import exercises as ex


def softmax_backward(y, dy):
    # One row's Jacobian is dy_i/dx_j = y_i (delta_ij - y_j). Applied to dy:
    #   dx_j = sum_i dy_i y_i (delta_ij - y_j) = y_j dy_j - y_j sum_i dy_i y_i
    row_dot = (dy * y).sum(axis=-1, keepdims=True)  # (..., 1) the path through the normalising sum
    return y * (dy - row_dot)  # (..., K)


def layernorm_backward(dy, xhat, rstd, gamma):
    C = dy.shape[-1]
    dy_rows = dy.reshape(-1, C)  # (N, C) whatever the leading axes are
    xhat_rows = xhat.reshape(-1, C)  # (N, C)
    # y = xhat * gamma + beta, with gamma and beta shared by all rows: their gradients sum over the rows.
    dbeta = dy_rows.sum(axis=0)  # (C,)
    dgamma = (dy_rows * xhat_rows).sum(axis=0)  # (C,)
    # xhat_i = (x_i - mean) * rstd, rstd = (var + eps)^(-1/2), so
    #   d xhat_i / d x_j = rstd * (delta_ij - 1/C - xhat_i xhat_j / C)
    # (the 1/C through the mean, the xhat_i xhat_j / C through the variance).
    g = dy * gamma  # (..., C) dL/dxhat
    mean_g = g.mean(axis=-1, keepdims=True)  # (..., 1) through the mean
    mean_g_xhat = (g * xhat).mean(axis=-1, keepdims=True)  # (..., 1) through the variance
    dx = rstd * (g - mean_g - xhat * mean_g_xhat)  # (..., C)
    return dx, dgamma, dbeta


def attention_backward(d_out, q, k, v, probs, scaling):
    # Forward: scores = q k^T * scaling + mask;  probs = softmax(scores);  out = probs v.
    # For C = A @ B: dA = dC @ B^T and dB = A^T @ dC.
    dv = probs.swapaxes(-1, -2) @ d_out  # (B, nh, T, hs)
    d_probs = d_out @ v.swapaxes(-1, -2)  # (B, nh, T, T)
    d_scores = softmax_backward(probs, d_probs)  # (B, nh, T, T) the mask is a constant: no gradient
    d_scores = d_scores * scaling  # the forward multiplied q k^T by scaling
    dq = d_scores @ k  # (B, nh, T, hs) scores_ij = q_i . k_j
    dk = d_scores.swapaxes(-1, -2) @ q  # (B, nh, T, hs) key j collects over all the queries i
    return dq, dk, dv


if __name__ == "__main__":
    verdicts = [ex.check("softmax_backward", softmax_backward), ex.check("layernorm_backward", layernorm_backward),
                ex.check("attention_backward", attention_backward)]
    sys.exit(0 if all(verdicts) else 1)
