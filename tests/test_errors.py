"""Bad input gets a ValueError that names the problem; a failed write never loses a checkpoint."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from numpy_bert import BertConfig, BertForPreTraining, BertModel
from numpy_bert import checkpoint as ckpt


@pytest.fixture(scope="module")
def config():
    return BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=16, max_position_embeddings=10, type_vocab_size=2)


@pytest.fixture(scope="module")
def model(config):
    return BertForPreTraining(config, seed=0)


IDS = np.array([[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_ids=np.array([[1, 20, 3]])),
     r"input_ids must lie in \[0, vocab_size=20\); found 20 at position \(0, 1\)"),
    (dict(input_ids=np.array([[-1, 2]])), r"found -1 at position \(0, 0\)"),
    (dict(input_ids=np.ones((1, 11), int)), "sequence length 11 exceeds max_position_embeddings"),
    (dict(input_ids=np.array([1, 2, 3])), r"shape \(batch, sequence\)"),
    (dict(input_ids=np.zeros((2, 0), int)), "sequence >= 1"),
    (dict(input_ids=np.array([[1.0, 2.0]])), "input_ids must hold integers"),
    (dict(input_ids=IDS, attention_mask=np.ones((2, 4))),
     r"attention_mask has shape \(2, 4\) but input_ids has \(2, 3\)"),
    (dict(input_ids=IDS, attention_mask=np.full((2, 3), 2)), r"attention_mask values must lie in \[0, 2\)"),
    (dict(input_ids=IDS, token_type_ids=np.ones((3, 3), int)), r"token_type_ids has shape \(3, 3\)"),
    (dict(input_ids=IDS, token_type_ids=np.full((2, 3), 2)), r"token_type_ids values must lie in \[0, 2\)"),
    (dict(input_ids=IDS, labels=np.zeros((2, 2), int)), r"labels has shape \(2, 2\), expected \(2, 3\)"),
    (dict(input_ids=IDS, labels=np.full((2, 3), 25)), r"labels must lie in \[0, 20\) or be -100"),
    (dict(input_ids=IDS, next_sentence_label=np.array([0, 2])), r"next_sentence_label must lie in \[0, 2\)"),
    (dict(input_ids=IDS, next_sentence_label=np.array([0])), r"next_sentence_label has shape \(1,\)"),
])
def test_bad_inputs_are_named(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model(**kwargs)


def test_backward_without_loss(model):
    model(IDS)
    with pytest.raises(ValueError, match="needs a forward call with labels"):
        model.backward()


@pytest.mark.parametrize("fields, message", [
    (dict(hidden_size=10, num_attention_heads=3),
     r"hidden_size \(10\) is not divisible by num_attention_heads \(3\)"),
    (dict(hidden_act="relu"), "hidden_act must be one of"),
    (dict(vocab_size=0), "vocab_size must be a positive integer"),
    (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob must be in \\[0, 1\\)"),
    (dict(pad_token_id=50, vocab_size=10), "pad_token_id 50 is outside"),
])
def test_bad_configs(fields, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(**fields)


def test_unknown_preset_and_dtype(config):
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        BertConfig.from_preset("huge")
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        BertModel(config, dtype=np.float16)


def test_config_json_round_trip_keeps_unknown_fields(tmp_path, config):
    config.replace(extra={"architectures": ["X"], "transformers_version": "5"}).save_pretrained(tmp_path)
    loaded = BertConfig.from_pretrained(tmp_path)
    assert loaded == config.replace(extra={"architectures": ["X"], "transformers_version": "5"})
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        BertConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="describes a 'gpt2' model, not a BERT"):
        BertConfig.from_pretrained(tmp_path)


def saved(model, folder, edit=None):
    model.save_pretrained(folder)
    if edit:
        tensors = ckpt.load_tensors(folder / "model.safetensors")
        edit(tensors)
        ckpt.save_tensors(folder / "model.safetensors", tensors)
    return folder


def test_missing_encoder_tensor_is_refused(tmp_path, model):
    folder = saved(model, tmp_path, lambda t: t.pop("bert.encoder.layer.0.output.dense.weight"))
    with pytest.raises(ValueError, match=r"'bert\.encoder\.layer\.0\.output\.dense\.weight' is missing"):
        BertForPreTraining.from_pretrained(folder)


def test_mis_shaped_tensor_is_refused(tmp_path, model):
    def shrink(t):
        t["bert.pooler.dense.bias"] = t["bert.pooler.dense.bias"][:4]
    folder = saved(model, tmp_path, shrink)
    with pytest.raises(ValueError, match=r"'bert.pooler.dense.bias' has shape \(4,\) in the checkpoint but \(8,\)"):
        BertForPreTraining.from_pretrained(folder)


def test_unknown_tensor_is_refused_but_other_heads_are_ignored(tmp_path, model, caplog):
    folder = saved(model, tmp_path, lambda t: t.update(surprise=np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="unexpected tensor 'surprise'"):
        BertForPreTraining.from_pretrained(folder)
    folder = saved(model, tmp_path / "ok")
    encoder, info = BertModel.from_pretrained(folder, output_loading_info=True)  # drops the cls.* heads
    assert info.unexpected_keys and all(k.startswith("cls.") for k in info.unexpected_keys)
    assert "ignored (the model has no such head)" in caplog.text
    np.testing.assert_array_equal(encoder.state_dict()["embeddings.word_embeddings.weight"],
                                  model.state_dict()["bert.embeddings.word_embeddings.weight"])


def test_strict_load_state_dict_lists_every_problem(model):
    state = dict(model.state_dict())
    state.pop("cls.predictions.bias")
    state["extra"] = np.zeros(1)
    state["bert.pooler.dense.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError) as err:
        model.load_state_dict(state)
    text = str(err.value)
    assert "missing tensor 'cls.predictions.bias'" in text and "unexpected tensor 'extra'" in text
    assert "'bert.pooler.dense.weight' has shape (2, 2), expected (8, 8)" in text


def test_corrupt_and_missing_files(tmp_path, model):
    with pytest.raises(ValueError, match="does not exist"):
        BertForPreTraining.from_pretrained(tmp_path / "nowhere")
    folder = saved(model, tmp_path / "run")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        BertForPreTraining.from_pretrained(folder)
    os.remove(folder / "model.safetensors")
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="numpy_bert never unpickles"):
        BertForPreTraining.from_pretrained(folder)


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, model, monkeypatch):
    folder = saved(model, tmp_path)
    before = (folder / "model.safetensors").read_bytes()

    def crash(*args):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        BertForPreTraining(model.config, seed=1).save_pretrained(folder)
    monkeypatch.undo()
    assert (folder / "model.safetensors").read_bytes() == before
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == [], "temporary files are cleaned up"
    BertForPreTraining.from_pretrained(folder)  # still loads


def test_legacy_gamma_beta_names_load(tmp_path, model):
    def rename(t):
        for key in [k for k in t if k.endswith("LayerNorm.weight")]:
            t[key.replace("LayerNorm.weight", "LayerNorm.gamma")] = t.pop(key)
    folder = saved(model, tmp_path, rename)
    loaded = BertForPreTraining.from_pretrained(folder)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)
