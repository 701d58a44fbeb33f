"""Argument types and option groups shared by every command line (train, finetune, ...), and the
step from what argparse parsed to the typed options of numpy_bert/training/arguments.py.

A bad value is reported by argparse, with the option's name. The types apply the rules
of the typed options, so that both refuse the same values in the same words.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from typing import Any

from ..training.arguments import (
    DECAY_FACTOR,
    NON_NEGATIVE,
    OPEN_UNIT_INTERVAL,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    BackendOptions,
    Options,
    Rule,
)


def _checked(value, rule: Rule, text: str):
    if not rule.accepts(value):
        raise argparse.ArgumentTypeError(f"{rule.requirement}, got {text}")
    return value


# argparse names a type in its messages ("invalid positive_int value: 'x'"): one function each.
def positive_int(text: str) -> int:
    return _checked(int(text), POSITIVE_INT, text)


def non_negative_float(text: str) -> float:
    return _checked(float(text), NON_NEGATIVE, text)


def positive_float(text: str) -> float:
    return _checked(float(text), POSITIVE, text)


def probability(text: str) -> float:
    return _checked(float(text), PROBABILITY, text)


def fraction(text: str) -> float:
    return _checked(float(text), OPEN_UNIT_INTERVAL, text)


def decay_factor(text: str) -> float:
    return _checked(float(text), DECAY_FACTOR, text)


def add_overwrite_argument(group) -> None:
    """transformers' --overwrite-output-dir: the one way to write into a folder that is not a new run's."""
    group.add_argument("--overwrite-output-dir", action="store_true",
                       help="write into --out even though it holds another tool's files, a model, or an earlier "
                            "run (started afresh); only files of the names this command writes are replaced")


def add_optimizer_arguments(group) -> None:
    """AdamW's learning rate, warm-up, weight decay, layer-wise decay and clipping (numpy_bert/optim.py)."""
    group.add_argument("--lr", type=positive_float, help="peak learning rate")
    group.add_argument("--warmup", type=non_negative_float,
                       help="warm-up: a fraction of the steps if below 1, else a number of steps")
    group.add_argument("--weight-decay", type=non_negative_float,
                       help="AdamW's decoupled weight decay (never on biases and LayerNorm)")
    group.add_argument("--layerwise-lr-decay", type=decay_factor,
                       help="multiply the lr by this per layer from the top down (default: off)")
    group.add_argument("--clip", type=non_negative_float,
                       help="clip the global gradient norm to this (0: no clipping)")


def option_defaults(options_class: type[BackendOptions]) -> dict[str, Any]:
    """The typed options' defaults, for ``parser.set_defaults``: the command line has no others.

    Set before the options are added, so that each one is declared with its default
    (as the help shows it).
    """
    return {f.name: f.default for f in fields(options_class) if f.default is not MISSING}


def typed_options(options_class: type[Options], parsed: argparse.Namespace) -> Options:
    """The typed options from a parsed command line (ValueError: a value that they refuse)."""
    return options_class(**{f.name: getattr(parsed, f.name) for f in fields(options_class)})
