"""Forward computations (notebooks 02, 08, 09 and 11): attention with a padding mask, mean pooling,
int8 quantization of a weight matrix, the FLOPs of one encoder layer, and RoBERTa's position ids."""

from __future__ import annotations

import numbers

import numpy as np

from ..config import BertConfig
from ..layers import softmax
from ..modeling import BertSelfAttention
from ..pipelines.sentence_embeddings import mean_pool
from ..quantization import INT8_MAX, dequantize_rows
from ..quantization import quantize_rows as library_quantize_rows
from ..roberta import create_position_ids_from_input_ids
from .core import EXACT_TOLERANCE, Failure, as_array, call, compare, describe, exercise, relative_error, unpack
from .gradients import padding_masks

# ---- 02: attention ----------------------------------------------------------------------------------


def attention_over_real_keys(q, k, v, attention_mask) -> np.ndarray:
    """Attention computed another way: each sequence attends only to its real keys (padding is
    dropped rather than masked), softmax written out with log-sum-exp."""
    out = np.empty_like(q)
    for b, real in enumerate(attention_mask.astype(bool)):
        scores = q[b] @ k[b][:, real].swapaxes(-1, -2) / np.sqrt(q.shape[-1])  # (nh, T, real keys)
        log_norm = np.logaddexp.reduce(scores, axis=-1, keepdims=True)
        out[b] = np.exp(scores - log_norm) @ v[b][:, real]
    return out


@exercise(
    "attention_forward", "02_embeddings_and_attention",
    '''
def attention_forward(q, k, v, mask):
    """Scaled dot-product attention of every head: softmax(q k^T / sqrt(hs) + mask) v.

    q, k, v: (B, nh, T, hs) float64
    mask:    (B, 1, 1, T) additive: 0 for a real key, a huge negative number for padding
    Returns out (B, nh, T, hs). The softmax is over the keys (the last axis of the scores).
    """''',
    hints=(
        "scores = q @ kᵀ has shape (B, nh, T, T): query i against key j. Transpose only the last two axes of k "
        "(k.swapaxes(-1, -2)); then scale by 1/sqrt(hs), hs = q.shape[-1].",
        "Add the mask to the scaled scores: (B, 1, 1, T) broadcasts over heads and queries, and a padded key's "
        "score becomes hugely negative, so exp() gives it weight 0. Then softmax over the last axis.",
        "A stable softmax subtracts each row's max before exp (scores of 1e4 overflow otherwise) and divides by "
        "the row's sum (keepdims=True); multiply the probabilities by v.",
    ),
)
def check_attention_forward(function):
    rng = np.random.default_rng(17)
    config = BertConfig(vocab_size=16, hidden_size=8, num_attention_heads=2, intermediate_size=16,
                        attention_probs_dropout_prob=0.0)
    attention = BertSelfAttention(config).to(np.float64)
    for param in attention.parameters():
        param.data = rng.standard_normal(param.shape)
    attention_mask, mask = padding_masks(2, 5)
    library = attention.split_heads(attention.forward(rng.standard_normal((2, 5, 8)), mask))  # (B, nh, T, hs)
    q, k, v = attention.q, attention.k, attention.v

    def run(q, k, v, what):
        return as_array(call(function, q.copy(), k.copy(), v.copy(), mask.copy()), what, q.shape)

    error = compare({"out": run(q, k, v, "out")},
                    {"BertSelfAttention": {"out": library},
                     "attention over the real keys only": {"out": attention_over_real_keys(q, k, v, attention_mask)}},
                    EXACT_TOLERANCE)
    v_padded = v.copy()
    v_padded[np.broadcast_to(attention_mask[:, None, :] == 0, v.shape[:3])] = 1e6  # the values of padded keys
    if relative_error(run(q, k, v_padded, "out"), library)[0] > EXACT_TOLERANCE:
        raise Failure("padded keys still get weight: setting their values to 1e6 changed the output",
                      note="add the mask to the scores before the softmax, so padding gets probability 0")
    q_huge = 1e4 * q  # scores in the tens of thousands: exp() overflows unless the row max is subtracted
    huge = {"out": softmax(q_huge @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1]) + mask) @ v}
    try:
        got_huge = run(q_huge, k, v, "out")
    except Failure as failure:
        raise Failure(f"with scores of about 1e4, {failure.detail}",
                      note="exp() overflows: subtract each row's max before exp (it changes nothing else)") from None
    error = max(error, compare({"out": got_huge}, {"layers.softmax": huge}, EXACT_TOLERANCE))
    return ("out matches numpy_bert's BertSelfAttention and attention over the real keys only; padded keys get "
            "weight 0 and scores of 1e4 do not overflow"), error, EXACT_TOLERANCE


# ---- 08: mean pooling -------------------------------------------------------------------------------


