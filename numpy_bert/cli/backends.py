"""The options only one backend reads (the fields of BackendOptions), on the command lines that offer them.

Declared here, by backend name, so that the backends themselves know nothing of argparse;
naming torch_bert's options imports nothing of it (numpy_bert never imports torch).
"""

from __future__ import annotations

import argparse

from ..training.arguments import DEVICES, PRECISIONS, BackendOptions
from .arguments import option_defaults


def add_numpy_options(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "finetune":  # the head models have no fused path
        return
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction,
                        help="compute with numpy_bert.fast.FastBertForPreTraining: the same model, parameters "
                             "and checkpoints, with a fused forward and backward (equal up to rounding). "
                             "By default the readable numpy_bert/modeling.py runs: what you read is what runs")


def add_torch_options(parser: argparse.ArgumentParser, command: str) -> None:
    group = parser.add_argument_group("torch")
    group.add_argument("--device", choices=DEVICES,
                       help="where to compute (default: cuda when a GPU is visible, else cpu)")
    group.add_argument("--precision", choices=PRECISIONS,
                       help="fp32; bf16 autocast (CPU or GPU); fp16 autocast with loss scaling (GPU only)")


BACKEND_OPTIONS = {"numpy_bert": add_numpy_options, "torch_bert": add_torch_options}


def add_backend_options(parser: argparse.ArgumentParser, backend_name: str, command: str) -> None:
    """The options of backend ``backend_name`` (its ``name``) that ``command`` offers."""
    parser.set_defaults(**option_defaults(BackendOptions))
    BACKEND_OPTIONS[backend_name](parser, command)
