"""Unit tests of the hand-written byte-level BPE tokenizer (RoBERTa's) and of its vocabulary trainer.

They use vocabularies trained here on a toy corpus; the comparisons with tokenizers' pre-tokenizer and
trainer and with transformers' RobertaTokenizer are in parity_tests/test_bpe_reference.py.
"""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_bert import RobertaTokenizer
from numpy_bert.data.masking import MaskingCollator
from numpy_bert.data.pretraining_data import PretrainingExample
from numpy_bert.text.bpe_trainer import DEFAULT_SPECIAL_TOKENS, count_pre_tokens, train_bpe
from numpy_bert.text.byte_level_bpe import (
    BYTE_TO_CHAR,
    BytePairEncoding,
    SpecialToken,
    character_class,
    from_byte_chars,
    pre_tokenize,
    read_merges_file,
    save_vocab_and_merges,
    to_byte_chars,
)

CORPUS = ["The lower the newer, the lowest the newest.", "It's a test: we'll see; I'M here 12 34.5 ½.",
          "  Héllo wörld 😀 中文  ", "tabs\tand\nnewlines\n\n  end"] * 4
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@pytest.fixture(scope="module")
def trained():
    return train_bpe(CORPUS, vocab_size=330)


@pytest.fixture(scope="module")
def tok(trained):
    tokens, merges = trained
    return RobertaTokenizer(vocab=tokens, merges=merges)


# -- bytes as characters ---------------------------------------------------------------


def test_bytes_to_unicode_is_gpt2s():
    chars = list(BYTE_TO_CHAR.values())
    assert len(set(chars)) == 256 and list(BYTE_TO_CHAR) == list(range(256))
    assert all(BYTE_TO_CHAR[b] == chr(b) for b in [*range(33, 127), *range(161, 173), *range(174, 256)])
    assert BYTE_TO_CHAR[0] == "Ā" and BYTE_TO_CHAR[32] == "Ġ" and BYTE_TO_CHAR[10] == "Ċ" and BYTE_TO_CHAR[173] == "Ń"
    assert not any(c.isspace() or unicodedata.category(c).startswith("C") for c in chars)


@given(TEXT)
def test_byte_chars_round_trip(text):
    spelled = to_byte_chars(text)
    assert len(spelled) == len(text.encode("utf-8")) and set(spelled) <= set(BYTE_TO_CHAR.values())
    assert from_byte_chars([spelled]) == text
    assert from_byte_chars(list(spelled)) == text  # one byte per token: the bytes are joined before decoding


def test_from_byte_chars_replaces_invalid_bytes_and_keeps_other_tokens():
    assert from_byte_chars(["ð", "Ł"]) == "\ufffd"  # the first two bytes of a four-byte character
    assert from_byte_chars(["<s>", "Hi", "ĠðŁĺĢ", "</s>"]) == "<s>Hi 😀</s>"
    assert from_byte_chars(["ĠΩ", "Ġ"]) == "ĠΩ "  # Ω is no byte character: the token is its own text


# -- pre-tokenization ------------------------------------------------------------------


@pytest.mark.parametrize("text, pieces", [
    ("Hello  world!", ["Hello", " ", " world", "!"]),
    ("I'm don't we'll they've it'S", ["I", "'m", " don", "'t", " we", "'ll", " they", "'ve", " it", "'", "S"]),
    ("abc123 4.5 ½Ⅻ", ["abc", "123", " 4", ".", "5", " ½Ⅻ"]),
    ("a\n\n b\t", ["a", "\n\n", " b", "\t"]),
    ("  x", [" ", " x"]),
    ("x   ", ["x", "   "]),
    ("...!? $5", ["...!?", " $", "5"]),
    ("日本語 テキスト", ["日本語", " テキスト"]),
    ("e\u0301", ["e", "\u0301"]),  # a combining mark is no letter
    ("a\x1cb\u3000c", ["a", "\x1c", "b", "\u3000", "c"]),  # U+001C is no whitespace; U+3000 is
    ("", []),
])
def test_pre_tokenize(text, pieces):
    assert pre_tokenize(text) == pieces


