"""numpy_bert's hand-written BertTokenizer against transformers' default BertTokenizer.

transformers 5's ``BertTokenizer`` runs HuggingFace's Rust ``tokenizers`` (BertNormalizer,
BertPreTokenizer, WordPiece, TemplateProcessing). Both load the real uncased BERT
vocabulary (30,522 tokens) and must agree token for token: on hard hand-picked text,
on random Unicode, on pairs with truncation, on padded batches, on decoding, and on a
vocabulary trained by numpy_bert's own trainer.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert.text.tokenization import BertTokenizer
from numpy_bert.text.wordpiece_trainer import save_vocab, train_wordpiece_vocab

HYPOTHESIS = settings(max_examples=300, deadline=None)

HARD_CASES = [
    # literal special tokens: exact case only, with or without spaces around them
    "Paris is the [MASK] of France.",
    "x[MASK]y [CLS]a[SEP]b [PAD][UNK][MASK]",
    "[mask] [Mask] [MASK [MASK]] [[MASK]] [ MASK ]",
    "[MA\x00SK] is no mask once NUL is dropped",
    "é[MASK]\u0301 accents around a special token",
    # accents, case, composed and decomposed forms
    "Héllo Wörld ÀÉÎÕÜ naïve café résumé Ångström",
    "e\u0301 e\u0301\u0323 x\u0300\u0301\u0302 \u0301leading mark",
    "İstanbul ıi ΟΔΟΣ Σ ς ẞ ß ǅ ǆ ǈ ﬁ ﬀ",
    "Ａｂｃ１２３ ｶﾀｶﾅ ⅷ ① ² ℌ ℃",
    # CJK, Japanese, Korean, and CJK extensions at the edges of tokenizers' ranges
    "中文分词测试，标点。",
    "日本語のテキストです。カタカナ ひらがな",
    "한국어 텍스트 ᄀ ᅡ ᆨ",
    "a\u4e00b a\u9fffb a\u3400b a\U0002a6dfb a\U0002b81fb a\U0002b820b a\U0002b920b a\U0002ceb0b a\uf900b",
    # emoji and symbols (not punctuation outside ASCII)
    "emoji 😀👍🏽👨‍👩‍👧 🇫🇷 ok©®™€£¥",
    "$100 + 5 = <x> ^ `y` | ~z #tag @user 50% a&b",
    "«quotes» „de“ ‘x’ — – … · ¿¡ ‽ ※ 、",
    # whitespace of every kind, control and format characters
    "tab\tnew\nline\rcr\x0bvt\x0cff\x85nel\x1cfs\x1fus end",
    "\u00a0nbsp\u1680ogham\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a spaces",
    "\u2028ls\u2029ps\u202fnnbsp\u205fmmsp\u3000ideographic",
    "zero\u200bwidth\u200cnon\u200djoin\u2060wj\ufeffbom\u00adshy\u180emvs",
    "\ufffd\x00x\x7f\x9f\ue000private\U000f0000",
    # characters where Python's Unicode is newer than tokenizers' Unicode 8 tables
    "\U00011938 \u2e43dash \u166dchi \u1734 \U000111c9 a\u0897b \U00016fe2",
    "\u1c89 \ua7cb \U00010d50 \U00016ea0 unassigned \u0378\U000e0000",
    # word lengths around max_input_chars_per_word=100
    "a" * 100,
    "a" * 101,
    "é" * 100 + " " + "é" * 101,
    "un" + "believable" * 9,
    # nothing to tokenize
    "",
    "   ",
    "\u200b\u200b",
    "\t\n \u3000",
    "don't I'm we've they're it's 'quoted' a.b ?! ... , ,",
]

# Pieces that random text is built from, to hit the tricky spots more often than
# uniform sampling would.
FRAGMENTS = ["[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[mask]", "[", "]", "##", " ", "\u0301",
             "\u200b", "\x00", "\t", "\u3000", "中", "é", "İ", "Σ", "한", "'s", "...", "a" * 60]


@pytest.fixture(scope="module")
def hf(minilm_dir):
    tok = transformers.BertTokenizer.from_pretrained(minilm_dir)
    assert tok.is_fast and tok.backend_tokenizer is not None, "expected the tokenizers-backed BertTokenizer"
    return tok


@pytest.fixture(scope="module")
def ours(minilm_dir):
    return BertTokenizer.from_pretrained(minilm_dir)


def assert_same_tokens(text, ours, hf):
    mine, theirs = ours.tokenize(text), hf.tokenize(text)
    assert mine == theirs, f"text {text!r}:\n  numpy_bert   {mine}\n  transformers {theirs}"


def assert_same_encoding(mine, theirs, context):
    assert set(mine) == {"input_ids", "token_type_ids", "attention_mask"}
    for key in mine:
        a, b = mine[key], theirs[key]
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == b.dtype == np.int64, f"{context}: {key} dtype"
            a, b = a.tolist(), b.tolist()
        assert a == b, f"{context}: {key} differs\n  numpy_bert   {a}\n  transformers {b}"


def test_loads_same_vocabulary(ours, hf):
    assert ours.vocab == hf.get_vocab()
    assert len(ours) == len(hf) == 30522
    assert ours.all_special_ids == hf.all_special_ids
    assert ours.model_max_length == hf.model_max_length == 512
    for name in ("cls_token_id", "sep_token_id", "mask_token_id", "pad_token_id", "unk_token_id"):
        assert getattr(ours, name) == getattr(hf, name), name


@pytest.mark.parametrize("text", HARD_CASES)
def test_hard_cases(text, ours, hf):
    assert_same_tokens(text, ours, hf)
    assert_same_encoding(ours(text), hf(text), repr(text))
    ids = hf(text)["input_ids"]
    for skip in (False, True):
        mine, theirs = ours.decode(ids, skip_special_tokens=skip), hf.decode(ids, skip_special_tokens=skip)
        assert mine == theirs, f"decode of {text!r}: {mine!r} != {theirs!r}"


def _basic_words(backend, text):
    """tokenizers' normalizer then pre-tokenizer: the words that WordPiece will see."""
    normalized = backend.normalizer.normalize_str(text)
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]


