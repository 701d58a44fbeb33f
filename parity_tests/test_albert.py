"""ALBERT: numpy_bert against torch_bert and against transformers' own AlbertForPreTraining, AlbertForMaskedLM
and AlbertModel (eager attention), in float64 to a relative error of 1e-10 per tensor, by name.

Loss, logits and every parameter's gradient, on padded batches (a fully padded row included) and on
hypothesis-drawn small configs: embedding_size against hidden_size, number of layers, of groups and
of layers per group (so shared layers of every pattern), activations, dropout (numpy_bert and
torch_bert draw the same masks; transformers is compared in evaluation mode). Weights travel through
checkpoint files in every direction, and the files' tensor names and values are checked exactly.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

import numpy_bert
import torch_bert
from numpy_bert import AlbertConfig
from numpy_bert.checkpoint import WEIGHTS_NAME, load_weights

from .builders import (
    copy_weights_to_torch,
    encoder_gradients,
    flatten_encoder_output,
    random_batch,
    same_dropout,
    to_torch,
)
from .compare import assert_close

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
OUTPUTS = ("loss", "mlm_loss", "sop_loss", "prediction_logits", "sop_logits", "logits")
REFERENCE_OUTPUTS = ("loss", "prediction_logits", "sop_logits", "logits")  # what transformers' outputs have


def albert_config(**overrides) -> AlbertConfig:
    fields = dict(vocab_size=67, embedding_size=10, hidden_size=16, num_hidden_layers=3, num_hidden_groups=2,
                  inner_group_num=2, num_attention_heads=4, intermediate_size=24, max_position_embeddings=48,
                  initializer_range=0.3)
    fields.update(overrides)
    return AlbertConfig(**fields)


@st.composite
def albert_configs(draw) -> AlbertConfig:
    heads = draw(st.sampled_from([1, 2, 4]))
    layers = draw(st.integers(1, 4))
    return AlbertConfig(
        vocab_size=draw(st.integers(5, 80)),
        # mostly != hidden_size; at least 3: a LayerNorm over 2 numbers returns ±1 whatever they are, so the
        # gradient into predictions.dense is 0 in exact arithmetic and both sides would hold only rounding
        embedding_size=draw(st.integers(3, 16)),
        hidden_size=max(heads * draw(st.sampled_from([1, 2, 4])), 4),
        num_hidden_layers=layers,
        num_hidden_groups=draw(st.integers(1, layers)),
        inner_group_num=draw(st.integers(1, 2)),
        num_attention_heads=heads,
        intermediate_size=draw(st.integers(4, 32)),
        hidden_act=draw(st.sampled_from(["gelu", "gelu_new"])),
        max_position_embeddings=64,
        type_vocab_size=draw(st.integers(1, 3)),
        initializer_range=draw(st.sampled_from([0.02, 0.2, 0.5])),  # larger weights: GELU off its linear part
        hidden_dropout_prob=draw(st.sampled_from([0.0, 0.1, 0.5])),
        attention_probs_dropout_prob=draw(st.sampled_from([0.0, 0.1, 0.5])),
        classifier_dropout_prob=draw(st.sampled_from([0.0, 0.1, 0.5])),
    )


def albert_batch(config: AlbertConfig, batch: int, length: int, seed: int, masked_lm: bool = False,
                 fully_padded_row: bool = False) -> dict:
    """parity_tests.builders' random batch, its pair label named as ALBERT names it (none for the masked LM)."""
    inputs = random_batch(config, batch, length, np.random.default_rng(seed), fully_padded_row)
    sentence_order_label = inputs.pop("next_sentence_label")
    return inputs if masked_lm else {**inputs, "sentence_order_label": sentence_order_label}


def numpy_run(model, batch) -> dict:
    model.zero_grad()
    out = model(**batch)
    model.backward()
    return {**{k: getattr(out, k) for k in OUTPUTS if getattr(out, k, None) is not None},
            **{f"grad:{name}": g for name, g in model.gradients().items()}}


