"""Both twins refuse the same bad tensors with the same ValueError, which names the argument;
and every config.json transformers writes for BERT still loads.

Hypothesis draws a valid batch for one model (pre-training or a head), spoils one argument
(its shape, its dtype or one value) and gives it to numpy_bert as NumPy arrays and to
torch_bert as tensors. The messages must be equal but for torch's "torch." in dtype names:
the checks are one set of functions (numpy_bert/modeling_utils.py) that both call.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy_bert
import torch_bert
from numpy_bert import BertConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_FIELDS = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                   max_position_embeddings=10, type_vocab_size=2)
CONFIG = BertConfig(**TINY_FIELDS)
MODELS = {  # kind -> (class name, extra constructor arguments)
    "pretraining": ("BertForPreTraining", {}),
    "sequence": ("BertForSequenceClassification", {"num_labels": 3}),
    "regression": ("BertForSequenceClassification", {"num_labels": 1}),
    "token": ("BertForTokenClassification", {"num_labels": 3}),
    "qa": ("BertForQuestionAnswering", {}),
}
TARGETS = {  # kind -> the arguments holding its targets
    "pretraining": ("labels", "next_sentence_label"),
    "sequence": ("labels",),
    "regression": ("labels",),
    "token": ("labels",),
    "qa": ("start_positions", "end_positions"),
}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture(scope="module")
def twins() -> dict[str, tuple]:
    """kind -> (numpy_bert model, torch_bert model), in evaluation mode (dropout plays no part here)."""
    return {kind: (getattr(numpy_bert, name)(CONFIG, **kwargs).eval(),
                   getattr(torch_bert, name)(CONFIG, **kwargs).eval())
            for kind, (name, kwargs) in MODELS.items()}


def valid_batch(kind: str, rng: np.random.Generator, B: int, T: int) -> dict[str, np.ndarray]:
    batch = {"input_ids": rng.integers(0, CONFIG.vocab_size, (B, T)),
             "attention_mask": np.ones((B, T), rng.choice([np.int64, np.int32, np.uint8, np.bool_])),
             "token_type_ids": rng.integers(0, CONFIG.type_vocab_size, (B, T))}
    targets = {
        "pretraining": lambda: {"labels": rng.integers(0, CONFIG.vocab_size, (B, T)),
                                "next_sentence_label": rng.integers(0, 2, B)},
        "sequence": lambda: {"labels": rng.integers(0, 3, B)},
        "regression": lambda: {"labels": rng.standard_normal(B)},
        "token": lambda: {"labels": rng.integers(0, 3, (B, T))},
        "qa": lambda: {"start_positions": rng.integers(0, T, B), "end_positions": rng.integers(0, T, B)},
    }[kind]()
    return {**batch, **targets}


# ---- what can be wrong with an argument -------------------------------------------------------


def wrong_shape(draw, name: str, array: np.ndarray) -> np.ndarray:
    if name == "input_ids":  # any other 2-D shape is a valid batch
        B, T = array.shape
        return np.zeros(draw(st.sampled_from([(B * T,), (B, T, 1), (B, 0), (B, CONFIG.max_position_embeddings + 1)])),
                        array.dtype)
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).filter(lambda s: tuple(s) != array.shape))
    return np.zeros(shape, array.dtype)


def wrong_dtype(draw, name: str, array: np.ndarray) -> np.ndarray:
    if name == "labels" and array.dtype.kind == "f":  # regression targets: numbers, not bool
        return array > 0
    dtype = np.float32 if name == "attention_mask" else draw(st.sampled_from([np.float32, np.float64, np.bool_]))
    return array.astype(dtype)


def wrong_value(draw, name: str, array: np.ndarray, kind: str) -> np.ndarray | None:
    """The array with one value out of range, or None where every integer is allowed (QA positions)."""
    if name in ("start_positions", "end_positions"):
        return None
    if kind == "regression" and name == "labels":
        bad = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    else:
        limit = {"input_ids": CONFIG.vocab_size, "attention_mask": 2, "token_type_ids": CONFIG.type_vocab_size,
                 "next_sentence_label": 2, "labels": CONFIG.vocab_size if kind == "pretraining" else 3}[name]
        bad = draw(st.one_of(st.integers(-1000, -1), st.integers(limit, 1000)).filter(lambda v: v != -100))
    spoiled = array.astype(np.float64 if kind == "regression" and name == "labels" else np.int64)  # room for bad
    spoiled[tuple(draw(st.integers(0, n - 1)) for n in array.shape)] = bad
    return spoiled


@st.composite
def spoiled_batches(draw):
    """(model kind, batch with one bad argument, that argument's name)."""
    kind = draw(st.sampled_from(sorted(MODELS)))
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, CONFIG.max_position_embeddings))
    batch = valid_batch(kind, np.random.default_rng(draw(st.integers(0, 2**32 - 1))), B, T)
    name = draw(st.sampled_from(INPUTS + TARGETS[kind]))
    how = draw(st.sampled_from(["shape", "dtype", "value"]))
    spoiled = {"shape": lambda: wrong_shape(draw, name, batch[name]),
               "dtype": lambda: wrong_dtype(draw, name, batch[name]),
               "value": lambda: wrong_value(draw, name, batch[name], kind)}[how]()
    if spoiled is None:
        spoiled = wrong_dtype(draw, name, batch[name])
    return kind, {**batch, name: spoiled}, name


