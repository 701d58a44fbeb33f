"""numpy_bert's hand-written byte-level BPE against HuggingFace's tokenizers and transformers' RobertaTokenizer.

Three layers, each held to the Rust reference:

* the pre-tokenizer (GPT-2's pattern without the ``regex`` module) against tokenizers' ByteLevel
  pre-tokenizer, on every code point in several contexts and on random text;
* the trainer against tokenizers' ``ByteLevelBPETokenizer.train_from_iterator``, merge for merge and
  token for token, on a slice of the embedded corpus (the help topics of numpy_bert/data/corpus.py)
  and on random small corpora;
* the tokenizer, with the vocabulary our trainer learned, against transformers' RobertaTokenizer
  (``RobertaTokenizerFast``) loaded from the files we saved: tokens, ids, pairs, truncation,
  padding and decoding, on corpus lines, hard cases and random text (whitespace runs, emoji,
  special tokens typed in the text); and the folder transformers saves (tokenizer.json) read back.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tokenizers
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert.data.corpus import clean_text
from numpy_bert.text.bpe_trainer import DEFAULT_SPECIAL_TOKENS, train_bpe
from numpy_bert.text.byte_level_bpe import (
    CHAR_TO_BYTE,
    RobertaTokenizer,
    pre_tokenize,
    save_vocab_and_merges,
    to_byte_chars,
)

HYPOTHESIS = settings(max_examples=200, deadline=None)
PRE_TOKENIZER = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)

HARD_CASES = [
    # whitespace runs, before words, at the ends, of every kind
    "Hello  world", "  leading", "trailing  ", "a \t\n b", "\n\n\nx\n", "   ", "", " ",
    "nbsp\u00a0 x\u2003y\u3000z\u2028\u2029 \u205f\u202f end", "vt\x0bff\x0cnel\x85 fs\x1cus\x1f x",
    # contractions, case, numbers, punctuation runs
    "I'm don't we'll they've it'S it's'S 's", "abc123 4.5 1,000,000 ½ Ⅻ ٣٤ ０１", "...!? $5 (a) [b] {c} --x",
    # letters of every script, combining marks, new Unicode
    "Héllo wörld ÀÉÎ naïve e\u0301 x\u0300\u0301", "中文分词测试，标点。", "日本語のテキスト カタカナ", "한국어 텍스트",
    "\u1c89\u1c8a \U000105c0 \U00010d40\U00010d41 \U0002ebf0 newer letters", "\u0378\U000e0000\ue000\U000f0000",
    # emoji: skin tones, ZWJ sequences, flags, keycaps
    "emoji 😀👍🏽👨‍👩‍👧 🇫🇷 1️⃣ ok©®™€", "🙂🙂🙂 x😀y",
    # special tokens typed in the text, with and without whitespace before them
    "Paris is the <mask> of France.", "<mask><mask> <mask>  <mask>\t<mask>", "x<s>y</s>z <pad> <unk>",
    "<mask <mask>> <<mask>> </s></s>", "\u3000<mask>\x85<mask>\x1c<mask>",
    # control characters and odd code points
    "\x00NUL\x7fDEL\ufffd\ufeffbom\u200bzw", "a" * 300,
]
FRAGMENTS = ["<mask>", "<s>", "</s>", "<pad>", "<unk>", " ", "  ", "\t", "\n", "\u3000", "\x85", "'s", "'S", "'",
             "😀", "👍🏽", "\u200d", "é", "e\u0301", "中", "12", "½", "...", "the", " the", "\x1c", "\u1c89"]
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
RANDOM_TEXT = st.one_of(TEXT, st.lists(st.one_of(st.sampled_from(FRAGMENTS), TEXT), max_size=10).map("".join))


def theirs_pre_tokenize(text: str) -> list[str]:
    """tokenizers' pre-tokens, decoded back from byte characters to text."""
    return [bytes(CHAR_TO_BYTE[c] for c in piece).decode("utf-8")
            for piece, _ in PRE_TOKENIZER.pre_tokenize_str(text)]


