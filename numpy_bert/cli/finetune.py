"""The ``finetune`` and ``demo-data`` commands (the fine-tuning itself: numpy_bert/training/finetuning.py).

    python -m numpy_bert finetune --task classify|tag|qa --model RUN_OR_CHECKPOINT \\
        --train FILE --eval FILE --out DIR [--epochs 3 --lr 1e-4 --layerwise-lr-decay 0.9 ...]
    python -m numpy_bert demo-data --task classify --out data/     # offline demo files

(``python -m torch_bert ...`` the same with PyTorch, plus ``--device``/``--precision``.)
"""

from __future__ import annotations

import argparse
import importlib

from ..data.demo_tasks import DEMO_TASKS, write_demo_data
from ..data.finetune_data import TASKS
from ..training.arguments import DTYPES, FinetuningArguments
from ..training.finetuning import Finetuner
from ..training.run_folder import RunFolder
from .arguments import add_optimizer_arguments, add_overwrite_argument, option_defaults, positive_float, positive_int


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``finetune`` options, with the defaults of :class:`FinetuningArguments`."""
    parser.set_defaults(**option_defaults(FinetuningArguments))
    parser.add_argument("--task", choices=TASKS, required=True,
                        help="classify: one label per text (pair); tag: BIO tags per word; qa: answer span")
    parser.add_argument("--model", required=True,
                        help="folder with config.json, model.safetensors and vocab.txt: a pre-training run, a "
                             "checkpoint, a transformers model, a fine-tuned model, or 'minilm' (all-MiniLM-L6-v2)")
    parser.add_argument("--tokenizer", help="folder of vocab.txt (default: --model)")
    parser.add_argument("--train", required=True, help="training examples, .jsonl or .csv")
    parser.add_argument("--eval", required=True, help="evaluation examples, .jsonl or .csv")
    parser.add_argument("--out", required=True, help="run folder for the model, metrics.json and plots")
    add_overwrite_argument(parser)
    parser.add_argument("--max-length", type=positive_int, help="tokens per example, [CLS]/[SEP] included")
    parser.add_argument("--batch-size", type=positive_int, help="examples per optimizer step")
    parser.add_argument("--epochs", type=positive_int, help="passes over the training file")
    parser.add_argument("--steps", type=positive_int, help="optimizer steps (overrides --epochs)")
    add_optimizer_arguments(parser)
    parser.add_argument("--log-every", type=positive_int, help="steps per train-loss row")
    parser.add_argument("--eval-every", type=positive_int, help="steps between evaluations "
                        "(default: once per epoch; always at the end)")
    parser.add_argument("--max-answer-length", type=positive_int, help="qa: longest answer, in tokens")
    parser.add_argument("--distill-from",
                        help="classify: a fine-tuned teacher classifier; trains on its softened logits too")
    parser.add_argument("--temperature", type=positive_float, help="distillation temperature τ")
    parser.add_argument("--alpha", type=float, help="distillation weight α of the teacher's term")
    parser.add_argument("--seed", type=int, help="seeds the data order and dropout")
    parser.add_argument("--dtype", choices=DTYPES, help="parameter dtype")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, help="progress bar")


def add_demo_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=DEMO_TASKS, required=True, help="which demo task (see demo_tasks.py)")
    parser.add_argument("--out", required=True, help="folder for <task>-train.jsonl and <task>-eval.jsonl")
    add_overwrite_argument(parser)
    parser.add_argument("--train-size", type=positive_int, default=1000, help="training examples (at most)")
    parser.add_argument("--eval-size", type=positive_int, default=200, help="evaluation examples (at most)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed writes the same files")


def add_finetune_commands(commands, formatter=argparse.ArgumentDefaultsHelpFormatter) -> dict:
    """Add ``finetune`` and ``demo-data`` to an ``add_subparsers()`` group; returns their parsers by name."""
    sub = {
        "finetune": commands.add_parser(
            "finetune", help="fine-tune a classification, tagging or QA head; writes an evaluation report",
            formatter_class=formatter, description="Fine-tune a model folder on a task (JSONL or CSV files) into a "
                                                   "run folder with the model, metrics.json and plots."),
        "demo-data": commands.add_parser(
            "demo-data", help="write an offline demo task's train and eval files", formatter_class=formatter,
            description="Build a demo task from the embedded corpus of Python's documentation "
                        "(see numpy_bert/data/demo_tasks.py) and write it as JSONL."),
    }
    add_finetune_arguments(sub["finetune"])
    add_demo_data_arguments(sub["demo-data"])
    return sub


def finetune_backend(backend):
    """The fine-tuning backend of a backend's package: main() is given the pre-training one
    (numpy_bert.training.pretraining.NumpyBackend or torch_bert.training.pretraining.TorchBackend)."""
    if hasattr(backend, "load"):
        return backend
    return importlib.import_module(f"{backend.name}.training.finetuning").FINETUNE_BACKEND


def finetune_command(options: FinetuningArguments, backend) -> int:
    """``finetune``, with the fine-tuning backend that goes with ``backend``."""
    Finetuner(options, finetune_backend(backend)).train()
    return 0


def demo_data_command(args: argparse.Namespace, backend) -> int:
    RunFolder(args.out).claim("demo-data", backend.name, args.overwrite_output_dir)
    train, evaluation = write_demo_data(args.task, args.out, train_size=args.train_size,
                                        eval_size=args.eval_size, seed=args.seed)
    print(f"wrote {train} and {evaluation}; fine-tune with e.g.\n  python -m {backend.name} finetune "
          f"--task {args.task} --model RUN --train {train} --eval {evaluation} --out runs/{args.task}")
    return 0
