"""Training and evaluation (notebooks 05 and 07): one AdamW step, and per-class and macro F1."""

from __future__ import annotations

import numpy as np

from ..nn import Parameter
from ..optim import AdamW
from ..training.metrics import classification_report
from .core import EXACT_TOLERANCE, Failure, as_array, call, compare, exercise, unpack

# ---- 05: AdamW ---------------------------------------------------------------------------------------


@exercise(
    "adamw_step", "05_training_a_mini_bert",
    '''
def adamw_step(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """One AdamW update of a parameter, as torch.optim.AdamW and numpy_bert.optim.AdamW do it.

    p, g, m, v: float64 arrays of one shape: the parameter, its gradient, and Adam's first and
                second moments (zeros before the first step)
    t:          the step number, 1 for the first update
    Returns (p, m, v) after the update (new arrays, or the same ones updated in place).
    """''',
    hints=(
        "Three things happen, in this order: decoupled weight decay (p shrinks by the factor 1 − lr · "
        "weight_decay, independently of the gradient), the two moment updates, then the step itself.",
        "m ← β1 m + (1 − β1) g and v ← β2 v + (1 − β2) g². Both start at zero, so early on they are too small: "
        "Adam divides them by (1 − β1^t) and (1 − β2^t), the bias correction.",
        "p ← p − lr · m̂ / (sqrt(v̂) + eps), with m̂ = m / (1 − β1^t) and v̂ = v / (1 − β2^t); eps goes outside "
        "the square root. numpy_bert.optim.AdamW's docstring writes out the same steps.",
    ),
)
def check_adamw_step(function):
    rng = np.random.default_rng(37)
    runs = [({"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}, True),
            ({"lr": 0.003}, False)]  # the second call leaves betas, eps and weight_decay to their defaults
    error, steps = 0.0, 6
    for hyper, explicit in runs:
        start = rng.standard_normal((3, 4))
        reference = Parameter(start.copy())
        optimizer = AdamW([("p", reference)], **hyper)
        p, m, v = start.copy(), np.zeros_like(start), np.zeros_like(start)
        for t in range(1, steps + 1):
            g = rng.standard_normal(start.shape)
            reference.grad = g.copy()
            optimizer.step()
            options = {k: hyper[k] for k in ("betas", "eps", "weight_decay")} if explicit else {}
            result = unpack(call(function, p, g.copy(), m, v, t, hyper["lr"], **options), ("p", "m", "v"))
            p, m, v = (as_array(value, name, start.shape) for value, name in zip(result, ("p", "m", "v")))
            state = optimizer.state["p"]
            expected = {"p": reference.data, "m": state["exp_avg"], "v": state["exp_avg_sq"]}
            try:
                error = max(error, compare({"p": p, "m": m, "v": v}, {"optim.AdamW": expected}, EXACT_TOLERANCE))
            except Failure as failure:
                what = ", ".join(f"{k}={val}" for k, val in hyper.items())
                raise Failure(f"after step {t} ({what}), {failure.detail}", failure.note,
                              failure.largest_error, failure.tolerance) from None
            p, m, v = p.copy(), m.copy(), v.copy()  # the next step starts from what was returned
    return (f"p, m, v match numpy_bert.optim.AdamW over {steps} steps with explicit hyper-parameters and "
            f"{steps} with the defaults, in float64"), error, EXACT_TOLERANCE


# ---- 07: F1 --------------------------------------------------------------------------------------------

# (gold, predicted, num_classes, per-class F1, macro F1), worked out by hand
F1_CASES = [
    ([0, 0, 1, 1], [0, 1, 1, 1], 2, [2 / 3, 0.8], (2 / 3 + 0.8) / 2),
    ([0, 1, 2, 2], [0, 2, 2, 2], 3, [1.0, 0.0, 0.8], 0.6),  # class 1 is never predicted
    ([0, 1, 1], [0, 1, 0], 4, [2 / 3, 2 / 3, 0.0, 0.0], 2 / 3),  # classes 2 and 3 occur nowhere: not averaged
    ([0, 0, 0], [0, 0, 1], 2, [0.8, 0.0], 0.4),  # class 1 is predicted but absent: it counts, with F1 0
    ([2, 0, 1, 2], [2, 0, 1, 2], 3, [1.0, 1.0, 1.0], 1.0),
]


def library_f1(gold, predicted, num_classes: int) -> tuple[np.ndarray, float]:
    """Per-class F1 (0 for a class that occurs nowhere) and macro F1 from numpy_bert's classification_report."""
    report = classification_report(list(gold), list(predicted), [str(k) for k in range(num_classes)])
    per_class = np.array([report["per_class"].get(str(k), {"f1": 0.0})["f1"] for k in range(num_classes)])
    return per_class, report["macro_f1"]


@exercise(
    "f1_scores", "07_finetuning_and_evaluation",
    '''
def f1_scores(gold, predicted, num_classes):
    """F1 of every class, and their macro average, from gold and predicted class ids.

    gold, predicted: (N,) int arrays of classes in [0, num_classes)
    A class never predicted has precision 0, one absent from gold recall 0, and F1 is 0 when both are.
    Returns (per_class_f1 (num_classes,) float array, macro_f1 float): the macro average is the mean
    over the classes that occur in gold or in predicted (a class that occurs nowhere is left out).
    """''',
    hints=(
        "Per class k: tp = examples with gold k predicted k; precision = tp / (predicted as k), recall = tp / "
        "(gold k); F1 = 2 P R / (P + R). A confusion matrix (np.add.at on (gold, predicted)) gives all three "
        "counts: its diagonal, column sums and row sums.",
        "Every zero denominator gives 0: no prediction of k means precision 0, no gold k means recall 0, and "
        "P + R = 0 means F1 0. np.divide(a, b, out=np.zeros_like(a), where=b > 0) does this without warnings.",
        "As numpy_bert's classification_report (and scikit-learn), the macro F1 averages only the classes that "
        "occur somewhere, in gold or in predicted: a class in neither is in per_class_f1 with 0 but left out "
        "of the mean. A class predicted but absent from gold does count, with its F1 of 0.",
    ),
)
def check_f1_scores(function):
    rng = np.random.default_rng(41)
    cases = [(np.array(g), np.array(p), k, np.array(f1), macro) for g, p, k, f1, macro in F1_CASES]
    for _ in range(5):
        k, n = int(rng.integers(2, 7)), int(rng.integers(5, 40))
        gold, predicted = rng.integers(0, k, n), rng.integers(0, k, n)
        cases.append((gold, predicted, k, *library_f1(gold, predicted, k)))
    error = 0.0
    for gold, predicted, k, per_class, macro in cases:
        result = unpack(call(function, gold.copy(), predicted.copy(), k), ("per_class_f1", "macro_f1"))
        got = {"per_class_f1": as_array(result[0], "per_class_f1", (k,), "real"),
               "macro_f1": as_array(result[1], "macro_f1", (), "real")}
        library, library_macro = library_f1(gold, predicted, k)
        try:
            error = max(error, compare(got, {"worked out": {"per_class_f1": per_class, "macro_f1": np.array(macro)},
                                             "classification_report": {"per_class_f1": library,
                                                                       "macro_f1": np.array(library_macro)}},
                                       EXACT_TOLERANCE))
        except Failure as failure:
            raise Failure(f"for gold={gold.tolist()}, predicted={predicted.tolist()}, num_classes={k}: "
                          f"{failure.detail}", failure.note, failure.largest_error, failure.tolerance) from None
    return (f"per-class and macro F1 match numpy_bert's classification_report on {len(cases)} cases, with classes "
            "never predicted, absent from gold, and absent from both"), error, EXACT_TOLERANCE
