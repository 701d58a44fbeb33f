"""The fine-tuning heads: numpy_bert vs torch_bert, and both vs transformers' own classes.

For each head (sequence classification, also as regression; token classification
with ignored labels; span QA with clamped and ignored positions) the loss, the
logits and the gradient of every parameter, by name, must agree to a relative
error of 1e-10 in float64. The twins are compared with dropout on (both draw the
same KeyedMasks); transformers, in evaluation mode. Weights reach transformers
through save_pretrained/from_pretrained, and back, with no missing or unexpected keys.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from numpy_bert import BertConfig, KeyedMasks
from numpy_bert import heads as numpy_heads
from torch_bert import heads as torch_heads

from .builders import copy_weights_to_torch, run_numpy, run_torch, to_torch
from .compare import assert_close
from .test_transformers_reference import load_reference

TOLERANCE = 1e-10
OUTPUT_NAMES = ("loss", "logits", "start_logits", "end_logits")


def config(hidden_act="gelu", **fields) -> BertConfig:
    return BertConfig(vocab_size=97, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=40, max_position_embeddings=32, type_vocab_size=2, hidden_act=hidden_act,
                      initializer_range=0.3, **fields)


def inputs(rng: np.random.Generator, batch: int = 3, length: int = 11) -> dict[str, np.ndarray]:
    lengths = np.r_[length, rng.integers(2, length + 1, batch - 1)]
    return dict(input_ids=rng.integers(0, 97, (batch, length)),
                attention_mask=(np.arange(length)[None] < lengths[:, None]).astype(np.int64),
                token_type_ids=rng.integers(0, 2, (batch, length)))


def labels_for(head: str, rng: np.random.Generator, batch: dict, num_labels: int) -> dict[str, np.ndarray]:
    B, T = batch["input_ids"].shape
    if head == "regression":
        return {"labels": rng.standard_normal(B)}
    if head == "sequence":
        return {"labels": rng.integers(0, num_labels, B)}
    if head == "token":
        labels = np.where(batch["attention_mask"] == 1, rng.integers(0, num_labels, (B, T)), -100)
        labels[:, 0] = -100  # [CLS]
        return {"labels": labels}
    # QA: an ordinary span, one clamped to [CLS] (negative), one ignored (>= T)
    return {"start_positions": np.array([3, -7, T + 5])[:B], "end_positions": np.array([5, 2, T])[:B]}


HEADS = {  # name -> (class name, num_labels)
    "sequence": ("BertForSequenceClassification", 3),
    "regression": ("BertForSequenceClassification", 1),
    "token": ("BertForTokenClassification", 5),
    "qa": ("BertForQuestionAnswering", 2),
}


def build(backend, head: str, cfg: BertConfig, **kwargs):
    cls_name, num_labels = HEADS[head]
    if head == "qa":
        return getattr(backend, cls_name)(cfg, **kwargs)
    return getattr(backend, cls_name)(cfg, num_labels=num_labels, **kwargs)


def flat(out, grads) -> dict:
    result = {name: getattr(out, name) for name in OUTPUT_NAMES if getattr(out, name, None) is not None}
    result.update({f"grad:{name}": g for name, g in grads.items()})
    return result


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_numpy_vs_torch_with_dropout(head, hidden_act):
    cfg = config(hidden_act, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.1, classifier_dropout=0.3)
    numpy_model = build(numpy_heads, head, cfg, seed=1, dtype=np.float64)
    torch_model = build(torch_heads, head, cfg, seed=1, dtype=torch.float64)
    copy_weights_to_torch(numpy_model, torch_model)
    numpy_model.set_dropout_masks(KeyedMasks(5))
    torch_model.set_dropout_masks(KeyedMasks(5))
    rng = np.random.default_rng(2)
    batch = inputs(rng)
    batch.update(labels_for(head, rng, batch, HEADS[head][1]))
    errors = assert_close(flat(*run_numpy(numpy_model, batch)), flat(*run_torch(torch_model, batch)), TOLERANCE,
                          f"{head}: numpy_bert vs torch_bert")
    assert len(errors) >= 2 + len(numpy_model.state_dict())


def hf_config(cfg: BertConfig, num_labels: int) -> transformers.BertConfig:
    fields = {k: v for k, v in cfg.to_dict().items() if k not in ("id2label", "num_labels", "model_type")}
    return transformers.BertConfig(**fields, num_labels=num_labels)


@pytest.mark.parametrize("head", list(HEADS))
def test_both_backends_in_transformers(tmp_path, head):
    """numpy_bert's and torch_bert's checkpoints load cleanly into transformers' class and agree with it."""
    cls_name, num_labels = HEADS[head]
    cfg = config()
    rng = np.random.default_rng(3)
    batch = inputs(rng)
    batch.update(labels_for(head, rng, batch, num_labels))
    for backend, run, dtype in ((numpy_heads, run_numpy, np.float64), (torch_heads, run_torch, torch.float64)):
        model = build(backend, head, cfg, seed=4, dtype=dtype).eval()
        folder = tmp_path / backend.__name__
        model.save_pretrained(folder)
        reference = load_reference(folder, np.float64, getattr(transformers, cls_name))
        assert reference.config.num_labels == num_labels
        assert_close(flat(*run(model, batch)), flat(*run_torch(reference, batch)), TOLERANCE,
                     f"{head}: {backend.__name__} vs transformers")