@given(TEXT)
def test_pre_tokens_add_up_to_the_text(text):
    pieces = pre_tokenize(text)
    assert "".join(pieces) == text and all(pieces)


@pytest.mark.parametrize("ch, expected", [
    ("a", "L"), ("é", "L"), ("中", "L"), ("ß", "L"), ("\u1c89", "L"), ("\U0002ebf0", "L"),  # U+1C89: Unicode 16
    ("3", "N"), ("½", "N"), ("Ⅻ", "N"), ("\U00010d40", "N"),
    (" ", "Z"), ("\u3000", "Z"), ("\x85", "Z"), ("\x0b", "Z"),
    ("\x1c", "O"), ("😀", "O"), ("\u200b", "O"), ("_", "O"), ("\u0378", "O"),
])
def test_character_class(ch, expected):
    assert character_class(ch) == expected


# -- BPE -------------------------------------------------------------------------------


def toy_bpe(merges):
    vocab = {t: i for i, t in enumerate(dict.fromkeys([*"ĠlowerabcX", *(a + b for a, b in merges)]))}
    return BytePairEncoding(vocab, merges)


def test_merges_apply_by_rank():
    bpe = toy_bpe([("Ġ", "l"), ("o", "w"), ("Ġl", "ow")])
    assert bpe.tokenize("Ġlower") == ("Ġlow", "e", "r")
    assert toy_bpe([("o", "w"), ("l", "o")]).tokenize("low") == ("l", "ow")  # rank beats position
    assert toy_bpe([("a", "a")]).tokenize("aaa") == ("aa", "a")  # equal ranks: leftmost first
    assert toy_bpe([]).tokenize("abc") == ("a", "b", "c")


def test_characters_outside_the_vocabulary_are_dropped():
    assert toy_bpe([("a", "b")]).tokenize("aZb") == ("ab",)  # Z dropped first, so a and b meet


def test_merges_must_fit_the_vocabulary():
    with pytest.raises(ValueError, match="needs 'xy', which the vocabulary lacks"):
        BytePairEncoding({"x": 0, "y": 1}, [("x", "y")])


# -- the tokenizer ---------------------------------------------------------------------


def test_special_tokens_and_ids(tok):
    assert [tok.bos_token, tok.pad_token, tok.eos_token, tok.unk_token, tok.mask_token] == list(DEFAULT_SPECIAL_TOKENS)
    ids = (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id)
    assert ids == (0, 1, 2, 3, 4)
    assert tok.cls_token_id == 0 and tok.sep_token_id == 2
    assert tok.all_special_tokens == ["<s>", "</s>", "<unk>", "<pad>", "<mask>"]  # transformers' order
    assert tok.all_special_ids == [0, 2, 3, 1, 4]


def test_literal_special_tokens_and_mask_lstrip(tok):
    assert tok.tokenize(" the <mask>.") == ["Ġthe", "<mask>", "."]  # the space went into the mask
    assert tok.tokenize(" the\t\u3000<mask><mask> <s>x") == ["Ġthe", "<mask>", "<mask>", "Ġ", "<s>", "x"]
    assert tok.tokenize("<mask") == ["<", "m", "a", "s", "k"]
    plain = RobertaTokenizer(vocab=tok.vocab, merges=tok.merges, mask_token="<mask>")
    assert plain.tokenize(" the <mask>.") == ["Ġthe", "Ġ", "<mask>", "."]
    both = RobertaTokenizer(vocab=tok.vocab, merges=tok.merges, mask_token=SpecialToken("<mask>", True, True))
    assert both.tokenize("a <mask>  b") == ["a", "<mask>", "b"]


def test_words_keep_their_space(tok):
    assert tok.tokenize("the lowest the") == ["t", "he", "Ġlowest", "Ġthe"]  # "the" only came after a space
    assert RobertaTokenizer(vocab=tok.vocab, merges=tok.merges, add_prefix_space=True).tokenize("the") == ["Ġthe"]
    assert tok.is_word_start("Ġthe") and tok.is_word_start("<s>") and not tok.is_word_start("est")


