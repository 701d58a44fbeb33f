"""Both backends against transformers' own BertForPreTraining and BertModel (eager attention).

Two twins can share a bug; transformers is the outside reference. Weights travel
through checkpoint files in every direction (numpy_bert -> transformers,
torch_bert -> transformers, transformers -> both), so the file layout is tested
together with the maths. These tests run in CI: transformers is a test dependency.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import numpy_bert
import torch_bert

from .builders import (
    comparable_with_reference,
    encoder_gradients,
    flatten_encoder_output,
    outputs_and_gradients,
    random_batch,
    run_numpy,
    run_torch,
    to_torch,
)
from .compare import assert_close

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def load_reference(folder, dtype, cls=transformers.BertForPreTraining):
    model, info = cls.from_pretrained(folder, attn_implementation="eager", dtype=TORCH_DTYPE[dtype],
                                      output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"transformers could not load every tensor cleanly: {problems}"
    return model.eval()


def ours(run, model, batch) -> dict:
    return comparable_with_reference(outputs_and_gradients(*run(model, batch)))


def reference(model, batch) -> dict:
    return comparable_with_reference(outputs_and_gradients(*run_torch(model, batch)))


@pytest.fixture(params=["gelu", "gelu_new"])
def config(request):
    return numpy_bert.BertConfig(vocab_size=101, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=40, max_position_embeddings=48, type_vocab_size=2,
                                 hidden_act=request.param, initializer_range=0.3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_checkpoint_in_transformers(tmp_path, config, dtype):
    model = numpy_bert.BertForPreTraining(config, seed=11, dtype=dtype).eval()
    model.save_pretrained(tmp_path)
    hf_model = load_reference(tmp_path, dtype)
    batch = random_batch(config, 4, 33, np.random.default_rng(0), fully_padded_row=True)
    errors = assert_close(ours(run_numpy, model, batch), reference(hf_model, batch), TOLERANCE[dtype],
                          "numpy_bert vs transformers")
    assert len(errors) == 3 + len(model.state_dict())  # loss, two logits, every gradient


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torch_checkpoint_in_transformers(tmp_path, config, dtype):
    model = torch_bert.BertForPreTraining(config, seed=12, dtype=TORCH_DTYPE[dtype]).eval()
    model.save_pretrained(tmp_path)
    hf_model = load_reference(tmp_path, dtype)
    batch = random_batch(config, 3, 20, np.random.default_rng(1), fully_padded_row=True)
    assert_close(ours(run_torch, model, batch), reference(hf_model, batch), TOLERANCE[dtype],
                 "torch_bert vs transformers")


def test_transformers_checkpoint_in_both_backends(tmp_path, config):
    hf_config = transformers.BertConfig(**{k: v for k, v in config.to_dict().items()
                                           if k not in ("id2label", "num_labels", "model_type")})
    torch.manual_seed(3)
    hf_model = transformers.BertForPreTraining(hf_config).to(torch.float64).eval()
    with torch.no_grad():  # transformers initialises the MLM bias to zero: make it count
        hf_model.cls.predictions.bias.normal_()
    hf_model.save_pretrained(tmp_path)
    numpy_model = numpy_bert.BertForPreTraining.from_pretrained(tmp_path, dtype=np.float64).eval()
    torch_model = torch_bert.BertForPreTraining.from_pretrained(tmp_path, dtype=torch.float64).eval()
    batch = random_batch(config, 2, 40, np.random.default_rng(2))
    expected = reference(hf_model, batch)
    assert_close(ours(run_numpy, numpy_model, batch), expected, 1e-10, "numpy_bert")
    assert_close(ours(run_torch, torch_model, batch), expected, 1e-10, "torch_bert")


def test_bert_model_against_transformers(tmp_path, config):
    """The encoder alone: hidden states, pooled output and attention maps of every layer."""
    model = numpy_bert.BertModel(config, seed=4, dtype=np.float64).eval()
    model.save_pretrained(tmp_path)
    hf_model = load_reference(tmp_path, np.float64, transformers.BertModel)
    batch = random_batch(config, 3, 16, np.random.default_rng(5), fully_padded_row=True)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    mine = model(**inputs, output_attentions=True, output_hidden_states=True)
    theirs = hf_model(**to_torch(inputs), output_attentions=True, output_hidden_states=True)
    assert_close(flatten_encoder_output(mine), flatten_encoder_output(theirs), 1e-10, "BertModel vs transformers")

    # ... and the encoder's gradient for an arbitrary upstream gradient.
    assert_close(*encoder_gradients(model, hf_model, inputs), 1e-10, "BertModel gradients vs transformers")


def test_encoder_only_checkpoint_into_pretraining_model(tmp_path, config):
    """A BertModel checkpoint (no 'bert.' prefix) loads into BertForPreTraining: heads new, encoder equal."""
    encoder = transformers.BertModel(transformers.BertConfig(**{
        k: v for k, v in config.to_dict().items() if k not in ("id2label", "num_labels", "model_type")}))
    encoder.save_pretrained(tmp_path)
    for backend, dtype in ((numpy_bert, np.float64), (torch_bert, torch.float64)):
        model, info = backend.BertForPreTraining.from_pretrained(tmp_path, dtype=dtype, output_loading_info=True)
        assert all(name.startswith("cls.") for name in info.missing_keys) and info.missing_keys
        assert not info.unexpected_keys and not info.mismatched_keys
        loaded = {name: getattr(p, "data", p) for name, p in model.named_parameters()}
        expected = {"bert." + name: p for name, p in encoder.named_parameters()}
        assert_close({n: loaded[n] for n in expected}, expected, 0.0, f"{backend.__name__} encoder")



def test_all_ones_attention_mask_is_left_out_everywhere(tmp_path, config, monkeypatch):
    """A mask of all ones is no mask: numpy_bert and torch_bert build no additive mask for it (as
    transformers does, so that fused attention may take its mask-free kernel), build one as soon as a
    key is padding, and agree with transformers either way."""
    import numpy_bert.modeling
    import torch_bert.modeling

    built = []
    for module in (numpy_bert.modeling, torch_bert.modeling):
        original = module.additive_attention_mask
        monkeypatch.setattr(module, "additive_attention_mask",
                            lambda mask, dtype, original=original, name=module.__name__: built.append(name)
                            or original(mask, dtype))
    model = numpy_bert.BertModel(config, seed=4, dtype=np.float64).eval()
    model.save_pretrained(tmp_path)
    twin = torch_bert.BertModel.from_pretrained(tmp_path, dtype=torch.float64).eval()
    hf_model = load_reference(tmp_path, np.float64, transformers.BertModel)
    ids = np.random.default_rng(2).integers(0, config.vocab_size, (3, 7))
    padded = np.ones_like(ids)
    padded[1, 5:] = 0
    for mask, expected in ((np.ones_like(ids), []), (padded, ["numpy_bert.modeling", "torch_bert.modeling"])):
        built.clear()
        with torch.no_grad():
            outputs = {"numpy_bert": model(ids, attention_mask=mask).last_hidden_state,
                       "torch_bert": twin(torch.from_numpy(ids), torch.from_numpy(mask)).last_hidden_state.numpy()}
            reference_output = hf_model(torch.from_numpy(ids), torch.from_numpy(mask)).last_hidden_state.numpy()
        assert built == expected, f"additive masks built for {mask.tolist()}: {built}"
        for name, output in outputs.items():
            assert_close({"last_hidden_state": output}, {"last_hidden_state": reference_output}, 1e-10,
                         f"{name} vs transformers")
