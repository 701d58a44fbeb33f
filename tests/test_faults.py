"""Fault injection: kill -9 at random moments, a full disk, a read-only folder, corrupted files.

Every case asserts the exact outcome: what loads afterwards, the message and exit status
of the command line, and that no file outside the run changed (``snapshot``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpy_bert import BertConfig, BertForSequenceClassification
from numpy_bert.checkpoint import load_tensors, save_tensors
from numpy_bert.cli.main import main
from numpy_bert.training.run_folder import RunFolder
from torch_bert.training.pretraining import TorchBackend

REPO = Path(__file__).resolve().parents[1]
KILL_TRIALS = 24  # per kind of write; each is a fresh process killed at a random moment


def train_args(out: Path, corpus: str, micro_config: str, *extra: str) -> list[str]:
    return ["train", "--out", str(out), "--corpus", corpus, "--config", micro_config, "--vocab-size", "200",
            "--seq-len", "32", "--batch-size", "4", "--eval-batches", "1", "--steps", "2", "--no-progress",
            "--no-plots", *extra]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, corpus, micro_config) -> Path:
    """A 3-step run as a crash during its last step leaves it: the latest checkpoint is step 2's."""
    run = tmp_path_factory.mktemp("interrupted") / "run"
    assert main(train_args(run, corpus, micro_config, "--steps", "2")) == 0
    args = RunFolder(run).read_args()
    RunFolder(run).write_args({**args, "steps": 3})  # as if the run had been meant to go one step further
    return run


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path, with the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def error_line(capsys) -> str:
    """The one line an expected failure prints on stderr (progress output aside)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    assert "Traceback" not in "\n".join(lines)
    return lines[-1]


# ---- kill -9 at a random moment ---------------------------------------------------------------

# The child saves in a loop, alternating two models with different configs (labels and dropout),
# and says "ready" once it has started; the parent kills it at a random moment after that.
SAVE_PRETRAINED_CHILD = """
import sys
from numpy_bert import BertConfig, BertForSequenceClassification
folder = sys.argv[1]
config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=16, max_position_embeddings=16)
models = [BertForSequenceClassification(config.replace(num_labels=2, id2label={0: "no", 1: "yes"}), seed=0),
          BertForSequenceClassification(config.replace(num_labels=2, id2label={0: "bad", 1: "good"},
                                                       hidden_dropout_prob=0.2), seed=1)]
print("ready", flush=True)
i = 0
while True:
    models[i % 2].save_pretrained(folder)
    i += 1
"""

CHECKPOINT_CHILD = """
import sys
from pathlib import Path
import numpy as np
from numpy_bert import BertConfig, BertForPreTraining
from numpy_bert.checkpoint import save_tensors
from numpy_bert.training.run_folder import STATE_JSON_NAME, STATE_TENSORS_NAME, RunFolder, write_json
run = RunFolder(sys.argv[1])
resume = run.has_run()
run.claim("train", "numpy_bert", resume=resume)
run.write_args({})
model = BertForPreTraining(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=16, max_position_embeddings=16), seed=0)
latest = run.latest_checkpoint() if resume else None
step = RunFolder.read_checkpoint_state(latest)[0]["step"] if latest else 0
for p in model.parameters():
    p.data += step
def write(folder):  # what the Trainer writes, in its order
    model.save_pretrained(folder)
    save_tensors(folder / STATE_TENSORS_NAME, {"moments": np.full(64, step, np.float32)})
    write_json(folder / STATE_JSON_NAME, {"step": step})
print("ready", flush=True)
while True:
    step += 1
    for p in model.parameters():
        p.data += 1.0
    run.save_checkpoint(step, write)
    model.save_pretrained(run.path)  # the run folder's own copy of the latest model
