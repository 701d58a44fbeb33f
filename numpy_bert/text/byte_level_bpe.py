r"""RoBERTa's tokenizer: GPT-2's byte-level BPE, written by hand in plain Python.

The reference is transformers' ``RobertaTokenizer`` (``RobertaTokenizerFast`` is the same class
since transformers 5), which runs HuggingFace's Rust ``tokenizers`` library. Text goes through
five stages, and this module follows each one rule for rule:

1. **Special tokens** typed in the text (``"<mask>"``, ``"<s>"``, ...) are cut out of the raw
   text first, exactly as written, and kept whole. ``<mask>`` also swallows the whitespace
   before it (``lstrip``, as roberta-base's tokenizer files say), so that in
   ``"Paris is the <mask> of France."`` the mask stands where the word ``" capital"``, with its
   space, would: the model predicts a token with a leading space.
2. **Pre-tokenization** with GPT-2's pattern, over each stretch between special tokens::

       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

   that is, in this order: an English contraction; a run of letters, a run of numbers, or a
   run of other characters, each with at most one space before it; a run of whitespace not
   followed by a word (``\s+(?!\S)`` gives up the run's last whitespace character to the word
   after it: ``"a   b"`` is ``"a"``, ``"  "``, ``" b"``); any other whitespace run (a final one).
   Nothing is lowercased, normalized or dropped, and spaces stay part of the words.
3. **Bytes as characters.** Each pre-token's UTF-8 bytes become characters, one per byte,
   through GPT-2's :func:`bytes_to_unicode`: the printable Latin-1 bytes stand for themselves,
   the other 68 (controls, space, ...) are moved to U+0100 and beyond, so the space is ``"Ġ"``
   and the newline ``"Ċ"``. These 256 characters are the base vocabulary, and they spell
   every text: nothing is ever ``<unk>``.
4. **BPE.** Each pre-token, as byte characters, starts as one symbol per character; of its
   adjacent pairs, the one whose merge was learned first (the lowest rank in merges.txt;
   the leftmost if it occurs more than once) is joined, again and again, until no adjacent
   pair is a merge (:class:`BytePairEncoding`).
5. **Special tokens around the result**: ``<s> A </s>``, or ``<s> A </s></s> B </s>`` for a
   pair, with truncation and padding as :class:`~numpy_bert.text.tokenization.BertTokenizer`
   does them. RoBERTa has one token type, so only ``input_ids`` and ``attention_mask`` come out.

Decoding joins the tokens, turns their characters back into bytes and decodes them as UTF-8;
the bytes of a character cut between two tokens decode to U+FFFD on their own.

Python's ``re`` has neither ``\p{L}`` nor ``\p{N}``, and its ``\s`` also matches U+001C..U+001F,
which tokenizers' does not (its regex engine, Oniguruma, uses the White_Space property). So
each character is first replaced by a stand-in for its class (:func:`character_class`), a
pattern over the stand-ins finds the pre-tokens, and their spans cut the original text. The
classes are those of Oniguruma's Unicode 16.0 tables: ``unicodedata`` (Unicode 14.0 in
Python 3.11) knows most letters and numbers, and the few assigned since are listed below.

Nothing here imports ``tokenizers`` or ``transformers``. A vocabulary and its merges can be
trained with :mod:`numpy_bert.text.bpe_trainer`.
"""

from __future__ import annotations

import bisect
import functools
import inspect
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np

from ..checkpoint import atomic_write_bytes, read_json_object, read_lines
from .tokenization import (
    DEFAULT_MODEL_MAX_LENGTH,
    TOKENIZER_CONFIG_NAME,
    WHITESPACE,
    BatchEncoding,
    TokenizerBase,
    _check_text,
    _LazyTable,
    _parse_ranges,
)

VOCAB_NAME = "vocab.json"
MERGES_NAME = "merges.txt"
TOKENIZER_NAME = "tokenizer.json"  # what transformers 5 saves instead of the two files above
MERGES_HEADER = "#version: 0.2"  # the first line of the merges.txt that GPT-2, fairseq and tokenizers write

