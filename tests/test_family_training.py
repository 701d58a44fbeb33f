"""``train --architecture roberta|albert`` and the commands on the family's run folders, on the toy corpus.

Covered: RoBERTa (masked LM alone, packed) and ALBERT (MLM + sentence-order prediction; MLM alone with
--no-nsp) through the command line: their files, configs (the WordPiece vocabulary's special ids), metrics
rows (ALBERT's sop_loss/sop_accuracy where BERT has nsp_*) and falling losses; the exported models load in
transformers' RobertaForMaskedLM / AlbertForPreTraining with the same logits in float32; a crash and
--resume give bitwise the run that did not stop, in both backends; eval, fill-mask and export on RoBERTa,
ALBERT and ELECTRA run folders (ELECTRA: the generator fills masks, eval reports the discriminator);
fill-mask on a RoBERTa folder with a byte-level BPE tokenizer (vocab.json + merges.txt) answers as the
pipeline does, [MASK] read as <mask>;
every refusal in one line with exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import numpy_bert
from numpy_bert import AlbertConfig, AlbertForPreTraining, ElectraForMaskedLM, RobertaConfig, RobertaForMaskedLM
from numpy_bert.cli.main import main
from numpy_bert.config import PRESETS
from numpy_bert.layers import softmax
from numpy_bert.text.bpe_trainer import train_bpe
from numpy_bert.text.byte_level_bpe import RobertaTokenizer
from numpy_bert.text.tokenization import BertTokenizer
from numpy_bert.training.arguments import ARCHITECTURES, TrainingArguments
from numpy_bert.training.evaluation import format_metrics
from numpy_bert.training.pretraining import NumpyBackend, model_config
from numpy_bert.training.run_folder import RunFolder
from tests.test_training import RESUME_OPTIONS, fail_on_call, final_state
from torch_bert.training.distributed import DistributedTorchBackend
from torch_bert.training.pretraining import TorchBackend

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRANSFORMERS_CLASSES = {"roberta": transformers.RobertaForMaskedLM, "albert": transformers.AlbertForPreTraining}
NUMPY_CLASSES = {"roberta": RobertaForMaskedLM, "albert": AlbertForPreTraining}
TEXT = "A list is a [MASK] sequence."


def cpu(backend) -> list[str]:
    return ["--device", "cpu"] if backend is TorchBackend else []


@pytest.fixture(scope="module")
def family_args(corpus, micro_config):
    """``train`` arguments of a run of a second or so (the BERT micro config's sizes, read as the family's)."""

    def make(out: Path, *extra: str, backend=NumpyBackend) -> list[str]:
        return ["train", "--out", str(out), "--corpus", corpus, "--config", micro_config, "--vocab-size", "200",
                "--seq-len", "32", "--batch-size", "4", "--eval-batches", "2", "--no-progress", "--no-plots",
                *cpu(backend), *extra]

    return make


@pytest.fixture(scope="module")
def runs(tmp_path_factory, family_args) -> dict[str, Path]:
    """A RoBERTa and an ALBERT run of 24 steps (the ALBERT one draws its plots)."""
    folder = tmp_path_factory.mktemp("family")
    made = {}
    for architecture in ("roberta", "albert"):
        made[architecture] = folder / architecture
        argv = family_args(made[architecture], "--architecture", architecture, "--steps", "24", "--lr", "3e-3",
                           "--log-every", "4", "--eval-every", "8", "--checkpoint-every", "12",
                           *(["--plots"] if architecture == "albert" else []))
        assert main(argv) == 0
    return made


@pytest.fixture(scope="module")
def electra_run(tmp_path_factory, family_args) -> Path:
    run = tmp_path_factory.mktemp("electra") / "run"
    assert main(family_args(run, "--objective", "electra", "--steps", "6", "--eval-every", "6", "--plots")) == 0
    return run


# ---- the runs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture, task, model_class, pair", [
    ("roberta", "mlm", "RobertaForMaskedLM", None), ("albert", "sop", "AlbertForPreTraining", "sop")])
def test_run_folder_config_and_metrics(runs, architecture, task, model_class, pair):
    run = runs[architecture]
    for file in ("args.json", "config.json", "model.safetensors", "vocab.txt", "checkpoint-24/model.safetensors",
                 "checkpoint-24/training_state.json"):
        assert (run / file).is_file(), file
    args = json.loads((run / "args.json").read_text())
    assert (args["architecture"], args["task"]) == (architecture, task)
    config = json.loads((run / "config.json").read_text())
    tokenizer = BertTokenizer.from_pretrained(run)
    assert (config["model_type"], config["architectures"]) == (architecture, [model_class])
    assert (config["vocab_size"], config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (
        len(tokenizer), tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id)
    assert config["hidden_size"] == 32 and config["num_hidden_layers"] == 2  # the --config folder's sizes
    if architecture == "albert":
        assert (config["embedding_size"], config["num_hidden_groups"]) == (32, 1)  # min(128, hidden_size)
    rows = RunFolder(run).read_metrics()
    train = [r for r in rows if r["split"] == "train"]
    validation = [r for r in rows if r["split"] == "validation"]
    assert [r["step"] for r in validation] == [8, 16, 24]
    assert not any("nsp_loss" in r or "nsp_accuracy" in r for r in rows), "no NSP head in either"
    for row in train:
        if pair:
            assert row["loss"] == pytest.approx(row["mlm_loss"] + row["sop_loss"], rel=1e-6)
        else:
            assert row["loss"] == row["mlm_loss"] and "sop_loss" not in row
    for row in validation:
        assert ("sop_accuracy" in row) == ("sop_loss" in row) == bool(pair)
        assert row["perplexity"] == pytest.approx(np.exp(row["mlm_loss"]))
    assert validation[-1]["mlm_loss"] < validation[0]["mlm_loss"] and train[-1]["loss"] < train[0]["loss"]
    if pair:
        assert "SOP accuracy" in format_metrics(validation[-1])
        assert (run / "plots" / "accuracy.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("architecture", ["roberta", "albert"])
def test_export_loads_in_transformers_with_the_same_logits(runs, tmp_path, architecture, capsys):
    out = tmp_path / "export"
    assert main(["export", str(runs[architecture]), str(out), "--dtype", "float32"]) == 0
    theirs, info = TRANSFORMERS_CLASSES[architecture].from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    ours = NUMPY_CLASSES[architecture].from_pretrained(out).eval()
    tokenizer = BertTokenizer.from_pretrained(out)
    batch = tokenizer(["A list is a mutable sequence.", "The class returns a new object when called."],
                      padding=True, return_tensors="np")  # a padded row
    with torch.no_grad():
        expected = theirs.eval()(**{k: torch.from_numpy(v) for k, v in batch.items()})
    got = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    if architecture == "albert":
        np.testing.assert_allclose(got.prediction_logits, expected.prediction_logits.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.sop_logits, expected.sop_logits.numpy(), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(got.logits, expected.logits.numpy(), rtol=1e-5, atol=1e-5)
    assert main(["eval", str(out)]) == 0  # eval reads the export's args.json: the same figures as the run
    logged = [r for r in RunFolder(runs[architecture]).read_metrics() if r["split"] == "validation"][-1]
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["mlm_loss"] == pytest.approx(logged["mlm_loss"], rel=1e-6)


def test_albert_without_sop_and_family_config_folders(tmp_path, family_args):
    """--no-nsp trains AlbertForMaskedLM; a config folder of model_type roberta/albert picks the architecture
    (its embedding_size kept); a RoBERTa's positions start after the padding index."""
    masked = tmp_path / "albert-mlm"
    assert main(family_args(masked, "--architecture", "albert", "--no-nsp", "--steps", "2")) == 0
    assert json.loads((masked / "config.json").read_text())["architectures"] == ["AlbertForMaskedLM"]
    assert not any("sop_loss" in r for r in RunFolder(masked).read_metrics())
    for config in (AlbertConfig(hidden_size=32, embedding_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64),
                   RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 max_position_embeddings=34)):
        config.save_pretrained(tmp_path / config.model_type)
        run = tmp_path / f"run-{config.model_type}"
        argv = family_args(run, "--steps", "2")
        argv[argv.index("--config") + 1] = str(tmp_path / config.model_type)
        assert main(argv) == 0
        args, saved = (json.loads((run / name).read_text()) for name in ("args.json", "config.json"))
        assert args["architecture"] == saved["model_type"] == config.model_type
        assert saved["pad_token_id"] == 0, "the WordPiece [PAD], not RoBERTa's <pad> = 1"
        if config.model_type == "albert":
            assert (args["task"], saved["embedding_size"]) == ("sop", 16)


