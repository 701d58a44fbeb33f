"""torch_bert behind numpy_bert's trainer: the PyTorch twin of ``numpy_bert.training.pretraining.NumpyBackend``.

The loop, the data, the checkpoints, the metrics and the command line are
numpy_bert's (numpy_bert/training/pretraining.py, numpy_bert/cli/); this file only says
how PyTorch does each step: autograd instead of hand-written backward passes,
``torch.optim.AdamW`` + ``LambdaLR`` instead of the NumPy AdamW, and, on a GPU,
mixed precision:

* ``--precision bf16``: the forward pass runs under ``torch.autocast`` in bfloat16.
  bfloat16 has float32's exponent range, so gradients cannot underflow and no loss
  scaling is needed. Allowed on CPU too (where it is mostly a way to test it).
* ``--precision fp16``: float16 has a narrow range, so the loss is multiplied by a
  large factor before backward (``torch.amp.GradScaler``) and the gradients divided
  back before clipping; a step whose gradients overflowed is skipped and the factor
  lowered. Only on CUDA.

Parameters and AdamW's moments stay float32 in both cases ("master weights").

Under torchrun, several processes train one model together with
DistributedDataParallel: torch_bert/training/distributed.py, a subclass of this backend.

``--architecture roberta`` and ``albert`` train the twins of numpy_bert's models (torch_bert/roberta.py,
torch_bert/albert.py), chosen by the same names (numpy_bert.training.pretraining.pretraining_model_name).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from numpy_bert.checkpoint import load_weights
from numpy_bert.config import BertConfig
from numpy_bert.nn import check_state_dict
from numpy_bert.training.arguments import BackendOptions, Options, TrainingArguments
from numpy_bert.training.pretraining import (
    MASKED_LM_HEADS,
    check_masked_lm_head,
    folder_model_name,
    lr_schedule,
    mean_losses,
    model_inputs,
    model_type,
    objective_backend,
    pair_task,
    prediction_logits,
    pretraining_model_name,
    training_losses,
)

from ..albert import AlbertForMaskedLM, AlbertForPreTraining
from ..modeling import BertForPreTraining
from ..optim import BERT_DEFAULTS, build_optimizer, build_scheduler, clip_grad_norm, scale_grads
from ..roberta import RobertaForMaskedLM

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# torch_bert's pre-training classes, by name (numpy_bert's have the same names).
TORCH_MODELS = {cls.__name__: cls for cls in (BertForPreTraining, RobertaForMaskedLM, AlbertForPreTraining,
                                             AlbertForMaskedLM)}


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A CPU NumPy copy; half-precision results become float32 (NumPy has no bfloat16)."""
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.detach().cpu().numpy()


