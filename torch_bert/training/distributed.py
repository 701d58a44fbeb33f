"""Data-parallel pre-training: ``python -m torch_bert train`` under torchrun, with DistributedDataParallel.

    torchrun --nproc_per_node=4 -m torch_bert train --out runs/pt-ddp --batch-size 64 ...

torchrun starts the same command N times and tells each process who it is through
environment variables: ``WORLD_SIZE`` (N, over all machines), ``RANK`` (0 .. N-1)
and ``LOCAL_RANK`` (its index on its own machine, which picks its GPU). Every
process builds the same model from the same seed. DistributedDataParallel (DDP)
keeps the copies identical: during backward it averages each gradient over the
processes (an *all-reduce*, over gloo on CPU and NCCL on GPU), so every process
takes the same optimizer step. Each process computes the forward and backward
of only its part of the batch, so N processes do a step in about 1/N of the time.

What changes against one process, and why:

* **Data.** Every process draws the *same* global micro-batch from the same seeded
  example stream and computes its own contiguous block of rows, ``batch_size / N``
  of them (:func:`shard`). ``--batch-size`` therefore stays the global batch size,
  and the data order, the learning-rate schedule and the logged metrics mean the
  same with N processes as with one. It must be divisible by N. (Collating the
  whole batch in every process costs little next to the model.)
* **The loss.** In one process the MLM loss is a mean over the masked tokens of the
  whole batch, and the NSP loss a mean over its pairs. Shards hold different numbers
  of masked tokens, so the mean of per-shard means (what DDP would average) is *not*
  that loss, and neither is its gradient. So each process backpropagates
  ``N * (sum of its tokens' losses / masked tokens of the global batch)``, and
  likewise for NSP: DDP's average over N processes then equals the gradient of the
  global mean exactly (:meth:`DistributedTorchBackend.forward_backward`). The count
  needs no communication: every process holds the whole global batch.
* **Gradient accumulation.** The inner micro-batches run under ``ddp.no_sync()``;
  gradients just add up locally, and only the last backward all-reduces them.
* **Metrics.** The per-process loss sums are all-reduced once per step, so the
  logged losses are those of the global batch. Token counts (tokens per second)
  come from the global batch already. The gradient norm is the same everywhere:
  after the all-reduce every process holds the same gradients.
* **Dropout.** Each process needs its own masks: the same masks on every shard
  would correlate them. Before each step a process seeds torch's generator with
  (seed, rank, step), so a resumed run draws the same masks again without any
  process's generator state having to be collected into the checkpoint.
* **Files and output.** Only the main process (rank 0) writes the run folder
  (arguments, vocabulary, metrics, plots, checkpoints) and prints. The others read
  the run folder when resuming, so on several machines ``--out`` must be on a
  shared file system for ``--resume``.
* **Evaluation** runs in the main process alone, on the whole validation set (it is
  short); the others wait at a barrier, as they do while it writes a checkpoint.
* **Resuming** needs the same number of processes: the checkpoint stores
  ``world_size``, and another one is refused with a clear message.

Parameter names in checkpoints are unchanged: the backend keeps the model itself
in ``.model`` (saved, loaded, evaluated) and uses the DDP wrapper, whose
state_dict would prefix every name with ``module.``, only to train.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from numpy_bert.config import IGNORE_INDEX, BertConfig
from numpy_bert.training.arguments import Options, TrainingArguments
from numpy_bert.training.pretraining import mean_losses

from ..optim import scale_grads
from .pretraining import TorchBackend


@dataclass(frozen=True)
class Launch:
    """Who this process is among those torchrun started; without torchrun, the only one."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Launch:
        """Read torchrun's ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``."""
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" not in environ:
            return cls()
        try:
            launch = cls(int(environ["WORLD_SIZE"]), int(environ.get("RANK", "0")),
                         int(environ.get("LOCAL_RANK", "0")))
        except ValueError as err:
            raise ValueError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers: {err}") from None
        if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size or launch.local_rank < 0:
            raise ValueError(f"inconsistent torchrun environment: WORLD_SIZE={launch.world_size}, "
                             f"RANK={launch.rank}, LOCAL_RANK={launch.local_rank}")
        return launch

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started with others (``--nproc_per_node=1`` is just one process)."""
    return Launch.from_environment().is_distributed


# The other processes wait at a barrier while the main one evaluates and writes checkpoints:
# longer than NCCL's 10-minute default can take on a big validation set.
WAIT_FOR_MAIN_PROCESS = datetime.timedelta(hours=1)


def init_process_group(launch: Launch, device: str) -> torch.device:
    """Join the other processes: gloo on CPU; NCCL on GPU, each process on its ``LOCAL_RANK``-th GPU.

    The address to meet at comes from torchrun's ``MASTER_ADDR`` and ``MASTER_PORT``.
    Returns this process's device.
    """
    if device == "cuda":
        here = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(here)
        dist.init_process_group("nccl", rank=launch.rank, world_size=launch.world_size, device_id=here,
                                timeout=WAIT_FOR_MAIN_PROCESS)
    else:
        here = torch.device("cpu")
        dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world_size,
                                timeout=WAIT_FOR_MAIN_PROCESS)
    return here


def shutdown() -> None:
    """Leave the process group, if one was joined (at the end, also after an error)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch: Mapping[str, np.ndarray], launch: Launch) -> dict[str, np.ndarray]:
    """This process's contiguous block of rows of a global batch: rows [r*b, (r+1)*b), b = rows / N.

    Put back together in rank order, the blocks are the global batch.
    """
    rows = len(batch["input_ids"])
    if rows % launch.world_size:
        raise ValueError(f"a batch of {rows} rows cannot be split evenly among {launch.world_size} processes")
    size = rows // launch.world_size
    return {name: array[launch.rank * size : (launch.rank + 1) * size] for name, array in batch.items()}


