"""DistilBERT: numpy_bert against torch_bert and against transformers' own DistilBertForMaskedLM and DistilBertModel.

float64, the same weights (loaded by parameter name, through checkpoint files where transformers is involved),
padded batches (one row entirely padding), hypothesis-drawn small configs: loss, logits and the gradient of
every parameter by name at relative error <= 1e-10 (parity_tests.compare). Dropout is compared with it on
between the twins (KeyedMasks: both draw the same masks), and off against transformers (torch's RNG).
Checkpoints go every way: numpy_bert and torch_bert to transformers and back, names and values exact.
The distillation loss's two new terms are held to the torch losses transformers' distiller uses.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy_bert
import torch_bert
from numpy_bert import DistilBertConfig
from numpy_bert.checkpoint import load_weights
from numpy_bert.distilbert import cosine_embedding_loss, soft_target_loss
from numpy_bert.layers import KeyedMasks
from numpy_bert.training.distillation import DistillationNumpyBackend

from .builders import copy_weights_to_torch, to_torch, torch_gradients
from .compare import assert_close

TOLERANCE = 1e-10
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@st.composite
def configs(draw) -> DistilBertConfig:
    heads = draw(st.sampled_from([1, 2, 4]))
    return DistilBertConfig(
        vocab_size=draw(st.integers(5, 100)), dim=max(4, heads * draw(st.sampled_from([2, 4, 8]))),  # not 2
        n_layers=draw(st.integers(1, 3)), n_heads=heads, hidden_dim=draw(st.integers(4, 40)),
        activation=draw(st.sampled_from(["gelu", "gelu_new"])), max_position_embeddings=48,
        initializer_range=draw(st.sampled_from([0.02, 0.2, 0.5])),  # larger weights: GELU off its linear part
        dropout=draw(st.sampled_from([0.0, 0.1, 0.5])), attention_dropout=draw(st.sampled_from([0.0, 0.1, 0.5])),
        tie_word_embeddings=draw(st.booleans()))


def mlm_batch(config: DistilBertConfig, batch: int, length: int, rng: np.random.Generator,
              fully_padded_row: bool = False) -> dict[str, np.ndarray]:
    """Random ids, right padding of random length (the last row all padding if asked), ~30% of labels counted."""
    lengths = rng.integers(1, length + 1, batch)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    if fully_padded_row:
        mask[-1] = 0
    labels = np.where(rng.random((batch, length)) < 0.3, rng.integers(0, config.vocab_size, (batch, length)), -100)
    labels[0, 0] = rng.integers(0, config.vocab_size)  # at least one counted label
    return dict(input_ids=rng.integers(0, config.vocab_size, (batch, length)), attention_mask=mask, labels=labels)


def flat(out, grads: dict) -> dict:
    return {"loss": out.loss, "logits": out.logits, **{f"grad:{name}": g for name, g in grads.items()}}


def numpy_run(model, batch) -> dict:
    model.zero_grad()
    out = model(**batch)
    model.backward()
    return flat(out, model.gradients())


def torch_run(model, batch) -> dict:
    model.zero_grad()
    out = model(**to_torch(batch))
    out.loss.backward()
    return flat(out, torch_gradients(model))


def twins(config: DistilBertConfig, cls_name: str = "DistilBertForMaskedLM", seed: int = 1):
    numpy_model = getattr(numpy_bert, cls_name)(config, seed=seed, dtype=np.float64)
    torch_model = getattr(torch_bert, cls_name)(config, seed=0, dtype=torch.float64)
    copy_weights_to_torch(numpy_model, torch_model)
    return numpy_model, torch_model


def reference(folder, cls=transformers.DistilBertForMaskedLM):
    """transformers' model from a checkpoint folder, eager attention, float64; every tensor loaded cleanly."""
    model, info = cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float64,
                                      output_loading_info=True)
    assert not any(info.values()), info
    return model.eval()


@settings(max_examples=25, deadline=None)
@given(config=configs(), batch=st.integers(1, 4), length=st.integers(1, 40), gathered=st.booleans(),
       padded_row=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_masked_lm_matches_torch_bert_and_transformers(config, batch, length, gathered, padded_row, seed):
    rng = np.random.default_rng(seed)
    inputs = mlm_batch(config, batch, length, rng, fully_padded_row=padded_row and batch > 1)
    model, twin = twins(config)

    # the twins in training mode: dropout on, the same masks, logits at every position or the labelled ones
    model.train().set_dropout_masks(KeyedMasks(seed))
    twin.train().set_dropout_masks(KeyedMasks(seed))
    both = {**inputs, "labelled_positions_only": gathered}
    expected = numpy_run(model, both)
    errors = assert_close(torch_run(twin, both), expected, TOLERANCE, "torch_bert vs numpy_bert, dropout on")
    assert len(errors) == 2 + len(model.state_dict())

    # transformers in evaluation mode, from numpy_bert's checkpoint
    model.eval()
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        theirs = torch_run(reference(folder), inputs)
    assert_close(numpy_run(model, inputs), theirs, TOLERANCE, "numpy_bert vs transformers DistilBertForMaskedLM")


def encoder_states(out) -> dict:
    """The last hidden state, every attention map and every hidden state, by name."""
    states = {"last_hidden_state": out.last_hidden_state}
    states.update({f"attentions.{i}": a for i, a in enumerate(out.attentions)})
    states.update({f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states)})
    return states


