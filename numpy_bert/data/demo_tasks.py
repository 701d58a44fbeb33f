"""Offline demo tasks for the three heads, built from the embedded corpus of Python's documentation.

Nothing is downloaded and nothing is labelled by hand: the labels come from the text.

* **classify** - which part of the documentation does a passage (two consecutive
  sentences) come from? The language reference (``help()`` topics) or one of five
  families of standard-library modules (:data:`FAMILIES`, after the chapters of the
  Library Reference). The label is the family of the document's module.
* **tag** - find the code in prose. Sentences are split into words and punctuation
  marks (``\\w+`` or one other character), and every run of them that forms a code
  identifier (:data:`CODE`: a dotted name such as ``os.path.join``, a name with an
  underscore such as ``follow_symlinks``, a call such as ``close()``) is tagged
  ``B-CODE I-CODE ...``; everything else ``O``. So ``os.path.join()`` is the seven
  tokens ``os . path . join ( )`` tagged B, then six times I.
* **qa** - a cloze span task. The context is up to three consecutive sentences; the
  question is the middle one with one code identifier replaced by ``[MASK]``, and the
  answer is that identifier, which the model must find in the context.

Examples are split into train and eval *by document* (a document's passages all go
to one side), so evaluation measures transfer to unseen modules, not memory. The
same seed gives the same files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write_bytes
from .corpus import Corpus, Document, load_default_corpus

DEMO_TASKS = ("classify", "tag", "qa")
EVAL_FRACTION = 0.2

LANGUAGE = "language reference"
FAMILIES: dict[str, tuple[str, ...]] = {  # label -> top-level modules (leading underscores dropped)
    "text and data formats": tuple(
        "re string textwrap difflib unicodedata stringprep codecs json csv configparser tomllib plistlib "
        "base64 binascii quopri html xml pickle copyreg shelve marshal dbm sqlite3 zlib gzip bz2 lzma "
        "zipfile tarfile netrc".split()),
    "numbers and dates": tuple(
        "numbers math cmath decimal pydecimal fractions random statistics datetime calendar zoneinfo time".split()),
    "files and the operating system": tuple(
        "os posixpath ntpath pathlib io pyio fileinput stat filecmp tempfile glob fnmatch linecache shutil "
        "platform errno ctypes curses getpass posix pwd grp resource termios tty pty fcntl mmap select "
        "selectors signal".split()),
    "concurrency and networking": tuple(
        "threading thread multiprocessing concurrent subprocess sched queue contextvars asyncio socket ssl "
        "socketserver http urllib ftplib poplib imaplib smtplib email mailbox mimetypes uuid xmlrpc "
        "ipaddress wsgiref webbrowser".split()),
    "development tools": tuple(
        "typing pydoc doctest unittest pdb bdb cProfile profile pstats timeit trace tracemalloc faulthandler "
        "inspect dis ast symtable token tokenize keyword tabnanny pyclbr py_compile compileall importlib "
        "pkgutil modulefinder runpy zipimport warnings traceback gc site sysconfig".split()),
}
_FAMILY_OF = {module: family for family, modules in FAMILIES.items() for module in modules}

# A code identifier: a dotted name, optionally called (os.path.join, str.split()); a call (close());
# or a name with an underscore (follow_symlinks, __init__). Not inside a longer name.
CODE = re.compile(r"(?<![\w.])(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?|[A-Za-z_]\w*\(\)|\w*_\w*)(?![\w(])")
NOT_CODE = frozenset({"e.g", "i.e"})  # abbreviations that look like dotted names
WORD = re.compile(r"\w+|[^\w\s]")
MAX_TAG_WORDS = 48


def family(title: str) -> str | None:
    """The classify label of a corpus document: its module's family, the language reference, or None."""
    kind, _, name = title.partition(":")
    if kind == "topic":
        return LANGUAGE
    return _FAMILY_OF.get(name.split(".")[0].lstrip("_"))


def code_spans(sentence: str) -> list[tuple[int, int]]:
    """Character spans of the code identifiers in a sentence (see :data:`CODE`)."""
    return [m.span() for m in CODE.finditer(sentence)
            if m.group() not in NOT_CODE and re.search("[A-Za-z]", m.group())]