def test_single_and_pair_encoding(tok):
    a, b = tok.encode(" the", add_special_tokens=False), tok.encode(" newer", add_special_tokens=False)
    assert len(a) == len(b) == 1
    assert tok(" the") == {"input_ids": [0, *a, 2], "attention_mask": [1, 1, 1]}
    assert tok(" the", " newer")["input_ids"] == [0, *a, 2, 2, *b, 2]
    assert tok(" the", " newer", add_special_tokens=False)["input_ids"] == a + b
    assert tok.num_special_tokens_to_add() == 2 and tok.num_special_tokens_to_add(pair=True) == 4
    assert "token_type_ids" not in tok("the")
    assert tok("the", "") == tok("the")  # transformers' quirk, as BertTokenizer keeps it


def test_padding_truncation_and_arrays(tok):
    batch = tok(["the", "the lowest newest"], padding=True, return_tensors="np")
    assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].dtype == np.int64
    n = batch["attention_mask"][0].sum()
    assert np.all(batch["input_ids"][0, n:] == 1) and np.all(batch["attention_mask"][0, n:] == 0)
    cut = tok("the lowest the newest", "newer lower", truncation=True, max_length=7)["input_ids"]
    assert len(cut) == 7 and cut[0] == 0 and cut.count(2) == 3
    assert len(tok("the lowest", max_length=3)["input_ids"]) == 3  # max_length alone truncates
    with pytest.raises(ValueError, match="cannot hold the 4 special tokens"):
        tok("a", "b", truncation=True, max_length=3)


@settings(max_examples=100, deadline=None)
@given(TEXT.filter(lambda t: "<" not in t))
def test_decode_inverts_encode(tok, text):
    """Byte-level BPE loses nothing: any text comes back exactly, between <s> and </s>."""
    ids = tok.encode(text)
    assert tok.decode(ids) == f"<s>{text}</s>"
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.convert_tokens_to_string(tok.tokenize(text)) == text
    assert tok.unk_token_id not in ids  # every byte is in the vocabulary


def test_decode_and_conversions(tok):
    ids = tok.encode(" the <mask>")
    assert tok.decode(ids) == "<s> the<mask></s>"  # the space the mask swallowed is gone
    assert tok.decode([*ids, 10**6, -1]) == tok.decode(ids)  # out of range: skipped
    assert tok.convert_ids_to_tokens(ids[1]) == "Ġthe" and tok.convert_tokens_to_ids(["Ġthe", "nope"]) == [ids[1], 3]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.convert_ids_to_tokens(10**6)


