"""Shared set-up for parity tests and the parity report: twin models with the same weights,
and random batches that exercise padding, token types and ignored labels."""

from __future__ import annotations

import numpy as np
import torch

import numpy_bert
import torch_bert

NUMPY_TO_TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def copy_weights_to_torch(numpy_model, torch_model) -> None:
    """Copy every parameter by name (tied ones once, under their canonical name)."""
    state = numpy_model.state_dict()
    torch_params = dict(torch_model.named_parameters())
    assert set(torch_params) == set(state), set(torch_params) ^ set(state)
    with torch.no_grad():
        for name, param in torch_params.items():
            param.copy_(torch.from_numpy(state[name]))


def twin_models(config: numpy_bert.BertConfig, dtype=np.float64, seed: int = 0, cls_name="BertForPreTraining"):
    """A numpy_bert model and its torch_bert twin holding identical weights."""
    numpy_model = getattr(numpy_bert, cls_name)(config, seed=seed, dtype=dtype)
    torch_model = getattr(torch_bert, cls_name)(config, seed=seed, dtype=NUMPY_TO_TORCH_DTYPE[np.dtype(dtype)])
    copy_weights_to_torch(numpy_model, torch_model)
    return numpy_model, torch_model


def random_batch(config: numpy_bert.BertConfig, batch: int, length: int, rng: np.random.Generator,
                 fully_padded_row: bool = False) -> dict[str, np.ndarray]:
    """Random ids, right padding of random length, token types, MLM labels (~30% counted,
    the first row entirely ignored when batch > 1) and NSP labels."""
    ids = rng.integers(0, config.vocab_size, (batch, length))
    lengths = rng.integers(1, length + 1, batch)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    if fully_padded_row:
        mask[-1] = 0
    labels = np.where(rng.random((batch, length)) < 0.3, rng.integers(0, config.vocab_size, (batch, length)), -100)
    if batch > 1:
        labels[0] = -100
    labels[-1, 0] = rng.integers(0, config.vocab_size)  # at least one counted label
    return dict(
        input_ids=ids,
        attention_mask=mask,
        token_type_ids=rng.integers(0, config.type_vocab_size, (batch, length)),
        labels=labels,
        next_sentence_label=rng.integers(0, 2, batch),
    )


def to_torch(batch: dict) -> dict:
    """Arrays become tensors; flags (labelled_positions_only) pass through."""
    return {k: v if isinstance(v, bool) else torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


def torch_gradients(model) -> dict[str, torch.Tensor]:
    return {name: (torch.zeros_like(p) if p.grad is None else p.grad) for name, p in model.named_parameters()}


def run_numpy(model, batch):
    model.zero_grad()
    out = model(**batch)
    model.backward()
    return out, model.gradients()


def run_torch(model, batch):
    model.zero_grad()
    out = model(**to_torch(batch))
    out.loss.backward()
    return out, torch_gradients(model)


# transformers reports only the summed loss, and lists the tied decoder aliases as parameters.
REFERENCE_EXTRAS = ("mlm_loss", "nsp_loss", "grad:cls.predictions.decoder.weight", "grad:cls.predictions.decoder.bias")


def outputs_and_gradients(out, grads) -> dict:
    """One flat {name: array} of what parity compares: losses, logits and every gradient."""
    names = ("loss", "mlm_loss", "nsp_loss", "prediction_logits", "seq_relationship_logits")
    result = {name: getattr(out, name) for name in names if hasattr(out, name)}
    result.update({f"grad:{name}": g for name, g in grads.items()})
    return result


def comparable_with_reference(flat: dict) -> dict:
    """Drop the entries only one side has (REFERENCE_EXTRAS); everything else must match by name."""
    return {k: v for k, v in flat.items() if k not in REFERENCE_EXTRAS}


def flatten_encoder_output(out) -> dict:
    """BertModel outputs as {name: array}: last and pooled states, every hidden state and attention map."""
    flat = {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output}
    flat.update({f"attentions.{i}": a for i, a in enumerate(out.attentions or ())})
    flat.update({f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states or ())})
    return flat


def encoder_gradients(model, reference, inputs: dict, seed: int = 6) -> tuple[dict, dict]:
    """(numpy_bert's, the torch reference's) parameter gradients for the same random upstream gradients of
    last_hidden_state and pooler_output: ``model.backward(g_last, g_pool)`` against autograd through
    sum(last_hidden_state * g_last) + sum(pooler_output * g_pool). Both models hold the same weights."""
    mine = model(**inputs)
    rng = np.random.default_rng(seed)
    g_last, g_pool = rng.standard_normal(mine.last_hidden_state.shape), rng.standard_normal(mine.pooler_output.shape)
    model.zero_grad()
    model(**inputs)
    model.backward(g_last, g_pool)
    out = reference(**to_torch(inputs))
    ((out.last_hidden_state * torch.from_numpy(g_last)).sum()
     + (out.pooler_output * torch.from_numpy(g_pool)).sum()).backward()
    return model.gradients(), {n: p.grad for n, p in reference.named_parameters()}


def same_dropout(model, twin, seed: int, dropout: bool) -> None:
    """Twins (numpy_bert's, torch_bert's) with dropout on and the same masks (KeyedMasks: keyed by module name
    and call count), or with dropout off in both."""
    if dropout:
        model.set_dropout_masks(numpy_bert.KeyedMasks(seed))
        twin.set_dropout_masks(numpy_bert.KeyedMasks(seed))
    else:
        model.eval(), twin.eval()
