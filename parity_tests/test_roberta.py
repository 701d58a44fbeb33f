"""RoBERTa: numpy_bert against torch_bert and against transformers' own RobertaForMaskedLM and RobertaModel.

float64, the same weights (copied by parameter name, or carried by checkpoint files in every direction),
padded batches whose padding is told by the *ids* (RoBERTa's position ids count non-<pad> tokens), and
hypothesis-drawn small configs: loss, logits and every parameter's gradient at relative error <= 1e-10
(parity_tests/compare.py), attention maps and hidden states of the encoder too. Dropout is compared
between the twins (KeyedMasks: both draw the same masks), and off against transformers. The checkpoint
tests check names and values exactly, including transformers' prefix and head rules: an encoder file
loads into the MLM model and back, and the roberta.pooler.* that MLM files carry is ignored and listed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import numpy_bert
import torch_bert
from numpy_bert import RobertaConfig

from .builders import copy_weights_to_torch, encoder_gradients, flatten_encoder_output, same_dropout, to_torch
from .compare import assert_close

TOLERANCE = 1e-10  # float64 relative error, per tensor
PAD = 1
TIED_ALIASES = ("grad:lm_head.decoder.weight", "grad:lm_head.decoder.bias")  # transformers lists them, as the same


@st.composite
def configs(draw):
    """Small RoBERTa configs; hidden >= 4 (see parity_tests/test_backends.py), pad_token_id 1 as RoBERTa has it
    or drawn, and sequences up to 20 tokens with room for the positions after the padding index."""
    heads = draw(st.sampled_from([1, 2, 4]))
    vocab_size = draw(st.integers(8, 80))
    pad_token_id = draw(st.sampled_from([PAD, 0, vocab_size - 1]))
    return RobertaConfig(
        vocab_size=vocab_size, hidden_size=max(heads * draw(st.sampled_from([2, 4, 8])), 4),
        num_hidden_layers=draw(st.integers(1, 2)), num_attention_heads=heads,
        intermediate_size=draw(st.integers(4, 32)), hidden_act=draw(st.sampled_from(["gelu", "gelu_new"])),
        max_position_embeddings=20 + pad_token_id + 1 + draw(st.integers(0, 3)),
        type_vocab_size=draw(st.integers(1, 2)), initializer_range=draw(st.sampled_from([0.02, 0.2, 0.5])),
        layer_norm_eps=draw(st.sampled_from([1e-12, 1e-5])), pad_token_id=pad_token_id,
        hidden_dropout_prob=draw(st.sampled_from([0.0, 0.1, 0.5])),
        attention_probs_dropout_prob=draw(st.sampled_from([0.0, 0.1, 0.5])))


def padded_batch(config: RobertaConfig, batch: int, length: int, seed: int, fully_padded_row: bool = False,
                 pad_inside: bool = True) -> dict[str, np.ndarray]:
    """Random ids, right padding of random length with <pad> ids (attention mask 0), <pad> ids inside rows too
    (mask 1, a text that spells <pad>), token types, and MLM labels (~30% counted, one always)."""
    rng = np.random.default_rng(seed)
    pad = config.pad_token_id
    ids = rng.integers(0, config.vocab_size, (batch, length))
    if not pad_inside:
        ids[ids == pad] = (pad + 1) % config.vocab_size
    lengths = rng.integers(1, length + 1, batch)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    if fully_padded_row:
        mask[-1] = 0
    ids[mask == 0] = pad
    labels = np.where(rng.random((batch, length)) < 0.3, rng.integers(0, config.vocab_size, (batch, length)), -100)
    labels[-1, 0] = rng.integers(0, config.vocab_size)
    return dict(input_ids=ids, attention_mask=mask, labels=labels,
                token_type_ids=rng.integers(0, config.type_vocab_size, (batch, length)))


def numpy_run(model, batch) -> dict:
    model.zero_grad()
    out = model(**batch)
    model.backward()
    return {"loss": out.loss, "logits": out.logits, **{f"grad:{n}": g for n, g in model.gradients().items()}}


def torch_run(model, batch) -> dict:
    model.zero_grad()
    out = model(**to_torch(batch))
    out.loss.backward()
    grads = {f"grad:{n}": (torch.zeros_like(p) if p.grad is None else p.grad) for n, p in model.named_parameters()}
    return {"loss": out.loss, "logits": out.logits, **{n: g for n, g in grads.items() if n not in TIED_ALIASES}}


def reference_model(folder, cls=transformers.RobertaForMaskedLM):
    model, info = cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float64,
                                      output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"transformers could not load every tensor cleanly: {problems}"
    return model.eval()


@settings(max_examples=20, deadline=None)
@given(config=configs(), batch=st.integers(1, 4), length=st.integers(1, 20), seed=st.integers(0, 2**32 - 1),
       dropout=st.booleans(), gathered=st.booleans())
def test_numpy_matches_torch(config, batch, length, seed, dropout, gathered):
    """The twins, with the same dropout masks or none, logits everywhere or only where labelled."""
    model = numpy_bert.RobertaForMaskedLM(config, seed=2, dtype=np.float64)
    twin = torch_bert.RobertaForMaskedLM(config, seed=0, dtype=torch.float64)
    copy_weights_to_torch(model, twin)
    same_dropout(model, twin, seed, dropout)
    inputs = {**padded_batch(config, batch, length, seed, fully_padded_row=batch > 1),
              "labelled_positions_only": gathered}
    errors = assert_close(numpy_run(model, inputs), torch_run(twin, inputs), TOLERANCE, "numpy_bert vs torch_bert")
    assert len(errors) == 2 + len(model.state_dict())


@settings(max_examples=15, deadline=None)
@given(config=configs(), batch=st.integers(1, 4), length=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_masked_lm_matches_transformers(tmp_path_factory, config, batch, length, seed):
    """Our checkpoint in transformers' RobertaForMaskedLM: nothing missing or left over, the same loss,
    logits and gradient for every parameter (its tied decoder aliases aside), a fully padded row included."""
    folder = tmp_path_factory.mktemp("roberta")
    model = numpy_bert.RobertaForMaskedLM(config, seed=seed % 1000, dtype=np.float64).eval()
    rng = np.random.default_rng(seed)
    for _, param in model.named_parameters():  # the MLM bias and the padding rows start at zero: make them count
        param.data += rng.normal(0, 0.1, param.shape)
    model.save_pretrained(folder)
    inputs = padded_batch(config, batch, length, seed, fully_padded_row=batch > 1)
    errors = assert_close(numpy_run(model, inputs), torch_run(reference_model(folder), inputs), TOLERANCE,
                          "numpy_bert vs transformers RobertaForMaskedLM")
    assert len(errors) == 2 + len(model.state_dict())


@pytest.fixture
def config():
    return RobertaConfig(vocab_size=90, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=40, max_position_embeddings=40, type_vocab_size=1, initializer_range=0.3,
                         layer_norm_eps=1e-5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def test_encoder_matches_transformers(tmp_path, config):
    """RobertaModel: hidden states, pooled output and every attention map, then the gradient of every
    parameter for arbitrary upstream gradients of both outputs."""
    model = numpy_bert.RobertaModel(config, seed=4, dtype=np.float64).eval()
    model.save_pretrained(tmp_path)
    reference = reference_model(tmp_path, transformers.RobertaModel)
    batch = padded_batch(config, 3, 17, seed=5, fully_padded_row=True)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    mine = model(**inputs, output_attentions=True, output_hidden_states=True)
    theirs = reference(**to_torch(inputs), output_attentions=True, output_hidden_states=True)
    assert_close(flatten_encoder_output(mine), flatten_encoder_output(theirs), TOLERANCE, "RobertaModel outputs")

    assert_close(*encoder_gradients(model, reference, inputs), TOLERANCE, "RobertaModel gradients")


def test_position_ids_are_transformers(config):
    ids = padded_batch(config, 4, 12, seed=8)["input_ids"]
    expected = transformers.models.roberta.modeling_roberta.RobertaEmbeddings.create_position_ids_from_input_ids(
        torch.from_numpy(ids), config.pad_token_id)
    for backend in (numpy_bert.roberta, torch_bert.roberta):
        got = backend.create_position_ids_from_input_ids(ids if backend is numpy_bert.roberta
                                                         else torch.from_numpy(ids), config.pad_token_id)
        np.testing.assert_array_equal(np.asarray(got), expected.numpy(), err_msg=backend.__name__)


def hf_config(config: RobertaConfig) -> transformers.RobertaConfig:
    return transformers.RobertaConfig(**{k: v for k, v in config.to_dict().items()
                                         if k not in ("id2label", "num_labels", "model_type")})


def values(model) -> dict:
    return {n: getattr(p, "data", p) for n, p in model.named_parameters()}


@pytest.mark.parametrize("saver", ["numpy_bert", "torch_bert", "transformers"])
def test_checkpoints_load_everywhere(tmp_path, config, saver):
    """A RobertaForMaskedLM saved by any of the three loads in the other two with every tensor, exactly."""
    model = numpy_bert.RobertaForMaskedLM(config, seed=7, dtype=np.float64)
    twin = torch_bert.RobertaForMaskedLM(config, seed=0, dtype=torch.float64)
    copy_weights_to_torch(model, twin)
    reference = transformers.RobertaForMaskedLM(hf_config(config)).double()
    result = reference.load_state_dict({n: torch.from_numpy(v) for n, v in model.state_dict().items()}, strict=False)
    assert set(result.missing_keys) <= {"lm_head.decoder.weight", "lm_head.decoder.bias"}  # tied aliases
    assert not result.unexpected_keys
    {"numpy_bert": model, "torch_bert": twin, "transformers": reference}[saver].save_pretrained(tmp_path)
    expected = model.state_dict()
    assert set(load_file(tmp_path / "model.safetensors")) >= set(expected)  # transformers' own names
    loaded = {
        "numpy_bert": numpy_bert.RobertaForMaskedLM.from_pretrained(tmp_path, dtype=np.float64,
                                                                    output_loading_info=True),
        "torch_bert": torch_bert.RobertaForMaskedLM.from_pretrained(tmp_path, dtype=torch.float64,
                                                                    output_loading_info=True),
    }
    for name, (loaded_model, info) in loaded.items():
        assert not (info.missing_keys or info.unexpected_keys or info.mismatched_keys), (name, info)
        assert_close(values(loaded_model), expected, 0.0, f"{saver}'s file in {name}")
    assert_close({n: v for n, v in values(reference_model(tmp_path)).items()}, expected, 0.0,
                 f"{saver}'s file in transformers")
    config_back = RobertaConfig.from_pretrained(tmp_path)
    assert config_back.replace(extra={}) == config and config_back.extra["architectures"] == ["RobertaForMaskedLM"]
    their_config = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(their_config).__name__ == "RobertaConfig"
    assert {k: getattr(their_config, k) for k in config.to_dict() if k not in ("model_type", "id2label")} == {
        k: v for k, v in config.to_dict().items() if k not in ("model_type", "id2label")}


def test_encoder_file_into_masked_lm_and_back(tmp_path, config):
    """transformers' prefix rules: a RobertaModel file (no prefix, a pooler) fills RobertaForMaskedLM's encoder
    and leaves the head new; a RobertaForMaskedLM file fills RobertaModel, whose pooler is new."""
    encoder = transformers.RobertaModel(hf_config(config)).double()
    encoder.save_pretrained(tmp_path / "encoder")
    expected = {"roberta." + n: p for n, p in encoder.named_parameters() if not n.startswith("pooler.")}
    for backend, dtype in ((numpy_bert, np.float64), (torch_bert, torch.float64)):
        model, info = backend.RobertaForMaskedLM.from_pretrained(tmp_path / "encoder", dtype=dtype,
                                                                 output_loading_info=True)
        assert info.missing_keys == ["lm_head.bias", "lm_head.dense.bias", "lm_head.dense.weight",
                                     "lm_head.layer_norm.bias", "lm_head.layer_norm.weight"], backend
        assert sorted(info.unexpected_keys) == ["pooler.dense.bias", "pooler.dense.weight"], backend
        assert_close({n: values(model)[n] for n in expected}, expected, 0.0, f"{backend.__name__} encoder")
        model.save_pretrained(tmp_path / backend.__name__)
        back, info = backend.RobertaModel.from_pretrained(tmp_path / backend.__name__, dtype=dtype,
                                                          output_loading_info=True)
        assert info.missing_keys == ["pooler.dense.bias", "pooler.dense.weight"], backend
        assert len(info.unexpected_keys) == 5 and all(n.startswith("lm_head.") for n in info.unexpected_keys)
        assert_close({"roberta." + n: v for n, v in values(back).items() if not n.startswith("pooler.")},
                     expected, 0.0, f"{backend.__name__} RobertaForMaskedLM file into RobertaModel")


def test_masked_lm_file_with_a_pooler(tmp_path, config):
    """MLM checkpoints such as roberta-base's also hold roberta.pooler.* (and old ones the position_ids buffer):
    both are ignored, the pooler listed, as transformers does."""
    model = numpy_bert.RobertaForMaskedLM(config, seed=3, dtype=np.float64)
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    rng = np.random.default_rng(0)
    tensors.update({"roberta.pooler.dense.weight": rng.standard_normal((24, 24)), "roberta.pooler.dense.bias":
                    np.zeros(24), "roberta.embeddings.position_ids": np.arange(40)[None, :]})
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    for backend, dtype in ((numpy_bert, np.float64), (torch_bert, torch.float64)):
        loaded, info = backend.RobertaForMaskedLM.from_pretrained(tmp_path, dtype=dtype, output_loading_info=True)
        assert sorted(info.unexpected_keys) == ["roberta.pooler.dense.bias", "roberta.pooler.dense.weight"]
        assert not info.missing_keys and not info.mismatched_keys
        assert_close(values(loaded), model.state_dict(), 0.0, backend.__name__)
    broken = {n: v for n, v in tensors.items() if n != "roberta.encoder.layer.1.output.dense.weight"}
    save_file(broken, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"'roberta\.encoder\.layer\.1\.output\.dense\.weight' is missing"):
        numpy_bert.RobertaForMaskedLM.from_pretrained(tmp_path)
