"""The machinery behind ``ex.check`` and ``ex.hint``: verdicts, the registry, and the comparisons.

A checker is a function ``checker(learner_function) -> (what passed, largest error, tolerance)``
that raises :class:`Failure` as soon as something is wrong; :func:`run` turns either outcome,
and anything the learner's function raises, into a :class:`Verdict`, so a check never raises.

Errors are relative to the expected tensor's scale: ``max |got - expected| / max |expected|``,
so an entry that should be 0 is judged on the size of its neighbours, not on its own.
"""

from __future__ import annotations

import ast
import difflib
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LIBRARIES = (os.path.dirname(np.__file__), os.path.dirname(os.path.dirname(__file__)))  # numpy, numpy_bert
FD_STEP = 1e-5  # central differences in float64: truncation ~h^2, rounding ~1e-16/h, both far below FD_TOLERANCE
FD_TOLERANCE = 1e-7
EXACT_TOLERANCE = 1e-12  # the same arithmetic in another order: only rounding differs


def fmt(x: float) -> str:
    """2 significant digits, exponents without padding: 2.1e-11, 1e-7, 0.41."""
    text = f"{x:.2g}"
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else text


def _one_line(text: str) -> str:
    """A learner's exception message or a printed array can span lines; a verdict line cannot."""
    return " ".join(text.splitlines())


@dataclass(frozen=True)
class Verdict:
    """What ``ex.check`` found; true when the exercise passed. ``str()`` is the line it prints."""

    name: str
    passed: bool
    largest_error: float | None = None
    tolerance: float | None = None
    detail: str = ""  # the verdict, after the name
    note: str = ""  # failures: a second line, what was expected and what came back
    written: bool = True  # False while the function is still the stub that raises NotImplementedError

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "✓" if self.passed else "✗" if self.written else "…"
        line = f"{mark} {self.name}: {_one_line(self.detail)}"
        if not self.passed:
            line += f"; try ex.hint({self.name!r})"
        return f"{line}\n    {_one_line(self.note)}" if self.note else line

    __repr__ = __str__


class Failure(Exception):
    """Raised by a checker: the answer is wrong. ``detail`` heads the verdict, ``note`` explains."""

    def __init__(self, detail: str, note: str = "", largest_error: float | None = None,
                 tolerance: float | None = None):
        super().__init__(detail)
        self.detail, self.note = detail, note
        self.largest_error, self.tolerance = largest_error, tolerance


class NotWritten(Exception):
    """The learner's function raised NotImplementedError: the stub is still there."""


# ---- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    name: str
    notebook: str  # e.g. "03_backward_by_hand"
    signature: str  # the function's def line and docstring: the stub to fill in
    hints: tuple[str, ...]  # progressive: the last one is close to the answer
    checker: Callable[[Callable], tuple[str, float | None, float | None]]

    @property
    def summary(self) -> str:
        """The first line of the signature's docstring."""
        function = ast.parse(self.signature + "\n    ...").body[0]
        return ast.get_docstring(function).splitlines()[0]

    @property
    def stub(self) -> str:
        """The signature with a body that raises NotImplementedError, as the notebook gives it."""
        return self.signature + "\n    raise NotImplementedError\n"

    @property
    def solution(self) -> str:
        return f"notebooks/solutions/{self.notebook}.py"


EXERCISES: dict[str, Exercise] = {}


def exercise(name: str, notebook: str, signature: str, hints: tuple[str, ...]):
    """Register the decorated checker as exercise ``name``."""

    def register(checker):
        EXERCISES[name] = Exercise(name, notebook, signature.strip("\n"), hints, checker)
        in_order = sorted(EXERCISES.values(), key=lambda e: e.notebook)  # stable: a notebook's own order stays
        EXERCISES.clear()
        EXERCISES.update((e.name, e) for e in in_order)
        return checker

    return register


def get(name: str) -> Exercise:
    if name not in EXERCISES:
        close = difflib.get_close_matches(name, list(EXERCISES), n=1)
        suggestion = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"no exercise called {name!r}; {suggestion}ex.list_exercises() lists them")
    return EXERCISES[name]


# ---- running a check ------------------------------------------------------------------------------


def run(name: str, function) -> Verdict:
    """The verdict of exercise ``name`` on ``function``; never raises (but for an unknown name)."""
    entry = get(name)
    if not callable(function):
        return Verdict(name, False, detail=f"expected your function, got {describe(function)}",
                       note=f"pass the function itself: ex.check({name!r}, {name}), without calling it")
    try:
        with np.errstate(all="ignore"):  # an overflow shows in the verdict, not as a warning
            detail, error, tolerance = entry.checker(function)
    except NotWritten:
        return Verdict(name, False, detail="not written yet (the stub raises NotImplementedError)", written=False)
    except Failure as failure:
        return Verdict(name, False, failure.largest_error, failure.tolerance, failure.detail, failure.note)
    except Exception as err:  # the result broke the comparison itself (a type no check foresaw)
        return Verdict(name, False, detail=f"your result could not be checked ({type(err).__name__}: {err})",
                       note=f"compare what your function returns with the docstring: ex.EXERCISES[{name!r}].signature")
    if error is not None:
        detail += f" (largest relative error {fmt(error)}, tolerance {fmt(tolerance)})"
    return Verdict(name, True, error, tolerance, detail)


