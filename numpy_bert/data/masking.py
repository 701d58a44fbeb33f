"""Masked-language-model masking: which tokens to hide, what to put there, and batching.

BERT hides some tokens of each sequence and trains the model to recover them.
For every sequence this module

1. lists the candidates: every token that is not special ([CLS], [SEP], [PAD], ...);
2. fixes the budget much as the original BERT does (google-research/bert,
   create_pretraining_data.py): ``max(1, round(0.15 * candidates))``, rounding
   halves up as Python 2 did there (the original counts the whole sequence, special
   tokens included; here only the candidates), capped by ``max_predictions_per_seq`` when one is
   given. An exact count (rather than a coin flip per token, as transformers'
   ``DataCollatorForLanguageModeling`` does) gives every sequence at least one
   prediction and keeps the number of predictions steady from batch to batch;
3. chooses positions with one of three strategies:

   * ``"token"``: single tokens at random (BERT);
   * ``"whole_word"``: whole words; the "##" pieces of a word are hidden together
     (BERT's whole-word-masking models);
   * ``"span"``: runs of whole words whose length in words follows a geometric
     distribution (p=0.2) truncated at 10 words, mean 3.8 (SpanBERT);

4. replaces each chosen token by [MASK] 80% of the time, a random non-special token
   10%, or leaves it unchanged 10% (for spans, one decision per span, as SpanBERT);
5. writes the original token id into ``labels`` there and -100 everywhere else,
   the index that the loss ignores.

Masks are dynamic by default (drawn afresh from the generator passed in, every
time a sequence is batched, as RoBERTa does) or static (``static_seed``: derived
from the sequence's own token ids, so a sequence gets the same mask whenever it
comes round, as in BERT's pre-computed data).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from ..config import IGNORE_INDEX

STRATEGIES = ("token", "whole_word", "span")
MASK_FRACTION, RANDOM_FRACTION = 0.8, 0.1  # the remaining 0.1 keeps the original token


class MaskingCollator:
    """Masks examples and pads them into a batch of equal-length int64 arrays.

    ``tokenizer`` needs ``vocab`` (token to id), ``all_special_ids``,
    ``mask_token_id``, ``pad_token_id`` and ``len()``; pieces that continue a word
    start with "##". Call it with a list of examples (anything with ``input_ids``,
    ``token_type_ids`` and ``next_sentence_label``) and a ``np.random.Generator``.
    """

    def __init__(
        self,
        tokenizer,
        mlm_probability: float = 0.15,
        strategy: str = "token",
        max_predictions_per_seq: int | None = None,
        static_seed: int | None = None,
        pad_to_length: int | None = None,
        span_probability: float = 0.2,
        max_span_words: int = 10,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown masking strategy {strategy!r}; expected one of {STRATEGIES}")
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if max_predictions_per_seq is not None and max_predictions_per_seq < 1:
            raise ValueError(f"max_predictions_per_seq must be at least 1, got {max_predictions_per_seq}")
        self.mlm_probability = mlm_probability
        self.strategy = strategy
        self.max_predictions_per_seq = max_predictions_per_seq
        self.static_seed = static_seed
        self.pad_to_length = pad_to_length
        self.mask_token_id = tokenizer.mask_token_id
        self.pad_token_id = tokenizer.pad_token_id
        vocab_size = len(tokenizer)
        self.special_ids = np.array(sorted(tokenizer.all_special_ids), dtype=np.int64)
        self.random_ids = np.setdiff1d(np.arange(vocab_size), self.special_ids)  # replacement tokens
        self.is_continuation = np.zeros(vocab_size, dtype=bool)  # "##" pieces, by id
        for token, index in tokenizer.vocab.items():
            self.is_continuation[index] = token.startswith("##")
        self.span_lengths = np.arange(1, max_span_words + 1)
        weights = span_probability * (1 - span_probability) ** (self.span_lengths - 1)
        self.span_length_probs = weights / weights.sum()

    def num_to_predict(self, num_candidates: int) -> int:
        """How many tokens to mask among ``num_candidates``: the original BERT's rule, over the candidates."""
        count = max(1, int(np.floor(num_candidates * self.mlm_probability + 0.5)))
        if self.max_predictions_per_seq is not None:
            count = min(count, self.max_predictions_per_seq)
        return min(count, num_candidates)

    def __call__(self, examples: Sequence, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A padded batch: input_ids, token_type_ids, attention_mask, labels, and next_sentence_label
        unless the examples have none (MLM-only packed sequences)."""
        masked = [self.mask(np.asarray(e.input_ids, dtype=np.int64), self._rng_for(e, rng)) for e in examples]
        length = self.pad_to_length or max(len(ids) for ids, _ in masked)
        if any(len(ids) > length for ids, _ in masked):
            raise ValueError(f"an example is longer than pad_to_length={length}")
        batch = {
            "input_ids": np.full((len(examples), length), self.pad_token_id, dtype=np.int64),
            "token_type_ids": np.zeros((len(examples), length), dtype=np.int64),
            "attention_mask": np.zeros((len(examples), length), dtype=np.int64),
            "labels": np.full((len(examples), length), IGNORE_INDEX, dtype=np.int64),
        }
        if examples[0].next_sentence_label is not None:
            batch["next_sentence_label"] = np.array([e.next_sentence_label for e in examples], dtype=np.int64)
        for row, (example, (ids, labels)) in enumerate(zip(examples, masked)):
            n = len(ids)
            batch["input_ids"][row, :n] = ids
            batch["token_type_ids"][row, :n] = example.token_type_ids
            batch["attention_mask"][row, :n] = 1
            batch["labels"][row, :n] = labels
        return batch

    def _rng_for(self, example, rng: np.random.Generator) -> np.random.Generator:
        """The shared generator (dynamic masking), or one seeded by the example's ids (static)."""
        if self.static_seed is None:
            return rng
        ids = np.asarray(example.input_ids, dtype=np.int64).tobytes()
        digest = int.from_bytes(hashlib.blake2b(ids, digest_size=8).digest(), "little")
        return np.random.default_rng([self.static_seed, digest])

    def mask(self, input_ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One sequence's masked ids and its labels (the original id where masked, -100 elsewhere)."""
        candidates = np.flatnonzero(~np.isin(input_ids, self.special_ids))
        labels = np.full(len(input_ids), IGNORE_INDEX, dtype=np.int64)
        if len(candidates) == 0:
            return input_ids.copy(), labels
        groups = self._choose(input_ids, candidates, self.num_to_predict(len(candidates)), rng)
        positions = np.concatenate(groups)
        labels[positions] = input_ids[positions]
        return self._replace(input_ids, groups, rng), labels

    def _choose(self, input_ids: np.ndarray, candidates: np.ndarray, budget: int,
                rng: np.random.Generator) -> list[np.ndarray]:
        """Positions to mask, in groups that share one mask/random/keep decision."""
        if self.strategy == "token":
            return [np.array([p]) for p in choose_tokens(candidates, budget, rng)]
        words = split_words(input_ids, candidates, self.is_continuation)
        if self.strategy == "whole_word":  # BERT still decides token by token
            return [np.array([p]) for p in np.concatenate(choose_whole_words(words, budget, rng))]
        return choose_spans(words, budget, rng, self.span_lengths, self.span_length_probs)  # one per span

    def _replace(self, input_ids: np.ndarray, groups: list[np.ndarray],
                 rng: np.random.Generator) -> np.ndarray:
        """80% [MASK], 10% a random non-special token, 10% unchanged: one draw per group."""
        output = input_ids.copy()
        draws = rng.random(len(groups))
        for group, u in zip(groups, draws):
            if u < MASK_FRACTION:
                output[group] = self.mask_token_id
            elif u < MASK_FRACTION + RANDOM_FRACTION:
                output[group] = rng.choice(self.random_ids, size=len(group))
        return output


def split_words(input_ids: np.ndarray, candidates: np.ndarray,
                is_continuation: np.ndarray) -> list[np.ndarray]:
    """Group candidate positions into words: a "##" piece joins the token right before it.

    Only an adjacent candidate can be joined, so a piece that a truncation left at
    the start of a segment (right after [CLS] or [SEP]) starts a word of its own.
    """
    joins_previous = is_continuation[input_ids[candidates]] & (np.diff(candidates, prepend=-2) == 1)
    return np.split(candidates, np.flatnonzero(~joins_previous)[1:])


def choose_tokens(candidates: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """``budget`` positions, uniformly at random, in increasing order."""
    return np.sort(rng.permutation(candidates)[:budget])


def choose_whole_words(words: list[np.ndarray], budget: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Whole words in random order, as the original: a word that would overshoot the budget is skipped.

    When no word fits (every word is longer than the budget), the shortest one is
    masked anyway, so that every sequence has a prediction; this is the only case
    where the count exceeds the budget.
    """
    order = rng.permutation(len(words))
    chosen, count = [], 0
    for w in order:
        if count >= budget:
            break
        if count + len(words[w]) <= budget:
            chosen.append(words[w])
            count += len(words[w])
    if not chosen:
        chosen = [min((words[w] for w in order), key=len)]
    return sorted(chosen, key=lambda word: word[0])


def choose_spans(
    words: list[np.ndarray],
    budget: int,
    rng: np.random.Generator,
    span_lengths: np.ndarray,
    span_length_probs: np.ndarray,
) -> list[np.ndarray]:
    """Spans of whole words until the budget is reached (SpanBERT).

    Each span starts at a random unmasked word that fits the remaining budget and
    runs forward for a drawn number of words, stopping early at the end of the
    segment ([SEP] is never inside a span), at an already masked word, or where the
    next word would overshoot the budget. Every round masks at least one word, so
    the loop ends.
    """
    sizes = np.array([len(w) for w in words])
    masked = np.zeros(len(words), dtype=bool)
    spans: list[np.ndarray] = []
    count = 0
    while True:
        starts = np.flatnonzero(~masked & (sizes <= budget - count))
        if len(starts) == 0:
            break
        start = int(rng.choice(starts))
        length = int(rng.choice(span_lengths, p=span_length_probs))
        stop = start + 1
        count += sizes[start]
        while (stop < len(words) and stop - start < length and not masked[stop]
               and words[stop][0] == words[stop - 1][-1] + 1 and count + sizes[stop] <= budget):
            count += sizes[stop]
            stop += 1
        masked[start:stop] = True
        spans.append(np.concatenate(words[start:stop]))
    if not spans:  # no word fits the budget: mask the shortest one, as choose_whole_words does
        spans = [min(words, key=len)]
    return sorted(spans, key=lambda span: span[0])