# ---------------------------------------------------------------------------------------
# Bytes as characters
# ---------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to 256 printable characters.

    The bytes that are printable in Latin-1 (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) map to
    themselves; the others, in increasing order, to U+0100, U+0101, ...: byte 0 is ``"Ā"``,
    the space (32) ``"Ġ"``, the newline (10) ``"Ċ"``. No character of the map is whitespace or
    a control character, so a BPE token is always a visible string, and merges.txt can separate
    the two halves of a merge with a space.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {byte: chr(byte) for byte in printable}
    moved = [byte for byte in range(256) if byte not in chars]
    chars.update({byte: chr(256 + n) for n, byte in enumerate(moved)})
    return dict(sorted(chars.items()))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {char: byte for byte, char in BYTE_TO_CHAR.items()}


def to_byte_chars(text: str) -> str:
    """``text``'s UTF-8 bytes, one character each: ``"é!"`` (bytes C3 A9 21) -> ``"Ã©!"``.

    Latin-1 decoding turns each byte into the code point of the same number, and one
    ``str.translate`` then maps those through :func:`bytes_to_unicode`. A lone surrogate
    (``"\ud800"``, from text decoded with ``errors="surrogateescape"``) has no UTF-8: a ValueError.
    """
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"text holds the lone surrogate U+{ord(err.object[err.start]):04X}, which has no UTF-8 "
                         "bytes; decode the text as UTF-8 without errors='surrogateescape'") from None
    return data.decode("latin-1").translate(BYTE_TO_CHAR)


def from_byte_chars(tokens: Iterable[str], errors: str = "replace") -> str:
    """The text that byte-level tokens spell (tokenizers' ByteLevel decoder).

    A token made only of byte characters gives its bytes; any other token (a special token
    such as ``"<s>"`` is made of byte characters too) gives its own UTF-8. All the bytes are
    decoded together, so a character split across tokens comes back whole, and bytes that
    are not valid UTF-8 become U+FFFD (``errors="replace"``, Rust's ``from_utf8_lossy``).
    """
    data = bytearray()
    for token in tokens:
        if all(char in CHAR_TO_BYTE for char in token):
            data.extend(CHAR_TO_BYTE[char] for char in token)
        else:
            data.extend(token.encode("utf-8"))
    return data.decode("utf-8", errors=errors)


# ---------------------------------------------------------------------------------------
# Pre-tokenization: GPT-2's pattern
# ---------------------------------------------------------------------------------------

# \s of tokenizers' pattern: the Unicode White_Space property (Rust's char::is_whitespace). That is
# tokenization.py's WHITESPACE and the three control characters that BERT drops before it looks for spaces.
WHITE_SPACE = WHITESPACE | frozenset("\x0b\x0c\x85")

# Letters (\p{L}) and numbers (\p{N}) of Unicode 15.0 to 16.0, the tables of the Oniguruma in tokenizers,
# which Python 3.11's unicodedata (Unicode 14.0) sees as unassigned. Generated by asking tokenizers' ByteLevel
# pre-tokenizer about every code point (hex ranges, inclusive). Later Pythons know them as letters and numbers too.
_NEWER_LETTERS = """
1C89-1C8A A7CB-A7CD A7DA-A7DC 105C0-105F3 10D4A-10D65 10D6F-10D85 10EC2-10EC4 1123F-11240 11380-11389 1138B
1138E 11390-113B5 113B7 113D1 113D3 11BC0-11BE0 11F02 11F04-11F10 11F12-11F33 1342F 13441-13446 13460-143FA
16100-1611D 16D40-16D6C 18CFF 1B132 1B155 1DF25-1DF2A 1E030-1E06D 1E4D0-1E4EB 1E5D0-1E5ED 1E5F0 2B739
2EBF0-2EE5D 31350-323AF
"""
_NEWER_NUMBERS = """
10D40-10D49 116D0-116E3 11BF0-11BF9 11F50-11F59 16130-16139 16D70-16D79 1CCF0-1CCF9 1D2C0-1D2D3 1E4F0-1E4F9
1E5F1-1E5FA
"""
_NEWER_CLASSES = sorted((low, high, kind) for kind, table in (("L", _NEWER_LETTERS), ("N", _NEWER_NUMBERS))
                        for low, high in zip(*_parse_ranges(table)))