@pytest.mark.parametrize("activation", ["gelu", "gelu_new"])
def test_model_against_transformers(tmp_path, activation):
    """The encoder alone: every hidden state and attention map, then the gradient for an upstream gradient."""
    config = DistilBertConfig(vocab_size=90, dim=24, n_layers=2, n_heads=4, hidden_dim=40, max_position_embeddings=48,
                              activation=activation, initializer_range=0.3)
    model = numpy_bert.DistilBertModel(config, seed=4, dtype=np.float64).eval()
    model.save_pretrained(tmp_path)
    hf_model = reference(tmp_path, transformers.DistilBertModel)
    rng = np.random.default_rng(5)
    batch = mlm_batch(config, 3, 17, rng, fully_padded_row=True)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    mine = model(**inputs, output_attentions=True, output_hidden_states=True)
    theirs = hf_model(**to_torch(inputs), output_attentions=True, output_hidden_states=True)
    errors = assert_close(encoder_states(mine), encoder_states(theirs), TOLERANCE, "DistilBertModel vs transformers")
    assert len(errors) == 1 + config.n_layers + (config.n_layers + 1)  # last, attentions, embeddings + every block

    upstream = rng.standard_normal(mine.last_hidden_state.shape)
    model.zero_grad()
    model(**inputs)
    model.backward(upstream)
    (hf_model(**to_torch(inputs)).last_hidden_state * torch.from_numpy(upstream)).sum().backward()
    assert_close(model.gradients(), torch_gradients(hf_model), TOLERANCE, "DistilBertModel gradients")


@pytest.mark.parametrize("tied", [True, False])
def test_checkpoints_go_every_way(tmp_path, tied):
    """numpy_bert -> transformers -> numpy_bert and torch_bert: names and values exact, config.json both ways."""
    config = DistilBertConfig(vocab_size=60, dim=16, n_layers=2, n_heads=2, hidden_dim=24, max_position_embeddings=32,
                              tie_word_embeddings=tied, initializer_range=0.2)
    model = numpy_bert.DistilBertForMaskedLM(config, seed=3, dtype=np.float64)
    model.vocab_projector.bias.data[...] = np.random.default_rng(0).standard_normal(config.vocab_size)
    model.save_pretrained(tmp_path / "numpy")
    hf_config = transformers.DistilBertConfig.from_pretrained(tmp_path / "numpy")
    assert (hf_config.dim, hf_config.n_layers, hf_config.hidden_dim, hf_config.tie_word_embeddings) == (16, 2, 24, tied)
    hf_model = reference(tmp_path / "numpy")
    state = model.state_dict()
    hf_state = {n: p.detach().numpy() for n, p in hf_model.named_parameters()}
    assert set(hf_state) == set(state)  # the tied vocab_projector.weight is the embedding, listed once
    assert all(np.array_equal(hf_state[name], array) for name, array in state.items())

    hf_model.save_pretrained(tmp_path / "transformers")
    assert DistilBertConfig.from_pretrained(tmp_path / "transformers").replace(extra={}) == config
    for package, dtype in ((numpy_bert, np.float64), (torch_bert, torch.float64)):
        loaded, info = package.DistilBertForMaskedLM.from_pretrained(tmp_path / "transformers", dtype=dtype,
                                                                     output_loading_info=True)
        assert not (info.missing_keys or info.unexpected_keys or info.mismatched_keys), info
        loaded_state = {name: np.asarray(p.data) for name, p in loaded.named_parameters()}
        assert loaded_state.keys() == state.keys()
        assert all(np.array_equal(loaded_state[name], array) for name, array in state.items()), package.__name__

    twin = torch_bert.DistilBertForMaskedLM.from_pretrained(tmp_path / "numpy", dtype=torch.float64)
    twin.save_pretrained(tmp_path / "torch")
    again = numpy_bert.DistilBertForMaskedLM.from_pretrained(tmp_path / "torch", dtype=np.float64)
    assert all(np.array_equal(again.state_dict()[name], array) for name, array in state.items())


