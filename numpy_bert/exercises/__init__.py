"""Exercises with checkers, for the notebooks: write a function, then let the library judge it.

    from numpy_bert import exercises as ex

    ex.list_exercises("03_backward_by_hand")      # what there is to do, notebook by notebook
    print(ex.EXERCISES["layernorm_backward"].stub)  # the signature and docstring to start from
    ex.check("layernorm_backward", layernorm_backward)   # one line: ✓, ✗ (with why) or … (not written)
    ex.hint("layernorm_backward")                 # the next hint; after the last, the worked solution

Every check is deterministic and runs in float64 where gradients are involved, against
the library's own code and an independent reference (central finite differences, or the
``tokenizers`` library for WordPiece). Worked solutions: notebooks/solutions/NN_name.py.
"""

from __future__ import annotations

import textwrap

from . import forward, gradients, tokens, training  # noqa: F401  (each registers its exercises)
from .core import EXERCISES, Exercise, Verdict, get, run

__all__ = ["EXERCISES", "Exercise", "Verdict", "check", "hint", "list_exercises", "reset_hints"]

_hints_shown: dict[str, int] = {}


def check(name: str, function) -> Verdict:
    """Run exercise ``name``'s checker on ``function``, print its verdict and return it (true if it passed)."""
    verdict = run(name, function)
    print(verdict)
    return verdict


def hint(name: str) -> None:
    """Print the next hint of exercise ``name``: the first, then the second, ...; then where the solution is."""
    exercise = get(name)
    shown = _hints_shown.get(name, 0)
    if shown < len(exercise.hints):
        _hints_shown[name] = shown + 1
        print(textwrap.fill(f"Hint {shown + 1} of {len(exercise.hints)} for {name}: {exercise.hints[shown]}", 100,
                            break_long_words=False, break_on_hyphens=False))
    else:
        print(f"No more hints for {name}. The worked solution is {exercise.solution} "
              f"(run it from the repository: python {exercise.solution}).")


def reset_hints() -> None:
    """Start every exercise's hints again from the first."""
    _hints_shown.clear()


def list_exercises(notebook: str | None = None) -> None:
    """Print each exercise (of one notebook, or all of them): name, notebook, summary."""
    chosen = [e for e in EXERCISES.values() if notebook in (None, e.notebook)]
    if not chosen:
        notebooks = sorted({e.notebook for e in EXERCISES.values()})
        raise ValueError(f"no exercises for notebook {notebook!r}; the notebooks with exercises are {notebooks}")
    width = max(len(e.name) for e in chosen)
    for e in chosen:
        print(f"{e.name:<{width}}  {e.notebook:<29}  {e.summary}")
