"""numpy_bert.fast against the readable numpy_bert: same weights, same inputs, same dropout masks.

The fast model is the readable one with a fused forward and backward; here both run the
same batch and every output and every parameter's gradient is compared by name
(relative error <= 1e-10 in float64; in float32 <= 1e-4 against the float64 result for the
same weights), as parity_tests/test_backends.py does for torch_bert. Both models follow
numpy_bert/nn.py's meaning of backward: gradients add up in .grad until zero_grad().
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy_bert
from numpy_bert import KeyedMasks
from numpy_bert.fast import FastBertForPreTraining, erf_float32, get_num_threads, set_num_threads
from numpy_bert.optim import build_optimizer

from .builders import outputs_and_gradients, random_batch, run_numpy
from .compare import assert_close
from .test_backends import configs

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def twin_numpy_models(config, dtype, seed=1):
    readable = numpy_bert.BertForPreTraining(config, seed=seed, dtype=dtype)
    fast = FastBertForPreTraining(config, seed=seed, dtype=dtype)
    assert_close(fast.state_dict(), readable.state_dict(), 0.0, "same initial weights")
    return readable, fast


def compare_step(config, batch, dtype, dropout_seed=None, train=False):
    readable, fast = twin_numpy_models(config, dtype)
    if dropout_seed is not None:
        readable.set_dropout_masks(KeyedMasks(dropout_seed))
        fast.set_dropout_masks(KeyedMasks(dropout_seed))
    elif not train:
        readable.eval(), fast.eval()
    expected = outputs_and_gradients(*run_numpy(readable, batch))
    actual = outputs_and_gradients(*run_numpy(fast, batch))
    # (the key-bias gradient, pure rounding noise, is measured against the scale: see compare.py)
    return assert_close(actual, expected, TOLERANCE[dtype], f"fast vs readable ({np.dtype(dtype)})")


@settings(max_examples=40, deadline=None)
@given(config=configs(), batch=st.integers(1, 4), length=st.integers(1, 64), seed=st.integers(0, 2**32 - 1),
       dropout=st.booleans(), fully_padded_row=st.booleans(), gathered=st.booleans())
def test_float64_parity(config, batch, length, seed, dropout, fully_padded_row, gathered):
    rng = np.random.default_rng(seed)
    inputs = random_batch(config, batch, length, rng, fully_padded_row=fully_padded_row and batch > 1)
    inputs["labelled_positions_only"] = gathered
    compare_step(config, inputs, np.float64, dropout_seed=seed if dropout else None)


# In float32 each model carries its own rounding error, and the two can sit on opposite sides
# of the exact value: so, as in test_backends.py, the fast float32 model is held to the
# tolerance against the float64 result for the same weights, and weights of std 0.5 (an
# ill-conditioned problem, covered in float64) are not drawn. Hypothesis found such a case:
# std 0.5, eps 1e-12, C = 16, dropout 0.5 put both float32 models about 1e-4 from float64, on
# opposite sides (2.5e-4 apart).
@settings(max_examples=15, deadline=None)
@given(config=configs(min_hidden=8, init_ranges=(0.02, 0.2)), batch=st.integers(1, 4), length=st.integers(1, 64),
       seed=st.integers(0, 2**32 - 1), gathered=st.booleans())
def test_float32_parity(config, batch, length, seed, gathered):
    inputs = {**random_batch(config, batch, length, np.random.default_rng(seed)), "labelled_positions_only": gathered}
    fast = FastBertForPreTraining(config, seed=1, dtype=np.float32)
    exact = numpy_bert.BertForPreTraining(config, seed=1, dtype=np.float64)
    exact.load_state_dict({k: v.astype(np.float64) for k, v in fast.state_dict().items()})
    for model in (fast, exact):
        model.set_dropout_masks(KeyedMasks(seed))
    truth = outputs_and_gradients(*run_numpy(exact, inputs))
    assert_close(outputs_and_gradients(*run_numpy(fast, inputs)), truth, TOLERANCE[np.float32],
                 "fast float32 vs readable float64")


def test_default_dropout_masks_are_the_readable_ones():
    """Without KeyedMasks both models draw from GeneratorMasks(seed + 1) in the same order and shapes."""
    config = numpy_bert.BertConfig.from_preset("tiny", vocab_size=97, max_position_embeddings=32)
    batch = random_batch(config, 3, 20, np.random.default_rng(3))
    compare_step(config, batch, np.float64, train=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mini_preset_with_real_sizes(dtype):
    """The benchmark's shapes: the mini preset (30,522 tokens), gathered MLM positions, dropout on.
    Unlike the small hypothesis configs, these sizes split every element-wise kernel into several
    blocks (LayerNorm 2, GELU 6, cross-entropy 12), so the partial sums are checked in float64 too."""
    config = numpy_bert.BertConfig.from_preset("mini", max_position_embeddings=64)
    batch = {**random_batch(config, 4, 48, np.random.default_rng(7)), "labelled_positions_only": True}
    compare_step(config, batch, dtype, dropout_seed=11)


def test_encoder_outputs_and_attentions():
    config = numpy_bert.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=24, max_position_embeddings=32)
    readable, fast = twin_numpy_models(config, np.float64)
    readable.eval(), fast.eval()
    batch = random_batch(config, 3, 12, np.random.default_rng(4))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    a = fast(**inputs, output_attentions=True, output_hidden_states=True)
    e = readable(**inputs, output_attentions=True, output_hidden_states=True)
    flat_a, flat_e = ({"prediction_logits": out.prediction_logits,
                       "seq_relationship_logits": out.seq_relationship_logits,
                       **{f"attentions.{i}": t for i, t in enumerate(out.attentions)},
                       **{f"hidden_states.{i}": t for i, t in enumerate(out.hidden_states)}} for out in (a, e))
    assert_close(flat_a, flat_e, 1e-10, "encoder states, attention maps and logits")


def test_training_steps_follow_the_same_trajectory():
    """Five AdamW steps with dropout: the weights stay together (float64)."""
    config = numpy_bert.BertConfig.from_preset("tiny", vocab_size=64, max_position_embeddings=32)
    readable, fast = twin_numpy_models(config, np.float64, seed=3)
    readable.set_dropout_masks(KeyedMasks(5)), fast.set_dropout_masks(KeyedMasks(5))
    optimizers = [build_optimizer(m, lr=1e-3) for m in (readable, fast)]
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch = {**random_batch(config, 2, 16, rng), "labelled_positions_only": True}
        for model, optimizer in zip((readable, fast), optimizers):
            model(**batch)
            model.backward()
            optimizer.step()
            optimizer.zero_grad()
    assert_close(fast.state_dict(), readable.state_dict(), 1e-10, "weights after 5 steps")


def test_gradients_add_up_until_zero_grad():
    """backward() adds into .grad (numpy_bert/nn.py): two backward passes of one forward give twice the
    gradient, in both models; and after zero_grad() one pass gives it once again. (Up to rounding: the
    readable model adds the tied word embedding's two uses one by one, so two passes sum in another order.)"""
    config = numpy_bert.BertConfig.from_preset("tiny", vocab_size=64, max_position_embeddings=32)
    batch = {**random_batch(config, 3, 20, np.random.default_rng(6)), "labelled_positions_only": True}
    for model in twin_numpy_models(config, np.float64):
        model.set_dropout_masks(KeyedMasks(2))
        _, once = run_numpy(model, batch)
        assert model.backward() is None
        twice = model.gradients()
        assert_close(twice, {name: 2 * g for name, g in once.items()}, 1e-15, f"{type(model).__name__}: two passes")
        model.zero_grad()
        model.backward()
        assert_close(model.gradients(), once, 0.0, f"{type(model).__name__}: after zero_grad")


def test_an_all_ones_attention_mask_is_no_mask():
    """has_padding: a mask of all ones is dropped, as in the readable model, so the same bits come out."""
    config = numpy_bert.BertConfig.from_preset("tiny", vocab_size=64, max_position_embeddings=32)
    batch = random_batch(config, 2, 16, np.random.default_rng(1))
    results = []
    for attention_mask in (np.ones_like(batch["attention_mask"]), None):
        fast = FastBertForPreTraining(config, seed=2, dtype=np.float32)
        fast.set_dropout_masks(KeyedMasks(4))
        results.append(outputs_and_gradients(*run_numpy(fast, {**batch, "attention_mask": attention_mask})))
    assert_close(results[0], results[1], 0.0, "all-ones mask vs no mask")


def test_checkpoints_load_and_save_the_same_way():
    config = numpy_bert.BertConfig.from_preset("tiny", vocab_size=64, max_position_embeddings=32)
    readable = numpy_bert.BertForPreTraining(config, seed=9, dtype=np.float64)
    with tempfile.TemporaryDirectory() as folder:
        readable.save_pretrained(folder)
        fast = FastBertForPreTraining.from_pretrained(folder, dtype=np.float64)
        fast.save_pretrained(os.path.join(folder, "again"))
        back = numpy_bert.BertForPreTraining.from_pretrained(os.path.join(folder, "again"), dtype=np.float64)
    assert list(fast.state_dict()) == list(readable.state_dict())
    assert_close(back.state_dict(), readable.state_dict(), 0.0, "readable -> fast -> readable")


def test_float32_stays_float32():
    config = numpy_bert.BertConfig.from_preset("tiny", vocab_size=50, max_position_embeddings=16)
    out, grads = run_numpy(FastBertForPreTraining(config, seed=0), random_batch(config, 2, 9, np.random.default_rng(0)))
    arrays = {"loss": out.loss, "logits": out.prediction_logits, "nsp": out.seq_relationship_logits, **grads}
    wrong = {name: a.dtype for name, a in arrays.items() if np.asarray(a).dtype != np.float32}
    assert not wrong, f"not float32: {wrong}"


def test_erf_float32_accuracy():
    x = np.linspace(-7, 7, 20001)
    expected = np.array([math.erf(v) for v in x])
    got = erf_float32(x.astype(np.float32)).astype(np.float64)
    assert got.dtype == np.float64 and np.abs(got - expected).max() < 5e-7


def test_results_do_not_depend_on_the_number_of_threads():
    """Partial sums are added in block order, so 1 thread and 3 threads give the same bits."""
    config = numpy_bert.BertConfig.from_preset("mini", vocab_size=500, max_position_embeddings=64)
    batch = {**random_batch(config, 3, 64, np.random.default_rng(2)), "labelled_positions_only": True}
    results = []
    try:
        for threads in (1, 3):
            set_num_threads(threads)
            assert get_num_threads() == threads
            model = FastBertForPreTraining(config, seed=4)
            model.set_dropout_masks(KeyedMasks(8))
            results.append(outputs_and_gradients(*run_numpy(model, batch)))
    finally:
        set_num_threads(None)
    assert_close(results[1], results[0], 0.0, "3 threads vs 1 thread")
