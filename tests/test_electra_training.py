"""``train --objective electra``: replaced-token detection through the trainer, on the toy corpus.

Covered: the run folder (the discriminator where a BERT run keeps its model, the generator in
generator/, both in checkpoints), both models load in transformers with every value exact and the
shared embeddings equal, the metrics rows (generator and discriminator losses, discriminator
accuracy) and the losses going down; a crash and --resume give bitwise the run that did not stop
(gradient accumulation and dropout on); bad options, each refused in one line with exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from numpy_bert import ElectraConfig, ElectraForPreTraining
from numpy_bert.checkpoint import load_tensors
from numpy_bert.cli.main import main
from numpy_bert.optim import build_optimizer
from numpy_bert.text.tokenization import BertTokenizer
from numpy_bert.training.arguments import BackendOptions
from numpy_bert.training.electra import ElectraNumpyBackend
from numpy_bert.training.pretraining import (
    NumpyBackend,
    computed_rows,
    load_corpus_splits,
    objective_backend,
    validation_batches,
)
from numpy_bert.training.run_folder import RunFolder
from tests.test_training import RESUME_OPTIONS, fail_on_call
from torch_bert.training.distributed import DistributedTorchBackend
from torch_bert.training.electra import ElectraTorchBackend
from torch_bert.training.pretraining import TorchBackend

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHARED = ("electra.embeddings.word_embeddings.weight", "electra.embeddings.position_embeddings.weight",
          "electra.embeddings.token_type_embeddings.weight", "electra.embeddings.LayerNorm.weight",
          "electra.embeddings.LayerNorm.bias")


@pytest.fixture(scope="module")
def electra_config(tmp_path_factory) -> str:
    """A discriminator of hidden size 32 with 16-wide embeddings (so both models project them)."""
    folder = tmp_path_factory.mktemp("electra-config")
    ElectraConfig(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=64).save_pretrained(folder)
    return str(folder)


def electra_args(out: Path, corpus: str, config: str, *extra: str) -> list[str]:
    return ["train", "--objective", "electra", "--out", str(out), "--corpus", corpus, "--config", config,
            "--vocab-size", "200", "--seq-len", "32", "--batch-size", "4", "--eval-batches", "2", "--no-progress",
            "--no-plots", *extra]


@pytest.fixture(scope="module")
def electra_run(tmp_path_factory, corpus, electra_config) -> Path:
    run = tmp_path_factory.mktemp("electra") / "run"
    argv = electra_args(run, corpus, electra_config, "--steps", "24", "--lr", "3e-3", "--log-every", "4",
                        "--eval-every", "8", "--checkpoint-every", "12", "--plots")
    assert main(argv) == 0
    return run


def test_run_folder_holds_both_models(electra_run):
    for file in ("args.json", "config.json", "model.safetensors", "vocab.txt", "generator/config.json",
                 "generator/model.safetensors", "checkpoint-24/model.safetensors",
                 "checkpoint-24/generator/config.json", "checkpoint-24/generator/model.safetensors",
                 "checkpoint-24/training_state.json"):
        assert (electra_run / file).is_file(), file
    assert not (electra_run / "checkpoint-12").exists(), "older checkpoints are removed, generator and all"
    assert (electra_run / "plots" / "loss.png").read_bytes().startswith(b"\x89PNG")
    args = json.loads((electra_run / "args.json").read_text())
    assert (args["objective"], args["task"], args["discriminator_weight"]) == ("electra", "mlm", 50.0)
    discriminator = json.loads((electra_run / "config.json").read_text())
    generator = json.loads((electra_run / "generator" / "config.json").read_text())
    assert discriminator["architectures"] == ["ElectraForPreTraining"] and discriminator["hidden_size"] == 32
    assert generator["architectures"] == ["ElectraForMaskedLM"] and generator["hidden_size"] == 8  # 1/4
    assert discriminator["embedding_size"] == generator["embedding_size"] == 16


def test_metrics_rows_and_the_losses_go_down(electra_run):
    rows = RunFolder(electra_run).read_metrics()
    train = [r for r in rows if r["split"] == "train"]
    validation = [r for r in rows if r["split"] == "validation"]
    assert [r["step"] for r in train] == [4, 8, 12, 16, 20, 24] and [r["step"] for r in validation] == [8, 16, 24]
    for row in train:
        assert row.keys() >= {"loss", "generator_loss", "discriminator_loss", "discriminator_accuracy", "grad_norm"}
        assert "mlm_loss" not in row and "nsp_loss" not in row
        assert row["loss"] == pytest.approx(row["generator_loss"] + 50 * row["discriminator_loss"], rel=1e-6)
        assert 0 <= row["discriminator_accuracy"] <= 1
    for row in validation:
        assert row.keys() >= {"loss", "mlm_loss", "mlm_accuracy", "perplexity", "discriminator_loss",
                              "discriminator_accuracy", "replaced_fraction"}
        assert 0 < row["replaced_fraction"] < 1
    assert validation[-1]["loss"] < validation[0]["loss"]
    assert validation[-1]["mlm_loss"] < validation[0]["mlm_loss"], "the generator learns"
    assert train[-1]["discriminator_loss"] < train[0]["discriminator_loss"], "the discriminator learns"


def test_torch_bert_trains_it_too(tmp_path, corpus, electra_config):
    """python -m torch_bert train --objective electra: the same run folder, loadable by numpy_bert."""
    run = tmp_path / "run"
    assert main(electra_args(run, corpus, electra_config, "--steps", "3", "--device", "cpu"), TorchBackend) == 0
    rows = [r for r in RunFolder(run).read_metrics() if r["split"] == "train"]
    assert rows and all(np.isfinite(r["discriminator_loss"]) for r in rows)
    numpy_backend = ElectraNumpyBackend.from_pretrained(run, BackendOptions())  # both models, sharing again
    assert numpy_backend.model.generator.electra.embeddings.word_embeddings.weight is (
        numpy_backend.model.discriminator.electra.embeddings.word_embeddings.weight)
    _, validation = load_corpus_splits(corpus)
    batches = validation_batches(validation, BertTokenizer.from_pretrained(run), 32, 4, "mlm", 2)
    logged = [r for r in RunFolder(run).read_metrics() if r["split"] == "validation"][-1]
    for backend in (numpy_backend, ElectraTorchBackend.from_pretrained(run, BackendOptions(device="cpu"))):
        metrics = backend.evaluate(batches)  # the run's own validation figures, from its saved models
        assert metrics["masked_tokens"] == logged["masked_tokens"]
        for key in ("loss", "mlm_loss", "discriminator_loss", "discriminator_accuracy", "replaced_fraction"):
            assert metrics[key] == pytest.approx(logged[key], rel=1e-4), (type(backend).__name__, key)


def test_transformers_loads_both_models(electra_run):
    files = {}
    for cls, folder in ((transformers.ElectraForPreTraining, electra_run),
                        (transformers.ElectraForMaskedLM, electra_run / "generator")):
        model, info = cls.from_pretrained(folder, output_loading_info=True)
        assert not any(info.values()), info
        theirs = model.state_dict()
        files[cls.__name__] = load_tensors(folder / "model.safetensors")
        for name, array in files[cls.__name__].items():
            np.testing.assert_array_equal(theirs[name].numpy(), array, err_msg=name)
    for name in SHARED:  # one set of parameters, saved in both files
        np.testing.assert_array_equal(files["ElectraForPreTraining"][name], files["ElectraForMaskedLM"][name])
    ids = torch.tensor([[2, 17, 40, 3]])
    assert model(input_ids=ids).logits.shape == (1, 4, 200)


def final_state(run: Path) -> tuple[bytes, bytes, bytes, list[dict]]:
    checkpoint = RunFolder(run).latest_checkpoint()
    return ((run / "model.safetensors").read_bytes(), (run / "generator" / "model.safetensors").read_bytes(),
            (checkpoint / "training_state.safetensors").read_bytes(), computed_rows(RunFolder(run).read_metrics()))


@pytest.mark.parametrize("backend", [NumpyBackend, TorchBackend], ids=["numpy_bert", "torch_bert-cpu"])
def test_resume_is_bitwise_identical(tmp_path, corpus, micro_config, monkeypatch, backend):
    """From a BERT config folder (the discriminator gets embedding_size = hidden_size), dropout on,
    gradient accumulation, checkpoints in the middle of a logging window; torch on CPU is bitwise too."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    options = (*RESUME_OPTIONS, *(["--device", "cpu"] if backend is TorchBackend else []))
    assert main(electra_args(straight, corpus, micro_config, *options), backend) == 0
    electra_backend = objective_backend(backend, "electra")
    with monkeypatch.context() as patch:  # killed during step 5: the last checkpoint is step 3
        fail_on_call(patch, electra_backend, "optimizer_step", 5, KeyboardInterrupt())
        assert main(electra_args(resumed, corpus, micro_config, *options), backend) == 130
    assert main(["train", "--out", str(resumed), "--resume", "--no-progress"], backend) == 0
    expected = final_state(straight)
    discriminator, generator, state, rows = final_state(resumed)
    assert discriminator == expected[0], "the resumed discriminator differs from the uninterrupted run's"
    assert generator == expected[1], "the resumed generator differs"
    assert state == expected[2], "the optimizer state differs"
    assert rows == expected[3], "metrics.jsonl differs"
    state_json = json.loads((RunFolder(resumed).latest_checkpoint() / "training_state.json").read_text())
    assert "sampling_rng" in state_json["backend_state"]


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("python -m ") and ": error: " in lines[-1], lines
    return lines[-1]


