"""MLM-only pre-training (``train --no-nsp``): a batch without next_sentence_label.

The models keep transformers' outputs (``loss`` is None unless both label arrays are given;
``mlm_loss`` is there), and ``backward()`` differentiates ``mlm_loss``. Checked in float64 to
1e-10 by tensor name: the fast path against the readable one, numpy_bert against torch_bert, and
both against transformers' own masked-LM model, BertForMaskedLM (run_mlm.py's model), loaded
from our checkpoint. The pooler and the NSP head get no gradient at all (they are skipped by
AdamW, as torch skips a parameter whose .grad is None).
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
from numpy_bert.fast import FastBertForPreTraining

from .builders import copy_weights_to_torch, random_batch, to_torch
from .compare import assert_close
from .test_backends import configs

TOLERANCE = 1e-10  # float64 relative error, per tensor
NO_GRADIENT = ("bert.pooler.", "cls.seq_relationship.")  # what an MLM-only loss does not reach


def mlm_batch(config, batch, length, seed) -> dict:
    inputs = random_batch(config, batch, length, np.random.default_rng(seed))
    del inputs["next_sentence_label"]
    return inputs


def numpy_run(model, batch) -> dict:
    model.zero_grad()
    out = model(**batch)
    assert out.loss is None and out.nsp_loss is None  # transformers' outputs for labels alone
    model.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(grads[name] is None for name in grads if name.startswith(NO_GRADIENT)), "pooler/NSP got a gradient"
    return {"mlm_loss": out.mlm_loss, "prediction_logits": out.prediction_logits,
            **{f"grad:{name}": g for name, g in grads.items() if g is not None}}


def torch_run(model, batch, loss_name="mlm_loss") -> dict:
    model.zero_grad()
    out = model(**to_torch(batch))
    loss = getattr(out, loss_name)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return {"mlm_loss": loss, "prediction_logits": out.prediction_logits if hasattr(out, "prediction_logits")
            else out.logits, **{f"grad:{name}": g for name, g in grads.items()}}


@settings(max_examples=25, deadline=None)
@given(config=configs(), batch=st.integers(1, 4), length=st.integers(1, 48), seed=st.integers(0, 2**32 - 1),
       gathered=st.booleans())
def test_fast_and_torch_match_the_readable_model(config, batch, length, seed, gathered):
    inputs = {**mlm_batch(config, batch, length, seed), "labelled_positions_only": gathered}
    readable = numpy_bert.BertForPreTraining(config, seed=1, dtype=np.float64).eval()
    fast = FastBertForPreTraining(config, seed=1, dtype=np.float64).eval()
    twin = torch_bert.BertForPreTraining(config, seed=1, dtype=torch.float64).eval()
    copy_weights_to_torch(readable, twin)
    expected = numpy_run(readable, inputs)
    assert_close(numpy_run(fast, inputs), expected, TOLERANCE, "fast vs readable, MLM only")
    assert_close(torch_run(twin, inputs), expected, TOLERANCE, "torch_bert vs numpy_bert, MLM only")


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_against_transformers_masked_lm(tmp_path, hidden_act):
    """Our BertForPreTraining checkpoint in transformers' BertForMaskedLM: the same loss, logits and
    gradient for every parameter the masked-LM model has (it has no pooler and no NSP head)."""
    config = numpy_bert.BertConfig(vocab_size=101, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=40, max_position_embeddings=48, hidden_act=hidden_act,
                                   initializer_range=0.3)
    model = numpy_bert.BertForPreTraining(config, seed=3, dtype=np.float64).eval()
    model.save_pretrained(tmp_path)
    reference, info = transformers.BertForMaskedLM.from_pretrained(
        tmp_path, attn_implementation="eager", dtype=torch.float64, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    batch = mlm_batch(config, 3, 29, seed=5)
    theirs = torch_run(reference.eval(), batch, loss_name="loss")
    theirs = {k: v for k, v in theirs.items() if not k.startswith("grad:cls.predictions.decoder.")}  # tied aliases
    mine = numpy_run(model, batch)
    errors = assert_close(mine, theirs, TOLERANCE, "numpy_bert (MLM only) vs transformers BertForMaskedLM")
    assert len(errors) == 2 + sum(1 for name in model.state_dict() if not name.startswith(NO_GRADIENT))


# ---- BertForMaskedLM: the masked-LM model alone (what an MLM-only run exports) ----------------------------


def masked_lm_run(model, batch) -> dict:
    """numpy_bert's BertForMaskedLM: its loss, logits and every gradient, named as torch_run names them."""
    model.zero_grad()
    out = model(**batch)
    model.backward()
    return {"mlm_loss": out.loss, "prediction_logits": out.logits,
            **{f"grad:{name}": p.grad for name, p in model.named_parameters()}}


