"""Sentence-pair examples (NSP and SOP), truncation, and the resumable example stream."""

from __future__ import annotations

import itertools
import json
import random
import re
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert.data.corpus import Corpus, Document
from numpy_bert.data.masking import MaskingCollator
from numpy_bert.data.pretraining_data import (
    ExampleBuilder,
    ExampleStream,
    PackedExampleBuilder,
    PretrainingExample,
    fixed_batches,
    tokenize_documents,
    truncate_pair,
)
from tests.test_corpus import default_corpus

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class FakeTokenizer:
    """The tokenizer interface the pipeline needs, with a trivially predictable WordPiece.

    Words are lowercased runs of letters and digits, punctuation marks are words of
    their own, and a word longer than ``piece`` characters is cut into pieces of
    ``piece`` characters, all but the first with the "##" prefix.
    """

    def __init__(self, tokens: list[str], piece: int = 4):
        self.piece = piece
        self.vocab = {token: index for index, token in enumerate(tokens)}
        self.ids_to_tokens = dict(enumerate(tokens))
        (self.pad_token_id, self.unk_token_id, self.cls_token_id,
         self.sep_token_id, self.mask_token_id) = (self.vocab[t] for t in SPECIAL_TOKENS)
        self.all_special_ids = [self.vocab[t] for t in SPECIAL_TOKENS]

    @classmethod
    def from_texts(cls, texts, piece: int = 4) -> FakeTokenizer:
        tokens = dict.fromkeys(SPECIAL_TOKENS)
        for text in texts:
            tokens.update(dict.fromkeys(_pieces(text, piece)))
        return cls(list(tokens), piece)

    def tokenize(self, text: str) -> list[str]:
        return _pieces(text, self.piece)

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids):
        return [self.ids_to_tokens[int(i)] for i in ids]

    def __len__(self) -> int:
        return len(self.vocab)


def _pieces(text: str, piece: int) -> list[str]:
    out = []
    for word in re.findall(r"\w+|[^\w\s]", text.lower()):
        out += [word[:piece]] + ["##" + word[i : i + piece] for i in range(piece, len(word), piece)]
    return out


# ---- a corpus whose every token says where it comes from ------------------------------


def labelled_corpus(sentence_counts: list[int], words_per_sentence, seed: int = 0) -> Corpus:
    """Document d, sentence s, word w is the single token "d{d}s{s}w{w}"."""
    rng = random.Random(seed)
    documents = []
    for d, count in enumerate(sentence_counts):
        sentences = [" ".join(f"d{d}s{s}w{w}" for w in range(rng.randint(*words_per_sentence)))
                     for s in range(count)]
        documents.append(Document(f"doc{d}", tuple(sentences)))
    return Corpus(documents)


def locate(tokens: list[str], corpus: Corpus) -> list[tuple[int, int]]:
    """(document, position of the token in its document) for each token."""
    located = []
    for token in tokens:
        d, s, w = map(int, re.fullmatch(r"d(\d+)s(\d+)w(\d+)", token).groups())
        before = sum(len(x.split()) for x in corpus[d].sentences[:s])
        located.append((d, before + w))
    return located


def sentence_starts(corpus: Corpus, d: int) -> set[int]:
    lengths = [len(s.split()) for s in corpus[d].sentences]
    return set(np.cumsum([0, *lengths[:-1]]).tolist())


def sentence_ends(corpus: Corpus, d: int) -> set[int]:
    return set((np.cumsum([len(s.split()) for s in corpus[d].sentences]) - 1).tolist())


