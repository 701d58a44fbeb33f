"""Fine-tuning data: reading JSONL/CSV files, checking them, and turning examples into model inputs.

One example per JSONL line (a JSON object) or CSV row (with a header line). The fields:

    classify   text, text_pair (optional), label         label: a class name (a string or an integer)
    tag        tokens, tags                              two lists of the same length; tags in BIO:
                                                         "O", "B-TYPE" (begins an entity), "I-TYPE" (inside)
    qa         question, context, answer                 answer: text that occurs in context (its first
                                                         occurrence is taken as the answer span)

In CSV, ``tokens`` and ``tags`` are space-separated strings. Anything wrong with a row -
bad JSON, a missing field, a wrong type, an answer that is not in its context, a BIO
tag of the wrong shape, a label the training file never had - is a ValueError naming
the file and the line, so a user can open the file right there.

Encoding follows what transformers' fine-tuning scripts do:

* classify: ``[CLS] text [SEP] (text_pair [SEP])``, truncated longest-first.
* tag: each word is cut into WordPiece pieces; the word's label goes on its first
  piece and -100 (ignored) on the others, [CLS], [SEP] and padding. Words cut off by
  truncation get no prediction (they count as "O" when scored).
* qa: ``[CLS] question [SEP] context [SEP]``; the answer's characters are mapped to the
  first and last context token that overlap them. Each token knows the characters of
  the word it came from (:func:`tokenize_with_offsets`), so a predicted token span maps
  back to the exact text of the context, in whole words (as the original BERT's
  run_squad.py). An answer cut off by truncation points at [CLS] (position 0), as in
  transformers' run_qa.py.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import parse_json, read_lines, read_text
from ..config import IGNORE_INDEX
from ..text.tokenization import BertTokenizer, is_chinese_char, is_punctuation, truncate_longest_first

TASKS = ("classify", "tag", "qa")
OUTSIDE = 0  # the index of the tag "O" in a tagging task's labels (see label_list)
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
BIO_TAG = re.compile(r"^(O|[BI]-\S+)$")


# =============================================================================
# Examples
# =============================================================================


@dataclass
class Example:
    """One row of a data file: its fields, and where it came from (``file:line``)."""

    where: str
    text: str = ""  # classify
    text_pair: str | None = None
    label: str = ""
    tokens: list[str] = field(default_factory=list)  # tag
    tags: list[str] = field(default_factory=list)
    question: str = ""  # qa
    context: str = ""
    answer: str = ""
    answer_start: int = 0  # character offset of the answer in the context

    def labels(self) -> list[str]:
        """The example's labels: its class, or its tags (none for QA)."""
        return [self.label] if self.label else list(self.tags)


def read_rows(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line number, row) of a JSONL file (each line parsed) or a CSV file (each row a dict of strings)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    if path.suffix.lower() in JSONL_SUFFIXES:
        yield from _jsonl_rows(path)
    elif path.suffix.lower() == ".csv":
        yield from _csv_rows(path)
    else:
        raise ValueError(f"{path}: unknown data format {path.suffix!r}; use .jsonl or .csv")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(read_lines(path), start=1):
        if line.strip():
            yield number, parse_json(line, f"{path}:{number}")


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))  # newline="": quoted fields keep theirs
    first_line = 1  # of the row being read: the header, then each row (a quoted field may span lines)
    try:
        if reader.fieldnames is None:  # reads the header; None: an empty file
            return
        first_line = 2
        for row in reader:
            if None in row:
                raise ValueError(f"{path}:{first_line}: more cells than the header has columns")
            yield first_line, row
            first_line = reader.line_num + 1
    except csv.Error as err:  # a field beyond csv's size limit, a quote in the wrong place (strict)
        raise ValueError(f"{path}:{first_line}: not a valid CSV row ({err})") from None


