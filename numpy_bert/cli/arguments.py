"""Argument types and option groups shared by every command line (train, finetune, ...).

A bad value is reported by argparse, with the option's name. This module imports
nothing else from the package, so any command's module can use it.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def decay_factor(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_optimizer_arguments(group, lr: float) -> None:
    """AdamW's learning rate, warm-up, weight decay, layer-wise decay and clipping (numpy_bert/optim.py)."""
    group.add_argument("--lr", type=positive_float, default=lr, help="peak learning rate")
    group.add_argument("--warmup", type=non_negative_float, default=0.1,
                       help="warm-up: a fraction of the steps if below 1, else a number of steps")
    group.add_argument("--weight-decay", type=non_negative_float, default=0.01,
                       help="AdamW's decoupled weight decay (never on biases and LayerNorm)")
    group.add_argument("--layerwise-lr-decay", type=decay_factor, default=None,
                       help="multiply the lr by this per layer from the top down (default: off)")
    group.add_argument("--clip", type=non_negative_float, default=1.0,
                       help="clip the global gradient norm to this (0: no clipping)")