@pytest.mark.parametrize("head", list(HEADS))
def test_transformers_checkpoint_in_both_backends(tmp_path, head):
    cls_name, num_labels = HEADS[head]
    torch.manual_seed(5)
    reference = getattr(transformers, cls_name)(hf_config(config("gelu_new"), num_labels)).to(torch.float64).eval()
    reference.save_pretrained(tmp_path)
    rng = np.random.default_rng(6)
    batch = inputs(rng, batch=3, length=9)
    batch.update(labels_for(head, rng, batch, num_labels))
    expected = flat(*run_torch(reference, batch))
    for backend, run, dtype in ((numpy_heads, run_numpy, np.float64), (torch_heads, run_torch, torch.float64)):
        model, info = getattr(backend, cls_name).from_pretrained(tmp_path, dtype=dtype, output_loading_info=True)
        assert not (info.missing_keys or info.unexpected_keys or info.mismatched_keys), info
        assert_close(flat(*run(model.eval(), batch)), expected, TOLERANCE, f"{head}: transformers -> {backend}")


def test_encoder_checkpoint_gets_new_heads(tmp_path):
    """A pre-training checkpoint loads into every head model: the head is new, the MLM/NSP heads ignored."""
    cfg = config()
    transformers.BertForPreTraining(hf_config(cfg, 2)).save_pretrained(tmp_path)
    expected_new = {"BertForSequenceClassification": ["classifier.bias", "classifier.weight"],
                    "BertForTokenClassification": ["classifier.bias", "classifier.weight"],
                    "BertForQuestionAnswering": ["qa_outputs.bias", "qa_outputs.weight"]}
    for backend in (numpy_heads, torch_heads):
        for cls_name, new in expected_new.items():
            _, info = getattr(backend, cls_name).from_pretrained(tmp_path, output_loading_info=True)
            assert info.missing_keys == new, (backend.__name__, cls_name)
            assert all(k.startswith(("cls.", "bert.pooler.")) for k in info.unexpected_keys)
            assert ("bert.pooler.dense.weight" in info.unexpected_keys) == (cls_name != "BertForSequenceClassification")


def test_forward_without_labels_matches_transformers_logits(tmp_path):
    """Inference only (no labels, no loss): logits still equal transformers', and backward() refuses."""
    model = numpy_heads.BertForTokenClassification(config(), num_labels=4, seed=8, dtype=np.float64).eval()
    model.save_pretrained(tmp_path)
    reference = load_reference(tmp_path, np.float64, transformers.BertForTokenClassification)
    batch = inputs(np.random.default_rng(9))
    mine = model(**batch)
    theirs = reference(**to_torch(batch))
    assert mine.loss is None and theirs.loss is None
    assert_close({"logits": mine.logits}, {"logits": theirs.logits}, TOLERANCE, "logits")
    with pytest.raises(ValueError, match="needs a forward call with labels"):
        model.backward()


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (2.0, 0.0)])
def test_distillation_loss_numpy_vs_torch(temperature, alpha):
    rng = np.random.default_rng(10)
    student, teacher = rng.standard_normal((6, 5)) * 3, rng.standard_normal((6, 5)) * 3
    labels = np.array([0, 4, -100, 2, 1, 3])
    loss, d_student = numpy_heads.distillation_loss(student, teacher, labels, temperature, alpha)
    student_t = torch.from_numpy(student).requires_grad_()
    loss_t = torch_heads.distillation_loss(student_t, torch.from_numpy(teacher), torch.from_numpy(labels),
                                           temperature, alpha)
    loss_t.backward()
    assert_close({"loss": loss, "grad": d_student}, {"loss": loss_t, "grad": student_t.grad}, TOLERANCE,
                 "distillation loss")
