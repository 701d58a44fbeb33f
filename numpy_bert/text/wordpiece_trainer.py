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
with lazy deletion finds the next best pair. Training an 8k vocabulary on a few
hundred thousand words takes seconds.

The vocabulary is: the special tokens (``[PAD]`` first, so that its id is 0, as BERT
expects), the alphabet in code point order (word-initial forms, then ``##`` forms),
then the merged tokens in the order they were learned.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise

from ..checkpoint import atomic_write_bytes
from .tokenization import CONTINUATION_PREFIX, BasicTokenizer

DEFAULT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

Pair = tuple[int, int]


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


class _MergeState:
    """Unique words as lists of token ids (``"low"`` -> ids of ``l ##o ##w``), with frequencies,
    the count of every adjacent pair, and a heap to find the most frequent pair."""

    def __init__(self, tokens: list[str], word_counts: dict[str, int]):
        self.tokens = tokens
        self.ids = {token: i for i, token in enumerate(tokens)}
        self.words = [[self.ids[word[0]], *(self.ids[CONTINUATION_PREFIX + ch] for ch in word[1:])]
                      for word in word_counts]
        self.freqs = list(word_counts.values())
        self.pair_counts: dict[Pair, int] = defaultdict(int)
        self.where: dict[Pair, set[int]] = defaultdict(set)  # pair -> words that (may) hold it
        for index, word in enumerate(self.words):
            self._add_pairs(index, word, +1)
        # Max-heap via negated counts; ties: smallest (first id, second id) first.
        self.heap = [(-count, pair) for pair, count in self.pair_counts.items()]
        heapq.heapify(self.heap)

    def _add_pairs(self, index: int, word: list[int], sign: int) -> set[Pair]:
        """Add (sign +1) or remove (-1) the pairs of word ``index``; returns those pairs."""
        pairs = list(pairwise(word))
        for pair in pairs:
            self.pair_counts[pair] += sign * self.freqs[index]
            if sign > 0:
                self.where[pair].add(index)
        return set(pairs)

    def best_pair(self) -> tuple[Pair, int] | None:
        """The most frequent pair and its count; heap entries with a stale count are dropped."""
        while self.heap:
            negative_count, pair = heapq.heappop(self.heap)
            if self.pair_counts.get(pair, 0) == -negative_count:
                return pair, -negative_count
        return None

    def merge(self, pair: Pair) -> str:
        """Replace ``pair`` by its merged token in every word; returns the token."""
        first, second = (self.tokens[i] for i in pair)
        token = first + second[len(CONTINUATION_PREFIX):]
        if token not in self.ids:  # the same string can come from two different merges
            self.ids[token] = len(self.tokens)
            self.tokens.append(token)
        new_id = self.ids[token]
        changed: set[Pair] = set()
        for index in self.where.pop(pair, ()):
            word = self.words[index]
            merged = _merge_word(word, pair, new_id)
            if len(merged) == len(word):
                continue  # a stale entry: this word no longer holds the pair
            changed |= self._add_pairs(index, word, -1)
            changed |= self._add_pairs(index, merged, +1)
            self.words[index] = merged
        for p in changed:
            count = self.pair_counts[p]
            if count > 0:
                heapq.heappush(self.heap, (-count, p))
            else:
                del self.pair_counts[p]
        return token


def _merge_word(word: list[int], pair: Pair, new_id: int) -> list[int]:
    """``word`` with each occurrence of ``pair``, left to right, replaced by ``new_id``."""
    merged, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


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
    state = _MergeState(tokens, spelled)
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
