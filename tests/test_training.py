"""The trainer, its run folder and the command line, on a tiny corpus and a tiny model.

Covered: resuming a NumPy run is bitwise identical to not stopping; a crash while a
checkpoint is written leaves the previous one loadable (and resumable); a NaN loss
stops the run with a message naming the step, checkpoints intact; the command line
end to end for both backends (run folder, transformers loads the model, eval,
fill-mask, reading each other's folders and a transformers folder); argument errors.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from numpy_bert import BertConfig, BertForPreTraining
from numpy_bert.checkpoint import load_tensors
from numpy_bert.cli.main import main
from numpy_bert.optim import AdamW
from numpy_bert.training.pretraining import NumpyBackend, computed_rows
from numpy_bert.training.run_folder import RunFolder
from torch_bert.training.pretraining import TorchBackend

SUBJECTS = ("a list", "a tuple", "the dictionary", "a set", "the string", "an integer", "the function",
            "a module", "the class", "an object", "the iterator", "a generator", "the file", "a thread")
VERBS = ("is", "returns", "holds", "contains", "creates", "raises", "accepts", "yields", "copies", "sorts")
OBJECTS = ("a mutable sequence", "an immutable sequence", "a new object", "the value", "an error", "the keys",
           "a shallow copy", "the result", "an index", "the items", "a hashable value", "the default encoding")
ENDINGS = ("", " when called", " by default", " in place", " if possible", " for each item", " at the end")


def write_tiny_corpus(path: Path, documents: int = 40, seed: int = 0) -> Path:
    """A deterministic toy corpus of Python-flavoured sentences, blank lines between documents."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(documents):
        sentences = []
        for _ in range(rng.integers(6, 11)):
            subject, verb, obj, ending = (part[rng.integers(len(part))] for part in (SUBJECTS, VERBS, OBJECTS, ENDINGS))
            sentences.append(f"{subject.capitalize()} {verb} {obj}{ending}.")
        texts.append("\n".join(sentences))
    path.write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    return path


def write_micro_config(folder: Path) -> str:
    """A config.json smaller than the tiny preset (hidden 32, 2 layers): matrices this small keep
    BLAS single-threaded, so the tests stay fast even on a busy machine."""
    BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=64).save_pretrained(folder)
    return str(folder)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def on_cpu(backend) -> list[str]:
    """torch_bert's option for the CPU: without it, a machine with a GPU would run these tests on CUDA."""
    return ["--device", "cpu"] if backend is TorchBackend else []


@pytest.fixture(scope="module")
def tiny_args(corpus, micro_config):
    """``train`` arguments for a run of a few seconds: 32-token pairs, 4 per batch, a 200-token vocabulary."""

    def make(out: Path, *extra: str, corpus: str = corpus, backend=NumpyBackend) -> list[str]:
        return ["train", "--out", str(out), "--corpus", corpus, "--config", micro_config, "--vocab-size", "200",
                "--seq-len", "32", "--batch-size", "4", "--eval-batches", "2", "--no-progress", "--no-plots",
                *on_cpu(backend), *extra]

    return make


# Dropout on (the default 0.1), gradient accumulation, checkpoints at steps 3, 6 and 8 - in the middle
# of a logging window (rows at steps 2, 4, 6, 8), so that the window's sums must be restored too.
RESUME_OPTIONS = ("--steps", "8", "--checkpoint-every", "3", "--log-every", "2", "--eval-every", "4",
                  "--grad-accum", "2")


def final_state(run: Path) -> tuple[bytes, bytes, list[dict]]:
    """What must be identical between two runs: weights, optimizer/RNG state, metrics."""
    checkpoint = RunFolder(run).latest_checkpoint()
    return ((run / "model.safetensors").read_bytes(), (checkpoint / "training_state.safetensors").read_bytes(),
            computed_rows(RunFolder(run).read_metrics()))


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, tiny_args):
    """The uninterrupted run of a backend that the resumed ones are compared with (cached)."""
    cache = {}

    def run_of(backend) -> tuple[bytes, bytes, list[dict]]:
        if backend not in cache:
            run = tmp_path_factory.mktemp("straight") / "run"
            assert main(tiny_args(run, *RESUME_OPTIONS, backend=backend), backend) == 0
            cache[backend] = final_state(run)
        return cache[backend]

    return run_of