class TorchBackend:
    """torch_bert with torch.optim.AdamW, LambdaLR, clip_grad_norm_ and optional mixed precision."""

    name = "torch_bert"
    world_size = 1  # processes training together: torch_bert/training/distributed.py's backend, under torchrun

    def __init__(self, model: BertForPreTraining, device: str = "cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.model.use_sdpa()  # the fused attention kernel: same maths, much faster on a GPU
        self.precision = precision
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None

    @property
    def scales_loss(self) -> bool:
        """With fp16 loss scaling, an overflowing gradient is expected now and then: the step is skipped."""
        return self.scaler is not None

    # ---- construction -----------------------------------------------------------------

    @staticmethod
    def resolve_options(options: Options, command: str) -> Options:
        """``options`` with the default device filled in; a ValueError for a combination that cannot work here."""
        device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda, but torch sees no CUDA GPU (torch.cuda.is_available() is False)")
        if options.precision == "fp16" and device != "cuda":
            raise ValueError("--precision fp16 needs a CUDA GPU: float16 training relies on GradScaler's loss "
                             "scaling, which is CUDA-only here; on CPU use --precision bf16 or fp32")
        return replace(options, device=device)

    @classmethod
    def create(cls, config: BertConfig, args: TrainingArguments) -> TorchBackend:
        """A freshly initialised model of ``--architecture`` (seeded by ``--seed``) with torch's AdamW and the lr
        schedule."""
        torch.manual_seed(args.seed)  # dropout masks come from torch's global generator
        model_class = TORCH_MODELS[pretraining_model_name(args.architecture, args.task)]
        model = model_class(config, seed=args.seed, dtype=DTYPES[args.dtype])
        backend = cls(model, args.device, args.precision)
        schedule = lr_schedule(args.warmup, args.steps)
        backend.optimizer = build_optimizer(
            backend.model, lr=args.lr, weight_decay=args.weight_decay, betas=BERT_DEFAULTS["betas"],
            eps=BERT_DEFAULTS["eps"], layerwise_lr_decay=args.layerwise_lr_decay)
        backend.scheduler = build_scheduler(backend.optimizer, schedule.warmup_steps, schedule.total_steps)
        return backend

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, options: BackendOptions) -> TorchBackend:
        """For evaluation and fill-mask: any folder with config.json + model.safetensors and an MLM head: a BERT,
        RoBERTa or ALBERT (by its model_type), or an ELECTRA run (its backend loads the generator too)."""
        if model_type(folder) == "electra":
            return objective_backend(cls, "electra").from_pretrained(folder, options)
        name = folder_model_name(folder)
        model, info = TORCH_MODELS[name].from_pretrained(folder, output_loading_info=True)
        check_masked_lm_head(info, folder, MASKED_LM_HEADS[name])
        return cls(model, options.device, options.precision)

    @staticmethod
    def export_onnx(model: str | os.PathLike, out: str | os.PathLike, exporter: str, overwrite_output_dir: bool):
        """``export-onnx``: see torch_bert/export/onnx.py."""
        from ..export.onnx import export_onnx

        return export_onnx(model, out, exporter, overwrite_output_dir)

    # ---- one training step ------------------------------------------------------------

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def _to_device(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(array).to(self.device, non_blocking=True) for name, array in batch.items()}

    def forward_backward(self, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """Forward and backward over the micro-batches; leaves the mean of their gradients in ``.grad``.

        ``loss.backward()`` adds into ``.grad``, so the micro-batches' gradients sum
        up by themselves and are divided by their number at the end - the same
        order of operations as the NumPy backend.
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for batch in batches:
            with self._autocast():
                out = self.model(**self._to_device(model_inputs(self.model, batch)), labelled_positions_only=True)
            loss, mlm_loss, pair_loss = training_losses(out)
            (loss if self.scaler is None else self.scaler.scale(loss)).backward()
            losses.append(torch.stack([loss, mlm_loss, pair_loss]).detach())
        if len(batches) > 1:
            scale_grads(self.model.parameters(), 1 / len(batches))
        return mean_losses(torch.stack(losses).double().tolist(), pair_task(self.model))  # one device sync per step

    def clip_gradients(self, max_norm: float) -> float:
        """Clip to global norm ``max_norm`` (0: no clipping); returns the norm before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        return clip_grad_norm(self.model.parameters(), max_norm or math.inf)

    def optimizer_step(self) -> None:
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)  # skipped if the gradients overflowed
            self.scaler.update()
        self.scheduler.step()

    @torch.inference_mode()
    def predict(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(MLM logits at the labelled positions (N, V), NSP or SOP logits (B, 2), None for a masked-LM model),
        in evaluation mode."""
        self.model.eval()
        inputs = self._to_device(model_inputs(self.model, batch, pair_label=False))
        with self._autocast():
            out = self.model(**inputs, labelled_positions_only=True)
        return tuple(None if logits is None else _to_numpy(logits) for logits in prediction_logits(out))

    # ---- checkpoints ----------------------------------------------------------------------

    def save_model(self, folder: str | os.PathLike) -> None:
        self.model.save_pretrained(folder)

    def load_model(self, folder: str | os.PathLike) -> None:
        """Exactly the saved weights (names and shapes must match: this is a resume, not a transfer)."""
        tensors = load_weights(folder)
        params = dict(self.model.named_parameters())  # tied weights once, as saved
        check_state_dict(tensors, {n: tuple(p.shape) for n, p in params.items()}, np.shape)
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(torch.tensor(tensors[name]))

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(tensors, JSON scalars): torch's optimizer, scheduler and GradScaler state, and the RNGs.

        The optimizer's state_dict numbers its parameters; here the moments are named
        ``<parameter>.exp_avg`` and ``<parameter>.exp_avg_sq``, as numpy_bert names them.
        """
        state = self.optimizer.state_dict()
        names = _index_to_name(state["param_groups"])
        tensors, steps = {}, {}
        for index, moments in state["state"].items():
            tensors[f"{names[index]}.exp_avg"] = moments["exp_avg"].cpu().numpy()
            tensors[f"{names[index]}.exp_avg_sq"] = moments["exp_avg_sq"].cpu().numpy()
            steps[names[index]] = float(moments["step"])
        tensors["torch_rng.cpu"] = torch.get_rng_state().numpy()
        if self.device.type == "cuda":
            tensors["torch_rng.cuda"] = torch.cuda.get_rng_state(self.device).numpy()
        scalars = {"optimizer": {"param_groups": state["param_groups"], "steps": steps},
                   "scheduler": self.scheduler.state_dict(),
                   "grad_scaler": None if self.scaler is None else self.scaler.state_dict(),
                   "world_size": self.world_size}
        return tensors, scalars

    def load_training_state(self, tensors: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        saved_world_size = scalars.get("world_size", 1)  # checkpoints from before torchrun support: 1
        if saved_world_size != self.world_size:
            written, running = (f"{n} processes" if n > 1 else "a single process"
                                for n in (saved_world_size, self.world_size))
            how = ("as a single process, without torchrun" if saved_world_size == 1 else
                   f"with {saved_world_size} processes (torchrun, --nnodes x --nproc_per_node = {saved_world_size})")
            raise ValueError(f"the checkpoint was written by {written} and this run has {running}: resume it {how}, "
                             "so that it computes what the uninterrupted run would have (every process draws its "
                             "own dropout masks)")
        saved = scalars["optimizer"]
        names = _index_to_name(saved["param_groups"])
        state = {index: {"step": torch.tensor(saved["steps"][name]),
                         "exp_avg": torch.tensor(tensors[f"{name}.exp_avg"]),
                         "exp_avg_sq": torch.tensor(tensors[f"{name}.exp_avg_sq"])}
                 for index, name in names.items() if name in saved["steps"]}
        self.optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
        self.scheduler.load_state_dict(scalars["scheduler"])
        if self.scaler is not None and scalars["grad_scaler"] is not None:
            self.scaler.load_state_dict(scalars["grad_scaler"])
        torch.set_rng_state(torch.tensor(tensors["torch_rng.cpu"]))
        if self.device.type == "cuda" and "torch_rng.cuda" in tensors:
            torch.cuda.set_rng_state(torch.tensor(tensors["torch_rng.cuda"]), self.device)


def _index_to_name(param_groups: list[dict[str, Any]]) -> dict[int, str]:
    """torch numbers parameters across groups; the groups also carry their names."""
    return {index: name for group in param_groups for index, name in zip(group["params"], group["param_names"])}
