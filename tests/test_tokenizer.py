"""Unit tests of the hand-written BERT tokenizer and the WordPiece vocabulary trainer.

They use small vocabularies built here; the comparison with transformers on the real
BERT vocabulary is in parity_tests/test_tokenizer_reference.py.
"""

from __future__ import annotations

import json
import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert.text.tokenization import (
    BasicTokenizer,
    BertTokenizer,
    is_control,
    is_punctuation,
    is_whitespace,
    truncate_longest_first,
)
from numpy_bert.text.wordpiece_trainer import save_vocab, train_wordpiece_vocab

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "cat", "sat", "on", "mat", "un", "##aff", "##able", "runn", "##ing", "want", "##ed", "wa",
         "hello", "world", "paris", "is", "capital", "of", "france", "中", "文", "naive", "cafe"]
LETTERS = list(string.ascii_lowercase)
TOY_VOCAB = SPECIALS + WORDS + list(string.punctuation) + LETTERS + ["##" + c for c in LETTERS]


@pytest.fixture(scope="module")
def tok():
    return BertTokenizer(vocab=TOY_VOCAB)


def basic(text, **options):
    return BasicTokenizer(**options).tokenize(text)


# -- normalization and pre-tokenization ------------------------------------------------


def test_cleaning_drops_nul_replacement_and_control_characters():
    assert basic("a\x00b\ufffdc\x07d\u200be\ufefff\u00adg\ue000h") == ["abcdefgh"]
    assert basic("lone\ud800surrogate") == ["lonesurrogate"]


def test_every_kind_of_whitespace_splits():
    assert basic("a\tb\nc\rd\u00a0e\u2003f\u3000g\u2028h") == list("abcdefgh")
    assert is_whitespace("\u202f") and not is_whitespace("\u200b")  # zero-width space is a format char
    assert is_control("\x0b") and not is_control("\t")  # vertical tab is dropped, tab is whitespace


def test_chinese_characters_become_words_but_kana_and_hangul_do_not():
    assert basic("ab中文cd") == ["ab", "中", "文", "cd"]
    assert basic("ab中文cd", tokenize_chinese_chars=False) == ["ab中文cd"]
    assert basic("ひらがなカタカナ") == ["ひらかなカタカナ"]  # the voicing mark of が is stripped like an accent
    assert basic("ひらがな", strip_accents=False) == ["ひらがな"]


def test_lowercase_and_strip_accents():
    assert basic("Héllo WÖRLD Ångström") == ["hello", "world", "angstrom"]
    assert basic("Héllo", do_lower_case=False) == ["Héllo"]  # cased: accents kept, no NFD
    assert basic("Héllo", strip_accents=False) == ["héllo"]
    assert basic("Héllo", do_lower_case=False, strip_accents=True) == ["Hello"]


def test_accents_are_stripped_before_lowercasing():
    # İ = I + dot above: decomposed and stripped first, it lowercases to a plain i ...
    assert basic("İ") == ["i"]
    # ... while lowercasing it with accents kept gives i + COMBINING DOT ABOVE.
    assert basic("İ", strip_accents=False) == ["i\u0307"]


def test_lowercasing_is_per_character_without_final_sigma():
    assert basic("ΟΔΟΣ") == ["οδοσ"]  # str.lower() would end it with ς


def test_stripping_leaves_text_decomposed():
    assert basic("한") == ["\u1112\u1161\u11ab"]  # three conjoining jamo, not recomposed


def test_punctuation_is_split_off_including_ascii_symbols():
    assert basic("a$b+c=d€e©f") == ["a", "$", "b", "+", "c", "=", "d€e©f"]
    assert basic("«x»—y…") == ["«", "x", "»", "—", "y", "…"]


def test_unicode8_tables():
    assert is_punctuation("\u166d")  # So today, punctuation in Unicode 8.0
    assert not is_punctuation("\u2e43")  # punctuation added in Unicode 9.0: a letter to tokenizers
    assert not is_control("\u0378")  # unassigned code points are kept
    assert basic("a\u0378b") == ["a\u0378b"]


# -- WordPiece -------------------------------------------------------------------------


def test_greedy_longest_match_first(tok):
    expected = ["un", "##aff", "##able", "runn", "##ing", "want", "##ed"]
    assert tok.tokenize("unaffable running wanted") == expected


def test_word_without_segmentation_is_one_unk():
    tok = BertTokenizer(vocab=[*SPECIALS, "ab", "##c"])
    assert tok.tokenize("abc abd ab") == ["ab", "##c", "[UNK]", "ab"]


def test_words_over_100_characters_are_unk(tok):
    assert tok.tokenize("a" * 100) == ["a"] + ["##a"] * 99
    assert tok.tokenize("a" * 101) == ["[UNK]"]
    assert tok.tokenize("é" * 101) == ["[UNK]"]  # counted after normalization: still 101


