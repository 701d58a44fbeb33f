"""Train a byte-level BPE vocabulary and its merges from raw text, as HuggingFace's BpeTrainer does.

This is how RoBERTa's (and GPT-2's) vocabulary is made, and the tokenizer of
:mod:`numpy_bert.text.byte_level_bpe` then applies the merges in the order they were learned.
The procedure, step for step as tokenizers' ``ByteLevelBPETokenizer.train`` (a ``BpeTrainer``
with the 256 byte characters as its initial alphabet):

1. **Count pre-tokens.** Every text is cut by GPT-2's pattern and each piece spelled in byte
   characters (``" the"`` -> ``"Ġthe"``); identical pieces are counted once with their
   frequency, so the rest of the work is over *unique* pieces ("words"). Special tokens in the
   texts are not treated specially: they are text like any other here, as in tokenizers.
2. **Alphabet.** The vocabulary starts with the special tokens (``<s> <pad> </s> <unk> <mask>``,
   so that ``<pad>`` is 1, as RobertaConfig expects), then the 256 byte characters in code
   point order: every text can be spelled, whatever the corpus held.
3. **Merge.** Count every pair of adjacent symbols, weighted by word frequency; join the most
   frequent pair everywhere into one new symbol, add it to the vocabulary and the pair to the
   merges; repeat until the vocabulary has ``vocab_size`` tokens or no pair occurs
   ``min_frequency`` times. Ties go to the pair of smaller ids (the earlier-created tokens,
   the first one first), which makes the result deterministic; two merges can make the same
   string (``ab`` + ``c``, ``a`` + ``bc``), which is then one token with two merges.

Only the pair counts of the words that hold the merged pair change, so after each merge
just those words are re-counted (an index pair -> words finds them), and a heap with lazy
deletion finds the next best pair. The WordPiece trainer (numpy_bert/text/wordpiece_trainer.py)
runs this same machinery, :class:`MergeState`, with WordPiece's ``##`` continuation marks, which
are the only difference between the two.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise

from .byte_level_bpe import BYTE_TO_CHAR, pre_tokenize, save_vocab_and_merges, to_byte_chars

DEFAULT_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

Pair = tuple[int, int]

__all__ = ["DEFAULT_SPECIAL_TOKENS", "MergeState", "count_pre_tokens", "save_vocab_and_merges", "train_bpe"]


def count_pre_tokens(texts: Iterable[str], add_prefix_space: bool = False) -> Counter[str]:
    """How often each pre-token, in byte characters, occurs in ``texts`` (``add_prefix_space``: as the
    tokenizer that will use the vocabulary, a space before each text that lacks one)."""
    counts: Counter[str] = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise ValueError(f"texts must be str, got {type(text).__name__}: {text!r:.80}")
        if add_prefix_space and not text.startswith(" "):
            text = " " + text
        counts.update(map(to_byte_chars, pre_tokenize(text)))
    return counts


class MergeState:
    """Unique words as lists of token ids, with frequencies, the count of every adjacent pair, and a heap
    to find the most frequent pair (the smallest pair of ids among equals, as tokenizers' heap orders them).

    BPE's: a word is spelled one symbol per character, and a merge joins two symbols' strings.
    The WordPiece trainer's subclass changes just these two rules (:meth:`spell`, :meth:`join`).
    """

    def __init__(self, tokens: list[str], word_counts: dict[str, int]):
        self.tokens = tokens
        self.ids = {token: i for i, token in enumerate(tokens)}
        self.words = [[self.ids[symbol] for symbol in self.spell(word)] for word in word_counts]
        self.freqs = list(word_counts.values())
        self.pair_counts: dict[Pair, int] = defaultdict(int)
        self.where: dict[Pair, set[int]] = defaultdict(set)  # pair -> words that (may) hold it
        for index, word in enumerate(self.words):
            self._add_pairs(index, word, +1)
        self.heap = [(-count, pair) for pair, count in self.pair_counts.items()]  # max count, then min pair
        heapq.heapify(self.heap)

    @staticmethod
    def spell(word: str) -> list[str]:
        """The symbols a word starts as: its characters (here byte characters)."""
        return list(word)

    @staticmethod
    def join(first: str, second: str) -> str:
        """The token a merge of two symbols makes."""
        return first + second

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
        """Replace ``pair`` by its joined token in every word; returns the token."""
        token = self.join(self.tokens[pair[0]], self.tokens[pair[1]])
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


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
              special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
              add_prefix_space: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """Learn a byte-level BPE vocabulary of at most ``vocab_size`` tokens and its merges (see the module doc).

    Returns (tokens in id order, merges in rank order): what vocab.json and merges.txt hold
    (:func:`save_vocab_and_merges` writes them) and what ``RobertaTokenizer(vocab=, merges=)`` takes.
    ``min_frequency=2`` is ``ByteLevelBPETokenizer.train``'s default.
    """
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens has duplicates: {list(special_tokens)}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be at least 1, got {min_frequency}")
    alphabet = sorted(BYTE_TO_CHAR.values())  # code point order, as tokenizers sorts its alphabet
    tokens = list(dict.fromkeys([*special_tokens, *alphabet]))  # a special token that is a byte counts once
    if len(tokens) > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(special_tokens)} special tokens plus "
                         f"the {len(alphabet)} byte characters; raise vocab_size to at least {len(tokens)}")
    state = MergeState(tokens, count_pre_tokens(texts, add_prefix_space))
    merges: list[tuple[str, str]] = []
    while len(state.tokens) < vocab_size:
        best = state.best_pair()
        if best is None or best[1] < min_frequency:
            break
        pair = best[0]
        merges.append((state.tokens[pair[0]], state.tokens[pair[1]]))
        state.merge(pair)
    return state.tokens, merges