def tag_words(sentence: str) -> tuple[list[str], list[str]]:
    """The sentence's words and punctuation marks, with B-CODE/I-CODE/O tags from :func:`code_spans`."""
    spans = code_spans(sentence)
    words, tags = [], []
    for match in WORD.finditer(sentence):
        inside = [s for s in spans if s[0] <= match.start() and match.end() <= s[1]]
        words.append(match.group())
        tags.append("O" if not inside else "B-CODE" if inside[0][0] == match.start() else "I-CODE")
    return words, tags


# =============================================================================
# Examples per document, then a split by document
# =============================================================================


def classify_examples(document: Document) -> list[dict]:
    label = family(document.title)
    if label is None:
        return []
    sentences = document.sentences
    return [{"text": " ".join(sentences[i:i + 2]), "label": label} for i in range(0, len(sentences) - 1, 2)]


def tag_examples(document: Document) -> list[dict]:
    rows = []
    for sentence in document.sentences:
        tokens, tags = tag_words(sentence)
        if len(tokens) <= MAX_TAG_WORDS:
            rows.append({"tokens": tokens, "tags": tags})
    return rows


def qa_examples(document: Document) -> list[dict]:
    """One cloze question per sentence that holds a code identifier (its first one)."""
    rows, sentences = [], document.sentences
    for i, sentence in enumerate(sentences):
        spans = code_spans(sentence)
        if not spans:
            continue
        start, end = spans[0]
        rows.append({"question": sentence[:start] + "[MASK]" + sentence[end:],
                     "context": " ".join(sentences[max(0, i - 1):i + 2]), "answer": sentence[start:end]})
    return rows


BUILDERS = {"classify": classify_examples, "tag": tag_examples, "qa": qa_examples}


def split_by_document(groups: Sequence[list[dict]], rng: np.random.Generator,
                      eval_fraction: float = EVAL_FRACTION) -> tuple[list[dict], list[dict]]:
    """Documents in random order go to eval until it holds ``eval_fraction`` of the examples."""
    total = sum(len(g) for g in groups)
    train, evaluation = [], []
    for index in rng.permutation(len(groups)):
        side = evaluation if len(evaluation) < eval_fraction * total else train
        side.extend(groups[index])
    return train, evaluation


def _sample(rows: list[dict], count: int, rng: np.random.Generator) -> list[dict]:
    return [rows[i] for i in sorted(rng.permutation(len(rows))[:count])]


def _balanced(rows: list[dict], count: int, rng: np.random.Generator) -> list[dict]:
    """Up to ``count`` rows in all, the same number from each label (classify)."""
    labels = sorted({row["label"] for row in rows})
    per_label = count // len(labels)
    chosen = [row for label in labels for row in _sample([r for r in rows if r["label"] == label], per_label, rng)]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def _with_and_without_code(rows: list[dict], count: int, rng: np.random.Generator) -> list[dict]:
    """Tag: 80% sentences with code, 20% without, so that "O" everywhere is also seen."""
    with_code = [r for r in rows if "B-CODE" in r["tags"]]
    without = [r for r in rows if "B-CODE" not in r["tags"]]
    chosen = _sample(with_code, count - count // 5, rng) + _sample(without, count // 5, rng)
    return [chosen[i] for i in rng.permutation(len(chosen))]


def demo_dataset(task: str, corpus: Corpus | None = None, train_size: int = 1000, eval_size: int = 200,
                 seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train rows, eval rows) of a demo task, deterministic given the corpus and the seed."""
    if task not in DEMO_TASKS:
        raise ValueError(f"unknown demo task {task!r}; choose one of {DEMO_TASKS}")
    corpus = load_default_corpus() if corpus is None else corpus
    rng = np.random.default_rng(seed)
    groups = [rows for rows in map(BUILDERS[task], corpus) if rows]
    train, evaluation = split_by_document(groups, rng)
    pick = {"classify": _balanced, "tag": _with_and_without_code, "qa": _sample}[task]
    return pick(train, train_size, rng), pick(evaluation, eval_size, rng)


def write_jsonl(path: str | Path, rows: Sequence[dict]) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write_bytes(path, text.encode("utf-8"))


def write_demo_data(task: str, out: str | Path, corpus: Corpus | None = None, train_size: int = 1000,
                    eval_size: int = 200, seed: int = 0) -> tuple[Path, Path]:
    """Write ``OUT/<task>-train.jsonl`` and ``OUT/<task>-eval.jsonl``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, evaluation = demo_dataset(task, corpus, train_size, eval_size, seed)
    paths = out / f"{task}-train.jsonl", out / f"{task}-eval.jsonl"
    write_jsonl(paths[0], train)
    write_jsonl(paths[1], evaluation)
    return paths