@pytest.mark.parametrize("package", [numpy_bert, torch_bert])
def test_checkpoints_load_across_classes(tmp_path, package):
    """As in transformers: a DistilBertForMaskedLM file's encoder into DistilBertModel (the head ignored and listed),
    a DistilBertModel file into DistilBertForMaskedLM (the head new and listed; refused where it must predict)."""
    config = DistilBertConfig(vocab_size=40, dim=8, n_layers=2, n_heads=2, hidden_dim=12, max_position_embeddings=16)
    numpy_bert.DistilBertForMaskedLM(config, seed=3).save_pretrained(tmp_path / "mlm")
    saved = load_weights(tmp_path / "mlm")
    encoder, info = package.DistilBertModel.from_pretrained(tmp_path / "mlm", output_loading_info=True)
    assert sorted(info.unexpected_keys) == sorted(name for name in saved if name.startswith("vocab_"))
    state = {name: np.asarray(p.data) for name, p in encoder.named_parameters()}
    assert state.keys() == {name.removeprefix("distilbert.") for name in saved if name.startswith("distilbert.")}
    assert all(np.array_equal(state[name.removeprefix("distilbert.")], array) for name, array in saved.items()
               if name.startswith("distilbert."))
    numpy_bert.DistilBertModel(config, seed=4).save_pretrained(tmp_path / "encoder")
    _, info = package.DistilBertForMaskedLM.from_pretrained(tmp_path / "encoder", output_loading_info=True)
    assert sorted(info.missing_keys) == [f"{layer}.{p}" for layer in ("vocab_layer_norm", "vocab_projector",
                                                                       "vocab_transform") for p in ("bias", "weight")
                                         if (layer, p) != ("vocab_projector", "weight")]  # that one is the table
    with pytest.raises(ValueError, match="has no masked-LM head"):
        DistillationNumpyBackend.from_pretrained(tmp_path / "encoder", None)


def test_torch_twin_with_fused_attention_equals_eager():
    config = DistilBertConfig(vocab_size=50, dim=16, n_layers=2, n_heads=4, hidden_dim=24, max_position_embeddings=32,
                              initializer_range=0.3)
    twin = torch_bert.DistilBertForMaskedLM(config, seed=2, dtype=torch.float64).eval()
    batch = to_torch(mlm_batch(config, 3, 12, np.random.default_rng(3)))
    eager = twin(**batch).logits
    twin.use_sdpa()
    assert_close({"logits": twin(**batch).logits}, {"logits": eager}, TOLERANCE, "sdpa vs eager")


@pytest.mark.parametrize("package", [numpy_bert, torch_bert])
def test_token_types_are_refused_in_one_line(package):
    config = DistilBertConfig(vocab_size=20, dim=8, n_layers=1, n_heads=2, hidden_dim=8, max_position_embeddings=8)
    model = package.DistilBertForMaskedLM(config)
    ids = np.array([[1, 2, 3]])
    ids = torch.from_numpy(ids) if package is torch_bert else ids
    with pytest.raises(ValueError, match=r"^DistilBERT has no token types .*leave token_type_ids out$"):
        model(ids, token_type_ids=ids * 0)


# ---- the distillation loss's two new terms against torch's --------------------------------------------


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(1, 6), classes=st.integers(2, 30), temperature=st.floats(0.5, 8),
       seed=st.integers(0, 2**32 - 1))
def test_soft_target_loss_is_the_distillers_kl(rows, classes, temperature, seed):
    """τ² KLDivLoss(log_softmax(s/τ), softmax(t/τ), batchmean), as transformers' distiller computes loss_ce."""
    rng = np.random.default_rng(seed)
    student, teacher = rng.standard_normal((rows, classes)) * 3, rng.standard_normal((rows, classes)) * 3
    loss, d_student = soft_target_loss(student, teacher, rng.integers(0, classes, rows), temperature)
    s = torch.from_numpy(student).requires_grad_()
    theirs = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.softmax(torch.from_numpy(teacher) / temperature, -1),
                      reduction="batchmean") * temperature**2
    theirs.backward()
    assert_close({"loss": loss, "grad": d_student}, {"loss": theirs, "grad": s.grad}, TOLERANCE, "KL term")


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 4), length=st.integers(1, 9), dim=st.integers(2, 12), seed=st.integers(0, 2**32 - 1))
def test_cosine_loss_is_torchs_cosine_embedding_loss(batch, length, dim, seed):
    """torch's CosineEmbeddingLoss (target 1) over the real positions, as the distiller's loss_cos. (dim >= 2:
    1-D vectors are always collinear, where the gradient is 0 in exact arithmetic and rounding noise here.)"""
    rng = np.random.default_rng(seed)
    student, teacher = rng.standard_normal((batch, length, dim)), rng.standard_normal((batch, length, dim))
    mask = (rng.random((batch, length)) < 0.7).astype(np.int64)
    mask[0, 0] = 1
    loss, d_student = cosine_embedding_loss(student, teacher, mask)
    s = torch.from_numpy(student).requires_grad_()
    real = torch.from_numpy(mask).bool()
    theirs = torch.nn.CosineEmbeddingLoss()(s[real], torch.from_numpy(teacher)[real],
                                             torch.ones(int(real.sum()), dtype=torch.float64))
    theirs.backward()
    assert_close({"loss": loss, "grad": d_student}, {"loss": theirs, "grad": s.grad}, TOLERANCE, "cosine term")