def fail_on_call(monkeypatch, owner, name: str, call: int, error: BaseException) -> None:
    """Make ``owner.name`` raise ``error`` on its ``call``-th call (counting from 1)."""
    original = getattr(owner, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


# ---- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [NumpyBackend, TorchBackend], ids=["numpy_bert", "torch_bert-cpu"])
def test_resume_is_bitwise_identical(tmp_path, tiny_args, straight_run, monkeypatch, backend):
    """Bitwise in NumPy by construction; torch on CPU turns out bitwise too (its RNG state is saved)."""
    run = tmp_path / "run"
    with monkeypatch.context() as patch:  # killed during step 5: the last checkpoint is step 3
        fail_on_call(patch, backend, "optimizer_step", 5, KeyboardInterrupt())
        assert main(tiny_args(run, *RESUME_OPTIONS, backend=backend), backend) == 130
    assert max(row["step"] for row in RunFolder(run).read_metrics()) == 4  # rows after step 3, to be dropped
    assert main(["train", "--out", str(run), "--resume", "--no-progress"], backend) == 0
    weights, state, rows = final_state(run)
    expected = straight_run(backend)
    assert weights == expected[0], "resumed weights differ from the uninterrupted run's"
    assert state == expected[1], "resumed optimizer/RNG state differs"
    assert rows == expected[2], "metrics.jsonl differs (rows duplicated or changed)"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-8"]


def test_failed_write_of_a_checkpoint(tmp_path, tiny_args, straight_run, monkeypatch, capsys):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:  # the second checkpoint (step 6) fails half-written: a full disk
        pretraining = sys.modules["numpy_bert.training.pretraining"]
        fail_on_call(patch, pretraining, "save_tensors", 2,
                     OSError(errno.ENOSPC, "No space left on device", str(run / "checkpoint-6.tmp")))
        assert main(tiny_args(run, *RESUME_OPTIONS)) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"python -m numpy_bert train: error: No space left on device: {run}/checkpoint-6.tmp; free some space; "
        "the last checkpoint is intact: continue with --resume")
    assert not (run / "checkpoint-6.tmp").exists(), "the half-written checkpoint is cleared away"
    latest = RunFolder(run).latest_checkpoint()
    assert latest.name == "checkpoint-3"
    model = BertForPreTraining.from_pretrained(latest)
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    state, tensors = RunFolder.read_checkpoint_state(latest)
    assert state["step"] == 3 and tensors
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert final_state(run) == straight_run(NumpyBackend)
    assert not list(run.glob("*.tmp"))


def test_nan_loss_stops_the_run(tmp_path, tiny_args, monkeypatch, capsys):
    run = tmp_path / "run"
    original = AdamW.step

    def poisoning_step(self):  # after the third update a weight becomes NaN: step 4's loss is NaN
        original(self)
        if self.step_count == 3:
            self.param_groups[0]["params"][0][1].data[5, 0] = np.nan

    monkeypatch.setattr(AdamW, "step", poisoning_step)
    assert main(tiny_args(run, "--steps", "8", "--checkpoint-every", "2", "--log-every", "1", "--no-fast")) == 1
    message = capsys.readouterr().err
    assert "training stopped at step 4: the loss is nan" in message
    assert "last good checkpoint (step 2)" in message and "checkpoint-2" in message
    latest = RunFolder(run).latest_checkpoint()
    assert latest.name == "checkpoint-2"
    for folder in (latest, run):  # the checkpoint and the run folder's own model: both step 2, finite
        assert all(np.isfinite(a).all() for a in load_tensors(folder / "model.safetensors").values())
    assert max(row["step"] for row in RunFolder(run).read_metrics()) == 3