def test_special_tokens_typed_in_text_stay_whole(tok):
    expected = ["paris", "is", "the", "[MASK]", "of", "france", "."]
    assert tok.tokenize("Paris is the [MASK] of France.") == expected
    assert tok.tokenize("x[MASK]y[SEP]") == ["x", "[MASK]", "y", "[SEP]"]
    assert tok.tokenize("[mask]") == ["[", "m", "##a", "##s", "##k", "]"]  # case matters


def test_is_word_start(tok):
    assert tok.is_word_start("hello") and tok.is_word_start("[CLS]") and not tok.is_word_start("##ing")


# -- encoding --------------------------------------------------------------------------


def test_single_and_pair_encoding(tok):
    enc = tok("the cat")
    assert enc["input_ids"] == [tok.cls_token_id, TOY_VOCAB.index("the"), TOY_VOCAB.index("cat"),
                                tok.sep_token_id]
    assert enc["token_type_ids"] == [0, 0, 0, 0] and enc.attention_mask == [1, 1, 1, 1]
    pair = tok("the cat", "sat on")
    tokens = tok.convert_ids_to_tokens(pair["input_ids"])
    assert tokens == ["[CLS]", "the", "cat", "[SEP]", "sat", "on", "[SEP]"]
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    assert tok("the cat", add_special_tokens=False)["input_ids"] == tok.convert_tokens_to_ids(["the", "cat"])


# The table of tokenizers' own LongestFirst test: lengths before -> after, budget 7.
@pytest.mark.parametrize(("lengths", "expected"), [
    ((0, 0), (0, 0)), ((0, 2), (0, 2)), ((0, 4), (0, 4)), ((0, 8), (0, 7)),
    ((2, 0), (2, 0)), ((2, 2), (2, 2)), ((2, 4), (2, 4)), ((2, 8), (2, 5)),
    ((4, 0), (4, 0)), ((4, 2), (4, 2)), ((4, 4), (3, 4)), ((4, 8), (3, 4)),
    ((8, 0), (7, 0)), ((8, 2), (5, 2)), ((8, 4), (4, 3)), ((8, 8), (3, 4)),
])
def test_truncate_longest_first(lengths, expected):
    first, second = truncate_longest_first(list(range(lengths[0])), list(range(lengths[1])), 7)
    assert (len(first), len(second)) == expected
    assert first == list(range(len(first))) and second == list(range(len(second)))  # cut at the end


def test_truncation_through_the_call(tok):
    enc = tok("the cat sat on the mat", "hello world", truncation=True, max_length=7)
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens == ["[CLS]", "the", "cat", "[SEP]", "hello", "world", "[SEP]"]
    # max_length alone turns truncation on, as in transformers
    assert len(tok("the cat sat on the mat", max_length=4)["input_ids"]) == 4
    assert len(tok("the cat sat on the mat", max_length=4, truncation=False)["input_ids"]) == 8


def test_padding(tok):
    enc = tok(["the cat sat", "on"], padding=True)
    assert enc["input_ids"][1] == [tok.cls_token_id, TOY_VOCAB.index("on"), tok.sep_token_id, 0, 0]
    assert enc["attention_mask"] == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    arrays = tok(["the cat sat", "on"], padding="max_length", max_length=8, return_tensors="np")
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert arrays[name].dtype == np.int64 and arrays[name].shape == (2, 8)
    assert tok("on", return_tensors="np")["input_ids"].shape == (1, 3)


def test_decode(tok):
    ids = tok("Hello, world! unaffable [MASK].")["input_ids"]
    assert tok.decode(ids) == "[CLS] hello, world! unaffable [MASK]. [SEP]"
    assert tok.decode(ids, skip_special_tokens=True) == "hello, world! unaffable."
    assert tok.decode(tok("it's")["input_ids"], skip_special_tokens=True) == "it ' s"
    ids = tok("it's")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True) == "it's"


def test_vocabulary_accessors(tok):
    assert len(tok) == tok.vocab_size == len(TOY_VOCAB)
    assert tok.pad_token_id == 0 and tok.vocab["[MASK]"] == tok.mask_token_id == 4
    assert tok.ids_to_tokens[2] == "[CLS]" and sorted(tok.all_special_ids) == [0, 1, 2, 3, 4]
    assert tok.convert_tokens_to_ids("no-such-token") == tok.unk_token_id
    assert tok.convert_ids_to_tokens(3) == "[SEP]"
    assert tok.model_max_length == 512


def test_save_and_load(tmp_path):
    tok = BertTokenizer(vocab=TOY_VOCAB, do_lower_case=False, model_max_length=128)
    tok.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertTokenizer" and config["do_lower_case"] is False
    loaded = BertTokenizer.from_pretrained(tmp_path / "saved")
    assert loaded.vocab == tok.vocab and loaded.model_max_length == 128 and not loaded.do_lower_case
    assert loaded.tokenize("The Cat") == tok.tokenize("The Cat") == ["[UNK]", "[UNK]"]


