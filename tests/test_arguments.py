"""The typed options of ``train`` and ``finetune``: args.json round trips, checks that name the
option, the ``--resume`` rules, and the command line's defaults being theirs."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert.cli.arguments import typed_options
from numpy_bert.cli.main import build_parser
from numpy_bert.config import PRESETS
from numpy_bert.data.finetune_data import TASKS
from numpy_bert.training.arguments import (
    DEVICES,
    DTYPES,
    MASKING_STRATEGIES,
    PRECISIONS,
    FinetuningArguments,
    TrainingArguments,
)
from numpy_bert.training.pretraining import NumpyBackend
from numpy_bert.training.run_folder import RunFolder
from tests.test_training import write_micro_config

ROOT = Path(__file__).resolve().parents[1]

# args.json as the code before the typed options wrote it (numpy_bert train; torch_bert has
# device and precision instead of fast). config and corpus are put in by the tests.
OLD_TRAIN_ARGS = {
    "batch_size": 4, "checkpoint_every": 500, "clip": 1.0, "dropout": None, "dtype": "float32", "eval_batches": 1,
    "eval_every": 200, "fast": False, "grad_accum": 1, "init_from": None, "layerwise_lr_decay": None,
    "log_every": 10, "lr": 0.001, "masking": "dynamic", "out": "numpy_bert", "plots": False, "progress": False,
    "seed": 0, "seq_len": 32, "steps": 1, "task": "nsp", "vocab_size": 200, "warmup": 0.1, "weight_decay": 0.01,
}
OLD_FINETUNE_ARGS = {  # torch_bert finetune (numpy_bert's lacks device and precision)
    "alpha": 0.5, "batch_size": 16, "clip": 1.0, "device": "cpu", "distill_from": None, "dtype": "float32",
    "epochs": 3, "eval": "data/classify-eval.jsonl", "eval_every": None, "layerwise_lr_decay": None,
    "log_every": 10, "lr": 0.0001, "max_answer_length": 30, "max_length": 32, "model": "numpy_bert",
    "out": "ft-torch_bert", "precision": "fp32", "progress": False, "seed": 0, "steps": 1, "task": "classify",
    "temperature": 2.0, "tokenizer": None, "train": "data/classify-train.jsonl", "warmup": 0.1,
    "weight_decay": 0.01,
}


@pytest.fixture(scope="module")
def micro_config(tmp_path_factory) -> str:
    return write_micro_config(tmp_path_factory.mktemp("config"))


@pytest.fixture(scope="module")
def old_train_args(micro_config, tmp_path_factory) -> dict:
    return {**OLD_TRAIN_ARGS, "config": micro_config, "corpus": str(tmp_path_factory.mktemp("c") / "corpus.txt")}


# ---- args.json -----------------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=12)
counts = st.integers(1, 10**6)
fractions = st.floats(0, 1, exclude_max=True)
rates = st.floats(1e-9, 10)
warmups = fractions | st.integers(1, 10**4).map(float)  # a fraction, or a whole number of steps
backend_fields = {"device": st.none() | st.sampled_from(DEVICES), "precision": st.sampled_from(PRECISIONS)}
optimizer_fields = {"lr": rates, "warmup": warmups, "weight_decay": st.floats(0, 1),
                    "layerwise_lr_decay": st.none() | st.floats(0.01, 1), "clip": st.floats(0, 10)}


def whole_precision(kwargs: dict) -> bool:
    return kwargs["precision"] == "fp32" or kwargs["dtype"] == "float32"


training_arguments = st.fixed_dictionaries({
    **backend_fields, **optimizer_fields, "fast": st.booleans(),
    "out": texts, "seed": st.integers(), "progress": st.booleans(), "plots": st.booleans(),
    "config": st.sampled_from(list(PRESETS)), "init_from": st.none() | texts, "dropout": st.none() | fractions,
    "dtype": st.sampled_from(DTYPES), "corpus": st.none() | texts, "vocab_size": counts,
    "seq_len": st.integers(8, 512), "batch_size": counts, "masking": st.sampled_from(list(MASKING_STRATEGIES)),
    "task": st.sampled_from(["nsp", "sop"]), "steps": counts, "grad_accum": counts, "log_every": counts,
    "eval_every": counts, "eval_batches": counts, "checkpoint_every": counts,
}).filter(whole_precision).map(lambda kwargs: TrainingArguments(**kwargs))

finetuning_arguments = st.fixed_dictionaries({
    **backend_fields, **optimizer_fields,
    "task": st.sampled_from(TASKS), "model": texts, "tokenizer": st.none() | texts, "train": texts, "eval": texts,
    "out": texts, "max_length": st.integers(8, 512), "batch_size": counts, "epochs": counts,
    "steps": st.none() | counts, "log_every": counts, "eval_every": st.none() | counts,
    "max_answer_length": counts, "distill_from": st.none() | texts, "temperature": rates, "alpha": st.floats(0, 1),
    "seed": st.integers(), "dtype": st.sampled_from(DTYPES), "progress": st.booleans(),
}).filter(whole_precision).filter(lambda kwargs: not kwargs["distill_from"] or kwargs["task"] == "classify").map(
    lambda kwargs: FinetuningArguments(**kwargs))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> RunFolder:
    return RunFolder(tmp_path_factory.mktemp("run"))


@settings(max_examples=200, deadline=None)
@given(args=training_arguments | finetuning_arguments)
def test_args_json_round_trip(run_folder, args):
    run_folder.write_args(args.to_dict())
    assert type(args).from_dict(run_folder.read_args()) == args


def test_an_old_args_json_loads(old_train_args):
    newer = {"overwrite_output_dir": False}  # options added since: the same keys, and new ones at their defaults
    newer_in_train = {**newer, "mlm_probability": 0.15, "objective": "mlm", "generator_size": 0.25,
                      "discriminator_weight": 50.0, "teacher": None, "temperature": 2.0, "alpha_ce": 5.0,
                      "alpha_mlm": 2.0, "alpha_cos": 1.0, "architecture": "bert"}
    args = TrainingArguments.from_dict(old_train_args)
    assert args.to_dict() == {**old_train_args, "device": None, "precision": "fp32", **newer_in_train}
    torch_args = {k: v for k, v in old_train_args.items() if k != "fast"} | {"device": "cpu", "precision": "bf16"}
    assert TrainingArguments.from_dict(torch_args).to_dict() == {**torch_args, "fast": False, **newer_in_train}
    finetuning = FinetuningArguments.from_dict(OLD_FINETUNE_ARGS)
    assert finetuning.to_dict() == {**OLD_FINETUNE_ARGS, "fast": False, **newer}


def test_unknown_key_is_refused(old_train_args):
    with pytest.raises(ValueError) as err:
        TrainingArguments.from_dict({**old_train_args, "learning_rate": 0.1})
    assert str(err.value) == "args.json: unknown key 'learning_rate' (not an option of TrainingArguments)"
    with pytest.raises(ValueError, match=r"^runs/x/args\.json: unknown key 'max_length'"):
        TrainingArguments.from_dict({**old_train_args, "max_length": 64}, source="runs/x/args.json")


def test_a_bad_saved_value_names_the_file_and_the_option(old_train_args):
    with pytest.raises(ValueError, match=r"^args\.json: --steps must be a positive integer, got 0$"):
        TrainingArguments.from_dict({**old_train_args, "steps": 0})
    with pytest.raises(ValueError, match=r"^args\.json: 'out' missing$"):
        TrainingArguments.from_dict({k: v for k, v in old_train_args.items() if k != "out"})


def test_paths_become_absolute(micro_config, tmp_path, monkeypatch):
    """So that --resume and eval find the corpus and the config from any folder."""
    monkeypatch.chdir(tmp_path)
    args = TrainingArguments(out="run", corpus="corpus.txt", config=micro_config)
    assert args.corpus == str(tmp_path / "corpus.txt") and args.config == micro_config
    assert args.out == "run" and TrainingArguments(out="run").config == "tiny"


# ---- each check names its option --------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    (dict(seq_len=0), "--seq-len must be a positive integer, got 0"),
    (dict(seq_len=4), "--seq-len 4 is too short for [CLS] A [SEP] B [SEP]; use at least 8"),
    (dict(steps=True), "--steps must be a positive integer, got True"),
    (dict(batch_size=2.0), "--batch-size must be a positive integer, got 2.0"),
    (dict(lr=0.0), "--lr must be a positive number, got 0.0"),
    (dict(lr=float("inf")), "--lr must be a positive number, got inf"),
    (dict(clip=float("nan")), "--clip must be >= 0, got nan"),
    (dict(weight_decay=-1), "--weight-decay must be >= 0, got -1"),
    (dict(warmup=2.5), "--warmup 2.5: a value of 1 or more is a number of steps and must be whole"),
    (dict(warmup=float("inf")), "--warmup inf: a value of 1 or more is a number of steps and must be whole"),
    (dict(dropout=1.0), "--dropout must be in [0, 1), got 1.0"),
    (dict(layerwise_lr_decay=0), "--layerwise-lr-decay must be in (0, 1], got 0"),
    (dict(masking="random"), "--masking must be one of dynamic, static, whole-word, span, got 'random'"),
    (dict(task="mlm-only"), "--task must be one of nsp, sop, mlm, got 'mlm-only'"),
    (dict(mlm_probability=0), "--mlm-probability must be in (0, 1), got 0"),
    (dict(dtype="float16"), "--dtype must be one of float32, float64, got 'float16'"),
    (dict(config="huge"),
     f"--config 'huge' is neither a preset ({', '.join(PRESETS)}) nor a folder with a config.json"),
    (dict(seed="0"), "--seed must be an integer, got '0'"),
    (dict(progress="yes"), "--progress must be true or false, got 'yes'"),
    (dict(out=None), "--out must be text, got None"),
    (dict(device="tpu"), "--device must be one of cpu, cuda, got 'tpu'"),
    (dict(precision="fp8"), "--precision must be one of fp32, bf16, fp16, got 'fp8'"),
    (dict(precision="bf16", dtype="float64"),
     "--precision bf16 mixes half precision into float32 training; use --dtype float32"),
])
def test_training_checks_name_the_option(changes, message):
    with pytest.raises(ValueError) as err:
        TrainingArguments(**{"out": "run", **changes})
    assert str(err.value) == message


FINETUNING = dict(task="classify", model="m", train="t.jsonl", eval="e.jsonl", out="run")


@pytest.mark.parametrize("changes, message", [
    (dict(task="summarize"), "--task must be one of classify, tag, qa, got 'summarize'"),
    (dict(max_length=4), "--max-length 4 is too short; use at least 8"),
    (dict(alpha=1.5), "--alpha must be in [0, 1], got 1.5"),
    (dict(temperature=0), "--temperature must be a positive number, got 0"),
    (dict(eval_every=0), "--eval-every must be a positive integer, got 0"),
    (dict(warmup=1.5), "--warmup 1.5: a value of 1 or more is a number of steps and must be whole"),
    (dict(task="tag", distill_from="teacher"), "--distill-from is for --task classify"),
    (dict(fast=True), "--fast is for pre-training, eval and fill-mask: the fine-tuning heads have no fused path"),
    (dict(precision="fp16", dtype="float64"),
     "--precision fp16 mixes half precision into float32 training; use --dtype float32"),
])
def test_finetuning_checks_name_the_option(changes, message):
    with pytest.raises(ValueError) as err:
        FinetuningArguments(**{**FINETUNING, **changes})
    assert str(err.value) == message


# ---- the --resume rules -------------------------------------------------------------------------------


def test_an_explicit_resumable_option_wins(old_train_args):
    given = TrainingArguments(out="moved/run", progress=True, device="cuda", checkpoint_every=7, plots=True)
    resumed = given.resumed_from(old_train_args, explicit={"out", "resume", "progress", "device", "checkpoint_every"})
    assert (resumed.out, resumed.progress, resumed.device, resumed.checkpoint_every) == ("moved/run", True, "cuda", 7)
    assert resumed.plots is False, "--plots was not given: the saved value"


def test_an_unspecified_option_comes_from_args_json(old_train_args):
    resumed = TrainingArguments(out="numpy_bert", steps=50, lr=0.5).resumed_from(old_train_args, explicit={"out"})
    assert resumed == TrainingArguments.from_dict(old_train_args)


def test_a_key_an_old_args_json_lacks_comes_from_the_command_line(old_train_args):
    given = TrainingArguments(out="numpy_bert", device="cpu", precision="bf16")
    resumed = given.resumed_from(old_train_args, explicit={"out", "precision"})
    assert (resumed.device, resumed.precision) == ("cpu", "bf16")


def test_a_conflicting_option_is_refused(old_train_args):
    given = TrainingArguments(out="numpy_bert", lr=0.5, seq_len=64, steps=1, plots=True)
    with pytest.raises(ValueError) as err:
        given.resumed_from(old_train_args, explicit={"out", "lr", "seq_len", "steps", "plots"})
    assert str(err.value) == ("a resumed run keeps its arguments; these differ from args.json: "
                              "--lr 0.5 (the run has 0.001), --seq-len 64 (the run has 32)")


def test_the_run_folder_decides(tmp_path, old_train_args):
    run = RunFolder(tmp_path / "run")
    args = TrainingArguments(out=str(run.path))
    assert args.for_run_folder(resume=False) is args
    with pytest.raises(ValueError, match=r"nothing to resume: .* holds no run"):
        args.for_run_folder(resume=True)
    run.write_args(old_train_args)  # a run folder, but without the marker that says it is ours
    with pytest.raises(ValueError, match=r"holds files this project did not write \(args\.json\)"):
        args.for_run_folder(resume=False)
    with pytest.raises(ValueError, match=r"has no numpy_bert_run\.json saying it is a train run"):
        args.for_run_folder(resume=True)
    run.claim("train", "numpy_bert", overwrite_output_dir=True, resume=True)  # adopt it
    with pytest.raises(ValueError, match=r"already holds a train run .* continue it with --resume"):
        args.for_run_folder(resume=False)
    resumed = args.for_run_folder(resume=True, explicit={"out"})
    assert resumed.steps == 1 and resumed.out == str(run.path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        TrainingArguments(out=str(tmp_path / "file")).for_run_folder(resume=False)


# ---- the command line makes them ---------------------------------------------------------------------


def test_the_command_line_defaults_are_the_options_defaults():
    parser, _ = build_parser(NumpyBackend)
    assert typed_options(TrainingArguments, parser.parse_args(["train", "--out", "r"])) == TrainingArguments(out="r")
    argv = ["finetune", "--task", "qa", "--model", "m", "--train", "t", "--eval", "e", "--out", "r"]
    expected = FinetuningArguments(task="qa", model="m", train="t", eval="e", out="r")
    assert typed_options(FinetuningArguments, parser.parse_args(argv)) == expected


def test_every_option_is_on_the_command_line():
    """Every field but the other backend's is an option of its command (as args.json names it)."""
    _, sub = build_parser(NumpyBackend)
    for command, options_class, other_backend in (("train", TrainingArguments, {"device", "precision"}),
                                                  ("finetune", FinetuningArguments, {"fast", "device", "precision"})):
        dests = {action.dest for action in sub[command]._actions}
        assert {f.name for f in fields(options_class)} - other_backend <= dests, command



@pytest.mark.parametrize("package", ["numpy_bert/training", "numpy_bert/data", "torch_bert/training"])
def test_below_the_command_line_no_argparse(package):
    """The training and data code is given typed options: it imports neither argparse nor the command line."""
    for path in sorted((ROOT / package).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        imported += [("." * node.level) + (node.module or "") for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)]
        assert not [name for name in imported if name == "argparse" or "cli" in name.split(".")], path.name
