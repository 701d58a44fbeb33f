"""The shipped ``python-docs`` model (numpy_bert/pretrained/python-docs): whole, a BERT that
transformers loads with equal logits, resolved by name wherever a model is accepted, and
better on the cloze set than the unigram baseline of its own vocabulary; pre-training and
fine-tuning start from it by name.

Float64 on both sides (the float16 weights are exact in float64): relative error <= 1e-10.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import numpy_bert
import torch_bert
from numpy_bert.checkpoint import PYTHON_DOCS_DIR, named_model_dir
from numpy_bert.cli.main import main
from numpy_bert.data.cloze import load_builtin_cloze
from numpy_bert.text.tokenization import BertTokenizer
from numpy_bert.training.cloze import model_ranker, score_cloze, unigram_ranker
from numpy_bert.training.export import check_manifest
from numpy_bert.training.pretraining import load_corpus_splits

from .compare import assert_close

TOLERANCE = 1e-10
SENTENCES = ["A list is a mutable [MASK].", "The [MASK] statement is used to import a module.",
             "Raise an exception if the file does not [MASK]."]


@pytest.fixture(scope="module")
def encoded():
    return dict(BertTokenizer.from_pretrained("python-docs")(SENTENCES, padding=True, return_tensors="np"))


def test_the_name_resolves_to_the_shipped_folder_unless_a_local_one_has_it(tmp_path, monkeypatch):
    assert named_model_dir("python-docs") == PYTHON_DOCS_DIR
    monkeypatch.chdir(tmp_path)
    (tmp_path / "python-docs").mkdir()
    assert named_model_dir("python-docs") == "python-docs", "a run folder of that name is the user's model"


def test_every_file_is_the_one_the_manifest_lists():
    check_manifest(PYTHON_DOCS_DIR)


def test_weights_are_float16_and_under_25_megabytes():
    from safetensors.numpy import load_file

    tensors = load_file(f"{PYTHON_DOCS_DIR}/model.safetensors")
    assert {str(t.dtype) for t in tensors.values()} == {"float16"}
    assert sum(t.nbytes for t in tensors.values()) < 25e6


def test_transformers_loads_it_with_equal_logits(encoded):
    """A BertForMaskedLM (exported from an MLM-only run), in transformers and in both backends."""
    assert json.loads(Path(PYTHON_DOCS_DIR, "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    reference, info = transformers.BertForMaskedLM.from_pretrained(
        PYTHON_DOCS_DIR, dtype=torch.float64, attn_implementation="eager", output_loading_info=True)
    assert not any(info.values()), info
    as_torch = {k: torch.from_numpy(v) for k, v in encoded.items()}
    with torch.no_grad():
        expected = {"logits": reference.eval()(**as_torch).logits}
    ours, info = numpy_bert.BertForMaskedLM.from_pretrained("python-docs", dtype=np.float64, output_loading_info=True)
    assert not (info.missing_keys or info.unexpected_keys or info.mismatched_keys), info
    twin = torch_bert.BertForMaskedLM.from_pretrained("python-docs", dtype=torch.float64).eval()
    with torch.no_grad():
        twin_logits = twin(**as_torch).logits
    assert_close({"logits": ours.eval()(**encoded).logits}, expected, TOLERANCE, "numpy_bert")
    assert_close({"logits": twin_logits}, expected, TOLERANCE, "torch_bert")


def test_the_pipelines_accept_the_name():
    for backend in (numpy_bert, torch_bert):
        predictions = backend.pipeline("fill-mask", model="python-docs")(SENTENCES[0], top_k=3)
        assert [p["sequence"].startswith("a list is a mutable") for p in predictions] == [True] * 3


def test_it_beats_the_unigram_baseline_on_the_cloze_set():
    fill = numpy_bert.pipeline("fill-mask", model="python-docs")
    items = load_builtin_cloze()
    _, trained = score_cloze(items, model_ranker(fill.predict, fill.tokenizer, 128), fill.tokenizer)
    _, unigram = score_cloze(items, unigram_ranker(fill.tokenizer, load_corpus_splits(None)[0]), fill.tokenizer)
    assert trained["top_k_accuracy"] > unigram["top_k_accuracy"] + 0.2, (trained, unigram)
    assert trained["top1_accuracy"] > unigram["top1_accuracy"] + 0.1, (trained, unigram)


def test_eval_reads_its_training_options(capsys):
    assert main(["eval", "python-docs", "--max-batches", "2"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "nsp_accuracy" not in metrics, "trained MLM-only: eval measures what it learned"
    assert metrics["mlm_accuracy"] > 0.2, metrics


def test_training_and_fine_tuning_start_from_it(tmp_path):
    from tests.test_training import write_tiny_corpus

    corpus = str(write_tiny_corpus(tmp_path / "corpus.txt"))
    run = tmp_path / "more"
    assert main(["train", "--out", str(run), "--init-from", "python-docs", "--no-nsp", "--corpus", corpus,
                 "--steps", "1", "--batch-size", "2", "--seq-len", "32", "--eval-batches", "1", "--no-progress",
                 "--no-plots"]) == 0
    assert BertTokenizer.from_pretrained(run).vocab == BertTokenizer.from_pretrained("python-docs").vocab
    rows = [json.dumps({"text": f"text number {i}", "label": "ab"[i % 2]}) for i in range(8)]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    assert main(["finetune", "--task", "classify", "--model", "python-docs", "--train", str(tmp_path / "train.jsonl"),
                 "--eval", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "classify"), "--steps", "1",
                 "--max-length", "16", "--no-progress"]) == 0