def torch_run(model, batch) -> dict:
    """Outputs and gradients of a torch model (torch_bert's or transformers'); zeros where a parameter got none."""
    model.zero_grad()
    out = model(**to_torch(batch))
    out.loss.backward()
    return {**{k: getattr(out, k) for k in OUTPUTS if getattr(out, k, None) is not None},
            **{f"grad:{name}": torch.zeros_like(p) if p.grad is None else p.grad
               for name, p in model.named_parameters()}}


def comparable(flat: dict) -> dict:
    """What transformers reports too: its losses, logits and gradients (it has no mlm_loss / sop_loss)."""
    return {k: v for k, v in flat.items() if k.startswith("grad:") or k in REFERENCE_OUTPUTS}


def load_reference(folder, cls, dtype=np.float64):
    model, info = cls.from_pretrained(folder, attn_implementation="eager", dtype=TORCH_DTYPE[dtype],
                                      output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"transformers could not load every tensor cleanly: {problems}"
    return model.eval()


def exact_state(model) -> dict[str, np.ndarray]:
    """A model's parameters by name, as float64 arrays, for comparisons at tolerance 0."""
    return {name: np.asarray(p.detach().numpy() if hasattr(p, "detach") else p.data, dtype=np.float64)
            for name, p in model.named_parameters()}


# ---- numpy_bert vs torch_bert -------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(config=albert_configs(), masked_lm=st.booleans(), batch=st.integers(1, 4), length=st.integers(1, 24),
       seed=st.integers(0, 2**32 - 1), dropout=st.booleans(), gathered=st.booleans(), padded_row=st.booleans())
def test_numpy_and_torch_twins_agree(config, masked_lm, batch, length, seed, dropout, gathered, padded_row):
    """With dropout on, both draw the same masks, keyed by module name and call count, so a shared layer's
    dropout draws a fresh mask on each of its calls in both."""
    name = "AlbertForMaskedLM" if masked_lm else "AlbertForPreTraining"
    model = getattr(numpy_bert, name)(config, seed=1, dtype=np.float64)
    twin = getattr(torch_bert, name)(config, seed=0, dtype=torch.float64)
    copy_weights_to_torch(model, twin)
    same_dropout(model, twin, seed, dropout)
    inputs = {**albert_batch(config, batch, length, seed, masked_lm, padded_row), "labelled_positions_only": gathered}
    errors = assert_close(numpy_run(model, inputs), torch_run(twin, inputs), TOLERANCE[np.float64],
                          f"numpy_bert vs torch_bert, {name}")
    assert len(errors) >= len(model.state_dict()) + 2


# ---- against transformers -------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(config=albert_configs(), masked_lm=st.booleans(), batch=st.integers(1, 3), length=st.integers(1, 20),
       seed=st.integers(0, 2**32 - 1))
def test_numpy_checkpoint_in_transformers_and_torch_bert(config, masked_lm, batch, length, seed):
    """Saved by numpy_bert, loaded by transformers and by torch_bert: the same loss, logits and gradients."""
    name = "AlbertForMaskedLM" if masked_lm else "AlbertForPreTraining"
    model = getattr(numpy_bert, name)(config, seed=seed % 1000, dtype=np.float64).eval()
    inputs = albert_batch(config, batch, length, seed, masked_lm, fully_padded_row=batch > 1)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        reference = load_reference(folder, getattr(transformers, name))
        twin = getattr(torch_bert, name).from_pretrained(folder, dtype=torch.float64).eval()
    expected = torch_run(reference, inputs)
    mine = numpy_run(model, inputs)
    errors = assert_close(comparable(mine), expected, TOLERANCE[np.float64], f"numpy_bert vs transformers {name}")
    assert len(errors) == len(model.state_dict()) + (2 if masked_lm else 3)
    assert_close(comparable(torch_run(twin, inputs)), expected, TOLERANCE[np.float64],
                 f"torch_bert vs transformers {name}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", ["numpy_bert", "torch_bert"])