"""


def kill_at_random(child: str, folder: Path, rng: random.Random) -> None:
    """Start ``child`` on ``folder``, wait for it to say ready, let it write for a random time, kill -9."""
    process = subprocess.Popen([sys.executable, "-c", child, str(folder)], stdout=subprocess.PIPE, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout.readline().strip() == b"ready"
    time.sleep(rng.uniform(0.0, 0.25))
    process.kill()  # SIGKILL: no cleanup, no finally blocks
    process.wait()
    assert process.returncode == -9


def test_kill_during_save_pretrained_leaves_a_loadable_model(tmp_path):
    rng = random.Random(0)
    outcomes = {"absent": 0, "model 0": 0, "model 1": 0, "refused as torn": 0}
    for trial in range(KILL_TRIALS):
        folder = tmp_path / f"trial{trial}" / "model"
        kill_at_random(SAVE_PRETRAINED_CHILD, folder, rng)
        if not folder.exists():  # killed before the first save: nothing half-made is visible
            outcomes["absent"] += 1
            continue
        try:
            model = BertForSequenceClassification.from_pretrained(folder)
        except ValueError as err:
            assert "a save_pretrained was interrupted between its two files" in str(err)
            outcomes["refused as torn"] += 1
            continue
        which = 0 if model.config.id2label == {0: "no", 1: "yes"} else 1
        assert model.config.hidden_dropout_prob == (0.1, 0.2)[which], "weights and config of different saves"
        expected = BertForSequenceClassification(model.config, seed=which).state_dict()
        for name, array in model.state_dict().items():
            np.testing.assert_array_equal(array, expected[name], err_msg=name)
        outcomes[f"model {which}"] += 1
    print(f"save_pretrained, {KILL_TRIALS} kills: {outcomes}")
    assert outcomes["model 0"] + outcomes["model 1"] > 0


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_get_the_usual_permissions(tmp_path, umask):
    """Files and folders as open() and mkdir() make them (the umask applies), not tempfile's 0600/0700."""
    previous = os.umask(umask)
    try:
        model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                                         num_attention_heads=2, intermediate_size=16))
        model.save_pretrained(tmp_path / "m")  # a new folder: staged, then renamed
        model.save_pretrained(tmp_path / "m")  # an existing one: each file replaced
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in [tmp_path / "m", *(tmp_path / "m").iterdir()]}
    assert modes == {"m": 0o777 & ~umask, "config.json": 0o666 & ~umask, "model.safetensors": 0o666 & ~umask}


def test_kill_during_checkpoint_writes_leaves_the_latest_complete(tmp_path):
    rng = random.Random(1)
    for trial in range(KILL_TRIALS):
        run = RunFolder(tmp_path / f"trial{trial}")
        kill_at_random(CHECKPOINT_CHILD, run.path, rng)
        latest = run.latest_checkpoint()
        if latest is None:
            continue
        state, tensors = RunFolder.read_checkpoint_state(latest)
        assert tensors["moments"][0] == state["step"]
        weights = load_tensors(latest / "model.safetensors")
        assert weights["bert.pooler.dense.bias"][0] == pytest.approx(state["step"], abs=0.1)  # starts near 0
        kill_at_random(CHECKPOINT_CHILD, run.path, rng)  # a resumed run, killed too
        assert run.latest_checkpoint() is not None
        run.claim("train", "numpy_bert", resume=True)  # the next run clears what the kills left behind
        assert not [p for p in run.path.rglob("*") if p.name.endswith(".tmp")]