@pytest.mark.parametrize("options, message", [
    (["--objective", "bert"], "--objective: invalid choice: 'bert'"),
    (["--objective", "electra", "--generator-size", "0"], "--generator-size: must be in (0, 1]"),
    (["--objective", "electra", "--discriminator-weight", "-1"], "--discriminator-weight: must be a positive number"),
    (["--objective", "electra", "--fast"], "drop --fast"),
    (["--objective", "electra", "--init-from", "python-docs"], "drop --init-from"),
])
def test_bad_options(tmp_path, options, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), *options])
    assert exit_info.value.code == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_refusals_once_running(tmp_path, corpus, electra_config, capsys):
    """An ELECTRA config is not a BERT's; several processes (torchrun) are not for ELECTRA."""
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="in one process, not with DistributedTorchBackend"):
        objective_backend(DistributedTorchBackend, "electra")
    argv = [a for a in electra_args(run, corpus, electra_config) if a not in ("--objective", "electra")]
    assert main(argv, NumpyBackend) == 2
    assert "holds an ELECTRA config; train it with --objective electra" in one_line_error(capsys)
    assert not (run / "args.json").exists(), "no run to --resume was left behind"


def test_the_discriminator_learns_a_replacement_that_its_identity_gives_away():
    """The discriminator's whole path (embeddings, encoder, head, loss, backward, AdamW) learns when it can: tokens
    replaced by ids from another range are spotted after 150 steps (a contextual replacement takes far longer,
    which is why a short run on the corpus stays at the base rate: docs/family.md)."""
    rng = np.random.default_rng(0)
    config = ElectraConfig(vocab_size=100, embedding_size=32, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
    model = ElectraForPreTraining(config, seed=0)
    optimizer = build_optimizer(model, lr=1e-3)

    def batch():
        ids = rng.integers(0, 50, size=(32, 24))
        replaced = rng.random(ids.shape) < 0.15
        return np.where(replaced, ids + 50, ids), replaced.astype(np.int64)  # replacements: ids 50..99

    for _ in range(150):
        ids, labels = batch()
        model(ids, labels=labels)
        model.backward()
        optimizer.step()
        optimizer.zero_grad()
    ids, labels = batch()
    out = model(ids, labels=labels)
    accuracy = float(np.mean((out.logits > 0) == (labels == 1)))
    assert accuracy > 0.99, f"accuracy {accuracy:.3f} against the base rate {1 - labels.mean():.3f}"