def call(function, *args, **kwargs):
    """The learner's function applied to the arguments; what it raises becomes a Failure (or NotWritten)."""
    try:
        return function(*args, **kwargs)
    except NotImplementedError as err:
        raise NotWritten from err
    except Exception as err:
        frames = traceback.extract_tb(err.__traceback__)
        frame = ([f for f in frames if not f.filename.startswith(LIBRARIES)] or frames)[-1]  # the learner's line
        code = f": {frame.line}" if frame.line else ""
        raise Failure(f"your function raised {type(err).__name__}: {err}",
                      note=f"in {frame.name} (line {frame.lineno} of {frame.filename}){code}") from err


# ---- reading what came back ----------------------------------------------------------------------


def describe(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} item{'s' if len(value) != 1 else ''}"
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def unpack(result, names: tuple[str, ...]) -> tuple:
    """The result as a tuple of ``len(names)`` items, or a Failure saying what came back instead."""
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise Failure(f"expected a tuple of {len(names)} ({', '.join(names)}), got {describe(result)}")
    return tuple(result)


def as_array(value, what: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """``value`` as an array of ``shape``, checked: numbers of ``dtype`` ("int" for any integer
    dtype, "real" for any real one), all finite. Each problem is a Failure that names it."""
    if value is None:
        raise Failure(f"{what} is None", note="the function must return it (a missing `return`?)")
    try:
        array = np.asarray(value)
    except Exception as err:
        raise Failure(f"{what} is {describe(value)}, which is not an array ({err})") from err
    if array.dtype.kind not in "biuf":
        raise Failure(f"{what} is {describe(value)}, expected an array of numbers")
    if array.shape != tuple(shape):
        raise Failure(f"{what} has shape {array.shape}, expected {tuple(shape)}")
    if dtype == "int":
        if array.dtype.kind not in "iu":
            raise Failure(f"{what} has dtype {array.dtype}, expected integers (ids)")
        return array
    if dtype != "real" and array.dtype != np.dtype(dtype):
        raise Failure(f"{what} has dtype {array.dtype}, expected {np.dtype(dtype)}",
                      note="the inputs are float64: keep their dtype (np.zeros_like, not np.zeros(..., int))")
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        index = tuple(int(i) for i in bad[0])
        raise Failure(f"{what} has {array[index]} at index {index}",
                      note="an exp() that overflowed, or a division by zero?")
    return array


# ---- comparing -----------------------------------------------------------------------------------


def relative_error(got: np.ndarray, expected: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """max |got - expected| / max |expected|, and the index where the difference is largest."""
    diff = np.abs(np.asarray(got, dtype=np.float64) - expected)
    if diff.size == 0:
        return 0.0, ()
    scale = max(float(np.abs(expected).max()), np.finfo(np.float64).tiny)
    index = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return float(diff[index]) / scale, tuple(int(i) for i in index)


def compare(outputs: dict[str, np.ndarray], references: dict[str, dict[str, np.ndarray]],
            tolerance: float) -> float:
    """The largest relative error of the outputs against every reference that has them
    (``{reference label: {output name: expected}}``); a Failure naming the worst output when
    it is above ``tolerance``, with the others that are wrong too."""
    errors = []  # (error, output name, index, reference label)
    for label, reference in references.items():
        for name, expected in reference.items():
            errors.append((*relative_error(outputs[name], expected), name, label))
    worst_error, index, worst_name, label = max(errors, key=lambda e: e[0])
    if worst_error <= tolerance:
        return worst_error
    at = f" at index {index}" if index else ""
    entry = f"{worst_name}[{', '.join(map(str, index))}]" if index else worst_name
    expected, got = float(references[label][worst_name][index]), float(np.asarray(outputs[worst_name])[index])
    wrong = {e[2] for e in errors if e[0] > tolerance}
    wrong_too = [name for name in outputs if name in wrong and name != worst_name]
    more = f" and {len(wrong_too) - 3} more" if len(wrong_too) > 3 else ""
    also = f"; also wrong: {', '.join(wrong_too[:3])}{more}" if wrong_too else ""
    raise Failure(f"{worst_name} is wrong (largest relative error {fmt(worst_error)}{at}, tolerance {fmt(tolerance)})",
                  note=f"{entry} should be {expected:.6g} ({label}), got {got:.6g}{also}",
                  largest_error=worst_error, tolerance=tolerance)


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = FD_STEP) -> np.ndarray:
    """Central differences (f(x + h e_i) - f(x - h e_i)) / 2h of the scalar f(), for every entry i
    of x; each entry is changed in place and put back."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f()
        x[i] = old - h
        down = f()
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad
