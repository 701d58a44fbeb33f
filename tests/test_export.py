"""``train --no-nsp`` end to end, and ``export``: a run's model as float16 with a manifest of SHA-256 sums."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from numpy_bert import BertForMaskedLM
from numpy_bert.checkpoint import load_tensors, save_tensors
from numpy_bert.cli.main import main
from numpy_bert.text.tokenization import BertTokenizer
from numpy_bert.training.export import check_manifest
from numpy_bert.training.run_folder import RunFolder
from tests.test_faults import error_line, snapshot, train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory, corpus, micro_config) -> Path:
    run = tmp_path_factory.mktemp("mlm") / "run"
    assert main([*train_args(run, corpus, micro_config), "--no-nsp", "--mlm-probability", "0.2"]) == 0
    return run


@pytest.mark.parametrize("backend", ["numpy_bert", "torch_bert"])
def test_an_mlm_only_run_logs_no_nsp_figures(tmp_path, corpus, micro_config, backend):
    from torch_bert.training.pretraining import TorchBackend

    run = tmp_path / "run"
    extra = ["--device", "cpu"] if backend == "torch_bert" else ["--fast"]
    assert main([*train_args(run, corpus, micro_config), "--no-nsp", *extra],
                backend=TorchBackend if backend == "torch_bert" else None) == 0
    rows = RunFolder(run).read_metrics()
    assert rows and all("nsp_loss" not in r and "nsp_accuracy" not in r for r in rows)
    assert all(r["loss"] == r["mlm_loss"] for r in rows)
    assert RunFolder(run).read_args()["task"] == "mlm"
    environment = [json.loads(line) for line in (run / "environment.jsonl").read_text().splitlines()]
    assert environment[0]["step"] == 0 and "architecture" in environment[0]["blas"][0]


def test_eval_scores_any_model_on_packed_text(mlm_run, capsys):
    assert main(["eval", str(mlm_run), "--no-nsp", "--max-batches", "2"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(figures) == {"loss", "mlm_loss", "mlm_accuracy", "perplexity", "masked_tokens"}


def test_export_writes_float16_with_a_manifest_that_loads_everywhere(tmp_path, mlm_run, capsys):
    out = tmp_path / "shared"
    assert main(["export", str(mlm_run), str(out)]) == 0
    assert "manifest.json" in capsys.readouterr().out
    check_manifest(out)
    weights = load_tensors(out / "model.safetensors")
    assert {a.dtype for a in weights.values()} == {np.dtype(np.float16)}
    original = load_tensors(mlm_run / "model.safetensors")
    untrained = {k for k in original if k.startswith(("bert.pooler.", "cls.seq_relationship."))}
    assert untrained and set(weights) == set(original) - untrained, "an MLM-only run exports a BertForMaskedLM"
    assert all(np.array_equal(weights[k], original[k].astype(np.float16)) for k in weights)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    for name in ("args.json", "metrics.jsonl", "environment.jsonl", "vocab.txt", "tokenizer_config.json"):
        assert (out / name).is_file(), name

    # numpy_bert upcasts to float32; transformers, given float32, computes the same logits,
    # with nothing missing or left over.
    tokenizer = BertTokenizer.from_pretrained(out)
    encoding = tokenizer(["A list is a [MASK] of items."], return_tensors="np")
    mine = BertForMaskedLM.from_pretrained(out).eval()(**encoding).logits
    theirs, info = transformers.BertForMaskedLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager",
                                                                output_loading_info=True)
    assert not any(info.values()), info
    with torch.no_grad():
        reference = theirs.eval()(**{k: torch.from_numpy(v) for k, v in encoding.items()}).logits
    assert np.abs(mine - reference.numpy()).max() <= 1e-5 * np.abs(reference.numpy()).max()


def test_an_nsp_run_exports_its_whole_pretraining_model(tmp_path, trained_run):
    assert main(["export", str(trained_run), str(tmp_path / "shared"), "--dtype", "float32"]) == 0
    assert set(load_tensors(tmp_path / "shared" / "model.safetensors")) == set(
        load_tensors(trained_run / "model.safetensors"))


def test_an_mlm_run_from_a_pretrained_model_keeps_its_heads(tmp_path, trained_run, corpus, micro_config):
    """With --init-from, the pooler and NSP head may hold what the earlier model learned: not dropped."""
    run = tmp_path / "continued"
    assert main(["train", "--out", str(run), "--init-from", str(trained_run), "--no-nsp", "--corpus", corpus,
                 "--seq-len", "32", "--batch-size", "4", "--eval-batches", "1", "--steps", "1", "--no-progress",
                 "--no-plots"]) == 0
    assert main(["export", str(run), str(tmp_path / "shared")]) == 0
    assert "bert.pooler.dense.weight" in load_tensors(tmp_path / "shared" / "model.safetensors")


def test_a_changed_file_is_refused_by_the_manifest(tmp_path, mlm_run, capsys):
    out = tmp_path / "shared"
    assert main(["export", str(mlm_run), str(out), "--dtype", "float32"]) == 0
    (out / "vocab.txt").write_text((out / "vocab.txt").read_text() + "extra\n")
    with pytest.raises(ValueError, match=r"shared: vocab\.txt differ from manifest\.json; reinstall the model"):
        check_manifest(out)
    assert main(["export", str(mlm_run), str(out), "--dtype", "float32"]) == 2
    assert "already holds an export run" in error_line(capsys)
    assert main(["export", str(mlm_run), str(out), "--dtype", "float32", "--overwrite-output-dir"]) == 0
    check_manifest(out)


def test_export_refuses_a_foreign_folder_and_weights_beyond_float16(tmp_path, mlm_run, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    before = snapshot(foreign)
    assert main(["export", str(mlm_run), str(foreign)]) == 2
    assert "holds files this project did not write (notes.txt)" in error_line(capsys)
    assert snapshot(foreign) == before
    huge = tmp_path / "huge"
    huge.mkdir()
    for name in ("config.json", "vocab.txt"):
        (huge / name).write_bytes((mlm_run / name).read_bytes())
    tensors = load_tensors(mlm_run / "model.safetensors")
    tensors["cls.predictions.bias"] = tensors["cls.predictions.bias"] + 1e5
    save_tensors(huge / "model.safetensors", tensors)
    assert main(["export", str(huge), str(tmp_path / "out")]) == 2
    assert error_line(capsys).endswith("cls.predictions.bias holds values beyond float16's range (65504); "
                                       "export with --dtype float32")
    assert not (tmp_path / "out").exists()
