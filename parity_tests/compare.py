"""Comparing two sets of named tensors, the way every parity test and report does it.

The error of a tensor is max|actual - expected| / max(max|expected|, floor), where
``floor`` is a fraction of ``scale``, the largest magnitude among all tensors compared
together; it keeps a tensor that happens to be tiny (a gradient summed from terms that
cancel) from turning rounding into a large relative error. The fraction is 1e-3 when
every tensor is float64, and 1e-2 when one is in a lower precision: with float32's 1e-4
tolerance, 1e-3 would allow 1e-7 * scale, less than one float32 ulp of the scale, while
1e-2 allows about eight. (Hypothesis found such a tensor: a key-weight gradient at 1e-3
of the scale, 1.3 ulps off.)

Tensors that are zero in exact arithmetic are measured against ``scale`` itself: the
attention key bias gets no gradient (softmax ignores a constant added to every score of
a row), so both sides hold pure rounding noise there. That noise is a sum over all
positions, of order eps * scale * sqrt(positions): in float32 it reached 2e-4 of the
1e-3 floor (hypothesis: 50 positions, weights of std 0.5), so no floor fits it; against
the scale it is 2e-7.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOOR_FRACTION = {"float64": 1e-3, "lower": 1e-2}
ZERO_IN_EXACT_ARITHMETIC = ("attention.self.key.bias",)  # name endings: gradients that are pure rounding


def to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (float64 first: NumPy has no bfloat16)
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _is_float64(value) -> bool:
    """True unless ``value`` holds floating-point numbers of less than double precision."""
    dtype = str(getattr(value, "dtype", "float64")).removeprefix("torch.")
    return not dtype.startswith(("float", "bfloat")) or dtype == "float64"


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
    precision = "float64" if all(_is_float64(v) for v in (*actual.values(), *expected.values())) else "lower"
    pairs = {name: (to_numpy(actual[name]), to_numpy(expected[name])) for name in expected}
    for name, (a, e) in pairs.items():
        if a.shape != e.shape:
            raise ValueError(f"{name}: shape {a.shape} vs {e.shape}")
    scale = max((float(np.abs(e).max()) for _, e in pairs.values() if e.size), default=0.0)
    floor = max(FLOOR_FRACTION[precision] * scale, np.finfo(np.float64).tiny)
    errors = []
    for name, (a, e) in pairs.items():
        diff = float(np.abs(a - e).max()) if a.size else 0.0
        if np.isnan(a).any() != np.isnan(e).any():
            diff = float("inf")
        denominator = max(float(np.abs(e).max()) if e.size else 0.0, floor)
        if name.endswith(ZERO_IN_EXACT_ARITHMETIC):
            denominator = max(scale, floor)
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
