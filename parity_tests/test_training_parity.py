"""Training trajectories: numpy_bert's trainer backend against torch_bert's, step by step.

Same initial weights (numpy_bert's, copied into torch_bert), the same masked batches
from the same example stream, dropout 0; 20 optimizer steps of AdamW with warm-up
and linear decay, layer-wise lr decay, gradient clipping (active on some steps) and
gradient accumulation over 2 micro-batches. The losses of every step, the gradient
norms, the final weights and AdamW's moments must agree (parity_tests/compare.py's
relative error): to 1e-10 in float64 (measured: 1.5e-15 for the AdamW moments), 1e-4 in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from numpy_bert.data.corpus import load_corpus
from numpy_bert.training.arguments import TrainingArguments
from numpy_bert.training.pretraining import NumpyBackend, model_config, train_tokenizer, training_stream
from parity_tests.compare import assert_close
from tests.test_training import write_micro_config, write_tiny_corpus
from torch_bert.training.pretraining import TorchBackend

STEPS = 20
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trajectory_args(folder, dtype: str) -> TrainingArguments:
    return TrainingArguments(
        out=str(folder / "run"), config=write_micro_config(folder), dropout=0.0, dtype=dtype, seq_len=32,
        batch_size=4, steps=STEPS, lr=1e-3, warmup=0.25, layerwise_lr_decay=0.9, clip=2.0, grad_accum=2,
        device="cpu",  # and fast=False: the readable numpy_bert model
    )


def relative_error(actual: list[float], expected: list[float]) -> float:
    actual, expected = np.array(actual), np.array(expected)
    return float(np.max(np.abs(actual - expected) / np.abs(expected)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_twenty_steps_agree(tmp_path, dtype):
    args = trajectory_args(tmp_path, dtype)
    corpus = load_corpus(write_tiny_corpus(tmp_path / "corpus.txt"))
    tokenizer = train_tokenizer(corpus, vocab_size=200)
    config = model_config(args, len(tokenizer))
    numpy_backend = NumpyBackend.create(config, args)
    torch_backend = TorchBackend.create(config, args)
    with torch.no_grad():  # numpy_bert's initial weights in both
        for name, param in torch_backend.model.named_parameters():
            param.copy_(torch.from_numpy(numpy_backend.model.state_dict()[name]))

    stream = training_stream(corpus, tokenizer, args)
    losses = {"numpy": [], "torch": []}
    norms = {"numpy": [], "torch": []}
    for _ in range(STEPS):
        batches = [next(stream) for _ in range(args.grad_accum)]
        for key, backend in (("numpy", numpy_backend), ("torch", torch_backend)):
            losses[key].append(backend.forward_backward(batches)["loss"])
            norms[key].append(backend.clip_gradients(args.clip))
            backend.optimizer_step()

    tolerance = TOLERANCE[dtype]
    assert any(n > args.clip for n in norms["numpy"]) and not all(n > args.clip for n in norms["numpy"]), \
        f"clipping should be active on some steps only: {norms['numpy']}"
    assert losses["numpy"][-1] < losses["numpy"][0], "the loss should go down"
    assert relative_error(losses["numpy"], losses["torch"]) <= tolerance, (losses["numpy"], losses["torch"])
    assert relative_error(norms["numpy"], norms["torch"]) <= tolerance, (norms["numpy"], norms["torch"])
    assert_close(numpy_backend.model.state_dict(), dict(torch_backend.model.named_parameters()), tolerance,
                 f"weights after {STEPS} steps ({dtype})")
    # The two backends name AdamW's moments alike in their checkpoints; compare those too.
    numpy_state, numpy_scalars = numpy_backend.training_state()
    torch_state, torch_scalars = torch_backend.training_state()
    torch_state = {k: v for k, v in torch_state.items() if not k.startswith("torch_rng.")}
    assert_close(numpy_state, torch_state, tolerance, f"AdamW moments after {STEPS} steps ({dtype})")
    assert set(numpy_scalars["optimizer"]["steps"].values()) == {STEPS}
    assert set(torch_scalars["optimizer"]["steps"].values()) == {float(STEPS)}
