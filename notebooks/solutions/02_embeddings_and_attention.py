"""Worked solutions of notebook 02's exercises: the embedding's backward pass, and attention with a mask.

Run it from the repository root: python notebooks/solutions/02_embeddings_and_attention.py
(it checks each function with ex.check and exits with 1 if a check fails).
"""

import sys

import numpy as np

from numpy_bert import exercises as ex


def embedding_backward(ids, d_out, vocab_size):
    C = d_out.shape[-1]
    flat_ids = ids.reshape(-1)  # (N,) N = B * T positions
    flat_grads = d_out.reshape(-1, C)  # (N, C) the gradient of each position's output row
    dW = np.zeros((vocab_size, C), dtype=d_out.dtype)  # (V, C) rows of ids never looked up stay 0
    # Position n copied row flat_ids[n], so its gradient goes back to that row. `dW[flat_ids] += flat_grads`
    # would lose repeats (NumPy writes a repeated row once); np.add.at adds every one of them.
    np.add.at(dW, flat_ids, flat_grads)
    return dW


def attention_forward(q, k, v, mask):
    hs = q.shape[-1]
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(hs)  # (B, nh, T, T) query i against key j
    scores = scores + mask  # (B, 1, 1, T) broadcasts over heads and queries; padded keys become hugely negative
    scores = scores - scores.max(axis=-1, keepdims=True)  # a shift leaves softmax unchanged; exp() cannot overflow
    weights = np.exp(scores)  # (B, nh, T, T) padded keys: exp(-huge) = 0
    probs = weights / weights.sum(axis=-1, keepdims=True)  # each row sums to 1 over the keys
    return probs @ v  # (B, nh, T, hs)


if __name__ == "__main__":
    verdicts = [ex.check("embedding_backward", embedding_backward), ex.check("attention_forward", attention_forward)]
    sys.exit(0 if all(verdicts) else 1)