@exercise(
    "mean_pooling", "08_pretrained_model_in_numpy",
    '''
def mean_pooling(hidden, attention_mask):
    """One vector per sentence: the mean of the hidden states of its real tokens (not the padding).

    hidden:         (B, T, C) float64
    attention_mask: (B, T) int, 1 for a real token, 0 for padding (on either side)
    Returns (B, C).
    """''',
    hints=(
        "hidden.mean(axis=1) averages the padding too, and padded positions hold whatever the model computed "
        "there (the check puts 1e6 in them). Only the positions where attention_mask is 1 may count.",
        "Turn the mask into weights of shape (B, T, 1) (mask[..., None], as floats) so it broadcasts over C; "
        "multiply, sum over T, and divide by the number of real tokens of each sentence.",
        "sum over axis 1 of hidden * mask[..., None], divided by mask.sum(axis=1, keepdims=True): (B, C) / (B, 1).",
    ),
)
def check_mean_pooling(function):
    rng = np.random.default_rng(19)
    attention_mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1]])
    hidden = rng.standard_normal((*attention_mask.shape, 5))
    hidden[attention_mask == 0] = 1e6  # counting padding cannot go unnoticed
    got = as_array(call(function, hidden.copy(), attention_mask.copy()), "pooled", (len(hidden), 5))
    per_row = np.stack([row[real != 0].mean(axis=0) for row, real in zip(hidden, attention_mask)])
    error = compare({"pooled": got}, {"sentence_embeddings.mean_pool": {"pooled": mean_pool(hidden, attention_mask)},
                                      "the mean of each row's real tokens": {"pooled": per_row}}, EXACT_TOLERANCE)
    return "matches numpy_bert's mean_pool, with padding on the right, on the left and none", error, EXACT_TOLERANCE


@exercise(
    "quantize_rows", "08_pretrained_model_in_numpy",
    '''
def quantize_rows(w):
    """Symmetric int8 quantization with one scale per row (output channel) of a weight matrix.

    w: (rows, cols) float32
    Returns (q, scale): q (rows, cols) int8 in [-127, 127], scale (rows,) float32,
    with w ≈ scale[:, None] * q and each row's largest |w| mapped to 127.
    """''',
    hints=(
        "Each row gets its own step size: the largest |w| of the row divided by 127, so that weight lands on "
        "±127 and every other weight of the row inside [-127, 127].",
        "scale = np.abs(w).max(axis=1) / 127 (as float32); then q = round(w / scale[:, None]). np.rint rounds "
        "to the nearest integer; astype(np.int8) alone would truncate towards zero.",
        "q = np.rint(w / scale[:, None]).astype(np.int8); an all-zero row has scale 0: give it any positive "
        "scale (np.maximum(scale, tiny)) so that 0 / scale stays 0.",
    ),
)
def check_quantize_rows(function):
    rng = np.random.default_rng(23)
    w = (rng.standard_normal((6, 40)) * np.array([1, 0.01, 100, 1, 1, 1])[:, None]).astype(np.float32)
    w[3] = 0.0  # an all-zero row
    w[4, 7] = 50.0  # one outlier: it sets its own row's step, no other row's
    q, scale = (np.asarray(a) for a in unpack(call(function, w.copy()), ("q", "scale")))
    if q.dtype != np.int8:
        raise Failure(f"q has dtype {q.dtype}, expected int8", note="cast the rounded values: .astype(np.int8)")
    scale = as_array(scale, "scale", (len(w),), "real")
    as_array(q, "q", w.shape, "int")
    if np.abs(q.astype(np.int32)).max() > INT8_MAX:
        raise Failure("q holds -128: the range is symmetric, [-127, 127]", note="clip, or divide by 127")
    expected_q, expected_scale = library_quantize_rows(w)
    nonzero = np.abs(w).max(axis=1) > 0
    error = compare({"scale": scale[nonzero], "dequantized": dequantize_rows(q, scale.astype(np.float32))},
                    {"numpy_bert.quantization.quantize_rows": {"scale": expected_scale[nonzero],
                                                               "dequantized": dequantize_rows(expected_q,
                                                                                              expected_scale)}},
                    1e-6)
    return "the same int8 rows and scales as numpy_bert.quantization, outlier and zero rows included", error, 1e-6


# ---- 09: FLOPs -------------------------------------------------------------------------------------


def layer_flops(hidden_size: int, intermediate_size: int, seq_len: int) -> int:
    """Forward matmul FLOPs of one encoder layer for one sequence, 2 per multiply-add (benchmarks/flops.py's
    convention): Q, K, V, O (4 T C^2), the feed-forward pair (2 T C I), scores and probs @ V (2 T^2 C)."""
    C, I, T = hidden_size, intermediate_size, seq_len
    return 2 * (4 * T * C * C + 2 * T * C * I + 2 * T * T * C)