def test_checkpoint_in_transformers_pretraining(tmp_path, backend, dtype):
    """A fixed config with every kind of sharing (3 layers, 2 groups of 2 layers) and E != H, in both precisions."""
    config = albert_config()
    model = numpy_bert.AlbertForPreTraining(config, seed=7, dtype=dtype).eval()
    run = numpy_run
    if backend == "torch_bert":
        twin = torch_bert.AlbertForPreTraining(config, seed=0, dtype=TORCH_DTYPE[dtype]).eval()
        copy_weights_to_torch(model, twin)
        model, run = twin, torch_run
    model.save_pretrained(tmp_path)
    reference = load_reference(tmp_path, transformers.AlbertForPreTraining, dtype)
    batch = albert_batch(config, 4, 29, seed=3, fully_padded_row=True)
    assert_close(comparable(run(model, batch)), torch_run(reference, batch), TOLERANCE[dtype],
                 f"{backend} vs transformers ({np.dtype(dtype)})")


def reference_model(config: AlbertConfig, cls, folder, seed: int = 3):
    """A transformers model of our config (read from our config.json) with random weights, the MLM bias included."""
    config.save_pretrained(folder)
    torch.manual_seed(seed)
    model = cls(transformers.AlbertConfig.from_pretrained(folder, attn_implementation="eager")).to(torch.float64).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():  # transformers initialises biases to zero: make them count
            if name.endswith("bias"):
                param.normal_()
    return model


@pytest.mark.parametrize("name", ["AlbertForPreTraining", "AlbertForMaskedLM"])
def test_transformers_checkpoint_in_both_backends(tmp_path, name):
    config = albert_config(num_hidden_groups=1, inner_group_num=1)  # one layer run three times
    reference = reference_model(config, getattr(transformers, name), tmp_path / "config")
    reference.save_pretrained(tmp_path / "transformers")
    batch = albert_batch(config, 3, 21, seed=4, masked_lm=name == "AlbertForMaskedLM", fully_padded_row=True)
    expected = torch_run(reference, batch)
    for backend, dtype, run in ((numpy_bert, np.float64, numpy_run), (torch_bert, torch.float64, torch_run)):
        model, info = getattr(backend, name).from_pretrained(tmp_path / "transformers", dtype=dtype,
                                                             output_loading_info=True)
        assert not (info.missing_keys or info.unexpected_keys or info.mismatched_keys), info
        assert_close(exact_state(model), exact_state(reference), 0.0, f"{backend.__name__} {name}: loaded weights")
        assert_close(comparable(run(model.eval(), batch)), expected, TOLERANCE[np.float64],
                     f"{backend.__name__} {name} vs transformers")


def test_albert_model_against_transformers(tmp_path):
    """The encoder alone: every hidden state (the projected embeddings, then each AlbertLayer call), every
    attention map, the pooled output; then its gradient for arbitrary upstream gradients of both outputs."""
    config = albert_config()
    model = numpy_bert.AlbertModel(config, seed=4, dtype=np.float64).eval()
    model.save_pretrained(tmp_path)
    reference = load_reference(tmp_path, transformers.AlbertModel)
    batch = albert_batch(config, 3, 16, seed=5, fully_padded_row=True)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    mine = model(**inputs, output_attentions=True, output_hidden_states=True)
    theirs = reference(**to_torch(inputs), output_attentions=True, output_hidden_states=True)
    assert len(mine.hidden_states) == 1 + 3 * 2 and len(mine.attentions) == 3 * 2
    assert_close(flatten_encoder_output(mine), flatten_encoder_output(theirs), 1e-10, "AlbertModel vs transformers")

    assert_close(*encoder_gradients(model, reference, inputs), 1e-10, "AlbertModel gradients vs transformers")