_NEWER_STARTS = [low for low, _, _ in _NEWER_CLASSES]


def character_class(ch: str) -> str:
    """What GPT-2's pattern sees in ``ch``: "L" (a letter), "N" (a number), "Z" (whitespace) or "O" (other)."""
    if ch in WHITE_SPACE:
        return "Z"
    category = unicodedata.category(ch)[0]
    if category in "LN":
        return category
    i = bisect.bisect_right(_NEWER_STARTS, ord(ch)) - 1
    if i >= 0 and ord(ch) <= _NEWER_CLASSES[i][1]:
        return _NEWER_CLASSES[i][2]
    return "O"


def _stand_in(ch: str) -> str:
    """The character that stands for ``ch`` in the pattern below: ASCII letters, the apostrophe and the space
    stand for themselves (the contractions and `` ?`` spell them out); any other letter is "a", a number
    "0", other whitespace a tab, anything else "!"."""
    if ch.isascii() and (ch.isalpha() or ch in "' "):
        return ch
    return {"L": "a", "N": "0", "Z": "\t", "O": "!"}[character_class(ch)]


_STAND_INS = _LazyTable(_stand_in)
# GPT-2's pattern over the stand-ins: letters are [A-Za-z], numbers 0, whitespace [ \t], others ! and '.
_PRE_TOKEN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?0+| ?[!']+|[ \t]+(?![^ \t])|[ \t]+")


def pre_tokenize(text: str) -> list[str]:
    """Cut text into GPT-2's pre-tokens (see the module doc): ``"Hello  world!"`` -> ``["Hello", " ", " world", "!"]``.

    The pieces always add up to ``text``: the pattern matches every character.
    """
    stand_ins = text.translate(_STAND_INS)  # one character for one character: the spans carry over
    return [text[match.start():match.end()] for match in _PRE_TOKEN.finditer(stand_ins)]


# ---------------------------------------------------------------------------------------
# BPE
# ---------------------------------------------------------------------------------------


class BytePairEncoding:
    """GPT-2's BPE: a pre-token, spelled in byte characters, merged pair by pair in the order the merges were learned.

    Start from one symbol per character. Among the adjacent pairs that are merges, join the
    one of lowest rank (learned first), the leftmost if it occurs more than once, and repeat
    until no adjacent pair is a merge: ``"Ġlower"`` with merges ``(Ġ, l) (o, w) (Ġl, ow)``
    becomes ``Ġl o w e r``, then ``Ġl ow e r``, then ``Ġlow e r``. This is tokenizers' order (a
    priority queue of (rank, position)); GPT-2's loop, which joins every occurrence of the
    best pair at once, gives the same tokens for any merges a trainer learned.

    A character that the vocabulary lacks is dropped before merging, as tokenizers drops it
    when, as for RoBERTa, its BPE has no unknown token. A vocabulary with all 256 byte
    characters never meets one. Results are cached per pre-token: running text repeats them.
    """

    def __init__(self, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]], cache_size: int = 2**16):
        self.vocab = vocab
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, (first, second) in enumerate(merges):
            for token in (first, second, first + second):
                if token not in vocab:
                    raise ValueError(f"merge {rank} ({first!r} {second!r}) needs {token!r}, which the "
                                     "vocabulary lacks; the vocabulary and merges do not belong together")
            self.ranks[first, second] = rank  # a merge listed twice keeps its last rank, as in tokenizers
        self.tokenize = functools.lru_cache(maxsize=cache_size)(self._tokenize)

    def _tokenize(self, word: str) -> tuple[str, ...]:
        symbols = [char for char in word if char in self.vocab]
        while len(symbols) > 1:
            rank, i = min((self.ranks.get(pair, len(self.ranks)), i) for i, pair in enumerate(pairwise(symbols)))
            if rank == len(self.ranks):  # no adjacent pair is a merge
                break
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        return tuple(symbols)


