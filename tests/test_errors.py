"""Bad input gets a ValueError that names the problem; a failed write never loses a checkpoint."""

from __future__ import annotations

import json
import os
import re
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from numpy_bert import checkpoint as ckpt
from numpy_bert.config import SUPPORTED_ACTIVATIONS as SUPPORTED
from numpy_bert.fast.model import FastBertForPreTraining


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
    (dict(input_ids=IDS, attention_mask=np.full((2, 3), 2)),
     r"attention_mask values must be 0 \(padding\) or 1 \(attend\); found 2 at position \(0, 0\)"),
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
    (dict(hidden_act="relu"), r"^hidden_act must be one of \('gelu', 'gelu_new'\), got 'relu' \(a str\)$"),
    (dict(vocab_size=0), r"^vocab_size must be a positive integer, got 0 \(an int\)$"),
    (dict(hidden_size="384"), r"^hidden_size must be a positive integer, got '384' \(a str\)$"),
    (dict(num_hidden_layers=3.0), r"^num_hidden_layers must be a positive integer, got 3.0 \(a float\)$"),
    (dict(num_labels=True), r"^num_labels must be a positive integer, got True \(a bool\)$"),
    (dict(hidden_dropout_prob=1.0), r"^hidden_dropout_prob must be a number in \[0, 1\), got 1.0 \(a float\)$"),
    (dict(attention_probs_dropout_prob=None),
     r"^attention_probs_dropout_prob must be a number in \[0, 1\), got None \(a NoneType\)$"),
    (dict(classifier_dropout="0.1"),
     r"^classifier_dropout must be null \(use hidden_dropout_prob\) or a number in \[0, 1\), got '0.1' \(a str\)$"),
    (dict(layer_norm_eps=float("inf")), r"^layer_norm_eps must be a positive finite number, got inf \(a float\)$"),
    (dict(initializer_range=0), r"^initializer_range must be a positive finite number, got 0 \(an int\)$"),
    (dict(pad_token_id=50, vocab_size=10), r"^pad_token_id 50 is outside \[0, vocab_size=10\)$"),
    (dict(pad_token_id=None), r"^pad_token_id must be an integer, got None \(a NoneType\)$"),
    (dict(id2label=["a", "b"]), r"^id2label must be a mapping of label ids to names, got \['a', 'b'\] \(a list\)$"),
    (dict(id2label={0: "a", 2: "b"}), r"^id2label must map 0..n-1 to names, got keys \[0, 2\]$"),
    (dict(id2label={0: "a", 1: 7}), r"^id2label\[1\] must be a name \(a string\), got 7 \(an int\)$"),
    (dict(id2label={0: "a", 1: "b", 2: "c"}), r"^id2label has 3 names but num_labels is 2$"),
])
def test_bad_configs(fields, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(**fields)


def test_config_fields_written_as_ints_are_numbers():
    config = BertConfig(layer_norm_eps=1, initializer_range=1, hidden_dropout_prob=0, classifier_dropout=0)
    assert config.layer_norm_eps == 1 and config.classifier_dropout == 0


# ---- bad configs, drawn: each field of a wrong type or out of its range ----------------------------

TINY = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
            max_position_embeddings=10, type_vocab_size=2)
