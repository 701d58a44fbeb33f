"""FLOP counts, written down once: what "GFLOP/s" and "MFU" mean in every result.

Convention (the one of Kaplan et al. 2020 and PaLM's MFU, for an encoder):

* Only matrix multiplications count, 2 FLOPs per multiply-add. Embedding lookups,
  LayerNorm, softmax, GELU, dropout, biases and the optimizer are not counted (they
  are O(N) per token, not O(N * C)).
* N_enc = L (4 C^2 + 2 C I) weights per token in the encoder: the Q, K, V and output
  projections (4 C^2) and the two feed-forward matrices (2 C I, I = 4 C).
* Attention adds, per token and layer, 2 T C for the scores q k^T and 2 T C for the
  weighted sum of the values: 4 L T C per token (bidirectional: every token attends to
  all T, no causal halving). This is the term that is quadratic in T per sequence.
* Heads: the pooler (C^2) and NSP classifier (2 C) once per sequence; the MLM transform
  (C^2) and the tied decoder (V C) once per *predicted* position.

    forward FLOPs  = B T (2 N_enc + 4 L T C) + 2 B (C^2 + 2 C) + 2 P (C^2 + V C)
    training FLOPs = 3 x forward  (the backward computes two products per forward one:
                                   the input gradient and the weight gradient)

P, the number of positions that go through the MLM decoder, is the subtle part:

* inference ("infer"): every backend returns logits for all positions, P = B T;
* fill-mask ("fill_mask"): one sentence with one [MASK]; the model FLOPs count P = the
  masked positions, which is what numpy_bert and torch_bert compute (the call
  ``numpy_bert.training.evaluation.fill_mask`` makes: ``labelled_positions_only=True``);
  transformers projects every position (executed FLOPs, P = B T);
* training ("train"): the *model* FLOPs count P = the labelled positions (~15%), which is
  what numpy_bert and torch_bert compute with ``labelled_positions_only=True``;
  transformers' BertForPreTraining projects every position (P = B T) and only then
  ignores the unlabelled ones. Its extra work is reported as ``executed`` FLOPs, but
  GFLOP/s and MFU always use the model FLOPs, so they compare useful work per second.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    layers: int  # L
    hidden: int  # C
    intermediate: int  # I
    vocab: int  # V

    @classmethod
    def of(cls, config) -> Shape:
        return cls(config.num_hidden_layers, config.hidden_size, config.intermediate_size, config.vocab_size)

    @property
    def encoder_matmul_params(self) -> int:
        """N_enc: weights each token is multiplied with in the encoder."""
        C, I = self.hidden, self.intermediate
        return self.layers * (4 * C * C + 2 * C * I)


def forward_flops(shape: Shape, batch: int, seq_len: int, predicted_positions: int) -> int:
    """Matmul FLOPs of one forward pass (see the module docstring)."""
    L, C, V = shape.layers, shape.hidden, shape.vocab
    tokens = batch * seq_len
    encoder = tokens * (2 * shape.encoder_matmul_params + 4 * L * seq_len * C)
    sequence_heads = 2 * batch * (C * C + 2 * C)  # pooler + NSP
    mlm = 2 * predicted_positions * (C * C + V * C)  # transform + tied decoder
    return encoder + sequence_heads + mlm


def step_flops(shape: Shape, phase: str, batch: int, seq_len: int, labelled: int,
               all_positions_in_training: bool = False) -> dict[str, int]:
    """{"model": ..., "executed": ...} FLOPs of one step of ``phase`` ("infer", "fill_mask" or "train").

    ``labelled``: the number of MLM-labelled (training) or masked (fill-mask) positions.
    ``all_positions_in_training``: the implementation runs the decoder at every position
    (transformers), which changes the executed count, not the model count.
    """
    if phase == "infer":
        flops = forward_flops(shape, batch, seq_len, batch * seq_len)
        return {"model": flops, "executed": flops}
    if phase == "fill_mask":
        model = forward_flops(shape, batch, seq_len, labelled)
        executed = forward_flops(shape, batch, seq_len, batch * seq_len) if all_positions_in_training else model
        return {"model": model, "executed": executed}
    if phase != "train":
        raise ValueError(f"unknown phase {phase!r}")
    model = 3 * forward_flops(shape, batch, seq_len, labelled)
    executed = 3 * forward_flops(shape, batch, seq_len, batch * seq_len) if all_positions_in_training else model
    return {"model": model, "executed": executed}


def attention_crossover(shape: Shape) -> float:
    """The sequence length at which attention FLOPs (4 L T C) equal the dense ones (2 N_enc), per token."""
    return 2 * shape.encoder_matmul_params / (4 * shape.layers * shape.hidden)