def test_kill_during_training_then_resume(tmp_path, corpus, micro_config):
    """The real command line, killed mid-run, then resumed to the end."""
    run = tmp_path / "run"
    argv = train_args(run, corpus, micro_config, "--steps", "40", "--checkpoint-every", "1", "--log-every", "1")
    process = subprocess.Popen([sys.executable, "-m", "numpy_bert", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while not (run / "checkpoint-3").exists() and not (run / "checkpoint-4").exists():
        assert time.monotonic() < deadline and process.poll() is None, "training did not reach step 3"
        time.sleep(0.02)
    process.kill()
    process.wait()
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert RunFolder(run).latest_checkpoint().name == "checkpoint-40"
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


# ---- a full disk, a read-only folder ------------------------------------------------------------


@contextmanager
def mounted_tmpfs(folder: Path, size: str, read_only: bool = False):
    """A small tmpfs at ``folder`` (needs root and mount(8)); skips the test with the reason otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_full_disk_during_a_checkpoint(tmp_path, corpus, micro_config, capsys):
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        run = disk / "run"
        filler = disk / "filler.bin"  # leaves room for the run's first files, not for a checkpoint
        filler.write_bytes(b"\0" * (1024 * 1024 - 200 * 1024))
        assert main(train_args(run, corpus, micro_config)) == 2
        line = error_line(capsys)
        assert line.startswith("python -m numpy_bert train: error: No space left on device")
        assert line.endswith("; free some space; the last checkpoint is intact: continue with --resume")
        assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")], "temporaries left on the full disk"
        assert RunFolder(run).latest_checkpoint() is None and (run / "args.json").is_file()
        filler.unlink()  # the user frees some space
        assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
        assert RunFolder(run).latest_checkpoint().name == "checkpoint-2"


def test_read_only_folder(tmp_path, trained_run, corpus, micro_config, capsys):
    with mounted_tmpfs(tmp_path / "ro", "1m") as disk:
        shutil.copytree(trained_run, disk / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        before = snapshot(disk)
        assert main(["fill-mask", str(disk / "run"), "A list is a [MASK]."]) == 0  # reading writes nothing
        assert main(train_args(disk / "new", corpus, micro_config)) == 2
        assert error_line(capsys) == (f"python -m numpy_bert train: error: Read-only file system: {disk / 'new'}; "
                                      "choose a folder on a writable file system")
        assert main(["train", "--out", str(disk / "run"), "--resume", "--no-progress"]) == 2
        assert "Read-only file system" in error_line(capsys)
        assert snapshot(disk) == before


def full_disk_on_call(failing_call: int):
    """An ``os.fdopen`` whose ``failing_call``-th call fails as a full disk does (atomic_write_bytes uses it)."""
    real_fdopen, calls = os.fdopen, []

    def fdopen(fd, *args, **kwargs):
        calls.append(fd)
        if len(calls) == failing_call:
            os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fdopen(fd, *args, **kwargs)

    return fdopen


def test_simulated_full_disk_keeps_the_saved_model(tmp_path, monkeypatch):
    """Without a tmpfs: the write itself fails (ENOSPC) at each of save_pretrained's files in turn."""
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16)
    old, new = (BertForSequenceClassification(config.replace(id2label={0: a, 1: b}), seed=s)
                for s, (a, b) in enumerate([("no", "yes"), ("bad", "good")]))
    for failing_write in (1, 2):
        folder = tmp_path / f"case{failing_write}"
        old.save_pretrained(folder)
        before = snapshot(folder)
        with monkeypatch.context() as patch:
            patch.setattr(os, "fdopen", full_disk_on_call(failing_write))
            with pytest.raises(OSError, match="No space left"):
                new.save_pretrained(folder)
        assert snapshot(folder) == before or failing_write == 2  # the weights may be new, the config is not
        if failing_write == 1:
            assert BertForSequenceClassification.from_pretrained(folder).config.id2label == {0: "no", 1: "yes"}
        else:
            with pytest.raises(ValueError, match="interrupted between its two files"):
                BertForSequenceClassification.from_pretrained(folder)
        assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
        new.save_pretrained(folder)  # saving again mends it
        assert BertForSequenceClassification.from_pretrained(folder).config.id2label == {0: "bad", 1: "good"}


# ---- what is never written over or deleted ------------------------------------------------------


def foreign_folder(path: Path) -> Path:
    """A transformers Trainer's output folder: a model, its checkpoints, a user's notes."""
    (path / "checkpoint-500").mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "vocab.txt", "checkpoint-500/trainer_state.json", "notes.md"):
        (path / name).write_text(f"not ours: {name}")
    return path


