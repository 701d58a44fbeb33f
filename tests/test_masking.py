"""The masking collator: what is masked, how, how much, and the batches it makes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert.data.masking import IGNORE_INDEX, MaskingCollator, choose_spans, split_words
from numpy_bert.data.pretraining_data import PretrainingExample
from tests.test_pretraining_data import FakeTokenizer

# A BERT-like layout: [PAD] at 0, [UNK] [CLS] [SEP] [MASK] at 100-103, so special ids are
# not simply the first few; ids 104-199 alternate between words and "##" pieces.
TOKENS = (["[PAD]"] + [f"w{i}" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
          + [f"##p{i}" if i % 2 == 0 else f"v{i}" for i in range(104, 200)])
TOK = FakeTokenizer(TOKENS)
SPECIAL = set(TOK.all_special_ids)
NON_SPECIAL = [i for i in range(len(TOKENS)) if i not in SPECIAL]
STARTS = [i for i in NON_SPECIAL if not TOKENS[i].startswith("##")]
PIECES = [i for i in NON_SPECIAL if TOKENS[i].startswith("##")]

non_special_ids = st.sampled_from(NON_SPECIAL)
any_ids = st.one_of(non_special_ids, non_special_ids, non_special_ids, st.sampled_from(sorted(SPECIAL)))


@st.composite
def pairs(draw) -> list[int]:
    """[CLS] A [SEP] B [SEP], segments of words of one to four pieces."""
    def segment():
        words = draw(st.lists(st.tuples(st.sampled_from(STARTS), st.lists(st.sampled_from(PIECES), max_size=3)),
                              min_size=1, max_size=25))
        return [i for start, pieces in words for i in (start, *pieces)]

    return [TOK.cls_token_id, *segment(), TOK.sep_token_id, *segment(), TOK.sep_token_id]


sequences = st.one_of(pairs(), st.lists(any_ids, min_size=1, max_size=80))  # specials anywhere, too
strategies = st.sampled_from(["token", "whole_word", "span"])


def example(ids, label: int = 0) -> PretrainingExample:
    ids = np.asarray(ids, dtype=np.int64)
    return PretrainingExample(ids, np.zeros_like(ids), label)


def words_of(ids: list[int]) -> list[list[int]]:
    """Positions of each word, computed independently of the collator's split_words."""
    words: list[list[int]] = []
    for position, token in enumerate(ids):
        if token in SPECIAL:
            continue
        if TOKENS[token].startswith("##") and words and words[-1][-1] == position - 1:
            words[-1].append(position)
        else:
            words.append([position])
    return words


# ---- every masked sequence ------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(ids=sequences, strategy=strategies, probability=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1),
       cap=st.one_of(st.none(), st.integers(1, 30)))
def test_masked_sequences_keep_their_invariants(ids, strategy, probability, seed, cap):
    collator = MaskingCollator(TOK, mlm_probability=probability, strategy=strategy, max_predictions_per_seq=cap)
    original = np.array(ids, dtype=np.int64)
    masked, labels = collator.mask(original, np.random.default_rng(seed))
    chosen = labels != IGNORE_INDEX
    special = np.isin(original, list(SPECIAL))
    assert not (chosen & special).any(), "special tokens are never masked"
    assert np.array_equal(labels[chosen], original[chosen]), "labels are the original ids where masked"
    assert np.array_equal(masked[~chosen], original[~chosen]), "nothing changes where nothing is masked"
    changed = masked[chosen]
    assert not np.isin(changed[changed != TOK.mask_token_id], list(SPECIAL)).any(), "no special as random"

    candidates = int((~special).sum())
    count = int(chosen.sum())
    if candidates == 0:
        assert count == 0
        return
    budget = collator.num_to_predict(candidates)
    words = words_of(ids)
    if strategy == "token":
        assert count == budget
    else:
        shortest = min(map(len, words))
        assert 1 <= count <= budget or (shortest > budget and count == shortest)
        for word in words:  # a word is masked whole or not at all
            assert len(set(chosen[word].tolist())) == 1, (word, chosen)