def read_examples(path: str | os.PathLike, task: str) -> list[Example]:
    """Every example of a data file, checked; ValueError at the first bad row, with its line."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    is_csv = Path(path).suffix.lower() == ".csv"
    examples = []
    for number, row in read_rows(path):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if is_csv and not examples:
            _check_header(path, row, task)
        examples.append(PARSERS[task](row, where, is_csv))
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def _check_header(path: str | os.PathLike, row: dict, task: str) -> None:
    missing = [name for name in REQUIRED_FIELDS[task] if name not in row]
    if missing:
        raise ValueError(f"{path}:1: the header has no {' or '.join(map(repr, missing))} column "
                         f"(its columns: {', '.join(map(repr, row))}); a {task} file needs "
                         f"{', '.join(REQUIRED_FIELDS[task])}")


def _field(row: dict, name: str, where: str, kind: type = str, optional: bool = False) -> Any:
    value = row.get(name)
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise ValueError(f"{where}: missing field {name!r}")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where}: field {name!r} must be a {kind.__name__}, got {type(value).__name__} {value!r}")
    if kind is str and not value.strip():
        raise ValueError(f"{where}: field {name!r} is empty")
    return value


def _classify_example(row: dict, where: str, is_csv: bool) -> Example:
    label = row.get("label")
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)  # JSON 0/1 labels: class names "0" and "1"
    return Example(where, text=_field(row, "text", where), text_pair=_field(row, "text_pair", where, optional=True),
                   label=_field({"label": label}, "label", where))


def _word_list(row: dict, name: str, where: str, is_csv: bool) -> list[str]:
    if is_csv:
        return _field(row, name, where).split()
    words = _field(row, name, where, list)
    for i, word in enumerate(words):
        if not isinstance(word, str) or not word.strip():
            raise ValueError(f"{where}: {name}[{i}] must be a non-empty string, got {word!r}")
        if len(word.split()) > 1:  # it would become several words, all under one tag
            raise ValueError(f"{where}: {name}[{i}] = {word!r} holds whitespace; give each word on its own")
    return words


def _tag_example(row: dict, where: str, is_csv: bool) -> Example:
    tokens, tags = _word_list(row, "tokens", where, is_csv), _word_list(row, "tags", where, is_csv)
    if len(tokens) != len(tags):
        raise ValueError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
    for i, tag in enumerate(tags):
        if not BIO_TAG.match(tag):
            raise ValueError(f"{where}: tags[{i}] = {tag!r} is not a BIO tag (O, B-TYPE or I-TYPE)")
    return Example(where, tokens=tokens, tags=tags)


def _qa_example(row: dict, where: str, is_csv: bool) -> Example:
    question, context = _field(row, "question", where), _field(row, "context", where)
    answer = _field(row, "answer", where)
    start = context.find(answer)
    if start < 0:
        raise ValueError(f"{where}: the answer {answer!r} does not occur in the context")
    return Example(where, question=question, context=context, answer=answer, answer_start=start)


PARSERS = {"classify": _classify_example, "tag": _tag_example, "qa": _qa_example}
REQUIRED_FIELDS = {"classify": ("text", "label"), "tag": ("tokens", "tags"), "qa": ("question", "context", "answer")}


def label_list(examples: Sequence[Example], task: str) -> list[str]:
    """The label set of the training examples, sorted: class names; or BIO tags, "O" first and always there
    (words cut off by truncation are predicted "O")."""
    labels = {label for example in examples for label in example.labels()}
    if task == "tag":
        return ["O", *sorted(labels - {"O"})]
    if task == "classify" and len(labels) < 2:  # one output would make a regression head, as in transformers
        source = examples[0].where.rpartition(":")[0]
        raise ValueError(f"{source}: classification needs at least two labels, found only {', '.join(labels)!r}")
    return sorted(labels)


def check_known_labels(examples: Sequence[Example], labels: Sequence[str]) -> None:
    """Every label of ``examples`` must be one of ``labels`` (those of the training file)."""
    known = set(labels)
    for example in examples:
        for label in example.labels():
            if label not in known:
                raise ValueError(f"{example.where}: label {label!r} does not occur in the training file "
                                 f"(its labels: {', '.join(labels)})")


# =============================================================================
# Tokens with character offsets
# =============================================================================


def split_words_with_offsets(text: str) -> list[tuple[str, int, int]]:
    """BERT's pre-tokenization with character offsets: (word, start, end) with text[start:end] == word.

    Whitespace separates words; every punctuation mark and CJK ideograph is a word of
    its own, exactly where the tokenizer's BertPreTokenizer splits.
    """
    words, start = [], None
    for i, ch in enumerate(text + " "):
        alone = is_punctuation(ch) or is_chinese_char(ch)
        if (ch.isspace() or alone) and start is not None:
            words.append((text[start:i], start, i))
            start = None
        if alone:
            words.append((ch, i, i + 1))
        elif not ch.isspace() and start is None:
            start = i
    return words


def tokenize_with_offsets(tokenizer: BertTokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """WordPiece ids of ``text`` and, for each, the (start, end) characters of the word it belongs to.

    The pieces of one word share the word's span: a span of tokens maps back to whole
    words of the original text, with its original case and accents.
    """
    ids, offsets = [], []
    for word, start, end in split_words_with_offsets(text):
        for token in tokenizer.tokenize(word):
            ids.append(tokenizer.convert_tokens_to_ids(token))
            offsets.append((start, end))
    return ids, offsets


# =============================================================================
# Features: what the model sees, plus what decoding its output needs
# =============================================================================


@dataclass
class Feature:
    """One encoded example. ``targets`` are the model's label arguments; the rest is for decoding."""

    input_ids: list[int]
    token_type_ids: list[int]
    targets: dict[str, Any]  # labels, or start_positions and end_positions
    word_starts: list[int] = field(default_factory=list)  # tag: token index of each word (-1: truncated)
    offsets: list[tuple[int, int] | None] = field(default_factory=list)  # qa: context characters per token