# ---- the command line, end to end -----------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_args) -> dict[str, Path]:
    """A 4-step run of each backend, with plots."""
    folders = {}
    for name, backend in (("numpy_bert", NumpyBackend), ("torch_bert", TorchBackend)):
        folders[name] = tmp_path_factory.mktemp(name) / "run"
        argv = tiny_args(folders[name], "--steps", "4", "--eval-every", "2", "--checkpoint-every", "2",
                         "--log-every", "2", "--plots", backend=backend)
        assert main(argv, backend) == 0
    return folders


@pytest.mark.parametrize("name", ["numpy_bert", "torch_bert"])
def test_run_folder_is_complete(runs, name):
    run = runs[name]
    for file in ("args.json", "config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                 "metrics.jsonl", "latest", "checkpoint-4/model.safetensors", "checkpoint-4/training_state.json",
                 "checkpoint-4/training_state.safetensors", "checkpoint-4/vocab.txt"):
        assert (run / file).is_file(), file
    for plot in ("loss", "accuracy", "perplexity", "learning_rate"):
        assert (run / "plots" / f"{plot}.png").read_bytes().startswith(b"\x89PNG"), plot
    assert not (run / "checkpoint-2").exists(), "older checkpoints are removed"
    rows = RunFolder(run).read_metrics()
    train_rows = [r for r in rows if r["split"] == "train"]
    validation_rows = [r for r in rows if r["split"] == "validation"]
    assert [r["step"] for r in train_rows] == [2, 4] and [r["step"] for r in validation_rows] == [2, 4]
    for key in ("loss", "mlm_loss", "nsp_loss", "lr", "grad_norm", "tokens_per_s"):
        assert all(np.isfinite(r[key]) for r in train_rows), key
    for key in ("mlm_accuracy", "perplexity", "nsp_accuracy", "loss"):
        assert all(np.isfinite(r[key]) for r in validation_rows), key
    assert json.loads((run / "args.json").read_text())["steps"] == 4