# ---- the files ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["AlbertModel", "AlbertForMaskedLM", "AlbertForPreTraining"])
def test_checkpoint_round_trips_are_exact(tmp_path, name):
    """numpy_bert -> torch_bert -> transformers -> numpy_bert: every file holds transformers' tensor names (tied
    aliases left out, as transformers writes them) and every load reproduces the weights bit for bit."""
    config = albert_config()
    original = getattr(numpy_bert, name)(config, seed=9, dtype=np.float64)
    original.save_pretrained(tmp_path / "numpy")
    twin = getattr(torch_bert, name).from_pretrained(tmp_path / "numpy", dtype=torch.float64)
    twin.save_pretrained(tmp_path / "torch")
    reference = load_reference(tmp_path / "torch", getattr(transformers, name))
    reference.save_pretrained(tmp_path / "transformers")
    back, info = getattr(numpy_bert, name).from_pretrained(tmp_path / "transformers", dtype=np.float64,
                                                           output_loading_info=True)
    assert not (info.missing_keys or info.unexpected_keys or info.mismatched_keys), info
    files = {folder: load_file(tmp_path / folder / WEIGHTS_NAME) for folder in ("numpy", "torch", "transformers")}
    assert set(files["numpy"]) == set(files["torch"]) == set(files["transformers"]) == set(original.state_dict())
    for folder, tensors in files.items():
        assert_close(tensors, original.state_dict(), 0.0, f"{name}: the {folder} file")
    for loaded in (twin, reference, back):
        assert_close(exact_state(loaded), exact_state(original), 0.0, f"{name}: loaded by {type(loaded).__module__}")


def test_config_json_both_ways(tmp_path):
    """Our config.json is transformers' AlbertConfig (AutoConfig dispatches on model_type), and back."""
    config = albert_config(hidden_act="gelu", classifier_dropout_prob=0.25, bos_token_id=5, eos_token_id=6)
    config.save_pretrained(tmp_path / "ours")
    theirs = transformers.AutoConfig.from_pretrained(tmp_path / "ours")
    assert isinstance(theirs, transformers.AlbertConfig)
    fields = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
              "inner_group_num", "num_attention_heads", "intermediate_size", "hidden_act", "hidden_dropout_prob",
              "attention_probs_dropout_prob", "classifier_dropout_prob", "layer_norm_eps", "pad_token_id",
              "bos_token_id", "eos_token_id", "max_position_embeddings", "type_vocab_size")
    assert {f: getattr(theirs, f) for f in fields} == {f: getattr(config, f) for f in fields}
    theirs.save_pretrained(tmp_path / "theirs")
    back = AlbertConfig.from_pretrained(tmp_path / "theirs")
    assert {f: getattr(back, f) for f in fields} == {f: getattr(config, f) for f in fields}
    assert back.extra["tie_word_embeddings"] is True  # transformers' fields we do not model are kept


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_checkpoints_load_across_classes(tmp_path, backend):
    """As in transformers: an AlbertForPreTraining checkpoint fills AlbertModel and AlbertForMaskedLM (its
    other head ignored), and an encoder-only AlbertModel checkpoint fills a model with heads (new heads)."""
    package = numpy_bert if backend == "numpy" else torch_bert
    config = AlbertConfig(vocab_size=40, embedding_size=8, hidden_size=16, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=24)
    numpy_bert.AlbertForPreTraining(config, seed=3).save_pretrained(tmp_path / "pretraining")
    saved = load_weights(tmp_path / "pretraining")
    for name in ("AlbertModel", "AlbertForMaskedLM"):
        model, info = getattr(package, name).from_pretrained(tmp_path / "pretraining", output_loading_info=True)
        prefix = "albert." if name == "AlbertModel" else ""  # a bare encoder's names lack it, as in transformers
        for weight_name, param in model.named_parameters():
            value = param.detach().numpy() if backend == "torch" else param.data
            np.testing.assert_array_equal(value, saved[prefix + weight_name], err_msg=weight_name)
        assert info.unexpected_keys, f"{name} should have ignored the SOP head"
    numpy_bert.AlbertModel(config, seed=4).save_pretrained(tmp_path / "encoder")
    _, info = package.AlbertForPreTraining.from_pretrained(tmp_path / "encoder", output_loading_info=True)
    assert info.missing_keys and all(k.startswith(("predictions.", "sop_classifier.")) for k in info.missing_keys)
