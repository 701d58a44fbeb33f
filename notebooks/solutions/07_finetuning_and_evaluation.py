"""Worked solution of notebook 07's exercise: per-class and macro F1.

Run it from the repository root: python notebooks/solutions/07_finetuning_and_evaluation.py
(it checks the function with ex.check and exits with 1 if the check fails).
"""

import sys

import numpy as np

from numpy_bert import exercises as ex


def f1_scores(gold, predicted, num_classes):
    K = num_classes
    confusion = np.zeros((K, K), dtype=np.int64)  # (K, K) [true class, predicted class]
    np.add.at(confusion, (gold, predicted), 1)
    true_positives = np.diag(confusion).astype(np.float64)  # (K,)
    predicted_count = confusion.sum(axis=0)  # (K,) how often each class was predicted
    gold_count = confusion.sum(axis=1)  # (K,) how often each class is the right answer
    # A zero denominator gives 0: never predicted -> precision 0, never the answer -> recall 0.
    precision = np.divide(true_positives, predicted_count, out=np.zeros(K), where=predicted_count > 0)
    recall = np.divide(true_positives, gold_count, out=np.zeros(K), where=gold_count > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(K), where=both > 0)  # (K,)
    # The macro average runs over the classes that occur somewhere (in gold or predicted), as scikit-learn.
    present = (gold_count + predicted_count) > 0
    return f1, float(f1[present].mean())


if __name__ == "__main__":
    verdicts = [ex.check("f1_scores", f1_scores)]
    sys.exit(0 if all(verdicts) else 1)