def test_every_code_point(ours, hf):
    """Each code point of planes 0-3 and 14 (all assigned ones), inside a word and with an accent."""
    code_points = [c for c in [*range(0x32000), *range(0xE0000, 0xE0200)] if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(code_points), 4096):
        chunk = code_points[start:start + 4096]
        text = " ".join(f"X{chr(c)}y{chr(c)}\u0301" for c in chunk)
        if ours.basic_tokenizer.tokenize(text) != _basic_words(hf.backend_tokenizer, text):
            samples = [f"X{chr(c)}y" for c in chunk]
            bad = [hex(c) for c, sample in zip(chunk, samples)
                   if ours.basic_tokenizer.tokenize(sample) != _basic_words(hf.backend_tokenizer, sample)]
            pytest.fail(f"normalization or pre-tokenization differs for code points {bad[:20]}")


def test_combining_mark_order(ours, hf):
    """NFD sorts runs of combining marks by class; tokenizers' older tables know fewer classes."""
    marks = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and unicodedata.combining(chr(c))]
    newer = [m for m in marks if ours.basic_tokenizer.normalize(m) == m]  # marks not stripped as accents
    for probe in [*newer, "\u0334", "\u05b0", "\u0323", "\u0301", "\u0345", "\U0001d165"]:
        text = " ".join(f"a{mark}{probe}b" for mark in marks)
        mine, theirs = ours.basic_tokenizer.normalize(text), hf.backend_tokenizer.normalizer.normalize_str(text)
        if mine != theirs:
            bad = [hex(ord(m)) for m, x, y in zip(marks, mine.split(" "), theirs.split(" ")) if x != y]
            pytest.fail(f"marks {bad[:20]} followed by {hex(ord(probe))} are ordered differently")


@pytest.mark.parametrize("options", [
    {"do_lower_case": False},
    {"strip_accents": False},
    {"do_lower_case": False, "strip_accents": True},
    {"tokenize_chinese_chars": False},
])
def test_options(options, minilm_dir):
    ours = BertTokenizer.from_pretrained(minilm_dir, **options)
    hf = transformers.BertTokenizer.from_pretrained(minilm_dir, **options)
    for text in HARD_CASES:
        assert_same_tokens(text, ours, hf)


@HYPOTHESIS
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=60))
def test_random_unicode(ours, hf, text):
    assert_same_tokens(text, ours, hf)


@HYPOTHESIS
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=12).map("".join))
def test_random_fragments(ours, hf, text):
    assert_same_tokens(text, ours, hf)


PAIRS = [
    ("short one", "a much longer second sentence with quite a few more words in it"),
    ("one two three four five six seven eight", "nine ten eleven twelve thirteen fourteen"),
    ("the first segment is the longer of the two here, clearly", "tiny"),
    ("equal length a b", "equal length c d"),
    ("x", ""),
    ("", "only the second has words"),
]


@pytest.mark.parametrize("max_length", [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 16, 20, 64])
def test_pair_truncation(max_length, ours, hf):
    for first, second in PAIRS:
        context = f"pair {(first, second)} max_length={max_length}"
        assert_same_encoding(ours(first, second, truncation=True, max_length=max_length),
                             hf(first, second, truncation=True, max_length=max_length), context)
    for text, _ in PAIRS:
        if text and max_length >= 2:
            assert_same_encoding(ours(text, max_length=max_length), hf(text, max_length=max_length),
                                 f"{text!r} max_length={max_length}")