# -- errors ----------------------------------------------------------------------------


def test_vocabulary_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        BertTokenizer(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        BertTokenizer(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="duplicate token 'the' at ids 5 and 6"):
        BertTokenizer(vocab=[*SPECIALS, "the", "the"])
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[MASK\]'\]"):
        BertTokenizer(vocab=SPECIALS[:4])
    with pytest.raises(ValueError, match="exactly one"):
        BertTokenizer()
    with pytest.raises(ValueError, match="does not exist"):
        BertTokenizer.from_pretrained(tmp_path / "nowhere")


def test_input_errors(tok):
    with pytest.raises(ValueError, match="text must be a str"):
        tok.tokenize(b"bytes")
    with pytest.raises(ValueError, match=r"text\[1\] must be a str"):
        tok(["ok", 3])
    with pytest.raises(ValueError, match="text_pair must be a list"):
        tok(["a", "b"], "c")
    with pytest.raises(ValueError, match="padding"):
        tok("a", padding="sideways")
    with pytest.raises(ValueError, match="cannot hold the 3 special tokens"):
        tok("a", "b", max_length=2)
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "a b"], return_tensors="np")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.convert_ids_to_tokens([10**6])


# -- properties ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokenize_never_crashes_and_stays_in_vocabulary(text):
    tok = BertTokenizer(vocab=TOY_VOCAB)
    tokens = tok.tokenize(text)
    assert all(t in tok.vocab for t in tokens)
    ids = tok(text)["input_ids"]
    assert all(0 <= i < len(tok) for i in ids)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(string.ascii_lowercase, min_size=1, max_size=12), max_size=10))
def test_decode_inverts_encode_on_lowercase_words(words):
    tok = BertTokenizer(vocab=TOY_VOCAB)
    text = " ".join(words)
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    assert tok.decode(tok(text.upper())["input_ids"], skip_special_tokens=True) == text  # normalized


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60), st.integers(3, 30))
def test_truncation_respects_max_length(first, second, max_length):
    tok = BertTokenizer(vocab=TOY_VOCAB)
    full = tok([first], [second])["input_ids"][0]
    enc = tok([first], [second], truncation=True, max_length=max_length, padding="max_length")
    ids = enc["input_ids"][0]
    assert len(ids) == max_length
    assert sum(enc["attention_mask"][0]) == min(len(full), max_length)


# -- vocabulary training ---------------------------------------------------------------

CORPUS = ["low lower lowest lowly", "newer newest wider widest", "Low, LOWER; lowest!"] * 5


def test_trained_vocab_layout():
    tokens = train_wordpiece_vocab(CORPUS, vocab_size=60)
    assert tokens[:5] == SPECIALS  # [PAD] first: pad_token_id 0
    assert len(tokens) == len(set(tokens)) <= 60
    alphabet = tokens[5:tokens.index("##d")]
    assert alphabet == sorted(alphabet) and "l" in alphabet and "!" in alphabet
    assert "low" in tokens and "##est" in tokens  # frequent merges are learned
    assert tokens == train_wordpiece_vocab(CORPUS, vocab_size=60)  # deterministic


def test_trained_vocab_tokenizes_its_corpus_without_unk():
    tok = BertTokenizer(vocab=train_wordpiece_vocab(CORPUS, vocab_size=40))
    for text in CORPUS:
        assert "[UNK]" not in tok.tokenize(text)


def test_min_frequency_stops_merging():
    tokens = train_wordpiece_vocab(["abc abd"], vocab_size=100, min_frequency=2)
    assert "ab" in tokens and "abc" not in tokens  # "ab" occurs twice, "abc" once
    assert "abc" in train_wordpiece_vocab(["abc abd"], vocab_size=100, min_frequency=1)


def test_trainer_errors(tmp_path):
    with pytest.raises(ValueError, match="raise vocab_size or set limit_alphabet"):
        train_wordpiece_vocab(CORPUS, vocab_size=10)
    assert len(train_wordpiece_vocab(CORPUS, vocab_size=12, limit_alphabet=3)) <= 12
    with pytest.raises(ValueError, match="texts must be str"):
        train_wordpiece_vocab([b"bytes"], vocab_size=50)
    with pytest.raises(ValueError, match="duplicate"):
        save_vocab(["a", "a"], tmp_path / "vocab.txt")


def test_saved_vocab_loads(tmp_path):
    tokens = train_wordpiece_vocab(CORPUS, vocab_size=50)
    save_vocab(tokens, tmp_path / "vocab.txt")
    tok = BertTokenizer(tmp_path / "vocab.txt")
    assert tok.vocab == {t: i for i, t in enumerate(tokens)}