@pytest.mark.parametrize("preset", ["tiny", "mini"])
def test_presets_read_through_the_family_config(runs, preset):
    """A preset's sizes with the family class's own defaults (ALBERT's: no dropout, gelu_new, one group)."""
    tokenizer = BertTokenizer.from_pretrained(runs["albert"])
    albert = model_config(TrainingArguments(out="r", architecture="albert", config=preset), len(tokenizer), tokenizer)
    assert isinstance(albert, AlbertConfig) and albert.hidden_size == PRESETS[preset][1]
    assert (albert.embedding_size, albert.num_hidden_groups) == (min(128, albert.hidden_size), 1)
    assert (albert.hidden_act, albert.hidden_dropout_prob, albert.pad_token_id) == ("gelu_new", 0.0, 0)
    roberta = model_config(TrainingArguments(out="r", architecture="roberta", config=preset, dropout=0.2),
                           len(tokenizer), tokenizer)
    assert isinstance(roberta, RobertaConfig) and roberta.hidden_size == albert.hidden_size
    assert (roberta.pad_token_id, roberta.bos_token_id, roberta.eos_token_id, roberta.hidden_dropout_prob) == (
        tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id, 0.2)


# ---- resume ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [NumpyBackend, TorchBackend], ids=["numpy_bert", "torch_bert-cpu"])
@pytest.mark.parametrize("architecture", ["roberta", "albert"])
def test_resume_is_bitwise_identical(tmp_path, family_args, monkeypatch, architecture, backend):
    """Dropout on, gradient accumulation, checkpoints in the middle of a logging window (tests/test_training.py)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    options = ("--architecture", architecture, *RESUME_OPTIONS)
    assert main(family_args(straight, *options, backend=backend), backend) == 0
    with monkeypatch.context() as patch:  # killed during step 5: the last checkpoint is step 3
        fail_on_call(patch, backend, "optimizer_step", 5, KeyboardInterrupt())
        assert main(family_args(resumed, *options, backend=backend), backend) == 130
    assert main(["train", "--out", str(resumed), "--resume", "--no-progress"], backend) == 0
    weights, state, rows = final_state(resumed)
    expected = final_state(straight)
    assert weights == expected[0], "the resumed weights differ from the uninterrupted run's"
    assert state == expected[1], "the optimizer/RNG state differs"
    assert rows == expected[2], "metrics.jsonl differs"
    assert json.loads((resumed / "args.json").read_text())["architecture"] == architecture


def test_an_args_json_from_before_architecture_resumes_as_its_run(micro_config):
    """An older args.json lacks "architecture": its run's own options decide it, not the command line's default."""
    saved = TrainingArguments(out="run", config=micro_config, objective="electra").to_dict()
    del saved["architecture"]
    resumed = TrainingArguments(out="run").resumed_from(saved, explicit={"out"})
    assert (resumed.objective, resumed.architecture) == ("electra", None)
    albert = TrainingArguments(out="run", architecture="albert")
    assert TrainingArguments.from_dict(albert.to_dict()) == albert and albert.task == "sop"
    assert ARCHITECTURES == ("bert", "roberta", "albert")


# ---- eval, fill-mask and export on the run folders -----------------------------------------------------------


def printed_predictions(capsys) -> list[tuple[str, float]]:
    """(token, probability) of each line of fill-mask's output after the text."""
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    return [(line.split()[1], float(line.split()[2])) for line in lines]


