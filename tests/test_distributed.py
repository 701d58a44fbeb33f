"""Data-parallel training under torchrun (torch_bert/training/distributed.py): two CPU processes over gloo.

Covered: two processes compute what one process computes on the same global batches -
the weights after one step and after a few steps with gradient accumulation (float64,
relative error <= 1e-10 per tensor), and every logged loss; only rank 0 writes the run
folder (no duplicate metrics rows, one header); a run interrupted in both processes
resumes with two processes to exactly the uninterrupted run (dropout on); resuming with
another number of processes, a global batch that does not split evenly and other
commands than train under torchrun are refused with a clear message.

The two-process runs go through the real entry point, ``python -m torch.distributed.run
--nproc_per_node=2 -m torch_bert train ...``, on a free port of 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist

from numpy_bert.checkpoint import load_tensors
from numpy_bert.cli.main import main
from numpy_bert.training.pretraining import computed_rows
from numpy_bert.training.run_folder import RunFolder
from parity_tests.compare import assert_close
from tests.test_training import write_micro_config, write_tiny_corpus
from torch_bert.training.distributed import DistributedTorchBackend, Launch, shard
from torch_bert.training.pretraining import TorchBackend

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch without gloo"),
]

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-10  # float64: what is left is the rounding of sums taken in another order
TIMEOUT_S = 120
LOOPBACK = {"linux": "lo", "darwin": "lo0"}  # network interface names, by sys.platform
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                      "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")

# Every process is interrupted (Ctrl-C) during step 4; the latest checkpoint is step 2's.
INTERRUPTED_ENTRY_POINT = """
import sys

from numpy_bert.cli.main import main
from torch_bert.training.distributed import DistributedTorchBackend, shutdown

original, calls = DistributedTorchBackend.optimizer_step, []


def optimizer_step(self):
    calls.append(1)
    if len(calls) == 4:
        raise KeyboardInterrupt
    original(self)


DistributedTorchBackend.optimizer_step = optimizer_step
try:
    status = main(sys.argv[1:], backend=DistributedTorchBackend)
finally:
    shutdown()