# ---------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------


class SpecialToken(NamedTuple):
    """A special token and whether it swallows the whitespace before (``lstrip``) or after it (``rstrip``).

    transformers' ``AddedToken``, with the two options RoBERTa uses: its ``<mask>`` has ``lstrip``.
    """

    content: str
    lstrip: bool = False
    rstrip: bool = False


def _special(token: str | SpecialToken) -> SpecialToken:
    return token if isinstance(token, SpecialToken) else SpecialToken(token)


ROBERTA_MASK = SpecialToken("<mask>", lstrip=True)
SPECIAL_TOKEN_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _special_token_property(role: str, as_id: bool = False) -> property:
    """``tok.mask_token`` (the string) or ``tok.mask_token_id``, for one of SPECIAL_TOKEN_ROLES."""
    if as_id:
        return property(lambda self: self._vocab[self._special_tokens[role].content], doc=f"The id of {role}.")
    return property(lambda self: self._special_tokens[role].content, doc=f"The {role} (its string).")


class RobertaTokenizer(TokenizerBase):
    """RoBERTa's byte-level BPE tokenizer, a hand-written twin of transformers' ``RobertaTokenizer``.

    Build it from a vocab.json and a merges.txt (``RobertaTokenizer("vocab.json", "merges.txt")``),
    from a vocabulary and merges in memory (``RobertaTokenizer(vocab=tokens, merges=pairs)``, as
    :func:`~numpy_bert.text.bpe_trainer.train_bpe` returns them), or from a saved folder
    (``RobertaTokenizer.from_pretrained(folder)``, which also reads transformers' tokenizer.json).
    Calling it encodes text the way transformers does::

        tok = RobertaTokenizer.from_pretrained(folder)
        tok.tokenize("Paris is the <mask> of France.")
        # ['Paris', 'Ġis', 'Ġthe', '<mask>', 'Ġof', 'ĠFrance', '.']  (with a vocabulary that has these)
        tok(["a question", "another"], ["its context", "more"], truncation=True,
            max_length=16, padding="max_length", return_tensors="np")

    ``add_prefix_space`` puts a space before each stretch of text that lacks one, so that
    the first word is tokenized like any other (RoBERTa was not trained so). The special
    tokens must be in the vocabulary; ``cls`` and ``sep`` are ``<s>`` and ``</s>``. ``<mask>``
    swallows the whitespace before it, as roberta-base's files say; transformers 5 reads that
    from the tokenizer_config.json that :meth:`save_pretrained` writes (from a bare vocab.json
    and merges.txt it gives ``<mask>`` no lstrip: ``mask_token="<mask>"`` here does the same).
    """

    def __init__(self, vocab_file: str | os.PathLike | None = None, merges_file: str | os.PathLike | None = None,
                 errors: str = "replace", bos_token: str | SpecialToken = "<s>",
                 eos_token: str | SpecialToken = "</s>", sep_token: str | SpecialToken = "</s>",
                 cls_token: str | SpecialToken = "<s>", unk_token: str | SpecialToken = "<unk>",
                 pad_token: str | SpecialToken = "<pad>", mask_token: str | SpecialToken = ROBERTA_MASK,
                 add_prefix_space: bool = False, model_max_length: int = DEFAULT_MODEL_MAX_LENGTH, *,
                 vocab: Mapping[str, int] | Sequence[str] | None = None,
                 merges: Sequence[tuple[str, str] | str] | None = None):
        if (vocab_file is None) == (vocab is None) or (merges_file is None) == (merges is None):
            raise ValueError("give a vocab.json and a merges.txt (vocab_file, merges_file), or a vocabulary and "
                             "its merges (vocab=, merges=)")
        tokens = read_vocab_json(vocab_file) if vocab is None else _tokens_in_id_order(vocab, "vocab")
        pairs = read_merges_file(merges_file) if merges is None else [_merge_pair(m, "merges") for m in merges]
        self._tokens = tokens
        self._vocab = self._index_tokens(tokens, source=vocab_file or "vocab")
        self.bpe = BytePairEncoding(self._vocab, pairs)
        self._merges = pairs
        specials = dict(zip(SPECIAL_TOKEN_ROLES, map(_special, (bos_token, eos_token, unk_token, sep_token,
                                                                pad_token, cls_token, mask_token)), strict=True))
        missing = [t.content for t in specials.values() if t.content not in self._vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the special token(s) {sorted(set(missing))}")
        self._special_tokens = specials
        self.errors = errors
        self.add_prefix_space = add_prefix_space
        self.model_max_length = int(model_max_length)
        self._special_tokens_re = _special_tokens_pattern(specials.values())

    # -- loading and saving -------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> RobertaTokenizer:
        """Load a folder's vocab.json and merges.txt with the settings of its tokenizer_config.json, or, in a
        folder that transformers 5 saved, its tokenizer.json. Keyword arguments override the settings."""
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise ValueError(f"tokenizer folder {directory!r} does not exist")
        settings, strip_flags = _read_tokenizer_config(os.path.join(directory, TOKENIZER_CONFIG_NAME))
        vocab_path, merges_path = os.path.join(directory, VOCAB_NAME), os.path.join(directory, MERGES_NAME)
        if os.path.isfile(vocab_path) or not os.path.isfile(os.path.join(directory, TOKENIZER_NAME)):
            files = {"vocab_file": vocab_path, "merges_file": merges_path}
        else:
            vocab, merges, add_prefix_space, added = _read_tokenizer_json(os.path.join(directory, TOKENIZER_NAME))
            files = {"vocab": vocab, "merges": merges}
            settings["add_prefix_space"] = add_prefix_space
            strip_flags.update(added)
        defaults = inspect.signature(cls).parameters
        for role in SPECIAL_TOKEN_ROLES:  # each role's token, with the lstrip/rstrip the files give its content
            content = _special(settings.get(role, defaults[role].default)).content
            if content in strip_flags:
                settings[role] = strip_flags[content]
        return cls(**files, **{**settings, **overrides})

    def save_pretrained(self, directory: str | os.PathLike) -> tuple[str, str, str]:
        """Write vocab.json, merges.txt and tokenizer_config.json, each atomically; returns the three paths.

        transformers' ``RobertaTokenizer.from_pretrained`` and ``AutoTokenizer.from_pretrained`` read the
        folder back into a tokenizer that encodes exactly like this one (``<mask>``'s lstrip included).
        """
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        vocab_path, merges_path = save_vocab_and_merges(self._tokens, self._merges, directory)
        config_path = os.path.join(directory, TOKENIZER_CONFIG_NAME)
        added_tokens = {str(self._vocab[t.content]): {"content": t.content, "lstrip": t.lstrip, "rstrip": t.rstrip,
                                                      "normalized": False, "single_word": False, "special": True}
                        for t in self._special_tokens.values()}
        config = {
            "tokenizer_class": "RobertaTokenizer",
            **{role: token.content for role, token in self._special_tokens.items()},
            "added_tokens_decoder": dict(sorted(added_tokens.items(), key=lambda item: int(item[0]))),
            "add_prefix_space": self.add_prefix_space,
            "errors": self.errors,
            "trim_offsets": True,
            "model_max_length": self.model_max_length,
            "clean_up_tokenization_spaces": False,
        }
        atomic_write_bytes(config_path, (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        return vocab_path, merges_path, config_path

    # -- vocabulary ----------------------------------------------------------------------

    @property
    def merges(self) -> list[tuple[str, str]]:
        """The merges in rank order (a copy)."""
        return list(self._merges)

    bos_token, bos_token_id = _special_token_property("bos_token"), _special_token_property("bos_token", True)
    eos_token, eos_token_id = _special_token_property("eos_token"), _special_token_property("eos_token", True)
    unk_token, unk_token_id = _special_token_property("unk_token"), _special_token_property("unk_token", True)
    sep_token, sep_token_id = _special_token_property("sep_token"), _special_token_property("sep_token", True)
    pad_token, pad_token_id = _special_token_property("pad_token"), _special_token_property("pad_token", True)
    cls_token, cls_token_id = _special_token_property("cls_token"), _special_token_property("cls_token", True)
    mask_token, mask_token_id = _special_token_property("mask_token"), _special_token_property("mask_token", True)

    @property
    def all_special_tokens(self) -> list[str]:
        """In transformers' order, each once: bos, eos, unk, sep, pad, cls, mask (RoBERTa's: <s> </s> <unk> <pad>
        <mask>)."""
        return list(dict.fromkeys(token.content for token in self._special_tokens.values()))

    def is_word_start(self, token: str) -> bool:
        """Whether a token begins a word: it starts with the space character ``Ġ``, or is a special token.

        Byte-level BPE marks the start of a word, not its continuation; the first word of a text
        (without ``add_prefix_space``) has no ``Ġ``, so it counts as a continuation of ``<s>``.
        """
        return token.startswith(BYTE_TO_CHAR[ord(" ")]) or token in self.all_special_tokens

    # -- tokenizing ----------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Text to byte-level BPE tokens, without ``<s>``/``</s>``; literal special tokens stay whole."""
        _check_text(text)
        tokens: list[str] = []
        for piece, special in self._split_special_tokens(text):
            if special:
                tokens.append(piece)
                continue
            if self.add_prefix_space and not piece.startswith(" "):
                piece = " " + piece
            for word in pre_tokenize(piece):
                tokens.extend(self.bpe.tokenize(to_byte_chars(word)))
        return tokens

    def _split_special_tokens(self, text: str) -> list[tuple[str, bool]]:
        """``text`` as (piece, is_special) pairs: the special tokens it spells out, with the whitespace their
        lstrip/rstrip swallow, and the stretches of plain text between them (never empty)."""
        pieces, start = [], 0
        for match in self._special_tokens_re.finditer(text):
            if match.start() > start:
                pieces.append((text[start:match.start()], False))
            pieces.append((match.group(match.lastindex), True))  # the one group that matched: the token itself
            start = match.end()
        if start < len(text):
            pieces.append((text[start:], False))
        return pieces

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """2 for ``<s> A </s>``, 4 for ``<s> A </s></s> B </s>``."""
        return 4 if pair else 2

    def __call__(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None, *,
                 add_special_tokens: bool = True, padding: bool | str = False,
                 truncation: bool | str | None = None, max_length: int | None = None,
                 return_tensors: str | None = None) -> BatchEncoding:
        """Encode a text, a pair, or a batch of either, as transformers' tokenizer does.

        The options and the output are BertTokenizer's (see :meth:`BertTokenizer.__call__`: the
        same rules for padding, ``"longest_first"`` truncation and ``max_length``, lists or
        ``return_tensors="np"``), except that there are no ``token_type_ids``: RoBERTa has one
        token type, and transformers' RobertaTokenizer returns ``input_ids`` and ``attention_mask``.
        Padding uses ``<pad>``.
        """
        encoding = self._encode_batch(text, text_pair, add_special_tokens, padding, truncation, max_length,
                                      return_tensors)
        del encoding["token_type_ids"]  # all zeros: one token type
        return encoding

    def _join_segments(self, first: list[int], second: list[int] | None, add_special_tokens: bool
                       ) -> tuple[list[int], list[int]]:
        """(input_ids, token_type_ids) of ``<s> A </s></s> B </s>`` (``A B`` without special tokens): type 0
        everywhere, RoBERTa has one token type."""
        if add_special_tokens:
            first = [self.cls_token_id, *first, self.sep_token_id]
            second = None if second is None else [self.sep_token_id, *second, self.sep_token_id]
        ids = first + (second or [])
        return ids, [0] * len(ids)

    # -- decoding ------------------------------------------------------------------------

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Tokens back into text by tokenizers' ByteLevel decoder (:func:`from_byte_chars`)."""
        return from_byte_chars(tokens, self.errors)

    def decode(self, ids: int | Iterable[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """Ids back to text, exactly: byte-level BPE loses nothing, so ``decode(encode(t))`` is ``<s>t</s>``.

        Ids outside the vocabulary are skipped, as in transformers. ``clean_up_tokenization_spaces``
        is accepted and ignored, as transformers 5 ignores it for BPE tokenizers: that clean-up
        (``" ."`` -> ``"."``) repairs WordPiece's spacing and would corrupt text decoded exactly.
        """
        if isinstance(ids, (int, np.integer)):
            ids = [ids]
        skip = set(self.all_special_tokens) if skip_special_tokens else set()
        tokens = [self._tokens[i] for i in map(int, ids) if 0 <= i < len(self._tokens)]
        return self.convert_tokens_to_string([t for t in tokens if t not in skip])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, merges={len(self._merges)}, "
                f"add_prefix_space={self.add_prefix_space}, model_max_length={self.model_max_length})")


def _special_tokens_pattern(tokens: Iterable[SpecialToken]) -> re.Pattern:
    """One pattern for all special tokens, longest first (tokenizers matches them leftmost-longest), each in a
    group of its own, with the whitespace it swallows around the group."""
    space = "[" + "".join(sorted(WHITE_SPACE)) + "]*"  # no character of WHITE_SPACE is special inside [...]
    by_content = {t.content: t for t in tokens}
    alternatives = [f"{space if t.lstrip else ''}({re.escape(t.content)}){space if t.rstrip else ''}"
                    for t in sorted(by_content.values(), key=lambda t: len(t.content), reverse=True)]
    return re.compile("|".join(alternatives))


# ---------------------------------------------------------------------------------------
# Files: vocab.json, merges.txt, tokenizer_config.json, tokenizer.json
# ---------------------------------------------------------------------------------------


def _tokens_in_id_order(vocab: Mapping[str, int] | Sequence[str], source: Any) -> list[str]:
    """A vocabulary as a list of tokens in id order; a mapping must number its tokens 0..n-1."""
    if not isinstance(vocab, Mapping):
        return list(vocab)
    ids = sorted(vocab.values()) if all(type(i) is int for i in vocab.values()) else None
    if ids != list(range(len(vocab))):
        raise ValueError(f"{source}: the token ids must be the integers 0..{len(vocab) - 1}, each once")
    return sorted(vocab, key=vocab.__getitem__)


def _merge_pair(merge: Any, source: Any) -> tuple[str, str]:
    """A merge as a pair of tokens, from ``("Ġ", "t")``, ``["Ġ", "t"]`` (tokenizer.json) or ``"Ġ t"`` (merges.txt)."""
    parts = merge.split(" ") if isinstance(merge, str) else merge
    if not (isinstance(parts, (list, tuple)) and len(parts) == 2 and all(isinstance(p, str) and p for p in parts)):
        raise ValueError(f"{source}: a merge is two tokens, got {merge!r:.80}")
    return parts[0], parts[1]


def read_vocab_json(path: str | os.PathLike) -> list[str]:
    """The tokens of a vocab.json (``{"token": id, ...}``), in id order."""
    if not os.path.isfile(path):
        raise ValueError(f"vocab file {os.fspath(path)!r} does not exist")
    return _tokens_in_id_order(read_json_object(path), os.fspath(path))


def read_merges_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The merges of a merges.txt, in rank order: one ``first second`` per line after the ``#version`` line."""
    if not os.path.isfile(path):
        raise ValueError(f"merges file {os.fspath(path)!r} does not exist")
    lines = read_lines(path)
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    return [_merge_pair(line, f"{os.fspath(path)}:{n + 2}") for n, line in enumerate(lines) if line]


def save_vocab_and_merges(tokens: Sequence[str], merges: Sequence[tuple[str, str]],
                          directory: str | os.PathLike) -> tuple[str, str]:
    """Write ``tokens`` as vocab.json (token -> id) and ``merges`` as merges.txt in ``directory``, atomically,
    creating it; returns the two paths. GPT-2, fairseq, tokenizers and transformers all read these two files."""
    if len(set(tokens)) != len(tokens):
        raise ValueError("the vocabulary has duplicate tokens")
    bad = [pair for pair in merges if any(not part or " " in part or "\n" in part for part in pair)]
    if bad:
        raise ValueError(f"merges.txt cannot hold merges of empty tokens or tokens with spaces or newlines: {bad[:5]}")
    os.makedirs(directory, exist_ok=True)
    vocab_path, merges_path = os.path.join(directory, VOCAB_NAME), os.path.join(directory, MERGES_NAME)
    vocab = {token: i for i, token in enumerate(tokens)}
    atomic_write_bytes(vocab_path, (json.dumps(vocab, ensure_ascii=False) + "\n").encode("utf-8"))
    lines = [MERGES_HEADER, *(f"{first} {second}" for first, second in merges)]
    atomic_write_bytes(merges_path, "".join(line + "\n" for line in lines).encode("utf-8"))
    return vocab_path, merges_path


def _special_token_setting(value: Any, path: str, key: str) -> str | SpecialToken:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return SpecialToken(value["content"], bool(value.get("lstrip", False)), bool(value.get("rstrip", False)))
    raise ValueError(f"{path}: {key} must be a token (a string or an AddedToken object), got {value!r:.80}")


def _read_tokenizer_config(path: str) -> tuple[dict[str, Any], dict[str, SpecialToken]]:
    """The settings of a tokenizer_config.json that RobertaTokenizer takes, and the special tokens its
    added_tokens_decoder describes, by content (with their lstrip and rstrip); both empty without the file."""
    if not os.path.isfile(path):
        return {}, {}
    config = read_json_object(path)
    settings: dict[str, Any] = {}
    for key in ("add_prefix_space", "model_max_length", "errors"):
        if key in config:
            settings[key] = config[key]
    if not isinstance(settings.get("add_prefix_space", False), bool):
        raise ValueError(f"{path}: add_prefix_space must be true or false, got {settings['add_prefix_space']!r}")
    length = settings.get("model_max_length", 1)
    if not (type(length) is int and length > 0):  # type(): True is an int, but not a length
        raise ValueError(f"{path}: model_max_length must be a positive integer, got {length!r}")
    for role in SPECIAL_TOKEN_ROLES:
        if config.get(role) is not None:
            settings[role] = _special_token_setting(config[role], path, role)
    added = config.get("added_tokens_decoder") or {}
    if not isinstance(added, dict):
        raise ValueError(f"{path}: added_tokens_decoder must map ids to AddedToken objects, got {added!r:.80}")
    strip_flags = {token.content: token for token in (_special_token_setting(entry, path, "added_tokens_decoder")
                                                      for entry in added.values()) if isinstance(token, SpecialToken)}
    return settings, strip_flags


def _read_tokenizer_json(path: str) -> tuple[dict[str, int], list, bool, dict[str, SpecialToken]]:
    """The vocabulary, merges, add_prefix_space and added tokens (by content) of transformers 5's tokenizer.json,
    which must describe byte-level BPE."""
    data = read_json_object(path)
    model = data.get("model") or {}
    pre_tokenizer = data.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre_tokenizer.get("type") != "ByteLevel":
        raise ValueError(f"{path} does not describe a byte-level BPE tokenizer (model {model.get('type')!r}, "
                         f"pre-tokenizer {pre_tokenizer.get('type')!r}); RobertaTokenizer reads RoBERTa's")
    if not (isinstance(model.get("vocab"), dict) and isinstance(model.get("merges"), list)):
        raise ValueError(f"{path}: the BPE model needs a vocab object and a merges list")
    added = [_special_token_setting(entry, path, "added_tokens") for entry in data.get("added_tokens") or []]
    return (model["vocab"], model["merges"], bool(pre_tokenizer.get("add_prefix_space", False)),
            {token.content: token for token in added if isinstance(token, SpecialToken)})