def test_every_code_point():
    """Each code point of planes 0-3 and 14, and of the private-use planes' edges, between letters,
    numbers, punctuation and spaces: pre-tokens the same as tokenizers' (so \\p{L}, \\p{N} and \\s agree)."""
    code_points = [c for c in [*range(0x32400), *range(0xE0000, 0xE0200), *range(0xF0000, 0xF0100),
                               *range(0x10FF00, 0x110000)] if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(code_points), 8192):
        chunk = [chr(c) for c in code_points[start:start + 8192]]
        text = "|".join(f"a{c}a 1{c}1 !{c}! {c}  x{c}" for c in chunk)
        if pre_tokenize(text) != theirs_pre_tokenize(text):
            bad = [hex(ord(c)) for c in chunk if pre_tokenize(f"a{c}a 1{c}1 !{c}! {c}  x{c}")
                   != theirs_pre_tokenize(f"a{c}a 1{c}1 !{c}! {c}  x{c}")]
            pytest.fail(f"pre-tokenization differs for code points {bad[:20]}")


@HYPOTHESIS
@given(RANDOM_TEXT)
def test_random_pre_tokens(text):
    assert pre_tokenize(text) == theirs_pre_tokenize(text)


# ---- the trainer --------------------------------------------------------------------------------


def train_reference(texts, vocab_size: int, min_frequency: int = 2) -> tuple[list[str], list[tuple[str, str]]]:
    """tokenizers' byte-level BPE trainer: (tokens in id order, merges in rank order)."""
    reference = tokenizers.ByteLevelBPETokenizer()
    reference.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(DEFAULT_SPECIAL_TOKENS), show_progress=False)
    model = json.loads(reference._tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return sorted(model["vocab"], key=model["vocab"].get), merges


@pytest.fixture(scope="module")
def corpus_lines() -> list[str]:
    """A slice of the embedded corpus: the cleaned sentences of 30 help topics (what help() shows)."""
    from pydoc_data.topics import topics

    return [sentence for name in sorted(topics)[:30] for sentence in clean_text(topics[name])]


@pytest.mark.parametrize("vocab_size, min_frequency", [(1200, 2), (900, 1), (20000, 3)])
def test_trainer_matches_tokenizers(corpus_lines, vocab_size, min_frequency):
    """The same vocabulary and the same merges in the same order (20000: training stops at min_frequency)."""
    tokens, merges = train_bpe(corpus_lines, vocab_size, min_frequency=min_frequency)
    expected_tokens, expected_merges = train_reference(corpus_lines, vocab_size, min_frequency)
    assert merges == expected_merges, next(f"merge {i}: {a} vs {b}" for i, (a, b) in
                                           enumerate(zip(merges, expected_merges)) if a != b)
    assert tokens == expected_tokens
    assert len(tokens) == vocab_size or vocab_size == 20000


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.one_of(st.text("ab c", max_size=30), st.text("aab😀é' \n", max_size=30), TEXT),
                      min_size=1, max_size=6),
       extra=st.integers(0, 40), min_frequency=st.integers(1, 3))
def test_trainer_on_random_corpora(texts, extra, min_frequency):
    """Small alphabets make ties and two merges of the same string (aa + b, a + ab) common."""
    assert train_bpe(texts, 261 + extra, min_frequency) == train_reference(texts, 261 + extra, min_frequency)


# ---- the tokenizer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(corpus_lines):
    return train_bpe(corpus_lines, vocab_size=1500)


@pytest.fixture(scope="module")
def ours(trained):
    tokens, merges = trained
    return RobertaTokenizer(vocab=tokens, merges=merges)


@pytest.fixture(scope="module")
def hf(ours, tmp_path_factory):
    """transformers' tokenizer from the folder our save_pretrained wrote (its <mask> swallows a space)."""
    folder = tmp_path_factory.mktemp("ours")
    ours.save_pretrained(folder)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert type(tok).__name__ == "RobertaTokenizer" and tok.is_fast
    return tok


@pytest.fixture(scope="module")
def bare(trained, tmp_path_factory):
    """Ours and transformers' from bare vocab.json + merges.txt: there, transformers' <mask> swallows nothing."""
    folder = tmp_path_factory.mktemp("bare")
    save_vocab_and_merges(*trained, folder)
    return (RobertaTokenizer.from_pretrained(folder, mask_token="<mask>"),
            transformers.RobertaTokenizerFast.from_pretrained(folder, model_max_length=512))