@pytest.mark.parametrize("name", ["numpy_bert", "torch_bert"])
def test_transformers_loads_the_run(runs, name):
    model, info = transformers.BertForPreTraining.from_pretrained(runs[name], output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    theirs = model.state_dict()
    for tensor_name, array in load_tensors(runs[name] / "model.safetensors").items():
        np.testing.assert_array_equal(theirs[tensor_name].numpy(), array)


@pytest.mark.parametrize("reader", [NumpyBackend, TorchBackend], ids=["read-by-numpy", "read-by-torch"])
@pytest.mark.parametrize("name", ["numpy_bert", "torch_bert"])
def test_eval_and_fill_mask(runs, name, reader, capsys):
    run = runs[name]
    assert main(["eval", str(run), *on_cpu(reader)], reader) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads(lines[-1])
    assert "MLM accuracy" in lines[-2] and "perplexity" in lines[-2] and "NSP accuracy" in lines[-2]
    final = [r for r in RunFolder(run).read_metrics() if r["split"] == "validation"][-1]
    for key in ("mlm_accuracy", "nsp_accuracy", "masked_tokens"):  # the same held-out batches as in training
        assert metrics[key] == final[key], key
    assert metrics["perplexity"] == pytest.approx(final["perplexity"], rel=1e-4)

    assert main(["fill-mask", str(run), "A list is a mutable [MASK].", "--top-k", "3", *on_cpu(reader)], reader) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "A list is a mutable [MASK]."
    assert [line.split()[0] for line in lines[1:]] == ["1.", "2.", "3."]
    probabilities = [float(line.split()[-1]) for line in lines[1:]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1


def test_compare_tabulates_and_plots_both_backends(tmp_path, runs, capsys):
    folders = [str(runs["numpy_bert"]), str(runs["torch_bert"])]
    assert main(["compare", *folders, "--out", str(tmp_path / "both.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert (tmp_path / "both.png").read_bytes().startswith(b"\x89PNG")
    assert lines[-1] == f"wrote {tmp_path / 'both.png'}"
    for folder, line in zip(folders, lines[2:4]):
        final = [r for r in RunFolder(folder).read_metrics() if r["split"] == "validation"][-1]
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == folder and cells[1] == "4" and cells[3] == "4"
        assert cells[4] == f"{final['mlm_accuracy']:.1%}" and cells[6] == f"{final['nsp_accuracy']:.1%}"
        train = [r for r in RunFolder(folder).read_metrics() if r["split"] == "train"]
        assert cells[7] == f"{sum(r['tokens'] for r in train):,}"


def test_compare_up_to_a_step(tmp_path, runs, capsys):
    folders = [str(runs["numpy_bert"]), str(runs["torch_bert"])]
    assert main(["compare", *folders, "--up-to-step", "2", "--out", str(tmp_path / "start.png")]) == 0
    for folder, line in zip(folders, capsys.readouterr().out.strip().splitlines()[2:4]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == folder and cells[1] == "2", "the rows after step 2 are left out"


def test_compare_names_a_folder_without_metrics(tmp_path, runs, capsys):
    assert main(["compare", str(runs["numpy_bert"]), str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert f"{tmp_path} is not a run folder with training metrics" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_reads_a_transformers_folder(tmp_path, runs, capsys):
    config = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64)
    transformers.BertForPreTraining(config).save_pretrained(tmp_path)
    for file in ("vocab.txt", "tokenizer_config.json"):
        (tmp_path / file).write_bytes((runs["numpy_bert"] / file).read_bytes())
    assert main(["fill-mask", str(tmp_path), "Two [MASK] and a [MASK].", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "[MASK] 1 of 2:" in out and "[MASK] 2 of 2:" in out
    assert main(["eval", str(tmp_path), "--corpus", json.loads((runs["numpy_bert"] / "args.json").read_text())
                 ["corpus"], "--seq-len", "32", "--max-batches", "1"], TorchBackend) == 0
    assert "perplexity" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bf16_autocast_on_cpu(tmp_path, tiny_args):
    assert main(tiny_args(tmp_path / "run", "--steps", "2", "--precision", "bf16", backend=TorchBackend),
                TorchBackend) == 0
    assert all(np.isfinite(r["loss"]) for r in RunFolder(tmp_path / "run").read_metrics())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_mixed_precision_on_gpu(tmp_path, tiny_args, precision):
    run = tmp_path / "run"
    options = ("--steps", "6", "--checkpoint-every", "3", "--device", "cuda", "--precision", precision)
    assert main(tiny_args(run, *options), TorchBackend) == 0
    rows = RunFolder(run).read_metrics()
    assert all(np.isfinite(r["loss"]) for r in rows)
    state = json.loads((run / "checkpoint-6" / "training_state.json").read_text())
    assert (state["backend_state"]["grad_scaler"] is not None) == (precision == "fp16")
    assert main(["fill-mask", str(run), "A list is a [MASK].", "--device", "cuda"], TorchBackend) == 0


# ---- argument errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    (["--steps", "0"], "--steps: must be a positive integer"),
    (["--lr", "-1"], "--lr: must be a positive number"),
    (["--dropout", "1.5"], "--dropout: must be in [0, 1)"),
    (["--masking", "random"], "--masking: invalid choice"),
    (["--nsp", "--sop"], "not allowed with argument"),
    (["--warmup", "2.5"], "a value of 1 or more is a number of steps"),
    (["--config", "huge"], "neither a preset"),
    (["--seq-len", "4"], "too short"),
    (["--layerwise-lr-decay", "0"], "must be in (0, 1]"),
])
def test_bad_train_arguments(tmp_path, options, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), *options])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a CUDA GPU"),
    (["--dtype", "float64", "--precision", "bf16"], "use --dtype float32"),
] + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "torch sees no CUDA GPU")]))
def test_bad_torch_arguments(tmp_path, options, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), *options], TorchBackend)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_inputs(tmp_path, tiny_args, runs, capsys):
    def error(argv, backend=NumpyBackend) -> str:
        assert main(argv, backend) == 2
        return capsys.readouterr().err

    assert "does not exist" in error(tiny_args(tmp_path / "a", corpus=str(tmp_path / "missing.txt")))
    assert not (tmp_path / "a" / "args.json").exists(), "a failed start must not leave a run to --resume"
    assert "already holds a train run" in error(tiny_args(runs["numpy_bert"]))
    assert "nothing to resume" in error(["train", "--out", str(tmp_path / "empty"), "--resume"])
    assert "--lr 0.5 (the run has 0.001)" in error(["train", "--out", str(runs["numpy_bert"]), "--resume",
                                                     "--lr", "0.5"])
    assert "written by numpy_bert" in error(["train", "--out", str(runs["numpy_bert"]), "--resume",
                                             "--no-progress"], TorchBackend)
    assert "no [MASK] token" in error(["fill-mask", str(runs["numpy_bert"]), "No mask here."])
    assert "does not exist" in error(["eval", str(tmp_path / "nowhere")])


