"""Train a WordPiece vocabulary from raw text, the way HuggingFace's WordPieceTrainer does.

WordPiece vocabularies are *trained* with byte-pair-encoding merges and only *used*
greedily (longest match first, see :class:`numpy_bert.text.tokenization.WordPiece`). The
procedure, as in tokenizers' ``WordPieceTrainer`` (a BPE trainer with the ``##``
continuation prefix):

1. **Count words.** Every text goes through BERT's basic tokenizer (clean, lowercase,
   strip accents, split on whitespace and punctuation); identical words are counted
   once with their frequency, so the rest of the work is over *unique* words.
2. **Alphabet.** Every character becomes a token: ``"c"`` for a word's first
   character and ``"##c"`` for a character inside a word. A word ``"low"`` starts as
   the symbols ``l ##o ##w``.
3. **Merge.** Count every pair of adjacent symbols, weighted by word frequency. Merge
   the most frequent pair everywhere into one new token (``l`` + ``##o`` -> ``lo``;
   ``##o`` + ``##w`` -> ``##ow``: the second half loses its ``##``) and add it to the
   vocabulary. Repeat until the vocabulary has ``vocab_size`` tokens or no pair occurs
   ``min_frequency`` times. Ties go to the pair of earliest-created tokens, which makes
   the result deterministic.

Only the pair counts of the words that contain the merged pair change, so after each
merge just those words are re-counted (an index pair -> words finds them), and a heap
with lazy deletion finds the next best pair: the byte-level BPE trainer's machinery
(:class:`numpy_bert.text.bpe_trainer.MergeState`), with the two ``##`` rules above.
Training an 8k vocabulary on a few hundred thousand words takes seconds.

The vocabulary is: the special tokens (``[PAD]`` first, so that its id is 0, as BERT
expects), the alphabet in code point order (word-initial forms, then ``##`` forms),
then the merged tokens in the order they were learned.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence

from ..checkpoint import atomic_write_bytes
from .bpe_trainer import MergeState
from .tokenization import CONTINUATION_PREFIX, BasicTokenizer

DEFAULT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def count_words(texts: Iterable[str], tokenizer: BasicTokenizer) -> Counter[str]:
    """How often each word of BERT's basic tokenization occurs in ``texts``."""
    counts: Counter[str] = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise ValueError(f"texts must be str, got {type(text).__name__}: {text!r:.80}")
        counts.update(tokenizer.tokenize(text))
    return counts


def _alphabet(word_counts: Counter[str], limit_alphabet: int | None) -> set[str]:
    """The characters of the words; with a limit, only the most frequent ones."""
    char_counts: Counter[str] = Counter()
    for word, count in word_counts.items():
        for ch in word:
            char_counts[ch] += count
    if limit_alphabet is None:
        return set(char_counts)
    ranked = sorted(char_counts.items(), key=lambda item: (-item[1], item[0]))
    return {ch for ch, _ in ranked[:limit_alphabet]}


class _WordPieceMergeState(MergeState):
    """BPE's merge state (numpy_bert/text/bpe_trainer.py) with WordPiece's ``##`` rules: ``"low"`` starts
    as ``l ##o ##w``, and a merge drops the second half's ``##`` (``l`` + ``##o`` -> ``lo``,
    ``##o`` + ``##w`` -> ``##ow``). Counting, the heap and its ties are BPE's."""

    @staticmethod
    def spell(word: str) -> list[str]:
        return [word[0], *(CONTINUATION_PREFIX + ch for ch in word[1:])]

    @staticmethod
    def join(first: str, second: str) -> str:
        return first + second[len(CONTINUATION_PREFIX):]  # the second symbol is never word-initial


def train_wordpiece_vocab(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
                          do_lower_case: bool = True, strip_accents: bool | None = None,
                          tokenize_chinese_chars: bool = True,
                          special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
                          limit_alphabet: int | None = None) -> list[str]:
    """Learn a WordPiece vocabulary of at most ``vocab_size`` tokens (see the module doc).

    ``do_lower_case``, ``strip_accents`` and ``tokenize_chinese_chars`` must match the
    tokenizer that will use the vocabulary. ``limit_alphabet`` keeps only the most
    frequent characters (words with any other character are left out of the merges;
    the tokenizer will turn them into ``[UNK]``). Returns the tokens in id order.
    """
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens has duplicates: {list(special_tokens)}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be at least 1, got {min_frequency}")
    basic = BasicTokenizer(do_lower_case, strip_accents, tokenize_chinese_chars)
    word_counts = count_words(texts, basic)
    alphabet = _alphabet(word_counts, limit_alphabet)
    initials = sorted({word[0] for word in word_counts if word[0] in alphabet})
    inner = {ch for word in word_counts for ch in word[1:] if ch in alphabet}
    continuations = sorted(CONTINUATION_PREFIX + ch for ch in inner)
    tokens = [*special_tokens, *(t for t in initials + continuations if t not in special_tokens)]
    if len(tokens) > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(special_tokens)} special tokens "
                         f"plus the alphabet of {len(tokens) - len(special_tokens)} characters; "
                         "raise vocab_size or set limit_alphabet")
    spelled = {word: count for word, count in word_counts.items() if alphabet.issuperset(word)}
    state = _WordPieceMergeState(tokens, spelled)
    while len(state.tokens) < vocab_size:
        best = state.best_pair()
        if best is None or best[1] < min_frequency:
            break
        state.merge(best[0])
    return state.tokens


def save_vocab(tokens: Sequence[str], path: str | os.PathLike) -> None:
    """Write ``tokens`` as a vocab.txt (one per line, line number = id), atomically, creating its folder."""
    if len(set(tokens)) != len(tokens):
        raise ValueError("the vocabulary has duplicate tokens")
    bad = [t for t in tokens if not t or "\n" in t or "\r" in t]
    if bad:
        raise ValueError(f"tokens must be non-empty and hold no line break: {bad[:5]}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, "".join(t + "\n" for t in tokens).encode("utf-8"))