def expected_predictions(model, tokenizer, top_k: int = 3) -> list[tuple[str, float]]:
    """The model's own top tokens at the [MASK] of TEXT, computed here without the pipeline."""
    encoding = tokenizer(TEXT, return_tensors="np")
    out = model.eval()(encoding["input_ids"], encoding["attention_mask"], encoding["token_type_ids"])
    logits = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits  # (1, T, V)
    position = int(np.flatnonzero(encoding["input_ids"][0] == tokenizer.mask_token_id)[0])
    probs = softmax(logits[0, position].astype(np.float64))
    order = np.argsort(-probs, kind="stable")[:top_k]
    return [(tokenizer.convert_ids_to_tokens(int(i)), round(float(probs[i]), 4)) for i in order]


@pytest.mark.parametrize("backend", [NumpyBackend, TorchBackend], ids=["numpy_bert", "torch_bert-cpu"])
@pytest.mark.parametrize("architecture", ["roberta", "albert", "electra"])
def test_eval_and_fill_mask_on_the_run_folders(runs, electra_run, architecture, backend, capsys):
    run = electra_run if architecture == "electra" else runs[architecture]
    assert main(["eval", str(run), *cpu(backend)], backend) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads(printed[-1])
    logged = [r for r in RunFolder(run).read_metrics() if r["split"] == "validation"][-1]
    for key in logged.keys() - {"split", "step"}:  # eval reports what the run's validation did
        assert metrics[key] == pytest.approx(logged[key], rel=1e-4), key
    figure = {"electra": "discriminator accuracy", "albert": "SOP accuracy"}.get(architecture, "perplexity")
    assert figure in printed[-2]
    assert main(["fill-mask", str(run), TEXT, "--top-k", "3", *cpu(backend)], backend) == 0
    tokenizer = BertTokenizer.from_pretrained(run)
    model = (ElectraForMaskedLM.from_pretrained(run / "generator") if architecture == "electra"
             else NUMPY_CLASSES[architecture].from_pretrained(run))
    got, expected = printed_predictions(capsys), expected_predictions(model, tokenizer)
    assert [token for token, _ in got] == [token for token, _ in expected]
    np.testing.assert_allclose([p for _, p in got], [p for _, p in expected], atol=2e-4)