def test_resuming_a_finished_run_does_nothing(runs, capsys):
    before = (runs["numpy_bert"] / "model.safetensors").read_bytes()
    assert main(["train", "--out", str(runs["numpy_bert"]), "--resume", "--no-progress"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (runs["numpy_bert"] / "model.safetensors").read_bytes() == before


def test_module_entry_points():
    """``python -m numpy_bert`` imports no torch; ``python -m torch_bert`` adds its options."""
    code = ("import sys, runpy; sys.argv = ['numpy_bert', 'train', '--help']\n"
            "try: runpy.run_module('numpy_bert', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'numpy_bert imported torch'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--grad-accum" in out and "--device" not in out
    out = subprocess.run([sys.executable, "-m", "torch_bert", "train", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--precision {fp32,bf16,fp16}" in out and "--device {cpu,cuda}" in out


@pytest.mark.parametrize("backend", [NumpyBackend, TorchBackend], ids=["numpy_bert", "torch_bert-cpu"])
def test_init_from_a_pretrained_encoder(tmp_path, corpus, backend, caplog):
    """Domain adaptation: --init-from takes the model's vocabulary, config and encoder weights;
    the MLM/NSP heads are new, and the decoder is tied to the pretrained word embeddings."""
    from numpy_bert import BertModel
    from numpy_bert.text.tokenization import BertTokenizer

    pretrained = tmp_path / "pretrained"
    words = sorted({w.lower().strip(".,;:()") for w in Path(corpus).read_text().split()} - {""})
    tokenizer = BertTokenizer(vocab=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])
    tokenizer.save_pretrained(pretrained)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    encoder = BertModel(config, seed=3)
    encoder.save_pretrained(pretrained)

    run = tmp_path / "adapted"
    options = ["train", "--out", str(run), "--corpus", corpus, "--init-from", str(pretrained), "--seq-len", "32",
               "--batch-size", "4", "--eval-batches", "1", "--steps", "2", "--lr", "1e-12", "--weight-decay", "0",
               "--no-progress", "--no-plots", *on_cpu(backend)]
    assert main(options, backend) == 0
    assert "newly initialised" in caplog.text and "cls.predictions.transform.dense.weight" in caplog.text
    assert (run / "vocab.txt").read_text() == (pretrained / "vocab.txt").read_text()
    adapted = BertForPreTraining.from_pretrained(run, dtype=np.float64)
    assert adapted.config.hidden_size == 16 and adapted.config.vocab_size == len(tokenizer)
    for name, value in encoder.state_dict().items():  # a learning rate of 1e-12 leaves them as they were
        np.testing.assert_allclose(adapted.state_dict()["bert." + name], value, atol=1e-6, err_msg=name)


def test_checkpoints_of_other_tools_are_never_deleted(tmp_path):
    """Only this run's own checkpoint folders (with its state file) are cleaned up."""
    from numpy_bert.training.run_folder import STATE_JSON_NAME

    run = RunFolder(tmp_path)
    foreign = tmp_path / "checkpoint-500"  # a transformers Trainer's, say
    foreign.mkdir()
    (foreign / "trainer_state.json").write_text("{}")
    for step in (1, 2):
        run.save_checkpoint(step, lambda folder: (folder / STATE_JSON_NAME).write_text("{}"))
    assert (foreign / "trainer_state.json").is_file()
    assert not (tmp_path / "checkpoint-1").exists() and (tmp_path / "checkpoint-2").is_dir()