def dropout_seed(seed: int, rank: int, step: int) -> int:
    """The seed of torch's generator for one process's dropout masks in one step."""
    return int(np.random.SeedSequence([seed % 2**64, rank, step]).generate_state(1, np.uint64)[0])


class DistributedTorchBackend(TorchBackend):
    """TorchBackend for one of several processes started by torchrun: DDP, sharded batches, exact loss.

    ``python -m torch_bert`` picks it when ``WORLD_SIZE`` is above 1. The trainer is
    numpy_bert's, unchanged except that it asks :meth:`is_main_process` who writes
    files and calls :meth:`barrier` where the main process works alone.
    """

    def __init__(self, model, device: str = "cpu", precision: str = "fp32"):
        self.launch = Launch.from_environment()
        if device == "cuda":  # each process has a GPU of its own
            device = f"cuda:{self.launch.local_rank}"
        super().__init__(model, device, precision)
        self.ddp: DistributedDataParallel | None = None  # the training wrapper, made by create()
        self.seed = 0

    @property
    def world_size(self) -> int:  # stored in checkpoints (TorchBackend.training_state)
        return self.launch.world_size

    @staticmethod
    def is_main_process() -> bool:
        """Rank 0 writes the run folder and prints; the trainer asks before the model exists."""
        return Launch.from_environment().is_main_process

    # ---- construction -----------------------------------------------------------------

    @staticmethod
    def resolve_options(options: Options, command: str) -> Options:
        options = TorchBackend.resolve_options(options, command)
        if command != "train":
            raise ValueError(f"under torchrun only 'train' runs in several processes; run "
                             f"'python -m torch_bert {command}' as a single process")
        if options.architecture not in (None, "bert"):  # the exact sharded loss below is written for BERT's heads
            raise ValueError(f"--architecture {options.architecture} trains in one process: run "
                             "'python -m torch_bert train' without torchrun")
        local_rank = Launch.from_environment().local_rank
        if options.device == "cuda" and local_rank >= torch.cuda.device_count():
            raise ValueError(f"process LOCAL_RANK={local_rank} needs a GPU of its own, but torch sees "
                             f"{torch.cuda.device_count()}: start at most that many processes per machine")
        return options

    @classmethod
    def create(cls, config: BertConfig, args: TrainingArguments) -> DistributedTorchBackend:
        """Join the process group, then the single-process model and optimizer, wrapped in DDP.

        Every process initialises the same weights from ``--seed``; DDP also
        broadcasts rank 0's weights when it wraps the model, to be sure.
        """
        launch = Launch.from_environment()
        if args.batch_size % launch.world_size:
            raise ValueError(f"--batch-size {args.batch_size} is the global batch: it must be divisible by the "
                             f"number of processes ({launch.world_size}), which each compute an equal part")
        init_process_group(launch, args.device)
        # The process group is a meeting point too: every process has checked the run folder
        # (TrainingArguments.for_run_folder) before the main one can write args.json into it.
        dist.barrier()
        backend = super().create(config, args)
        backend.seed = args.seed
        on_gpu = backend.device.type == "cuda"
        backend.ddp = DistributedDataParallel(backend.model, device_ids=[backend.device.index] if on_gpu else None)
        if launch.is_main_process:
            rows = args.batch_size // launch.world_size
            print(f"{cls.name}: DistributedDataParallel over {launch.world_size} processes "
                  f"({dist.get_backend()}); each computes {rows} of the {args.batch_size} pairs of every batch")
        return backend

    # ---- one training step ------------------------------------------------------------

    def forward_backward(self, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """Forward and backward of this process's shards; leaves the global batches' mean gradient in ``.grad``.

        Why the loss is scaled: in one process, a micro-batch's MLM loss is
        ``L = sum(token losses) / M`` over its M masked tokens. Split into shards with
        ``m_r`` masked tokens each (``sum m_r = M``), the per-shard means
        ``mean_r = sum_r / m_r`` average to ``L`` only if every ``m_r`` is equal, and
        DDP averages *gradients*: ``(1/N) sum_r grad(mean_r) != grad(L)`` in general. So
        process r backpropagates ``N * sum_r / M`` instead; DDP's average is then
        ``(1/N) sum_r N * grad(sum_r) / M = grad(sum over all tokens) / M = grad(L)``,
        exactly. NSP is the same with pairs instead of masked tokens.

        With gradient accumulation, all micro-batches but the last run under
        ``no_sync()``: their gradients add up in ``.grad`` without communication, and
        the last backward all-reduces the sum. As in one process, the sum is then
        divided by the number of micro-batches.

        The model still computes its own per-shard mean losses (``out.loss``); they are
        simply not used. The logged losses are the global ones, from the all-reduced sums.
        """
        n = self.launch.world_size
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        torch.manual_seed(dropout_seed(self.seed, self.launch.rank, self.scheduler.last_epoch))
        sums, counts = [], []
        for index, batch in enumerate(batches):
            masked = int(np.count_nonzero(batch["labels"] != IGNORE_INDEX))  # of the global micro-batch
            pairs = len(batch["next_sentence_label"])
            counts.append((masked, pairs))
            mine = self._to_device(shard(batch, self.launch))
            last = index == len(batches) - 1
            with contextlib.nullcontext() if last else self.ddp.no_sync():
                with self._autocast():
                    out = self.ddp(**mine, labelled_positions_only=True)
                    targets = mine["labels"][mine["labels"] != IGNORE_INDEX]  # in the order of the logits
                    mlm_sum = F.cross_entropy(out.prediction_logits, targets, reduction="sum")
                    nsp_sum = F.cross_entropy(out.seq_relationship_logits, mine["next_sentence_label"],
                                              reduction="sum")
                loss = n * (mlm_sum / masked + nsp_sum / pairs)  # DDP divides the gradients by n
                (loss if self.scaler is None else self.scaler.scale(loss)).backward()
            sums.append(torch.stack([mlm_sum, nsp_sum]).detach())
        if len(batches) > 1:
            scale_grads(self.model.parameters(), 1 / len(batches))
        totals = torch.stack(sums).double()  # (micro-batches, 2): this process's loss sums
        dist.all_reduce(totals)  # now the global batches' sums, in every process
        losses = []
        for (mlm, nsp), (masked, pairs) in zip(totals.tolist(), counts):
            mlm_loss = mlm / masked if masked else math.nan  # as torch's mean over no token: the run stops
            losses.append((mlm_loss + nsp / pairs, mlm_loss, nsp / pairs))
        return mean_losses(losses)

    def barrier(self) -> None:
        """Wait until every process gets here (while the main process evaluates or writes a checkpoint)."""
        dist.barrier()