@settings(max_examples=20, deadline=None)
@given(config=configs(), batch=st.integers(1, 4), length=st.integers(1, 48), seed=st.integers(0, 2**32 - 1),
       gathered=st.booleans())
def test_masked_lm_model_matches_torch_and_the_pretraining_model(config, batch, length, seed, gathered):
    """BertForMaskedLM against its torch_bert twin, and against BertForPreTraining's MLM-only loss
    (the same weights under the same names: the masked-LM model is the pre-training model less two layers)."""
    inputs = {**mlm_batch(config, batch, length, seed), "labelled_positions_only": gathered}
    pretraining = numpy_bert.BertForPreTraining(config, seed=1, dtype=np.float64).eval()
    model = numpy_bert.BertForMaskedLM(config, seed=0, dtype=np.float64).eval()
    weights = pretraining.state_dict()
    for name, param in model.named_parameters():
        param.data = weights[name].copy()
    twin = torch_bert.BertForMaskedLM(config, seed=0, dtype=torch.float64).eval()
    copy_weights_to_torch(model, twin)
    expected = masked_lm_run(model, inputs)
    assert_close(numpy_run(pretraining, inputs), expected, TOLERANCE, "pre-training model, MLM only, vs masked LM")
    assert_close(torch_run(twin, inputs, loss_name="loss"), expected, TOLERANCE, "torch_bert vs numpy_bert, masked LM")


@pytest.mark.parametrize("backend", ["numpy_bert", "torch_bert"])
def test_masked_lm_model_against_transformers(tmp_path, backend):
    """Saved by either backend, loaded by transformers' BertForMaskedLM with nothing missing or left over:
    equal loss, logits and gradients; and the other way round."""
    config = numpy_bert.BertConfig(vocab_size=101, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=40, max_position_embeddings=48, initializer_range=0.3)
    model = numpy_bert.BertForMaskedLM(config, seed=3, dtype=np.float64).eval()
    if backend == "torch_bert":
        twin = torch_bert.BertForMaskedLM(config, seed=0, dtype=torch.float64)
        copy_weights_to_torch(model, twin)
        twin.save_pretrained(tmp_path)
    else:
        model.save_pretrained(tmp_path)
    reference, info = transformers.BertForMaskedLM.from_pretrained(
        tmp_path, attn_implementation="eager", dtype=torch.float64, output_loading_info=True)
    assert not any(info.values()), info
    batch = mlm_batch(config, 3, 29, seed=5)
    theirs = torch_run(reference.eval(), batch, loss_name="loss")
    theirs = {k: v for k, v in theirs.items() if not k.startswith("grad:cls.predictions.decoder.")}  # tied aliases
    errors = assert_close(masked_lm_run(model, batch), theirs, TOLERANCE, "numpy_bert BertForMaskedLM vs transformers")
    assert len(errors) == 2 + len(model.state_dict())
    reference.save_pretrained(tmp_path / "from-transformers")
    reloaded, info = numpy_bert.BertForMaskedLM.from_pretrained(tmp_path / "from-transformers", dtype=np.float64,
                                                               output_loading_info=True)
    assert not (info.missing_keys or info.unexpected_keys or info.mismatched_keys), info
    assert_close(masked_lm_run(reloaded.eval(), batch), theirs, TOLERANCE, "transformers' file in numpy_bert")