def _flops_diagnosis(got, C: int, I: int, T: int) -> str:
    """What a count that is off probably forgot."""
    dense, attention = 2 * (4 * T * C * C + 2 * T * C * I), 4 * T * T * C
    known = {
        (dense + attention) // 2: "exactly half: a multiply-add is 2 FLOPs",
        dense: "the attention products are missing: q kᵀ and probs @ v, T·T·C multiply-adds each",
        dense + attention // 2: "only one of the two attention products (q kᵀ and probs @ v) is counted",
        2 * (4 * T * C * C + 2 * T * C * 4 * C) + attention: "the feed-forward width is intermediate_size, "
                                                             "not 4 × hidden_size",
        (dense + attention) // T: "that is per token; count the whole sequence of seq_len tokens",
    }
    return known.get(got, "count each matmul as 2 × (rows × inner × columns)")


@exercise(
    "layer_flops", "09_speed",
    '''
def layer_flops(hidden_size, intermediate_size, seq_len):
    """Forward-pass matmul FLOPs of one encoder layer for one sequence (2 FLOPs per multiply-add).

    Count the Q, K, V and output projections, the scores q k^T and probs @ v (all heads together),
    and the two feed-forward matmuls; not biases, softmax, LayerNorm or GELU.
    Returns an int.
    """''',
    hints=(
        "A matmul (m × n) @ (n × p) does m·n·p multiply-adds, 2·m·n·p FLOPs. The layer's input is (T, C).",
        "The four projections are (T, C) @ (C, C) each; the feed-forward goes (T, C) @ (C, I) then "
        "(T, I) @ (I, C). Splitting into heads changes nothing in the total: nh heads of hs = C / nh.",
        "Attention: q kᵀ is (T, hs) @ (hs, T) per head, T·T·C multiply-adds over all heads, and probs @ v the "
        "same again. Add everything up and double it.",
    ),
)
def check_layer_flops(function):
    cases = [(768, 3072, 128), (128, 512, 1), (64, 100, 300), (312, 1200, 512), (8, 40, 7)]
    for C, I, T in cases:
        got = call(function, C, I, T)
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            raise Failure(f"layer_flops({C}, {I}, {T}) returned {describe(got)}, expected an int")
        expected = layer_flops(C, I, T)
        if got != expected:
            raise Failure(f"layer_flops({C}, {I}, {T}) is {got:,}, expected {expected:,}",
                          note=_flops_diagnosis(got, C, I, T))
    return f"the count is right for {len(cases)} shapes (from one token to 512, I ≠ 4C included)", None, None


# ---- 11: RoBERTa's position ids --------------------------------------------------------------------


@exercise(
    "roberta_position_ids", "11_bert_family",
    '''
def roberta_position_ids(input_ids, padding_idx):
    """RoBERTa's position ids: the real tokens of each row count up from padding_idx + 1; padding gets padding_idx.

    input_ids: (B, T) int, padding_idx marks padding (on either side, or in the middle)
    Returns (B, T) int: [[0, 5, 7, 1, 1]] with padding_idx 1 gives [[2, 3, 4, 1, 1]].
    """''',
    hints=(
        "BERT's positions are 0..T-1 whatever the tokens are. RoBERTa's skip the padding: a padding token "
        "does not use up a position, and its own id is padding_idx, whose row of the table stays unused.",
        "Mark the real tokens, is_token = (input_ids != padding_idx) as integers, and count them along each "
        "row: np.cumsum(is_token, axis=1) is 1, 2, 3, ... over the real tokens.",
        "np.cumsum(is_token, axis=1) * is_token + padding_idx: the product zeroes the padding's count, and "
        "adding padding_idx starts the tokens at padding_idx + 1 and leaves the padding at padding_idx.",
    ),
)
def check_roberta_position_ids(function):
    cases = [  # (input_ids, padding_idx): right, left and middle padding, no padding, all padding
        (np.array([[0, 5, 7, 1, 1], [0, 8, 9, 4, 2]]), 1),
        (np.array([[1, 1, 0, 5, 2], [1, 0, 1, 6, 2]]), 1),
        (np.array([[3, 4, 5, 6, 7, 8, 9, 10]]), 0),
        (np.array([[0, 0, 0], [5, 0, 6]]), 0),
    ]
    for input_ids, padding_idx in cases:
        got = as_array(call(function, input_ids.copy(), padding_idx), "position ids", input_ids.shape, "int")
        expected = create_position_ids_from_input_ids(input_ids, padding_idx)
        if not np.array_equal(got, expected):
            raise Failure(f"roberta_position_ids({input_ids.tolist()}, {padding_idx}) is {got.tolist()}",
                          note=f"expected {expected.tolist()}")
    return "the same ids as numpy_bert.roberta for right, left, middle and no padding", None, None
