"""Worked solution of notebook 10's exercise: the backward pass of one encoder layer, from its parts.

Run it from the repository root: python notebooks/solutions/10_bert_on_one_page.py
(it checks the function with ex.check and exits with 1 if the check fails).
"""

import sys

from numpy_bert import exercises as ex


def bert_layer_backward(layer, dy):
    # Forward: a = attention(x);  h = intermediate(a);  y = output(h, a) = LayerNorm(dense(h) + a).
    # Backward runs it in reverse; each part's backward also adds its parameters' gradients into .grad.
    d_h, d_a_residual = layer.output.backward(dy)  # (B, T, I), (B, T, C): output had two inputs
    d_a = layer.intermediate.backward(d_h)  # (B, T, C) back through the feed-forward branch
    d_a = d_a + d_a_residual  # a fed both branches, so the two gradients add
    return layer.attention.backward(d_a)  # (B, T, C) attention handles its own residual inside


if __name__ == "__main__":
    verdicts = [ex.check("bert_layer_backward", bert_layer_backward)]
    sys.exit(0 if all(verdicts) else 1)