@settings(max_examples=100, deadline=None)
@given(ids=pairs(), budget=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_spans_are_contiguous_runs_of_whole_words(ids, budget, seed):
    collator = MaskingCollator(TOK, strategy="span")
    original = np.array(ids)
    candidates = np.flatnonzero(~np.isin(original, list(SPECIAL)))
    words = split_words(original, candidates, collator.is_continuation)
    assert [w.tolist() for w in words] == words_of(ids)
    spans = choose_spans(words, budget, np.random.default_rng(seed), collator.span_lengths,
                         collator.span_length_probs)
    starts = {int(w[0]): len(w) for w in words}
    covered = np.concatenate(spans)
    assert len(covered) == len(set(covered.tolist())), "spans do not overlap"
    assert len(covered) <= budget or len(spans) == 1
    for span in spans:
        assert np.array_equal(span, np.arange(span[0], span[0] + len(span))), "one contiguous run"
        assert not np.isin(original[span], list(SPECIAL)).any()
        n_words, position = 0, int(span[0])
        while position <= span[-1]:  # made of whole words, at most ten
            assert position in starts, "a span starts and continues at word starts"
            position += starts[position]
            n_words += 1
        assert position == span[-1] + 1 and n_words <= 10


def test_number_of_predictions_is_the_original_count():
    collator = MaskingCollator(TOK)
    # max(1, round half up of 15%): 0.45 -> 1, 1.5 -> 2, 2.25 -> 2, 2.55 -> 3, 18.75 -> 19.
    assert [collator.num_to_predict(n) for n in (1, 3, 10, 15, 17, 100, 125)] == [1, 1, 2, 2, 3, 15, 19]
    assert MaskingCollator(TOK, max_predictions_per_seq=5).num_to_predict(125) == 5


# ---- statistics -----------------------------------------------------------------------


def five_sigma(p: float, n: int) -> float:
    """Five standard deviations of a binomial proportion: a bound broken once in ~3.5 million runs."""
    return 5 * np.sqrt(p * (1 - p) / n)


def big_batch(collator: MaskingCollator, rows: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    examples = [example([TOK.cls_token_id, *rng.choice(STARTS, 62), TOK.sep_token_id,
                         *rng.choice(STARTS, 63), TOK.sep_token_id]) for _ in range(rows)]
    originals = np.stack([e.input_ids for e in examples])
    return collator(examples, np.random.default_rng(seed + 1)), originals


def test_token_masking_fraction_and_80_10_10_split():
    """125 candidates per row: round(0.15 * 125) = 19 predictions in every row, exactly.

    Of the N = 38000 predictions, [MASK] should be 80%, a random token 10% (less the
    1/|V| chance that the random token is the original one), unchanged 10%: each
    within five binomial standard deviations. Random tokens should be uniform over
    the 195 non-special ids: a chi-square statistic (194 degrees of freedom, mean 194,
    standard deviation 19.7) below 194 + 5 * 19.7.
    """
    batch, originals = big_batch(MaskingCollator(TOK))
    chosen = batch["labels"] != IGNORE_INDEX
    assert (chosen.sum(axis=1) == 19).all()
    n = int(chosen.sum())
    output, original = batch["input_ids"][chosen], originals[chosen]
    is_mask = output == TOK.mask_token_id
    is_kept = output == original
    is_random = ~is_mask & ~is_kept
    p_collision = 0.1 / len(NON_SPECIAL)
    assert abs(is_mask.mean() - 0.8) < five_sigma(0.8, n)
    assert abs(is_random.mean() - (0.1 - p_collision)) < five_sigma(0.1, n)
    assert abs(is_kept.mean() - (0.1 + p_collision)) < five_sigma(0.1, n)
    counts = np.bincount(output[is_random], minlength=len(TOKENS))[NON_SPECIAL]
    expected = counts.sum() / len(NON_SPECIAL)
    assert ((counts - expected) ** 2 / expected).sum() < 194 + 5 * np.sqrt(2 * 194)


def test_whole_word_masking_reaches_about_the_budget():
    rng = np.random.default_rng(0)
    collator = MaskingCollator(TOK, strategy="whole_word")
    examples = []
    for _ in range(300):
        ids = [TOK.cls_token_id]
        while len(ids) < 120:
            ids += [int(rng.choice(STARTS)), *rng.choice(PIECES, rng.integers(0, 3))]
        examples.append(example([*ids, TOK.sep_token_id]))
    batch = collator(examples, np.random.default_rng(1))
    candidates = batch["attention_mask"].sum(axis=1) - 2
    fraction = (batch["labels"] != IGNORE_INDEX).sum(axis=1) / candidates
    assert (fraction <= 0.15 + 0.5 / candidates).all()
    assert 0.14 < fraction.mean() <= 0.15 + 0.5 / candidates.min()


def test_span_masking_decides_per_span_and_spans_average_about_four_words():
    """SpanBERT's length distribution, geometric(0.2) truncated at 10, has mean 3.8 words.

    Spans that meet the budget, the end or a masked neighbour end early, so the
    observed mean is a little lower. Each span is all [MASK] (80% of spans), all unchanged
    (10%) or random tokens (10%), within five binomial standard deviations.
    """
    collator = MaskingCollator(TOK, strategy="span")
    assert abs((collator.span_lengths * collator.span_length_probs).sum() - 3.797) < 1e-3
    rng = np.random.default_rng(0)
    kinds, lengths = [], []
    for _ in range(250):
        ids = np.array([TOK.cls_token_id, *rng.choice(STARTS, 250), TOK.sep_token_id])
        # The spans mask() will choose: the same draws from a copy of the generator.
        twin = copy.deepcopy(rng)
        candidates = np.arange(1, len(ids) - 1)
        spans = choose_spans(split_words(ids, candidates, collator.is_continuation),
                             collator.num_to_predict(len(candidates)), twin, collator.span_lengths,
                             collator.span_length_probs)
        masked, labels = collator.mask(ids, rng)
        assert np.array_equal(np.flatnonzero(labels != IGNORE_INDEX), np.concatenate(spans))
        for span in spans:
            out = masked[span]
            if (out == TOK.mask_token_id).any():
                assert (out == TOK.mask_token_id).all(), "a span is masked as a whole"
                kinds.append("mask")
            else:
                kinds.append("keep" if np.array_equal(out, ids[span]) else "random")
            lengths.append(len(span))
    kinds = np.array(kinds)
    n = len(kinds)
    assert abs((kinds == "mask").mean() - 0.8) < five_sigma(0.8, n)
    assert abs((kinds == "keep").mean() - 0.1) < five_sigma(0.1, n)
    assert 3.0 < np.mean(lengths) < 3.9 and max(lengths) <= 10


# ---- batches --------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(batch=st.lists(pairs(), min_size=1, max_size=6), strategy=strategies, seed=st.integers(0, 1000),
       pad_to=st.one_of(st.none(), st.just(220)))
def test_batches_are_padded_int64_arrays(batch, strategy, seed, pad_to):
    collator = MaskingCollator(TOK, strategy=strategy, pad_to_length=pad_to)
    examples = [example(ids, label=i % 2) for i, ids in enumerate(batch)]
    out = collator(examples, np.random.default_rng(seed))
    length = pad_to or max(map(len, batch))
    assert set(out) == {"input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label"}
    assert all(v.dtype == np.int64 for v in out.values())
    assert out["next_sentence_label"].tolist() == [i % 2 for i in range(len(batch))]
    for row, ids in enumerate(batch):
        n = len(ids)
        assert out["input_ids"].shape == (len(batch), length)
        assert out["attention_mask"][row].tolist() == [1] * n + [0] * (length - n)
        assert (out["input_ids"][row, n:] == TOK.pad_token_id).all()
        assert (out["labels"][row, n:] == IGNORE_INDEX).all() and (out["token_type_ids"][row, n:] == 0).all()
        assert (out["labels"][row, :n] != IGNORE_INDEX).any(), "every sequence has a prediction"


def test_examples_longer_than_the_fixed_length_are_refused():
    with pytest.raises(ValueError, match="longer than pad_to_length"):
        MaskingCollator(TOK, pad_to_length=4)([example([101, 5, 102, 6, 102])], np.random.default_rng(0))


def test_same_seed_same_batch_and_static_masks_belong_to_the_example():
    examples = [example([101, *range(1, 40), 102, *range(104, 150), 102]), example([101, 7, 8, 9, 102, 5, 102])]
    dynamic = MaskingCollator(TOK)
    first = dynamic(examples, np.random.default_rng(1))
    assert all(np.array_equal(first[k], dynamic(examples, np.random.default_rng(1))[k]) for k in first)
    assert not np.array_equal(first["labels"], dynamic(examples, np.random.default_rng(2))["labels"])

    static = MaskingCollator(TOK, static_seed=5)
    alone = static(examples[:1], np.random.default_rng(1))
    shuffled = static(examples[::-1], np.random.default_rng(2))  # another position, another generator
    assert np.array_equal(alone["labels"][0], shuffled["labels"][1, : alone["labels"].shape[1]])
    assert np.array_equal(alone["input_ids"][0], shuffled["input_ids"][1, : alone["input_ids"].shape[1]])
    other_seed = MaskingCollator(TOK, static_seed=6)(examples[:1], np.random.default_rng(1))
    assert not np.array_equal(alone["labels"], other_seed["labels"])


def test_collator_rejects_bad_settings():
    for bad in ({"strategy": "random"}, {"mlm_probability": 0.0}, {"mlm_probability": 1.0},
                {"max_predictions_per_seq": 0}):
        with pytest.raises(ValueError):
            MaskingCollator(TOK, **bad)