def assert_same(text, ours, hf, pair=None, **kwargs):
    mine, theirs = ours(text, pair, **kwargs), hf(text, pair, **kwargs)
    assert set(mine) == set(theirs) == {"input_ids", "attention_mask"}
    for key in mine:
        a, b = mine[key], theirs[key]
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == b.dtype == np.int64, key
            a, b = a.tolist(), b.tolist()
        assert a == b, f"{text!r} {pair!r} {kwargs}: {key}\n  numpy_bert   {a}\n  transformers {b}"


def test_same_vocabulary_and_special_tokens(ours, hf, bare):
    for tok in (hf, bare[1]):
        assert tok.get_vocab() == ours.vocab and len(tok) == len(ours) == 1500
        assert tok.all_special_ids == ours.all_special_ids and tok.pad_token_id == ours.pad_token_id == 1
    assert hf.model_max_length == ours.model_max_length == 512


@pytest.mark.parametrize("text", HARD_CASES)
def test_hard_cases(text, ours, hf, bare):
    for mine, theirs in ((ours, hf), bare):
        assert_same(text, mine, theirs)
        ids = theirs(text)["input_ids"]
        assert mine.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
        for skip in (False, True):
            assert mine.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)


def test_corpus_lines(corpus_lines, ours, hf, tmp_path_factory):
    """Every 3rd line of the corpus slice, and of the rest of the help topics, which training did not see."""
    from pydoc_data.topics import topics

    unseen = [line for name in sorted(topics)[30:] for line in topics[name].split("\n")]
    for text in corpus_lines[::3] + unseen[::5]:
        assert ours(text)["input_ids"] == hf(text)["input_ids"], text


@HYPOTHESIS
@given(RANDOM_TEXT)
def test_random_text(ours, hf, bare, text):
    assert_same(text, ours, hf)
    assert_same(text, *bare)


@HYPOTHESIS
@given(st.lists(st.integers(0, 1510), max_size=30), st.booleans())
def test_random_decode(ours, hf, ids, skip):
    """Any ids, cut characters and out-of-range ids included."""
    assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)


@settings(max_examples=60, deadline=None)
@given(first=RANDOM_TEXT, second=RANDOM_TEXT, max_length=st.integers(4, 40))
def test_random_pair_truncation(ours, hf, first, second, max_length):
    assert_same([first], ours, hf, [second], truncation="longest_first", max_length=max_length)
    assert_same(first, ours, hf, max_length=max_length)


@pytest.mark.parametrize("kwargs", [
    {"padding": True},
    {"padding": "longest", "return_tensors": "np"},
    {"padding": "max_length", "max_length": 40, "truncation": True, "return_tensors": "np"},
    {"padding": True, "truncation": True, "max_length": 9, "return_tensors": "np"},
    {"add_special_tokens": False, "padding": True},
])
def test_batch_padding(ours, hf, kwargs):
    texts, pairs = HARD_CASES[:12], HARD_CASES[12:24]
    assert_same(texts, ours, hf, **kwargs)
    assert_same(texts, ours, hf, pairs, **kwargs)


def test_add_prefix_space(trained, tmp_path):
    save_vocab_and_merges(*trained, tmp_path)
    mine = RobertaTokenizer.from_pretrained(tmp_path, add_prefix_space=True, mask_token="<mask>")
    theirs = transformers.RobertaTokenizerFast.from_pretrained(tmp_path, add_prefix_space=True)
    for text in HARD_CASES:
        assert_same(text, mine, theirs)


def test_transformers_folder_reads_back(hf, ours, tmp_path):
    """transformers 5 saves tokenizer.json (no vocab.json, no merges.txt): ours reads its vocabulary, merges and
    special tokens (with <mask>'s lstrip) from it."""
    hf.save_pretrained(tmp_path)
    assert not (tmp_path / "vocab.json").exists() and (tmp_path / "tokenizer.json").exists()
    reloaded = RobertaTokenizer.from_pretrained(tmp_path)
    assert reloaded.vocab == ours.vocab and reloaded.merges == ours.merges
    for text in HARD_CASES:
        assert reloaded(text) == ours(text), text


def test_trained_tokenizer_spells_every_text_without_unk(ours):
    for text in (t.replace("<", "(") for t in HARD_CASES):  # no special tokens: every byte is spelled
        tokens = ours.tokenize(text)
        assert "<unk>" not in tokens and all(t in ours.vocab for t in tokens)
        assert "".join(tokens) == to_byte_chars(text)