def check_example(example: PretrainingExample, tok: FakeTokenizer, corpus: Corpus,
                  max_seq_length: int, task: str) -> None:
    """Everything an example must satisfy, whatever the random draws were."""
    ids = example.input_ids
    assert ids.dtype == np.int64 and example.token_type_ids.dtype == np.int64
    assert len(ids) <= max_seq_length and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    seps = np.flatnonzero(ids == tok.sep_token_id)
    assert len(seps) == 2 and np.isin(ids, tok.all_special_ids).sum() == 3
    a, b = locate(tok.convert_ids_to_tokens(ids[1 : seps[0]]), corpus), locate(
        tok.convert_ids_to_tokens(ids[seps[0] + 1 : -1]), corpus)
    assert a and b
    assert example.token_type_ids.tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    for segment in (a, b):  # one run of consecutive tokens of one document
        assert len({d for d, _ in segment}) == 1
        assert [p for _, p in segment] == list(range(segment[0][1], segment[0][1] + len(segment)))
    (doc_a, a_start), (_, a_end), (doc_b, b_start), (_, b_end) = a[0], a[-1], b[0], b[-1]
    truncated = len(a) + len(b) == max_seq_length - 3  # shorter pairs cannot have been truncated
    label = example.next_sentence_label
    if task == "nsp" and label == 1:
        assert doc_a != doc_b, "a random B comes from another document"
    else:
        assert doc_a == doc_b
        first, second = ((a_start, a_end), (b_start, b_end)) if label == 0 else ((b_start, b_end), (a_start, a_end))
        assert second[0] > first[1], "B follows A (or, swapped for SOP label 1, A follows B)"
        if not truncated:
            assert second[0] == first[1] + 1, "nothing between the two segments"
    if not truncated:  # segments are made of whole sentences
        assert a_start in sentence_starts(corpus, doc_a) and b_start in sentence_starts(corpus, doc_b)
        if task == "sop" or label == 0:
            assert a_end in sentence_ends(corpus, doc_a) and b_end in sentence_ends(corpus, doc_b)


def labelled_builder(corpus: Corpus, **options) -> tuple[ExampleBuilder, FakeTokenizer]:
    tok = FakeTokenizer.from_texts(corpus.texts(), piece=100)
    return ExampleBuilder.from_corpus(corpus, tok, **options), tok


# ---- examples -------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["nsp", "sop"])
@pytest.mark.parametrize("max_seq_length", [8, 32, 128, 1024])
def test_examples_are_well_formed(task, max_seq_length):
    corpus = labelled_corpus([1, 2, 3, 5, 8, 13, 21, 4, 6, 1], (1, 15))
    builder, tok = labelled_builder(corpus, max_seq_length=max_seq_length, task=task)
    examples = builder.epoch(np.random.default_rng(0))
    assert examples
    for example in examples:
        check_example(example, tok, corpus, max_seq_length, task)


