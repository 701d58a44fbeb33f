"""Cloze sentences: one [MASK] each, with the whole words accepted in its place.

A cloze file holds one JSON object per line (blank lines are skipped)::

    {"text": "A list is a mutable [MASK].", "answers": ["sequence", "object", "type"]}

``text`` holds exactly one literal ``[MASK]``; ``answers`` is a non-empty list of words
(:func:`is_word`: "don't", "os.path" and "." are not). Whether a model's vocabulary holds
an answer as one token is a question about the model, not the file: the scoring reports
it (numpy_bert/training/cloze.py). A bad row is a ValueError naming ``file:line``.

:data:`BUILTIN_CLOZE_PATH` is the project's own set: sentences about Python written in
the plain English of its documentation (the embedded corpus the models are
pre-trained on), but none of them copied from it, so that a model cannot score by
recalling a training sentence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import parse_json, read_lines
from ..text.tokenization import BasicTokenizer, is_punctuation

MASK = "[MASK]"
BUILTIN_CLOZE_PATH = Path(__file__).with_name("cloze_python.jsonl")
_WORDS = BasicTokenizer()  # cuts text into words as every BertTokenizer does before WordPiece


@dataclass(frozen=True)
class ClozeItem:
    """One sentence with its [MASK], the accepted answers, and where it came from (``file:line``)."""

    where: str
    text: str
    answers: tuple[str, ...]


def is_word(text: str) -> bool:
    """Whether ``text`` is one word as BERT's pre-tokenization cuts text, and not a punctuation mark.

    The same test picks the vocabulary tokens that may be predicted: it rules out ``##``
    continuation pieces and the special tokens (both hold punctuation, so they cut into
    several words) and punctuation marks, which never fill a word's place.
    """
    words = _WORDS.tokenize(text)
    return len(words) == 1 and not all(map(is_punctuation, words[0]))


def read_cloze_file(path: str | os.PathLike) -> list[ClozeItem]:
    """Every item of a cloze file, checked; ValueError at the first bad row, with its line."""
    if not Path(path).is_file():
        raise ValueError(f"cloze file {os.fspath(path)!r} does not exist")
    items = []
    for number, line in enumerate(read_lines(path), start=1):
        if line.strip():
            where = f"{os.fspath(path)}:{number}"
            items.append(_cloze_item(parse_json(line, where), where))
    if not items:
        raise ValueError(f"{os.fspath(path)}: no cloze sentences")
    return items


def load_builtin_cloze() -> list[ClozeItem]:
    return read_cloze_file(BUILTIN_CLOZE_PATH)


def _cloze_item(row, where: str) -> ClozeItem:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    text, answers = row.get("text"), row.get("answers")
    if not isinstance(text, str):
        raise ValueError(f"{where}: field 'text' must be a string, got {_describe(text)}")
    if text.count(MASK) != 1:
        raise ValueError(f"{where}: the text must hold exactly one {MASK}, it holds {text.count(MASK)}: {text!r}")
    if not isinstance(answers, list) or not answers:
        raise ValueError(f"{where}: field 'answers' must be a non-empty list of words, got {_describe(answers)}")
    for i, answer in enumerate(answers):
        if not isinstance(answer, str):
            raise ValueError(f"{where}: answers[{i}] must be a string, got {_describe(answer)}")
        if not is_word(answer):
            raise ValueError(f"{where}: answers[{i}] = {answer!r} is not a single word")
    return ClozeItem(where, text, tuple(answers))


def _describe(value) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"