def test_save_and_load(tok, trained, tmp_path):
    paths = tok.save_pretrained(tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["vocab.json", "merges.txt", "tokenizer_config.json"]
    assert json.loads((tmp_path / "vocab.json").read_text("utf-8")) == tok.vocab
    assert (tmp_path / "merges.txt").read_text("utf-8").startswith("#version: 0.2\n")
    assert read_merges_file(tmp_path / "merges.txt") == tok.merges
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["added_tokens_decoder"]["4"]["lstrip"] is True and config["tokenizer_class"] == "RobertaTokenizer"
    reloaded = RobertaTokenizer.from_pretrained(tmp_path)
    text = "the <mask> lowest 😀  ok"
    assert reloaded(text) == tok(text) and reloaded.vocab == tok.vocab and reloaded.merges == tok.merges
    assert RobertaTokenizer.from_pretrained(tmp_path, model_max_length=64).model_max_length == 64
    bare = tmp_path / "bare"
    save_vocab_and_merges(*trained, bare)  # no tokenizer_config.json: the defaults
    assert RobertaTokenizer.from_pretrained(bare)(text) == tok(text)


def test_refusals(tok, tmp_path):
    vocab, merges = tok.vocab, tok.merges
    with pytest.raises(ValueError, match=r"give a vocab\.json and a merges\.txt"):
        RobertaTokenizer(vocab=vocab)
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['<cls>'\]"):
        RobertaTokenizer(vocab=vocab, merges=merges, cls_token="<cls>")
    with pytest.raises(ValueError, match=r"the integers 0\.\.2"):
        RobertaTokenizer(vocab={"a": 0, "b": 2, "c": 3}, merges=[])
    with pytest.raises(ValueError, match="a merge is two tokens"):
        RobertaTokenizer(vocab=vocab, merges=["Ġ t h"])
    with pytest.raises(ValueError, match="text must be a str"):
        tok(b"bytes")
    with pytest.raises(ValueError, match="lone surrogate U\\+DC80"):
        tok("abc \udc80")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\nĠt\n", "utf-8")
    with pytest.raises(ValueError, match=r"merges.txt:3: a merge is two tokens"):
        read_merges_file(tmp_path / "merges.txt")
    with pytest.raises(ValueError, match="does not exist"):
        RobertaTokenizer.from_pretrained(tmp_path / "nowhere")


# -- the trainer -----------------------------------------------------------------------


def test_trained_vocabulary_layout(trained):
    tokens, merges = trained
    assert tokens[:5] == list(DEFAULT_SPECIAL_TOKENS) and tokens[1] == "<pad>"  # pad_token_id 1, as RobertaConfig
    assert tokens[5:261] == sorted(BYTE_TO_CHAR.values())  # the whole byte alphabet, in code point order
    assert len(tokens) == len(set(tokens)) == 330 and len(merges) >= 330 - 261
    assert tokens[261:] == list(dict.fromkeys(a + b for a, b in merges))  # one token per merge, in order
    assert "Ġthe" in tokens and ("Ġ", "t") in merges
    assert train_bpe(CORPUS, vocab_size=330) == trained  # deterministic


def test_merges_are_the_most_frequent_pairs():
    assert count_pre_tokens(["aab aab aab abb"]) == {"aab": 1, "Ġaab": 2, "Ġabb": 1}
    tokens, merges = train_bpe(["aab aab aab abb"], vocab_size=263, min_frequency=1)
    assert merges == [("a", "b"), ("a", "ab")]  # a b: 4 times (a a: 3); then a ab: 3 (Ġ a: 2)
    assert tokens[-2:] == ["ab", "aab"]
    _, merges = train_bpe(["xy zw"], vocab_size=300, min_frequency=1)  # every pair once: the smaller ids first
    assert merges == [("x", "y"), ("z", "w"), ("Ġ", "zw")]  # Ġ is U+0120, after the ASCII letters


def test_min_frequency_stops_merging():
    _, merges = train_bpe(["xyz xyw"], vocab_size=400, min_frequency=2)
    assert merges == [("x", "y")]  # the only pair that occurs twice
    assert len(train_bpe(["xyz xyw"], vocab_size=400, min_frequency=1)[1]) > 1


def test_trainer_refusals():
    with pytest.raises(ValueError, match="raise vocab_size to at least 261"):
        train_bpe(CORPUS, vocab_size=100)
    with pytest.raises(ValueError, match="duplicates"):
        train_bpe(CORPUS, vocab_size=300, special_tokens=["<s>", "<s>"])
    with pytest.raises(ValueError, match="texts must be str"):
        train_bpe([b"bytes"], vocab_size=300)
    with pytest.raises(ValueError, match="min_frequency must be at least 1"):
        train_bpe(CORPUS, vocab_size=300, min_frequency=0)


def test_trained_tokenizer_compresses_its_corpus(tok):
    for text in CORPUS[:4]:
        assert len(tok.tokenize(text)) < len(text.encode("utf-8"))


def test_dynamic_masking_with_roberta_tokens(tok):
    """numpy_bert's MaskingCollator (RoBERTa's dynamic masking) takes this tokenizer: it never masks <s>, </s>
    or <pad>, pads with <pad> = 1 and draws a new mask on every call."""
    collator = MaskingCollator(tok, mlm_probability=0.3)
    ids = tok.encode("the lowest the newest the lower")
    example = PretrainingExample(np.array(ids), np.zeros(len(ids), np.int64), None)
    short = PretrainingExample(np.array(ids[:4]), np.zeros(4, np.int64), None)
    rng = np.random.default_rng(0)
    batches = [collator([example, short], rng) for _ in range(8)]
    for batch in batches:
        labelled = batch["labels"] != -100
        assert not np.isin(batch["labels"][labelled], tok.all_special_ids).any()
        assert np.all(batch["input_ids"][1, 4:] == tok.pad_token_id) and np.all(batch["attention_mask"][1, 4:] == 0)
    assert len({batch["labels"].tobytes() for batch in batches}) > 1
