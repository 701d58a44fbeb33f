"""Comparing two sets of named tensors, the way every parity test and report does it.

The error of a tensor is max|actual - expected| / max(max|expected|, floor), where
``floor`` is FLOOR_FRACTION of the largest magnitude among all tensors compared
together. The floor matters only for tensors that are zero in exact arithmetic: the
attention key bias gets no gradient (softmax ignores a constant added to every score
of a row), so both backends hold pure rounding noise there, and dividing noise by
noise would report a meaningless error near 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOOR_FRACTION = 1e-3


def to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (float64 first: NumPy has no bfloat16)
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


@dataclass
class TensorError:
    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    relative_error: float


def compare(actual: dict, expected: dict) -> list[TensorError]:
    """Per-tensor errors by name; a KeyError-free ValueError if the names differ."""
    if set(actual) != set(expected):
        only_a, only_e = sorted(set(actual) - set(expected)), sorted(set(expected) - set(actual))
        raise ValueError(f"tensor names differ: only in actual {only_a}, only in expected {only_e}")
    pairs = {name: (to_numpy(actual[name]), to_numpy(expected[name])) for name in expected}
    for name, (a, e) in pairs.items():
        if a.shape != e.shape:
            raise ValueError(f"{name}: shape {a.shape} vs {e.shape}")
    scale = max((float(np.abs(e).max()) for _, e in pairs.values() if e.size), default=0.0)
    floor = max(FLOOR_FRACTION * scale, np.finfo(np.float64).tiny)
    errors = []
    for name, (a, e) in pairs.items():
        diff = float(np.abs(a - e).max()) if a.size else 0.0
        if np.isnan(a).any() != np.isnan(e).any():
            diff = float("inf")
        denominator = max(float(np.abs(e).max()) if e.size else 0.0, floor)
        errors.append(TensorError(name, e.shape, diff, diff / denominator))
    return errors


def format_table(errors: list[TensorError], tolerance: float | None = None) -> str:
    width = max(len(e.name) for e in errors)
    lines = [f"{'tensor':<{width}}  {'shape':<16} {'max |diff|':>11} {'rel. error':>11}"]
    for e in errors:
        flag = "  FAIL" if tolerance is not None and not e.relative_error <= tolerance else ""
        lines.append(f"{e.name:<{width}}  {e.shape!s:<16} {e.max_abs_error:11.3e} {e.relative_error:11.3e}{flag}")
    return "\n".join(lines)


def assert_close(actual: dict, expected: dict, tolerance: float, what: str) -> list[TensorError]:
    """Fail with the whole per-tensor table if any tensor's relative error exceeds ``tolerance``."""
    errors = compare(actual, expected)
    worst = max(errors, key=lambda e: e.relative_error)
    if not worst.relative_error <= tolerance:
        raise AssertionError(f"{what}: {worst.name} has relative error {worst.relative_error:.3e} "
                             f"> {tolerance:.0e}\n{format_table(errors, tolerance)}")
    return errors
