"""Worked solution of notebook 11's exercise: RoBERTa's position ids, which skip the padding.

Run it from the repository root: python notebooks/solutions/11_bert_family.py
(it checks the function with ex.check and exits with 1 if the check fails).
"""

import sys

import numpy as np

from numpy_bert import exercises as ex


def roberta_position_ids(input_ids, padding_idx):
    is_token = (input_ids != padding_idx).astype(np.int64)  # (B, T) 1 for a real token, 0 for padding
    counted = np.cumsum(is_token, axis=1)  # (B, T) 1, 2, 3, ... over each row's real tokens
    return counted * is_token + padding_idx  # (B, T) tokens from padding_idx + 1, padding at padding_idx


if __name__ == "__main__":
    sys.exit(0 if ex.check("roberta_position_ids", roberta_position_ids) else 1)
