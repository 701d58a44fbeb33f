"""Cloze evaluation: does a model put an accepted whole word into each sentence's [MASK]?

Held-out MLM accuracy (numpy_bert/training/evaluation.py) scores every masked token,
most of them "the", "." and word pieces; a cloze set asks about the words a reader
cares about ("The [MASK] statement exits a loop early." -> break). The sentences and
their checks are in numpy_bert/data/cloze.py.

Whole-word accuracy: a *ranker* orders the vocabulary for a sentence, most likely first;
the predictions are its ``top_k`` best tokens that are whole words (:func:`is_word`: no
``##`` pieces, special tokens or punctuation). A sentence is a top-1 hit when the first
prediction, lower-cased, is one of its answers, lower-cased, and a top-k hit when any of
them is. An answer the vocabulary cannot spell as one token can never be predicted: it
is reported as not in the vocabulary, and a sentence with no other answer is a miss.

Two rankers: :func:`model_ranker` (the MLM head, through fill_mask) and
:func:`unigram_ranker`, the baseline that ignores the sentence and always ranks the
words of a corpus by how often they occur: what a model that learned only word
frequencies would score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from ..data.cloze import ClozeItem, is_word
from ..data.corpus import Corpus
from ..pipelines.fill_mask import fill_mask
from ..text.tokenization import BertTokenizer

Ranker = Callable[[str], Sequence[str]]  # a text with one [MASK] -> vocabulary tokens, most likely first


@dataclass(frozen=True)
class ClozeResult:
    """One sentence scored: the predictions, and its answers split by whether the vocabulary holds them."""

    item: ClozeItem
    predictions: tuple[str, ...]  # the top_k whole-word tokens, best first
    accepted: frozenset[str]  # the answers as vocabulary tokens, lower-cased
    not_in_vocabulary: tuple[str, ...]  # answers that no single token spells

    @property
    def rank(self) -> int | None:
        """Where the first accepted prediction stands (1 = top-1), or None for a miss."""
        return next((n for n, token in enumerate(self.predictions, 1) if token.lower() in self.accepted), None)


def model_ranker(predict, tokenizer: BertTokenizer, max_length: int) -> Ranker:
    """The MLM head's ranking of the whole vocabulary (``predict``: a backend's, as in fill_mask)."""

    def rank(text: str) -> list[str]:
        (candidates,) = fill_mask(predict, tokenizer, text, len(tokenizer), max_length)
        return [token for token, _ in candidates]

    return rank


def unigram_ranker(tokenizer: BertTokenizer, corpus: Corpus) -> Ranker:
    """The tokens of ``corpus`` (tokenized by ``tokenizer``) by frequency, whatever the sentence.

    Ties go to the token met first in the corpus, so the ranking is the same on every run.
    """
    counts = Counter(token for text in corpus.texts() for token in tokenizer.tokenize(text))
    ranking = [token for token, _ in counts.most_common()]
    return lambda text: ranking


def score_cloze(items: Sequence[ClozeItem], rank: Ranker, tokenizer: BertTokenizer,
                top_k: int = 5) -> tuple[list[ClozeResult], dict[str, Any]]:
    """Each item scored, and the figures: top-1 and top-k accuracy over all items."""
    if not items:
        raise ValueError("nothing to evaluate: no cloze sentences")
    words = {token for token in tokenizer.vocab if is_word(token)}
    results = []
    for item in items:
        try:
            ranked = rank(item.text)
        except ValueError as err:  # fill_mask's: a [MASK] cut off by truncation
            raise ValueError(f"{item.where}: {err}") from None
        predictions = tuple(islice((token for token in ranked if token in words), top_k))
        spelled = {answer: _single_token(tokenizer, answer, words) for answer in item.answers}
        results.append(ClozeResult(item, predictions, frozenset(t.lower() for t in spelled.values() if t),
                                   tuple(answer for answer, token in spelled.items() if token is None)))
    top1 = sum(result.rank == 1 for result in results)
    top_k_hits = sum(result.rank is not None for result in results)
    return results, {"sentences": len(results), "top_k": top_k, "top1_accuracy": top1 / len(results),
                     "top_k_accuracy": top_k_hits / len(results), "top1_hits": top1, "top_k_hits": top_k_hits,
                     "unscorable": sum(not result.accepted for result in results)}


def _single_token(tokenizer: BertTokenizer, answer: str, words: set[str]) -> str | None:
    """The one whole-word token that spells ``answer``, or None when the vocabulary has none."""
    tokens = tokenizer.tokenize(answer)
    return tokens[0] if len(tokens) == 1 and tokens[0] in words else None


def format_cloze_table(results: Sequence[ClozeResult]) -> str:
    """A Markdown table: each sentence, its answers, the predictions and where the first hit stands."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| # | sentence | answers | top predictions | result |", "| ---: | --- | --- | --- | --- |"]
    for n, result in enumerate(results, 1):
        answers = [answer if answer not in result.not_in_vocabulary else f"{answer} (not in the vocabulary)"
                   for answer in result.item.answers]
        outcome = "miss" if result.rank is None else f"hit (rank {result.rank})"
        lines.append(f"| {n} | {cell(result.item.text)} | {cell(', '.join(answers))} | "
                     f"{cell(' '.join(result.predictions))} | {outcome} |")
    return "\n".join(lines)


def format_cloze_metrics(metrics: dict[str, Any]) -> str:
    n = metrics["sentences"]
    line = (f"top-1 accuracy {metrics['top1_accuracy']:.1%} ({metrics['top1_hits']} of {n}) | "
            f"top-{metrics['top_k']} accuracy {metrics['top_k_accuracy']:.1%} ({metrics['top_k_hits']} of {n})")
    if metrics["unscorable"]:
        line += f" | {metrics['unscorable']} with no answer in the vocabulary (counted as misses)"
    return line