sys.exit(status)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(program: list[str], argv: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=processes PROGRAM ARGV`` on this machine, one torch thread per process.

    torchrun and its workers run in a session of their own, so that a run past the timeout
    is ended whole: killing torchrun alone would leave its workers waiting for each other.
    """
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    if sys.platform in LOOPBACK:  # gloo talks over loopback, whatever the host name resolves to
        env.setdefault("GLOO_SOCKET_IFNAME", LOOPBACK[sys.platform])
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", *program, *argv]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(f"torchrun ran past {TIMEOUT_S} s:\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def torch_bert_train(argv: list[str]) -> subprocess.CompletedProcess:
    result = torchrun(["-m", "torch_bert"], argv)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def train_args(tmp_path_factory):
    corpus = str(write_tiny_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt"))
    config = write_micro_config(tmp_path_factory.mktemp("config"))

    def make(out: Path, *extra: str) -> list[str]:
        return ["train", "--out", str(out), "--corpus", corpus, "--config", config, "--vocab-size", "200",
                "--seq-len", "32", "--batch-size", "4", "--eval-batches", "2", "--no-progress", "--no-plots",
                "--log-every", "1", *extra]

    return make


def assert_same_rows(actual: list[dict], expected: list[dict]) -> None:
    """The same rows (split, step, counts), with every number within TOLERANCE."""
    actual, expected = computed_rows(actual), computed_rows(expected)
    assert [(r["split"], r["step"]) for r in actual] == [(r["split"], r["step"]) for r in expected]
    for mine, theirs in zip(actual, expected):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            if isinstance(value, float):
                assert abs(mine[key] - value) <= TOLERANCE * abs(value), (mine["step"], key, mine[key], value)
            else:
                assert mine[key] == value, (mine["step"], key)


# ---- two processes compute what one process computes -------------------------------------------


@pytest.mark.parametrize("options", [("--steps", "1"), ("--steps", "3", "--grad-accum", "2")],
                         ids=["one-step", "three-steps-grad-accum-2"])
def test_two_processes_equal_one(tmp_path, train_args, options):
    """Each process computes 2 of the 4 pairs of every batch; the loss scaling makes the averaged
    gradient the global batch's (a plain mean per process would miss by O(1) after a few steps)."""
    exact = ("--dtype", "float64", "--dropout", "0", "--eval-every", "2", "--checkpoint-every", "2", *options)
    one, two = tmp_path / "one-process", tmp_path / "two-processes"
    assert main(train_args(one, *exact), TorchBackend) == 0
    result = torch_bert_train(train_args(two, *exact))

    # The same parameters, by name (no "module." prefix from the DDP wrapper)
    assert_close(load_tensors(two / "model.safetensors"), load_tensors(one / "model.safetensors"), TOLERANCE,
                 f"two processes against one ({' '.join(options)})")
    assert_same_rows(RunFolder(two).read_metrics(), RunFolder(one).read_metrics())

    # Only rank 0 wrote the run folder and printed
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert result.stdout.count("pre-training a") == 1 and result.stdout.count("done:") == 1, result.stdout
    assert "DistributedDataParallel over 2 processes (gloo)" in result.stdout
    state = json.loads((RunFolder(two).latest_checkpoint() / "training_state.json").read_text())
    assert state["backend_state"]["world_size"] == 2


# ---- resuming ----------------------------------------------------------------------------------


RESUME_OPTIONS = ("--steps", "5", "--checkpoint-every", "2", "--eval-every", "2", "--grad-accum", "2")


def test_resume_with_two_processes(tmp_path, train_args, capsys):
    """Dropout on (0.1): every process draws its own masks, seeded by (seed, rank, step), so the resumed
    run draws the same ones again and ends bitwise where the uninterrupted run ends."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    torch_bert_train(train_args(straight, *RESUME_OPTIONS))
    rows = RunFolder(straight).read_metrics()
    train_steps = [r["step"] for r in rows if r["split"] == "train"]
    validation_steps = [r["step"] for r in rows if r["split"] == "validation"]
    assert train_steps == [1, 2, 3, 4, 5] and validation_steps == [2, 4, 5], "rows duplicated or missing"

    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_ENTRY_POINT, encoding="utf-8")
    interrupted = torchrun([str(script)], train_args(resumed, *RESUME_OPTIONS))
    assert interrupted.returncode != 0
    assert RunFolder(resumed).latest_checkpoint().name == "checkpoint-2"
    assert max(r["step"] for r in RunFolder(resumed).read_metrics()) == 3  # to be dropped on resume

    torch_bert_train(["train", "--out", str(resumed), "--resume", "--no-progress"])
    assert (resumed / "model.safetensors").read_bytes() == (straight / "model.safetensors").read_bytes()
    assert computed_rows(RunFolder(resumed).read_metrics()) == computed_rows(rows)
    assert sorted(p.name for p in resumed.glob("checkpoint-*")) == ["checkpoint-5"]

    # One process cannot continue a run of two.
    assert main(["train", "--out", str(resumed), "--resume", "--no-progress"], TorchBackend) == 2
    message = capsys.readouterr().err
    assert "the checkpoint was written by 2 processes and this run has a single process" in message
    assert "resume it with 2 processes (torchrun" in message


# ---- errors and helpers, in this process ------------------------------------------------------------


@pytest.fixture
def rank0_of_two(monkeypatch):
    """This process's environment as if torchrun had started it as rank 0 of 2 (no group is joined)."""
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)


def test_batch_must_split_evenly(tmp_path, train_args, rank0_of_two, capsys):
    assert main(train_args(tmp_path / "run", "--batch-size", "3"), DistributedTorchBackend) == 2
    assert "--batch-size 3 is the global batch: it must be divisible by the number of processes (2)" \
        in capsys.readouterr().err
    assert not (tmp_path / "run" / "args.json").exists()


def test_only_train_runs_distributed(tmp_path, rank0_of_two, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path)], DistributedTorchBackend)
    assert exit_info.value.code == 2
    assert "under torchrun only 'train' runs in several processes" in capsys.readouterr().err


def test_launch_from_environment():
    assert Launch.from_environment({}) == Launch(world_size=1, rank=0, local_rank=0)
    launch = Launch.from_environment({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1"})
    assert (launch.world_size, launch.rank, launch.local_rank) == (8, 5, 1)
    assert launch.is_distributed and not launch.is_main_process
    with pytest.raises(ValueError, match="inconsistent torchrun environment"):
        Launch.from_environment({"WORLD_SIZE": "2", "RANK": "2"})


def test_shards_put_together_are_the_batch():
    batch = {"input_ids": np.arange(24).reshape(6, 4), "next_sentence_label": np.arange(6)}
    shards = [shard(batch, Launch(world_size=3, rank=r)) for r in range(3)]
    for name, array in batch.items():
        np.testing.assert_array_equal(np.concatenate([s[name] for s in shards]), array)
    with pytest.raises(ValueError, match="cannot be split evenly"):
        shard(batch, Launch(world_size=4, rank=0))
