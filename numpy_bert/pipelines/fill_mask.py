"""Fill-mask: BERT's masked-language-model head answering "what goes in [MASK]?", for either backend.

``fill_mask`` takes a ``predict(batch)`` callable (a backend's ``predict`` method) that
returns ``(mlm_logits, nsp_logits)`` as NumPy arrays, the MLM logits only at the
positions where ``batch["labels"] != -100``.
"""

from __future__ import annotations

import numpy as np

from ..config import IGNORE_INDEX
from ..layers import log_softmax


def fill_mask(predict, tokenizer, text: str, top_k: int = 5,
              max_length: int = 512) -> list[list[tuple[str, float]]]:
    """The ``top_k`` most likely tokens, with probabilities, for each [MASK] of ``text``.

    One list per [MASK], in order. Each mask is predicted from the whole sentence at
    once (the masks do not see each other's predictions), which is how BERT's MLM
    head was trained.
    """
    if not 1 <= top_k <= len(tokenizer):
        raise ValueError(f"--top-k must be between 1 and the vocabulary size {len(tokenizer)}, got {top_k}")
    encoding = tokenizer(text, truncation=True, max_length=max_length, return_tensors="np")
    input_ids = encoding["input_ids"]
    is_mask = input_ids == tokenizer.mask_token_id
    _check_masks_kept(tokenizer, text, int(is_mask.sum()), max_length)
    batch = {"input_ids": input_ids, "token_type_ids": encoding["token_type_ids"],
             "attention_mask": encoding["attention_mask"],
             # The model computes MLM logits where labels are set; the values themselves are unused.
             "labels": np.where(is_mask, tokenizer.mask_token_id, IGNORE_INDEX)}
    mlm_logits, _ = predict(batch)
    probs = np.exp(log_softmax(mlm_logits))  # (masks, V)
    best = np.argsort(-probs, axis=-1, kind="stable")[:, :top_k]
    return [[(tokenizer.convert_ids_to_tokens(int(i)), float(p[i])) for i in row] for p, row in zip(probs, best)]


def _check_masks_kept(tokenizer, text: str, kept: int, max_length: int) -> None:
    """Every [MASK] of ``text`` must survive truncation: a lost one would silently get no prediction."""
    ids = tokenizer(text)["input_ids"]
    written = ids.count(tokenizer.mask_token_id)
    if written == 0:
        raise ValueError(f"the text has no {tokenizer.mask_token} token to fill: {text!r}")
    if kept < written:
        raise ValueError(f"{written - kept} of the text's {written} {tokenizer.mask_token} tokens lie beyond "
                         f"{max_length} tokens (the text has {len(ids)}) and would be cut off: shorten the text "
                         f"or put the {tokenizer.mask_token} nearer its start")


def format_fill_mask(text: str, predictions: list[list[tuple[str, float]]]) -> str:
    lines = [text]
    for n, candidates in enumerate(predictions, start=1):
        if len(predictions) > 1:
            lines.append(f"[MASK] {n} of {len(predictions)}:")
        width = max(len(token) for token, _ in candidates)
        lines += [f"  {rank}. {token:<{width}}  {prob:.4f}" for rank, (token, prob) in enumerate(candidates, 1)]
    return "\n".join(lines)