@settings(max_examples=60, deadline=None)
@given(
    sentence_counts=st.lists(st.integers(1, 12), min_size=2, max_size=6),
    longest_sentence=st.integers(1, 40),
    max_seq_length=st.integers(5, 80),
    short_seq_prob=st.sampled_from([0.0, 0.1, 1.0]),
    task=st.sampled_from(["nsp", "sop"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_examples_hold_their_invariants(sentence_counts, longest_sentence, max_seq_length,
                                        short_seq_prob, task, seed):
    corpus = labelled_corpus(sentence_counts, (1, longest_sentence), seed)
    builder, tok = labelled_builder(corpus, max_seq_length=max_seq_length, short_seq_prob=short_seq_prob,
                                    task=task)
    for example in builder.epoch(np.random.default_rng(seed)):
        check_example(example, tok, corpus, max_seq_length, task)


def test_labels_are_balanced_and_both_occur():
    corpus = labelled_corpus([20] * 30, (3, 12))
    for task, low, high in [("nsp", 0.45, 0.65), ("sop", 0.4, 0.6)]:
        builder, _ = labelled_builder(corpus, max_seq_length=64, task=task)
        labels = [e.next_sentence_label for e in builder.epoch(np.random.default_rng(1))]
        # NSP leans a little to 1: a chunk of one sentence always gets a random B (as the original).
        assert low < np.mean(labels) < high, (task, np.mean(labels))


def test_short_seq_prob_makes_short_examples():
    corpus = labelled_corpus([40] * 20, (5, 10))
    lengths = {}
    for prob in (0.0, 1.0):
        builder, _ = labelled_builder(corpus, max_seq_length=128, short_seq_prob=prob)
        lengths[prob] = np.mean([len(e.input_ids) for e in builder.epoch(np.random.default_rng(0))])
    assert lengths[0.0] > 95 and lengths[1.0] < 75, lengths  # a short target is uniform in [2, 125]


def test_examples_are_deterministic_by_seed():
    corpus = labelled_corpus([5, 9, 3, 7], (2, 20))
    builder, _ = labelled_builder(corpus, max_seq_length=48)

    def draw(seed):
        return [(e.input_ids.tolist(), e.next_sentence_label) for e in builder.epoch(np.random.default_rng(seed))]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_builder_rejects_what_cannot_work():
    corpus = labelled_corpus([5], (2, 4))
    with pytest.raises(ValueError, match="at least two non-empty documents"):
        labelled_builder(corpus)
    builder, _ = labelled_builder(corpus, task="sop")  # one document is enough for sentence order
    assert builder.epoch(np.random.default_rng(0))
    for bad in ({"task": "mlm"}, {"max_seq_length": 4}, {"short_seq_prob": 1.5}):
        with pytest.raises(ValueError):
            labelled_builder(labelled_corpus([3, 3], (2, 4)), **bad)


def test_tokenize_documents_tokenizes_each_sentence_once_and_drops_empty_ones():
    tok = FakeTokenizer.from_texts(["alpha beta gamma"], piece=10)
    calls = []
    original = tok.tokenize
    tok.tokenize = lambda text: calls.append(text) or original(text)
    documents = tokenize_documents([["alpha beta", "   ", "alpha beta"], ["  "], ["gamma"]], tok)
    assert [[ids.tolist() for ids in d] for d in documents] == [[[5, 6], [5, 6]], [[7]]]
    assert sorted(calls) == ["  ", "   ", "alpha beta", "gamma"]


# ---- truncation -----------------------------------------------------------------------


def original_truncation_lengths(len_a: int, len_b: int, max_num_tokens: int) -> tuple[int, int]:
    """google-research/bert truncate_seq_pair, token by token (its coin flips do not change lengths)."""
    a, b, rng = list(range(len_a)), list(range(len_b)), random.Random(0)
    while len(a) + len(b) > max_num_tokens:
        trunc = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()
    return len(a), len(b)


@given(st.integers(1, 60), st.integers(1, 60), st.integers(2, 100), st.integers(0, 2**32 - 1))
def test_truncate_pair_matches_the_original(len_a, len_b, max_num_tokens, seed):
    a, b = np.arange(len_a), np.arange(100, 100 + len_b)
    new_a, new_b = truncate_pair(a, b, max_num_tokens, np.random.default_rng(seed))
    assert (len(new_a), len(new_b)) == original_truncation_lengths(len_a, len_b, max_num_tokens)
    for old, new in ((a, new_a), (b, new_b)):  # what is left is one contiguous slice
        assert len(new) >= 1 and np.array_equal(new, np.arange(new[0], new[0] + len(new)))
        assert old[0] <= new[0] and new[-1] <= old[-1]


def test_truncation_cuts_front_and_back_equally_often():
    """30 tokens come off A each time; the number from the front is Binomial(30, 1/2).

    Over 4000 draws its mean has standard deviation sqrt(30/4)/sqrt(4000) = 0.043:
    the bound is five of them.
    """
    rng = np.random.default_rng(0)
    fronts = [truncate_pair(np.arange(50), np.arange(10), 30, rng)[0][0] for _ in range(4000)]
    assert abs(np.mean(fronts) - 15) < 5 * np.sqrt(7.5 / 4000)


# ---- the stream -----------------------------------------------------------------------


def small_stream(seed: int = 0, batch_size: int = 4, **collator_options) -> ExampleStream:
    corpus = labelled_corpus([4, 6, 3, 5, 2], (2, 9))
    builder, tok = labelled_builder(corpus, max_seq_length=24)
    return ExampleStream(builder, MaskingCollator(tok, **collator_options), batch_size=batch_size, seed=seed)


def assert_same_batches(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for x, y in zip(first, second):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key].dtype == y[key].dtype == np.int64 and np.array_equal(x[key], y[key]), key


def test_stream_yields_full_batches_across_epochs_with_fresh_pairs():
    stream = small_stream(batch_size=5)
    first_epoch = [e.input_ids.tolist() for e in stream.examples]
    for _ in range(3 * stream.examples_per_epoch // 5 + 2):
        batch = next(stream)
        assert batch["input_ids"].shape[0] == 5 and batch["next_sentence_label"].shape == (5,)
        assert all(v.dtype == np.int64 for v in batch.values())
    assert stream.epoch >= 2
    assert [e.input_ids.tolist() for e in stream.examples] != first_epoch, "pairs are drawn again"


@settings(max_examples=25, deadline=None)
@given(steps=st.integers(0, 30), strategy=st.sampled_from(["token", "whole_word", "span"]))
def test_stream_resumes_bitwise_identically(steps, strategy):
    stream = small_stream(seed=7, strategy=strategy)
    for _ in range(steps):
        next(stream)
    state = json.loads(json.dumps(stream.state_dict()))  # it survives a JSON checkpoint
    expected = [next(stream) for _ in range(12)]
    resumed = small_stream(seed=99, strategy=strategy)  # its own seed is replaced by the state's
    next(resumed)
    resumed.load_state_dict(state)
    assert_same_batches([next(resumed) for _ in range(12)], expected)


def test_stream_is_deterministic_by_seed():
    assert_same_batches([next(small_stream(3)) for _ in range(1)], [next(small_stream(3)) for _ in range(1)])
    first, other = next(small_stream(3)), next(small_stream(4))
    assert not np.array_equal(first["input_ids"], other["input_ids"])


def test_stream_rejects_a_foreign_state_and_an_empty_corpus():
    stream = small_stream()
    state = stream.state_dict() | {"index": 10_000}
    with pytest.raises(ValueError, match="outside epoch"):
        stream.load_state_dict(state)
    corpus = labelled_corpus([1, 1, 1], (2, 4))
    builder, tok = labelled_builder(corpus, task="sop")  # single sentences: no sentence order to predict
    with pytest.raises(ValueError, match="no examples"):
        ExampleStream(builder, MaskingCollator(tok), batch_size=2)


def test_fixed_batches_cover_one_epoch_the_same_way_every_time():
    stream = small_stream()
    batches = fixed_batches(stream.builder, stream.collator, batch_size=4, seed=5)
    assert_same_batches(batches, fixed_batches(stream.builder, stream.collator, batch_size=4, seed=5))
    sizes = [len(b["input_ids"]) for b in batches]
    assert all(s == 4 for s in sizes[:-1]) and 1 <= sizes[-1] <= 4
    assert sum(sizes) == ExampleStream(stream.builder, stream.collator, 4, seed=5).examples_per_epoch


# ---- the default corpus, end to end ---------------------------------------------------


def test_one_epoch_of_the_default_corpus_is_quick():
    corpus = default_corpus().split("train")
    tok = FakeTokenizer.from_texts(corpus.texts())
    start = time.perf_counter()
    builder = ExampleBuilder.from_corpus(corpus, tok, max_seq_length=128)
    examples = builder.epoch(np.random.default_rng(0))
    seconds = time.perf_counter() - start
    assert seconds < 30, f"tokenizing and pairing the corpus took {seconds:.1f} s"
    assert len(examples) > 3000
    assert 0.45 < np.mean([e.next_sentence_label for e in examples]) < 0.6
    assert max(len(e.input_ids) for e in examples) == 128


def test_with_the_real_tokenizer():
    from numpy_bert.text import tokenization

    corpus = Corpus([
        Document("a", ("The dog was running home.", "It jumped over the fence.", "Then it slept.")),
        Document("b", ("A cat sat on the mat.", "The cat was jumping.", "Nobody saw it.")),
    ])
    words = sorted({w for s in corpus.texts() for w in re.findall(r"\w+", s.lower())} - {"running", "jumping"})
    tokens = [*SPECIAL_TOKENS, ".", *words, "runn", "jump", "##ing"]
    tok = tokenization.BertTokenizer(vocab=tokens)
    assert tok.tokenize("running") == ["runn", "##ing"]
    builder = ExampleBuilder.from_corpus(corpus, tok, max_seq_length=16)
    stream = ExampleStream(builder, MaskingCollator(tok, strategy="whole_word"), batch_size=8, seed=0)
    batch = next(stream)
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        pieces = tok.convert_ids_to_tokens(np.where(labels >= 0, labels, ids)[mask == 1].tolist())
        assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and pieces.count("[SEP]") == 2
        for i, piece in enumerate(pieces):  # "runn ##ing" is masked whole or not at all
            if piece == "##ing":
                assert (labels[i] >= 0) == (labels[i - 1] >= 0)


# ---- packed MLM-only sequences (train --no-nsp) ----------------------------------------------

def random_documents(rng: np.random.Generator, count: int, first_id: int = 10) -> list[list[np.ndarray]]:
    """Documents of sentences of distinct, increasing ids, consecutive within a document and with a gap
    between documents, so that every token's origin and order are known."""
    documents, next_id = [], first_id
    for _ in range(count):
        sentences = []
        for _ in range(int(rng.integers(1, 5))):
            length = int(rng.integers(1, 9))
            sentences.append(np.arange(next_id, next_id + length, dtype=np.int32))
            next_id += length
        documents.append(sentences)
        next_id += 1  # a gap: consecutive ids mean the same document
    return documents


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 12), max_seq_length=st.integers(3, 40), seed=st.integers(0, 2**32 - 1))
def test_packed_blocks_are_full_and_cut_from_whole_documents(count, max_seq_length, seed):
    """Every block is [CLS] + max_seq_length - 2 tokens + [SEP], no padding. Inside a block the text
    runs through each document in order (ids are consecutive within a document), a [SEP] sits exactly
    where a document ends and the next one starts, and the epoch covers all text but the last partial block."""
    rng = np.random.default_rng(seed)
    documents = random_documents(rng, count)
    first = {int(d[0][0]) for d in documents}
    last = {int(d[-1][-1]) for d in documents}
    builder = PackedExampleBuilder(documents, cls_token_id=2, sep_token_id=3, max_seq_length=max_seq_length)
    examples = builder.epoch(np.random.default_rng(seed))
    width = max_seq_length - 2
    total = sum(len(s) for d in documents for s in d) + len(documents)  # tokens and one [SEP] per document
    assert len(examples) == total // width
    seen = []
    for e in examples:
        assert len(e.input_ids) == max_seq_length and e.input_ids[0] == 2 and e.input_ids[-1] == 3
        assert not e.token_type_ids.any() and e.next_sentence_label is None
        body = e.input_ids[1:-1].tolist()
        for a, b in itertools.pairwise(body):
            if a != 3 and b != 3:
                assert b == a + 1, f"a document's text is out of order in {body}"
            elif a == 3:
                assert b in first, f"{b} follows a [SEP] but does not start a document"
            elif b == 3:
                assert a in last, f"a [SEP] follows {a}, which does not end a document"
            assert not (a == 3 and b == 3), "two [SEP] in a row: an empty document"
        seen += [t for t in body if t != 3]
    assert len(seen) == len(set(seen))  # no token twice in one epoch
    tokens = total - len(documents)
    assert tokens - width < len(seen) <= tokens


def test_packed_epochs_differ_and_repeat_by_seed():
    documents = random_documents(np.random.default_rng(0), 30)
    builder = PackedExampleBuilder(documents, 2, 3, max_seq_length=16)

    def ids(epoch_seed):
        return [e.input_ids.tolist() for e in builder.epoch(np.random.default_rng(epoch_seed))]

    assert ids(1) == ids(1) and ids(1) != ids(2)
    with pytest.raises(ValueError, match=r"max_seq_length must leave room for \[CLS\] text \[SEP\]"):
        PackedExampleBuilder(documents, 2, 3, max_seq_length=2)


def test_packed_batches_have_no_padding_and_no_nsp_labels():
    tokenizer = FakeTokenizer([*SPECIAL_TOKENS, *(f"w{i}" for i in range(200))])
    documents = random_documents(np.random.default_rng(1), 40, first_id=5)
    documents = [[np.minimum(s, len(tokenizer.vocab) - 1) for s in d] for d in documents]
    stream = ExampleStream(PackedExampleBuilder(documents, tokenizer.cls_token_id, tokenizer.sep_token_id, 24),
                           MaskingCollator(tokenizer), batch_size=4, seed=3)
    batch = next(stream)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert batch["attention_mask"].all() and batch["input_ids"].shape == (4, 24)
    state = stream.state_dict()
    following = [next(stream)["labels"].tolist() for _ in range(3)]
    stream.load_state_dict(state)
    assert [next(stream)["labels"].tolist() for _ in range(3)] == following