def encode_classify(example: Example, tokenizer: BertTokenizer, label_ids: dict[str, int],
                    max_length: int) -> Feature:
    encoding = tokenizer(example.text, example.text_pair, truncation=True, max_length=max_length)
    return Feature(encoding["input_ids"], encoding["token_type_ids"], {"labels": label_ids[example.label]})


def encode_tag(example: Example, tokenizer: BertTokenizer, label_ids: dict[str, int], max_length: int) -> Feature:
    ids, labels, word_starts = [tokenizer.cls_token_id], [IGNORE_INDEX], []
    for word, tag in zip(example.tokens, example.tags):
        pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word)) or [tokenizer.unk_token_id]
        if len(ids) + len(pieces) > max_length - 1:  # no room left before [SEP]: this word and the rest are cut
            break
        word_starts.append(len(ids))
        ids += pieces
        labels += [label_ids[tag]] + [IGNORE_INDEX] * (len(pieces) - 1)
    word_starts += [-1] * (len(example.tokens) - len(word_starts))
    ids.append(tokenizer.sep_token_id)
    labels.append(IGNORE_INDEX)
    return Feature(ids, [0] * len(ids), {"labels": labels}, word_starts=word_starts)


def encode_qa(example: Example, tokenizer: BertTokenizer, label_ids: dict[str, int], max_length: int) -> Feature:
    """``[CLS] question [SEP] context [SEP]`` with the answer's first and last token as targets."""
    question = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(example.question))
    context, offsets = tokenize_with_offsets(tokenizer, example.context)
    question, context = truncate_longest_first(question, context, max_length - 3)
    offsets = offsets[: len(context)]
    first = len(question) + 2  # index of the first context token
    ids = [tokenizer.cls_token_id, *question, tokenizer.sep_token_id, *context, tokenizer.sep_token_id]
    answer_end = example.answer_start + len(example.answer)
    overlapping = [i for i, (s, e) in enumerate(offsets) if s < answer_end and e > example.answer_start]
    if overlapping and offsets[overlapping[-1]][1] >= answer_end:
        start, end = first + overlapping[0], first + overlapping[-1]
    else:  # the answer was truncated away, wholly or in part: point at [CLS]
        start = end = 0
    return Feature(ids, [0] * first + [1] * (len(ids) - first), {"start_positions": start, "end_positions": end},
                   offsets=[None] * first + list(offsets) + [None])


ENCODERS = {"classify": encode_classify, "tag": encode_tag, "qa": encode_qa}


def encode(examples: Sequence[Example], task: str, tokenizer: BertTokenizer, labels: Sequence[str],
           max_length: int) -> list[Feature]:
    label_ids = {label: i for i, label in enumerate(labels)}
    return [ENCODERS[task](example, tokenizer, label_ids, max_length) for example in examples]


def collate(features: Sequence[Feature], pad_token_id: int) -> dict[str, np.ndarray]:
    """Right-pad a batch to its longest sequence: model inputs and targets as int64 arrays.

    Token labels are padded with -100, so padding is never scored.
    """
    T = max(len(f.input_ids) for f in features)

    def pad(rows, value):
        return np.array([row + [value] * (T - len(row)) for row in rows], dtype=np.int64)

    batch = {"input_ids": pad([f.input_ids for f in features], pad_token_id),
             "token_type_ids": pad([f.token_type_ids for f in features], 0),
             "attention_mask": pad([[1] * len(f.input_ids) for f in features], 0)}
    for name, value in features[0].targets.items():
        column = [f.targets[name] for f in features]
        batch[name] = pad(column, IGNORE_INDEX) if isinstance(value, list) else np.array(column, dtype=np.int64)
    return batch


def batches(features: Sequence[Feature], batch_size: int, pad_token_id: int,
            order: Sequence[int] | None = None) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
    """(indices, batch) pairs over ``features`` in ``order`` (default: as given), ``batch_size`` at a time."""
    order = list(range(len(features))) if order is None else list(order)
    for i in range(0, len(order), batch_size):
        chunk = order[i:i + batch_size]
        yield chunk, collate([features[j] for j in chunk], pad_token_id)