@HYPOTHESIS
@given(first=st.text(max_size=80), second=st.text(max_size=80), max_length=st.integers(3, 40))
def test_random_pair_truncation(ours, hf, first, second, max_length):
    assert_same_encoding(ours([first], [second], truncation="longest_first", max_length=max_length),
                         hf([first], [second], truncation="longest_first", max_length=max_length),
                         f"pair {(first, second)} max_length={max_length}")


@pytest.mark.parametrize("kwargs", [
    {"padding": True},
    {"padding": "longest", "return_tensors": "np"},
    {"padding": "max_length", "max_length": 24, "truncation": True, "return_tensors": "np"},
    {"padding": "max_length", "max_length": 12, "truncation": True},
    {"padding": True, "truncation": True, "max_length": 9, "return_tensors": "np"},
])
def test_batch_padding(kwargs, ours, hf):
    texts = [first for first, _ in PAIRS]
    pairs = [second for _, second in PAIRS]
    assert_same_encoding(ours(texts, **kwargs), hf(texts, **kwargs), f"batch {kwargs}")
    assert_same_encoding(ours(texts, pairs, **kwargs), hf(texts, pairs, **kwargs), f"pair batch {kwargs}")


def test_single_text_shapes(ours, hf):
    for kwargs in ({}, {"return_tensors": "np"}, {"padding": "max_length", "max_length": 10}):
        assert_same_encoding(ours("Hello there!", **kwargs), hf("Hello there!", **kwargs), str(kwargs))
    # transformers treats an empty text_pair of a single text as no pair at all
    assert_same_encoding(ours("hello", ""), hf("hello", ""), "empty text_pair")


@HYPOTHESIS
@given(st.lists(st.integers(0, 30521), max_size=30), st.booleans())
def test_random_decode(ours, hf, ids, skip):
    mine = ours.decode(ids, skip_special_tokens=skip)
    theirs = hf.decode(ids, skip_special_tokens=skip)
    assert mine == theirs, f"ids {ids}: {mine!r} != {theirs!r}"


def test_decode_cleanup_and_out_of_range(ours, hf):
    ids = hf("Hello, world! It's don't I'm we've they're 'quoted' a.b ?! ...")["input_ids"]
    mine, theirs = (tok.decode(ids, clean_up_tokenization_spaces=True) for tok in (ours, hf))
    assert mine == theirs, f"{mine!r} != {theirs!r}"
    assert ours.decode([7592, 10**6, 2088]) == hf.decode([7592, 10**6, 2088]) == "hello world"


def test_saved_folder_loads_in_transformers(ours, tmp_path):
    ours.save_pretrained(tmp_path)
    reloaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "BertTokenizer" and reloaded.is_fast
    for text in HARD_CASES:
        assert_same_tokens(text, ours, reloaded)
    assert_same_encoding(ours(HARD_CASES, padding=True, return_tensors="np"),
                         reloaded(HARD_CASES, padding=True, return_tensors="np"), "reloaded batch")


@pytest.fixture(scope="module")
def python_doc_texts():
    """English prose every Python ships: the language reference behind help()."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def test_trained_vocab_agrees_with_transformers(python_doc_texts, tmp_path):
    tokens = train_wordpiece_vocab(python_doc_texts, vocab_size=3000)
    assert tokens[0] == "[PAD]" and len(tokens) == 3000
    ours = BertTokenizer(vocab=tokens)
    ours.save_pretrained(tmp_path)
    hf = transformers.BertTokenizer.from_pretrained(tmp_path)
    assert hf.get_vocab() == ours.vocab and hf.pad_token_id == 0
    lines = [line for text in python_doc_texts for line in text.split("\n") if line.strip()]
    for text in lines[::4] + HARD_CASES:
        assert_same_tokens(text, ours, hf)
    batch = lines[:64]
    assert_same_encoding(ours(batch, padding=True, truncation=True, max_length=32, return_tensors="np"),
                         hf(batch, padding=True, truncation=True, max_length=32, return_tensors="np"),
                         "trained vocab batch")
    # a bare vocab.txt, as save_vocab writes it, loads too (transformers' defaults: uncased)
    save_vocab(tokens, tmp_path / "bare" / "vocab.txt")
    bare = transformers.BertTokenizer.from_pretrained(tmp_path / "bare")
    for text in lines[1::40] + HARD_CASES:
        assert_same_tokens(text, ours, bare)
