"""Worked solution of notebook 04's exercise: BERT's masking of one sequence (15%, then 80/10/10).

Run it from the repository root: python notebooks/solutions/04_pretraining_objectives.py
(it checks the function with ex.check and exits with 1 if the check fails).
"""

import sys

import numpy as np

from numpy_bert import exercises as ex


def mask_tokens(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability=0.15):
    labels = np.full(input_ids.shape, -100, dtype=np.int64)  # (T,) -100: nothing to predict, no loss
    masked_ids = input_ids.copy()  # (T,) written into; input_ids stays as it was
    candidates = np.flatnonzero(~np.isin(input_ids, special_ids))  # positions that may be chosen
    if len(candidates) == 0:
        return masked_ids, labels
    # A fixed count, as the original BERT: p x candidates rounded half up, and at least one.
    count = max(1, int(mlm_probability * len(candidates) + 0.5))
    chosen = rng.permutation(candidates)[:count]  # a random subset of the candidates
    labels[chosen] = input_ids[chosen]  # the model must predict the original token there
    u = rng.random(count)  # one decision per chosen position
    to_mask = chosen[u < 0.8]  # 80%: [MASK]
    to_random = chosen[(u >= 0.8) & (u < 0.9)]  # 10%: a random token
    # The other 10% keep their token, so that the model also learns about tokens it can see.
    masked_ids[to_mask] = mask_token_id
    masked_ids[to_random] = rng.integers(0, vocab_size, size=len(to_random))
    return masked_ids, labels


if __name__ == "__main__":
    verdicts = [ex.check("mask_tokens", mask_tokens)]
    sys.exit(0 if all(verdicts) else 1)