NOT_A_NUMBER = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.lists(st.integers(), max_size=2))
REALS = st.floats(allow_nan=True, allow_infinity=True)
BAD_FIELD_VALUES = {
    **dict.fromkeys(["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "num_labels"],
                    st.one_of(NOT_A_NUMBER, st.integers(max_value=0), REALS)),
    **dict.fromkeys(["hidden_dropout_prob", "attention_probs_dropout_prob"],
                    st.one_of(NOT_A_NUMBER, REALS.filter(lambda p: not 0 <= p < 1), st.integers(1))),
    "classifier_dropout": st.one_of(st.booleans(), st.text(max_size=4), REALS.filter(lambda p: not 0 <= p < 1)),
    **dict.fromkeys(["layer_norm_eps", "initializer_range"],
                    st.one_of(NOT_A_NUMBER, REALS.filter(lambda x: not 0 < x < np.inf), st.integers(max_value=0))),
    "hidden_act": st.one_of(st.none(), st.integers(), st.text(max_size=8).filter(lambda a: a not in SUPPORTED)),
    "pad_token_id": st.one_of(NOT_A_NUMBER, REALS, st.integers().filter(lambda i: not 0 <= i < TINY["vocab_size"])),
    "id2label": st.one_of(st.text(max_size=3), st.lists(st.text(max_size=3), max_size=2),
                          st.dictionaries(st.integers(-3, 5), st.text(max_size=3), min_size=1).filter(
                              lambda d: sorted(d) != [0, 1]),
                          st.dictionaries(st.sampled_from([0, 1]), st.integers(), min_size=2)),
}
bad_fields = st.sampled_from(sorted(BAD_FIELD_VALUES)).flatmap(
    lambda name: st.tuples(st.just(name), BAD_FIELD_VALUES[name]))


@given(bad_fields)
@settings(max_examples=300, deadline=None)
def test_a_drawn_bad_field_is_named(field):
    name, value = field
    with pytest.raises(ValueError) as err:
        BertConfig(**{**TINY, name: value})
    assert str(err.value).startswith(name), str(err.value)


def json_key(key):  # JSON writes a dict's keys as strings, as transformers writes id2label
    return str(key) if isinstance(key, (int, float, bool)) or key is None else key


@given(bad_fields)
@settings(max_examples=200, deadline=None)
def test_a_drawn_bad_field_in_config_json_is_named_with_the_file(field):
    name, value = field
    if isinstance(value, dict):
        value = {json_key(k): v for k, v in value.items()}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "config.json")
        with open(path, "w") as f:
            json.dump({**BertConfig(**TINY).to_dict(), name: value}, f)
        with pytest.raises(ValueError) as err:
            BertConfig.from_pretrained(folder)
    assert str(err.value).startswith(f"{path}: {name}"), str(err.value)


def write_config(folder, data: bytes | dict) -> str:
    path = folder / "config.json"
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return str(path)


def test_config_json_names_the_file_and_the_field(tmp_path, config):
    path = write_config(tmp_path, {**config.to_dict(), "hidden_size": "384"})
    with pytest.raises(ValueError, match=rf"^{re.escape(path)}: hidden_size must be a positive integer, "
                                         r"got '384' \(a str\)$"):
        BertConfig.from_pretrained(tmp_path)
    path = write_config(tmp_path, {**config.to_dict(), "id2label": {"0": "a", "one": "b"}})
    with pytest.raises(ValueError, match=rf"^{re.escape(path)}: id2label keys must be the integers 0..n-1, "
                                         r"got 'one' \(a str\)$"):
        BertConfig.from_pretrained(tmp_path)


def test_config_json_nested_too_deeply_or_not_utf8(tmp_path):
    depth = 100_000
    path = write_config(tmp_path, b'{"a": ' + b"[" * depth + b"]" * depth + b"}")
    with pytest.raises(ValueError, match=rf"^{re.escape(path)}: nested too deeply \(arrays or objects"):
        BertConfig.from_pretrained(tmp_path)
    write_config(tmp_path, b'{"hidden_act": "gel\xff"}')
    with pytest.raises(ValueError, match=r"config\.json is not UTF-8 text: byte 0xff at offset 19 \(line 1\)"):
        BertConfig.from_pretrained(tmp_path)


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
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON \(Expecting property name "
                                         r"enclosed in double quotes at column 2\)"):
        BertConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match=r"config\.json: model_type is 'gpt2', not 'bert'"):
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


# ---- labels of the heads, and batches with nothing labelled ------------------------------------------