def test_export_of_an_electra_run_copies_its_generator(electra_run, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(electra_run), str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["architectures"] == ["ElectraForPreTraining"]
    assert json.loads((out / "generator" / "config.json").read_text())["architectures"] == ["ElectraForMaskedLM"]
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert {"generator/config.json", "generator/model.safetensors"} <= manifest.keys()
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    assert "discriminator_accuracy" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (electra_run / "plots" / "loss.png").read_bytes().startswith(b"\x89PNG")


# ---- refusals -----------------------------------------------------------------------------------------------


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("python -m ") and ": error: " in lines[-1], lines
    return lines[-1]


@pytest.mark.parametrize("options, message", [
    (["--architecture", "gpt"], "--architecture: invalid choice: 'gpt'"),
    (["--architecture", "roberta", "--nsp"], "RoBERTa has no sentence task); drop --nsp"),
    (["--architecture", "roberta", "--sop"], "RoBERTa has no sentence task); drop --sop"),
    (["--architecture", "albert", "--nsp"], "use --sop (the default) or --no-nsp, not --nsp"),
    (["--architecture", "albert", "--fast"], "--fast is BERT's fused path (numpy_bert/fast/); drop it"),
    (["--architecture", "albert", "--init-from", "python-docs"],
     "--init-from 'python-docs' holds a bert model, whose weights do not fit --architecture albert"),
    (["--architecture", "roberta", "--objective", "electra"], "--architecture is for --objective mlm"),
    (["--architecture", "bert", "--objective", "distillation", "--teacher", "python-docs"],
     "--architecture is for --objective mlm"),
])
def test_bad_train_options(tmp_path, options, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), *options])
    assert exit_info.value.code == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_refusals_once_running(tmp_path, runs, electra_run, family_args, capsys):
    AlbertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64).save_pretrained(tmp_path / "albert")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), "--config", str(tmp_path / "albert"),
              "--architecture", "roberta"])
    assert exit_info.value.code == 2
    assert "--architecture roberta contradicts --config" in one_line_error(capsys)
    # 32 tokens need positions 1..32 after the padding index 0: 33 rows
    RobertaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=32).save_pretrained(tmp_path / "roberta")
    argv = family_args(tmp_path / "run", "--steps", "1")
    argv[argv.index("--config") + 1] = str(tmp_path / "roberta")
    assert main(argv) == 2
    assert "--seq-len 32 exceeds the 31 tokens" in one_line_error(capsys)
    assert main(["eval", str(runs["albert"]), "--fast"]) == 2
    assert "--fast is BERT's fused path" in one_line_error(capsys)
    assert main(["eval", str(runs["roberta"]), "--sop"]) == 2
    assert "has no sentence-pair head" in one_line_error(capsys)
    discriminator = tmp_path / "discriminator"  # an ELECTRA folder without generator/
    discriminator.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        (discriminator / name).write_bytes((electra_run / name).read_bytes())
    for backend in (NumpyBackend, TorchBackend):
        assert main(["fill-mask", str(discriminator), TEXT, *cpu(backend)], backend) == 2
        assert "holds an ELECTRA discriminator without its generator (generator/)" in one_line_error(capsys)
    with pytest.raises(ValueError, match="trains in one process"):
        DistributedTorchBackend.resolve_options(TrainingArguments(out="r", architecture="albert", device="cpu"),
                                                "train")