def test_train_refuses_a_folder_it_did_not_make(tmp_path, corpus, micro_config, capsys):
    out = foreign_folder(tmp_path / "trainer-output")
    before = snapshot(out)
    assert main(train_args(out, corpus, micro_config)) == 2
    assert error_line(capsys) == (
        f"python -m numpy_bert train: error: {out} holds files this project did not write (checkpoint-500, "
        "config.json, model.safetensors, notes.md, vocab.txt); choose a new or empty --out, or pass "
        "--overwrite-output-dir to write into it (files of the names a run writes are replaced, nothing else "
        "is touched)")
    assert snapshot(out) == before
    assert main(train_args(out, corpus, micro_config, "--overwrite-output-dir")) == 0
    after = snapshot(out)
    for name in ("checkpoint-500/trainer_state.json", "notes.md"):  # not of our names: untouched
        assert after[name] == before[name]
    assert (out / "checkpoint-2" / "training_state.json").is_file()


def test_finetune_does_not_write_over_its_model(tmp_path, trained_run, capsys):
    data = tmp_path / "data"
    assert main(["demo-data", "--task", "classify", "--out", str(data), "--train-size", "8", "--eval-size", "4"]) == 0
    before = snapshot(trained_run)
    argv = ["finetune", "--task", "classify", "--model", str(trained_run), "--train",
            str(data / "classify-train.jsonl"), "--eval", str(data / "classify-eval.jsonl"), "--out",
            str(trained_run), "--no-progress", "--steps", "1"]
    assert main(argv) == 2
    assert error_line(capsys) == (f"python -m numpy_bert finetune: error: {trained_run} holds a train run of this "
                                  "project, not a finetune one; choose another --out (or pass "
                                  "--overwrite-output-dir to write into it)")
    plain = tmp_path / "plain-model"  # a model folder without our marker, as transformers writes one
    shutil.copytree(trained_run, plain, ignore=shutil.ignore_patterns("checkpoint-*", "numpy_bert_run.json"))
    plain_before = snapshot(plain)
    assert main([*argv[:4], str(plain), *argv[5:10], str(plain), *argv[11:]]) == 2
    assert "holds files this project did not write" in error_line(capsys)
    assert snapshot(trained_run) == before and snapshot(plain) == plain_before


def test_demo_data_refuses_a_users_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("my notes")
    assert main(["demo-data", "--task", "classify", "--out", str(tmp_path), "--train-size", "8"]) == 2
    assert "holds files this project did not write (mine.txt)" in error_line(capsys)
    assert main(["demo-data", "--task", "classify", "--out", str(tmp_path), "--train-size", "8",
                 "--overwrite-output-dir"]) == 0
    assert (tmp_path / "mine.txt").read_text() == "my notes"


def test_restarting_a_run_afresh_forgets_its_checkpoints(tmp_path, corpus, micro_config):
    run = tmp_path / "run"
    assert main(train_args(run, corpus, micro_config, "--steps", "3", "--checkpoint-every", "1")) == 0
    assert main(train_args(run, corpus, micro_config, "--overwrite-output-dir")) == 0
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    assert max(row["step"] for row in RunFolder(run).read_metrics()) == 2  # no rows of the first run


def test_stale_temporaries_are_cleared_and_nothing_else(tmp_path, trained_run):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    ours = [run / ".model.safetensors.ab12cd34.tmp", run / "plots" / ".loss.png.zz99yy88.tmp"]
    (run / "plots").mkdir(exist_ok=True)
    half = run / "checkpoint-9.tmp"  # a checkpoint folder that a crash left half-written
    half.mkdir()
    (half / "config.json").write_text("{}")
    (half / ".model.safetensors.qwer1234.tmp").write_bytes(b"half")
    theirs = [run / "notes.tmp", run / ".config.json.tmp", run / "checkpoint-8.tmp"]
    for path in ours + theirs:
        path.mkdir() if path.name.startswith("checkpoint") else path.write_bytes(b"x")
    (run / "checkpoint-8.tmp" / "their-file").write_text("not ours")
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0  # finished: only clears up
    assert not any(p.exists() for p in [*ours, half])
    assert all(p.exists() for p in theirs) and (run / "checkpoint-8.tmp" / "their-file").is_file()