HEAD_IDS = np.array([[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("cls, kwargs, message", [
    (BertForSequenceClassification, dict(labels=np.array([0.0, 1.0])),
     r"^labels must hold integer class indices, got dtype float64$"),
    (BertForSequenceClassification, dict(labels=np.array([[0], [1]])), r"^labels has shape \(2, 1\), expected \(2,\)$"),
    (BertForSequenceClassification, dict(labels=np.array([0, 3])),
     r"^labels must lie in \[0, 3\) or be -100 \(ignored\); found 3 at position \(1,\)$"),
    (BertForTokenClassification, dict(labels=np.array([0, 1])), r"^labels has shape \(2,\), expected \(2, 3\)$"),
    (BertForTokenClassification, dict(labels=np.ones((2, 3), bool)),
     r"^labels must hold integer class indices, got dtype bool$"),
    (BertForQuestionAnswering, dict(start_positions=np.array([0, 1])),
     r"^the span loss needs both start_positions and end_positions; got only start_positions$"),
    (BertForQuestionAnswering, dict(start_positions=np.array([0, 1]), end_positions=np.array([1.0, 2.0])),
     r"^end_positions must hold integer token positions, got dtype float64$"),
    (BertForQuestionAnswering, dict(start_positions=np.array([0]), end_positions=np.array([1, 2])),
     r"^start_positions has shape \(1,\), expected \(2,\)$"),
])
def test_bad_head_labels_are_named(config, cls, kwargs, message):
    model = cls(config) if cls is BertForQuestionAnswering else cls(config, num_labels=3)
    with pytest.raises(ValueError, match=message):
        model(HEAD_IDS, **kwargs)


@pytest.mark.parametrize("labels, message", [
    (np.array(["1.5", "2"]), r"^labels must hold numbers \(regression, num_labels == 1\), got dtype <U3$"),
    (np.array([True, False]), r"^labels must hold numbers \(regression, num_labels == 1\), got dtype bool$"),
    (np.array([0.5, np.nan]), r"^labels must be finite; found nan at position \(1,\)$"),
    (np.array([0.5]), r"^labels has shape \(1,\), expected \(2,\)$"),
])
def test_bad_regression_targets_are_named(config, labels, message):
    with pytest.raises(ValueError, match=message):
        BertForSequenceClassification(config, num_labels=1)(HEAD_IDS, labels=labels)


def test_float_attention_masks_are_refused(config):
    model = BertModel(config).eval()
    with pytest.raises(ValueError, match=r"^attention_mask must hold 0 and 1 as bool or integers, got dtype float64 "
                                         r"\(a float mask is ambiguous: added to the scores, or multiplied\?\)$"):
        model(IDS, attention_mask=np.array([[1.0, 0.5, 1.0], [1.0, 1.0, 0.0]]))
    masks = [np.array([[1, 1, 0], [1, 0, 0]], dtype) for dtype in (bool, np.int8, np.uint8, np.int32, np.int64)]
    states = [model(IDS, attention_mask=mask).last_hidden_state for mask in masks]
    for other in states[1:]:  # bool or any integer dtype: the same mask
        np.testing.assert_array_equal(other, states[0])


UNLABELLED = r"^labels: no position is labelled \(all are -100\), so the mean loss is 0/0; " \
             r"give a training batch at least one label$"


@pytest.mark.parametrize("cls", [BertForPreTraining, FastBertForPreTraining])
@pytest.mark.parametrize("labelled_positions_only", [False, True])
def test_a_pretraining_batch_without_labels(config, cls, labelled_positions_only):
    """In training, a ValueError; in evaluation, NaN (as transformers), so loops can skip such a batch."""
    model = cls(config, seed=0).train()
    batch = dict(input_ids=IDS, labels=np.full(IDS.shape, -100), next_sentence_label=np.array([0, 1]),
                 labelled_positions_only=labelled_positions_only)
    with pytest.raises(ValueError, match=UNLABELLED):
        model(**batch)
    with pytest.raises(ValueError, match=r"^next_sentence_label: no position is labelled"):
        model(**{**batch, "labels": np.ones(IDS.shape, int), "next_sentence_label": np.array([-100, -100])})
    out = model.eval()(**batch)
    assert np.isnan(out.mlm_loss) and out.prediction_logits.shape[0] == (0 if labelled_positions_only else 2)


@pytest.mark.parametrize("cls, shape", [(BertForTokenClassification, (2, 3)), (BertForSequenceClassification, (2,))])
def test_a_head_batch_without_labels(config, cls, shape):
    model = cls(config, num_labels=3).train()
    with pytest.raises(ValueError, match=UNLABELLED):
        model(HEAD_IDS, labels=np.full(shape, -100))
    assert np.isnan(model.eval()(HEAD_IDS, labels=np.full(shape, -100)).loss)