# ---- fill-mask on a RoBERTa folder with its byte-level BPE tokenizer -----------------------------------------

BPE_SENTENCES = ["A list is a mutable sequence.", "A tuple is an immutable sequence.",
                 "A dict maps keys to values.", "A set holds unique values."] * 3


@pytest.fixture(scope="module")
def roberta_bpe_folder(tmp_path_factory) -> Path:
    """A tiny RobertaForMaskedLM saved with a byte-level BPE tokenizer (vocab.json + merges.txt, ``<mask>``)."""
    folder = tmp_path_factory.mktemp("roberta-bpe")
    tokens, merges = train_bpe(BPE_SENTENCES, vocab_size=300)
    RobertaTokenizer(vocab=tokens, merges=merges).save_pretrained(folder)
    # a wide initializer: the logits differ by more than float32's rounding, so the order is the same in both
    config = RobertaConfig(vocab_size=len(tokens), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=40, initializer_range=0.5)
    RobertaForMaskedLM(config, seed=0).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("backend", [NumpyBackend, TorchBackend], ids=["numpy_bert", "torch_bert-cpu"])
def test_fill_mask_reads_a_byte_level_bpe_roberta_as_the_pipeline_does(roberta_bpe_folder, backend, capsys):
    pipe = numpy_bert.pipeline("fill-mask", model=str(roberta_bpe_folder))
    assert pipe.tokenizer.mask_token == "<mask>"
    expected = [(pipe.tokenizer.convert_ids_to_tokens(c["token"]), c["score"])
                for c in pipe(TEXT.replace("[MASK]", "<mask>"), top_k=3)]
    for text in (TEXT, TEXT.replace("[MASK]", "<mask>")):  # [MASK] is read as the tokenizer's <mask>
        assert main(["fill-mask", str(roberta_bpe_folder), text, "--top-k", "3", *cpu(backend)], backend) == 0
        got = printed_predictions(capsys)
        assert [token for token, _ in got] == [token for token, _ in expected]
        np.testing.assert_allclose([p for _, p in got], [p for _, p in expected], atol=2e-4)


def test_fill_mask_without_tokenizer_files_says_so(roberta_bpe_folder, tmp_path, capsys):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((roberta_bpe_folder / name).read_bytes())
    assert main(["fill-mask", str(tmp_path), TEXT]) == 2
    assert "holds no tokenizer" in one_line_error(capsys)