def test_latest_pointer_never_leaves_the_run(tmp_path, trained_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    outside = tmp_path / "elsewhere"
    shutil.copytree(trained_run / "checkpoint-2", outside)
    for pointer in ("../elsewhere", str(outside), "checkpoint-2/../../elsewhere"):
        (run / "latest").write_text(pointer + "\n")
        assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
        assert error_line(capsys) == (f"python -m numpy_bert train: error: {run}/latest names {pointer!r}, which is "
                                      "not a checkpoint of this run (checkpoint-<step>); fix or delete the pointer")


# ---- files that cannot be right -----------------------------------------------------------------


@pytest.mark.parametrize("backend", [None, TorchBackend], ids=["numpy_bert", "torch_bert"])
def test_non_finite_weights_are_refused_by_name(tmp_path, trained_run, backend, capsys):
    model = tmp_path / "model"
    shutil.copytree(trained_run, model, ignore=shutil.ignore_patterns("checkpoint-*"))
    tensors = load_tensors(model / "model.safetensors")
    tensors["bert.encoder.layer.1.output.dense.weight"][3, 4] = np.inf
    tensors["cls.predictions.bias"][7] = np.nan
    save_tensors(model / "model.safetensors", tensors)
    assert main(["fill-mask", str(model), "A [MASK].", *(["--device", "cpu"] if backend else [])], backend) == 2
    assert error_line(capsys).endswith(
        f"{model}/model.safetensors: tensor 'bert.encoder.layer.1.output.dense.weight' holds 1 NaN or infinite "
        "values (a diverged or damaged checkpoint); load an earlier checkpoint")


@pytest.mark.parametrize("argv, message", [
    (["embed", "minilm", "--file", "{tmp}/missing.txt"], "missing.txt"),
    (["embed", "minilm", "a sentence", "--out", "{tmp}/no/such/folder/vectors.npy"],
     "No such file or directory: {tmp}/no/such/folder/vectors.npy; check the path"),
    (["compare", "{run}", "--out", "{run}/args.json/compare.png"],
     "File exists: {run}/args.json; a file of that name is in the way"),
    (["eval", "{tmp}/nowhere"], "does not exist"),
    (["fill-mask", "minilm", "A [MASK]."], "has no masked-LM head (no cls.predictions.* tensors)"),
])
def test_command_line_failures_are_one_line(tmp_path, trained_run, argv, message, capsys):
    fill = {"tmp": str(tmp_path), "run": str(trained_run)}
    argv = [part.format(**fill) for part in argv]
    assert main(argv) == 2
    line = error_line(capsys)
    assert line.startswith(f"python -m numpy_bert {argv[0]}: error: ") and message.format(**fill) in line


@pytest.mark.parametrize("argv", [["similarity", "minilm", "q", "a", "--top-k", "-1"],
                                  ["embed", "minilm", "a", "--batch-size", "0"]])
def test_embedding_options_are_checked(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "must be a positive integer" in error_line(capsys)


def test_compare_refuses_a_finetuning_run(tmp_path, trained_run, capsys):
    finetuned = tmp_path / "finetuned"
    finetuned.mkdir()
    RunFolder(finetuned).claim("finetune", "numpy_bert")
    assert main(["compare", str(trained_run), str(finetuned), "--out", str(tmp_path / "c.png")]) == 2
    assert error_line(capsys) == (f"python -m numpy_bert compare: error: {finetuned} is a finetune run; compare "
                                  "plots pre-training runs (train): a fine-tuning run's figures are in its "
                                  "metrics.json and plots/")


def damage(path: Path, cut: float, flips: list[tuple[float, int]]) -> None:
    """Truncate ``path`` by up to half (``cut`` in [0, 1]) and set bytes at relative positions."""
    data = bytearray(path.read_bytes())
    data = data[: max(1, round(len(data) * (1 - cut / 2)))]  # keep at least half of it, often all
    for where, value in flips:
        data[min(int(where * len(data)), len(data) - 1)] = value
    path.write_bytes(bytes(data))


def assert_works_or_says_why(argv: list[str], capsys) -> None:
    """The command succeeds, or fails with status 2 and its one-line error; never a traceback."""
    status = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert status in (0, 2), status
    if status == 2:
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert lines[-1].startswith(f"python -m numpy_bert {argv[0]}: error: "), captured.err


DAMAGE = dict(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4))

# Hypothesis damages one file of a saved model folder (truncates it, or flips bytes); whatever
# it does, fill-mask either works or ends in one line with status 2, and never a traceback.
MODEL_FOLDER_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(MODEL_FOLDER_FILES), **DAMAGE)
def test_damaged_model_files_end_in_one_line(tmp_path_factory, trained_run, name, cut, flips, capsys):
    folder = tmp_path_factory.mktemp("damaged")
    shutil.copytree(trained_run, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoint-*"))
    damage(folder / name, cut, flips)
    assert_works_or_says_why(["fill-mask", str(folder), "A list is a [MASK]."], capsys)


RUN_STATE_FILES = ("args.json", "latest", "metrics.jsonl", "numpy_bert_run.json", "checkpoint-2/training_state.json",
                   "checkpoint-2/training_state.safetensors", "checkpoint-2/model.safetensors")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(RUN_STATE_FILES), **DAMAGE)