def refusal(model, batch: dict) -> str:
    with pytest.raises(ValueError) as err:
        model(**batch)
    return str(err.value)


@given(spoiled_batches())
@settings(max_examples=150, deadline=None)
def test_both_twins_refuse_a_bad_argument_alike(twins, case):
    kind, batch, name = case
    numpy_model, torch_model = twins[kind]
    numpy_message = refusal(numpy_model, batch)
    torch_message = refusal(torch_model, {k: torch.from_numpy(v) for k, v in batch.items()})
    assert name in numpy_message, f"{name} spoiled, but the message is {numpy_message!r}"
    assert torch_message.replace("torch.", "") == numpy_message


@pytest.mark.parametrize("name", INPUTS)
def test_torch_bert_names_an_input_that_is_not_a_tensor(twins, name):
    batch = {k: torch.from_numpy(v) for k, v in valid_batch("token", np.random.default_rng(0), 2, 3).items()}
    with pytest.raises(ValueError, match=f"^{name} must be a torch.Tensor, got ndarray$"):
        twins["token"][1](**{**batch, name: batch[name].numpy()})


@pytest.mark.parametrize("kind", ["pretraining", "sequence", "token"])
def test_both_twins_refuse_a_training_batch_without_labels(twins, kind):
    """All labels -100: the mean loss is 0/0. In training that is a ValueError; in evaluation
    the loss is NaN, as in transformers, for loops that skip such batches."""
    batch = valid_batch(kind, np.random.default_rng(1), 2, 4)
    batch["labels"] = np.full_like(batch["labels"], -100)
    for model, arrays in zip(twins[kind], (batch, {k: torch.from_numpy(v) for k, v in batch.items()})):
        model.train()
        try:
            with pytest.raises(ValueError, match=r"^labels: no position is labelled \(all are -100\)"):
                model(**arrays)
        finally:
            model.eval()
        assert bool(torch.as_tensor(model(**arrays).loss).isnan())


def test_config_json_written_by_transformers_loads(tmp_path):
    hf = transformers.BertConfig(**TINY_FIELDS, id2label={0: "NEG", 1: "NEU", 2: "POS"}, classifier_dropout=0.2,
                                 problem_type="single_label_classification")
    hf.save_pretrained(tmp_path)
    config = BertConfig.from_pretrained(tmp_path)
    assert config.num_labels == 3 and config.id2label == {0: "NEG", 1: "NEU", 2: "POS"}
    assert config.classifier_dropout == 0.2 and config.extra["problem_type"] == "single_label_classification"