def test_damaged_run_files_end_in_one_line(tmp_path_factory, interrupted_run, name, cut, flips, capsys):
    """The same for ``train --resume`` and the files of a run folder."""
    run = tmp_path_factory.mktemp("damaged-run") / "run"
    shutil.copytree(interrupted_run, run)
    damage(run / name, cut, flips)
    assert_works_or_says_why(["train", "--out", str(run), "--resume", "--no-progress"], capsys)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                          max_size=3), max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["args.json", "checkpoint-2/training_state.json", "numpy_bert_run.json"]),
       choice=st.integers(0, 10**6), nested=st.booleans(), value=JSON_VALUES)
def test_valid_json_of_the_wrong_shape_ends_in_one_line(tmp_path_factory, interrupted_run, name, choice, nested,
                                                        value, capsys):
    """A run file that is valid JSON with one value changed to anything (a hand edit, another
    version): ``train --resume`` works or says which file is wrong, in one line."""
    run = tmp_path_factory.mktemp("reshaped-run") / "run"
    shutil.copytree(interrupted_run, run)
    data = json.loads((run / name).read_text())
    target = data
    keys = sorted(target)
    if nested and isinstance(target[keys[choice % len(keys)]], dict) and target[keys[choice % len(keys)]]:
        target = target[keys[choice % len(keys)]]
        keys = sorted(target)
    target[keys[choice % len(keys)]] = value
    (run / name).write_text(json.dumps(data))
    assert_works_or_says_why(["train", "--out", str(run), "--resume", "--no-progress"], capsys)


def test_deeply_nested_json_is_one_line(tmp_path, trained_run, capsys):
    folder = tmp_path / "model"
    shutil.copytree(trained_run, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    for name in ("config.json", "tokenizer_config.json"):
        original = (folder / name).read_bytes()
        (folder / name).write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
        assert main(["fill-mask", str(folder), "A [MASK]."]) == 2
        assert name in error_line(capsys)
        (folder / name).write_bytes(original)


def test_torch_bert_command_line_uses_the_same_error_path(tmp_path, capsys):
    process = subprocess.run([sys.executable, "-m", "torch_bert", "eval", str(tmp_path / "nowhere")], cwd=REPO,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1].startswith("python -m torch_bert eval: error: ")
    assert "Traceback" not in process.stderr
    process = subprocess.run([sys.executable, "-m", "numpy_bert", "eval", "x"], cwd=REPO, capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(REPO), "WORLD_SIZE": "2"})
    assert process.returncode == 2 and process.stderr.startswith("python -m numpy_bert: error: numpy_bert runs in")

