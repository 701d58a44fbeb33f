"""A pretraining corpus that ships with every Python: the standard library's own English.

Pretraining needs a few hundred thousand words of ordinary prose, and this project
downloads nothing. Every CPython installation already carries such prose:

* ``pydoc_data.topics.topics``: the language reference sections that ``help()``
  shows ("assignment", "with", "typesseq", ...), one document per topic;
* the docstrings of the standard library: of every ``.py`` module, read by parsing
  its source with :mod:`ast` (no import, so no side effects and the same result on
  every run), and of the built-in and C extension modules, whose docstrings exist
  only in the compiled code and so have to be imported. One document per module.

The text is reStructuredText-flavoured, so :func:`clean_text` strips what a
language model should not learn from (doctest sessions, code blocks, tables,
headings, inline markup) and :func:`split_sentences` cuts what is left into
sentences, the unit that next-sentence prediction works on.

The corpus is sorted by document title, so the same Python version gives the same
corpus, and it is cached as JSON after the first build (a few seconds) because
loading the cache takes a fraction of that. A corrupt cache is rebuilt.

Users can bring their own text with :func:`load_corpus`: a UTF-8 file (documents
separated by blank lines, one or more sentences per line) or a folder of ``.txt``
files.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.machinery
import inspect
import io
import json
import logging
import os
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import atomic_write_bytes, read_text

logger = logging.getLogger("numpy_bert")

# Bump when cleaning or splitting changes, so that old caches are not reused.
CORPUS_FORMAT_VERSION = 2  # 2: package docstrings no longer repeat a sentence within one docstring
VALIDATION_FRACTION = 0.05
SPLITS = ("train", "validation")

# ---------------------------------------------------------------------------
# Sentence splitting
# ---------------------------------------------------------------------------

# Abbreviations whose final period never ends a sentence, even before a capital
# ("e.g. Python", "cf. PEP 8"). "etc." is deliberately absent: "..., etc. The next"
# usually does end a sentence, and before a lowercase word nothing splits anyway.
ABBREVIATIONS = frozenset(
    "e.g. i.e. cf. vs. viz. al. approx. resp. incl. esp. fig. no. nos. vol. pp. "
    "mr. mrs. ms. dr. prof. st. jr. sr. inc. ltd. co. corp.".split()
)
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")
_OPENERS = "\"'“‘(["


def split_sentences(text: str) -> list[str]:
    """Split English text into sentences with a few rules that suit technical prose.

    The text is cut after a whitespace-separated word that ends with ``.``, ``!`` or
    ``?`` (closing quotes or brackets may follow) when the next word starts with a
    capital letter or a digit (an opening quote or bracket may come first). Because
    the split needs whitespace after the period, dotted names (``os.path.join``),
    version numbers (``3.11``) and decimals never split. Words in
    :data:`ABBREVIATIONS` (``e.g.``, ``i.e.``, ``cf.``, ...) and ellipses (``...``)
    never end a sentence; a lowercase continuation never starts one.
    """
    words = text.split()
    sentences: list[str] = []
    start = 0
    for i in range(len(words) - 1):
        if _ends_sentence(words[i], words[i + 1]):
            sentences.append(" ".join(words[start : i + 1]))
            start = i + 1
    if start < len(words):
        sentences.append(" ".join(words[start:]))
    return sentences


def _ends_sentence(word: str, next_word: str) -> bool:
    if not _SENTENCE_END.search(word) or word.endswith(".."):
        return False
    if word.lstrip(_OPENERS).lower() in ABBREVIATIONS:
        return False
    first = next_word.lstrip(_OPENERS)[:1]
    return first.isupper() or first.isdigit()


# ---------------------------------------------------------------------------
# Cleaning reStructuredText-flavoured docstrings into prose
# ---------------------------------------------------------------------------

MIN_SENTENCE_WORDS = 3  # plain words (letters, maybe punctuation around them) a sentence needs
MIN_WORD_FRACTION = 0.5  # and at least half of its whitespace-separated tokens must be plain words
ADMONITIONS = frozenset({"note:", "warning:", "see also:", "seealso:", "tip:", "important:", "caution:",
                         "attention:", "hint:", "danger:"})
# List items: bullets, enumerations, field lists (":param x:") and "name -- text" definitions.
_ITEM_MARKER = re.compile(r"^(?:[*•+-]\s+|\(?\d{1,2}[.)]\s+|[a-z]\)\s+|:[\w ]+:\s*|[\w.*()\[\],]+ -- )")
_HEADING_RULE = re.compile(r"^([=\-~^*#+`'\".:_])\1{2,}$")
_TABLE_LINE = re.compile(r"^(?:[+|].*|=+(?:\s+=+)+|-+(?:\s+-+)+)$")
_SIGNATURE_LINE = re.compile(r"^[\w.]+\(.*\)\s*(?:->.*)?$|^->")
_PLAIN_WORD = re.compile(r"^[\"'(]*[A-Za-z][a-z'’-]*[.,;:!?\"')]*$")
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "…": "..."})
_INLINE_RULES = (
    (re.compile(r":[\w:.+-]+:`~?!?([^`<]*?)\s*(?:<[^`>]*>)?`"), r"\1"),  # :func:`name <target>`
    (re.compile(r"\s*\[(?:\d+|#\w*|\*)\]_?"), ""),  # footnote references [1]_, before *emphasis*
    (re.compile(r"``([^`]+)``"), r"\1"),  # ``literal``
    (re.compile(r"`([^`<]*?)\s*(?:<[^`>]*>)?`_{0,2}"), r"\1"),  # `text`, `link <url>`_
    (re.compile(r"\*\*([^*]+)\*\*"), r"\1"),  # **strong**
    (re.compile(r"(?<![\w*])\*([^\s*][^*]*?)\*(?![\w*])"), r"\1"),  # *emphasis*, not *args
    (re.compile(r"::$"), ":"),  # "Example::" introduces a literal block
)


def clean_text(text: str) -> list[str]:
    """The prose of a docstring or help topic, as a list of sentences.

    Paragraphs (blocks between blank lines) are kept or dropped whole by their
    shape (:func:`_prose_paragraphs`), cut into list items, stripped of inline
    markup, split into sentences, and sentences that are too short or mostly not
    words (code, signatures, table debris) are dropped.
    """
    sentences = []
    for paragraph in _prose_paragraphs(text.expandtabs().translate(_QUOTES)):
        for item in _items(paragraph):
            sentences += [s for s in split_sentences(_strip_inline_markup(item)) if _is_prose(s)]
    return sentences


def _paragraphs(text: str) -> list[list[str]]:
    """Groups of consecutive non-blank lines."""
    groups: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip():
            groups[-1].append(line.rstrip())
        elif groups[-1]:
            groups.append([])
    return [g for g in groups if g]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _content_indent(line: str) -> int:
    """Where the text of a line starts, after any list marker ("1. ", "* ")."""
    marker = _ITEM_MARKER.match(line.lstrip())
    return _indent(line) + (marker.end() if marker else 0)


def _prose_paragraphs(text: str) -> Iterator[list[str]]:
    """Paragraphs that are prose, following reStructuredText's rules for literal blocks.

    A paragraph that ends with a colon ("Example::", "is equivalent to:") and is
    followed by a more deeply indented block introduces code: that block, and
    everything after it indented as deeply, is dropped. Admonitions ("Note:") and
    indented lists are the exceptions. Directives (".. versionadded::") are dropped
    with their bodies, and so are tables; doctest sessions and headings are removed
    line by line.
    """
    literal_base: int | None = None  # while set, deeper paragraphs belong to a literal block
    intro_indent: int | None = None  # set after a paragraph that ends with a colon
    for paragraph in _paragraphs(text):
        indent = _indent(paragraph[0])
        if literal_base is not None and indent > literal_base:
            continue
        literal_base = None
        is_list = bool(_ITEM_MARKER.match(paragraph[0].lstrip()))
        if intro_indent is not None and indent > intro_indent and not is_list:
            literal_base = intro_indent
            continue
        intro_indent = None
        if paragraph[0].lstrip().startswith(".."):
            literal_base = indent
            continue
        if any(_TABLE_LINE.match(line.strip()) for line in paragraph):
            continue
        if paragraph[-1].endswith(":") and paragraph[-1].strip().lower() not in ADMONITIONS:
            # the indentation of the text that the colon ends: after "1. " on an item's first line
            intro_indent = _content_indent(paragraph[-1]) if len(paragraph) == 1 else _indent(paragraph[-1])
        paragraph = _drop_headings_and_doctests(paragraph)
        if paragraph:
            yield paragraph


def _drop_headings_and_doctests(lines: list[str]) -> list[str]:
    """Remove heading lines (text over a rule like "=====") and ">>>" sessions with their output."""
    kept: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(">>>"):
            break  # a doctest's output follows its prompt to the end of the paragraph
        if _HEADING_RULE.match(stripped):
            if kept and not _HEADING_RULE.match(kept[-1].strip()):
                kept.pop()  # the heading's title
            continue
        if not _SIGNATURE_LINE.match(stripped):
            kept.append(line)
    return kept


def _items(paragraph: list[str]) -> list[str]:
    """Cut a paragraph into list items and join each item's lines.

    A new item starts at a list marker ("* ", "1. ", ":param x:"), after a line that
    ends with a colon, where the indentation decreases, and where it increases
    after a short term line: the term of a definition list ("width (default: 70)"
    above its indented description) is dropped. Any other deeper line continues
    the item: a bullet's continuation lines, or a hanging indent.
    """
    items: list[list[str]] = []
    previous_indent, previous_text = 0, ""
    for line in paragraph:
        stripped, indent = line.strip(), _indent(line)
        marker = _ITEM_MARKER.match(stripped)
        if items and indent > previous_indent and _is_term(items[-1]):
            items[-1] = []  # the description replaces its term
        elif not items or marker or previous_text.endswith(":") or indent < previous_indent:
            items.append([])
        items[-1].append(stripped[marker.end() :] if marker else stripped)
        previous_indent, previous_text = _content_indent(line), stripped
    return [" ".join(item) for item in items]


def _is_term(item: list[str]) -> bool:
    """A definition-list term: one short line that is not a sentence."""
    return len(item) == 1 and len(item[0].split()) <= 4 and not item[0].endswith((":", "."))


def _strip_inline_markup(text: str) -> str:
    for pattern, replacement in _INLINE_RULES:
        text = pattern.sub(replacement, text)
    return text.strip()


def _is_prose(sentence: str) -> bool:
    """Long enough, and mostly made of plain words rather than code or numbers."""
    words = sentence.split()
    plain = sum(bool(_PLAIN_WORD.match(w)) for w in words)
    return plain >= MIN_SENTENCE_WORDS and plain >= MIN_WORD_FRACTION * len(words)


# ---------------------------------------------------------------------------
# Documents and the Corpus
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """A titled list of sentences. Next-sentence prediction never crosses documents."""

    title: str
    sentences: tuple[str, ...]


def split_of(title: str, validation_fraction: float = VALIDATION_FRACTION) -> str:
    """The split ("train" or "validation") of a document, from a stable hash of its title.

    Hashing the title (not drawing at random, not using Python's salted ``hash``)
    keeps a document on the same side of the split across runs, machines, and
    corpus rebuilds in which other documents come or go.
    """
    digest = hashlib.sha256(title.encode("utf-8")).digest()
    return "validation" if int.from_bytes(digest[:8], "big") < validation_fraction * 2**64 else "train"


class Corpus:
    """Documents (each a title and its sentences), in a fixed order."""

    def __init__(self, documents: Iterable[Document], name: str = "corpus"):
        self.documents = [d for d in documents if d.sentences]
        self.name = name

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self) -> Iterator[Document]:
        return iter(self.documents)

    def __getitem__(self, index: int) -> Document:
        return self.documents[index]

    def __repr__(self) -> str:
        return (f"Corpus({self.name!r}: {len(self)} documents, {self.num_sentences} sentences, "
                f"{self.num_words} words)")

    @property
    def num_sentences(self) -> int:
        return sum(len(d.sentences) for d in self.documents)

    @property
    def num_words(self) -> int:
        """Whitespace-separated words, the usual way corpus sizes are quoted."""
        return sum(len(s.split()) for d in self.documents for s in d.sentences)

    def texts(self) -> Iterator[str]:
        """Every sentence in order: the input a vocabulary trainer reads."""
        for document in self.documents:
            yield from document.sentences

    def split(self, name: str, validation_fraction: float = VALIDATION_FRACTION) -> Corpus:
        """The "train" or "validation" part, chosen per document by :func:`split_of`."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        kept = [d for d in self.documents if split_of(d.title, validation_fraction) == name]
        return Corpus(kept, name=f"{self.name}/{name}")

    def stats(self) -> dict[str, int]:
        return {"documents": len(self), "sentences": self.num_sentences, "words": self.num_words}

    def to_json(self) -> dict:
        return {"name": self.name, "documents": [[d.title, list(d.sentences)] for d in self.documents]}

    @classmethod
    def from_json(cls, data: object) -> Corpus:
        """The inverse of :meth:`to_json`; raises ValueError for anything of another shape."""
        if not (isinstance(data, dict) and isinstance(data.get("name"), str)
                and isinstance(data.get("documents"), list)
                and all(map(_is_serialised_document, data["documents"]))):
            raise ValueError("not a serialised corpus")
        documents = (Document(title, tuple(sentences)) for title, sentences in data["documents"])
        return cls(documents, name=data["name"])


def _is_serialised_document(item: object) -> bool:
    """A [title, [sentence, ...]] pair of strings, as :meth:`Corpus.to_json` writes it."""
    return (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
            and isinstance(item[1], list) and all(isinstance(s, str) for s in item[1]))


# ---------------------------------------------------------------------------
# The default corpus: help topics and standard-library docstrings
# ---------------------------------------------------------------------------

# Folders of the standard library whose docstrings are not documentation of it.
SKIPPED_FOLDERS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages",
                             "__pycache__", "turtledemo", "__phello__"})


def build_default_corpus() -> Corpus:
    """Build the corpus from this Python's help topics and standard-library docstrings.

    Each docstring is used once in the whole corpus (the first time, in title order),
    because C types repeat the same ones ("Return self==value.") hundreds of times.
    """
    sources = {**_topic_texts(), **_extension_module_texts(), **_python_module_texts()}
    seen: set[str] = set()
    documents = []
    for title in sorted(sources):
        sentences: list[str] = []
        for text in sources[title]:
            if text not in seen:
                seen.add(text)
                sentences += clean_text(text)
        documents.append(Document(title, tuple(sentences)))
    return Corpus(documents, name="python-docs")


# ---------------------------------------------------------------------------
# The extended corpus: the default one plus the docstrings of installed packages
# ---------------------------------------------------------------------------

# Named corpora that --corpus accepts besides paths.
DEFAULT_CORPUS_NAME = "python-docs"
EXTENDED_CORPUS_NAME = "python-docs+packages"
CORPUS_NAMES = (DEFAULT_CORPUS_NAME, EXTENDED_CORPUS_NAME)
# Packages whose docstrings extend the default corpus: numpy_bert's own dependencies and
# theirs (torch brings sympy and networkx), so that every installation of the project
# can build it. Missing ones are skipped; the cache name records the versions found.
EXTENSION_PACKAGES = ("numpy", "matplotlib", "torch", "sympy", "networkx", "transformers", "hypothesis",
                      "_pytest", "jinja2")


def build_package_corpus(packages: Iterable[str] = EXTENSION_PACKAGES, exclude: Iterable[str] = ()) -> Corpus:
    """Documents ``package:<module>`` from the docstrings of installed packages, read with ``ast``.

    Nothing is imported (importing torch would take seconds and run its code). A
    sentence is used once, and never if it is in ``exclude``: the default corpus's
    sentences, so that no validation sentence of the default corpus leaks into
    training through a package that copied it.
    """
    seen_sentences = set(exclude)
    seen_docstrings: set[str] = set()
    documents = []
    for package in packages:
        root = _package_root(package)
        if root is None:
            continue
        for path in _source_files(root):
            parts = path.relative_to(root.parent).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            sentences = []
            for doc in _parsed_docstrings(path):
                if doc in seen_docstrings:
                    continue
                seen_docstrings.add(doc)
                for sentence in clean_text(doc):
                    if sentence not in seen_sentences:
                        seen_sentences.add(sentence)
                        sentences.append(sentence)
            documents.append(Document(f"package:{module}", tuple(sentences)))
    return Corpus(documents, name="packages")


def extended_corpus(default: Corpus, packages: Corpus) -> Corpus:
    """The default corpus plus package documents, which only ever train.

    The validation split stays the default corpus's own (the held-out figures of
    both corpora are measured on the same documents): package documents that the
    title hash would put into validation are left out.
    """
    extra = [d for d in packages if split_of(d.title) == "train"]
    return Corpus([*default, *extra], name=EXTENDED_CORPUS_NAME)


def package_versions(packages: Iterable[str] = EXTENSION_PACKAGES) -> dict[str, str]:
    """Installed versions of the extension packages (by distribution name), for the cache name."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        try:
            found[package] = version(package.lstrip("_"))
        except PackageNotFoundError:
            continue
    return found


def _package_root(package: str) -> Path | None:
    """The folder of an installed top-level package, located without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _parsed_docstrings(path: Path) -> list[str]:
    try:
        return list(_docstrings(ast.parse(path.read_bytes(), filename=str(path))))
    except (SyntaxError, ValueError, OSError) as err:  # e.g. lib2to3's deliberately broken data files
        logger.debug("skipping %s: %s", path, err)
        return []


def _topic_texts() -> dict[str, list[str]]:
    from pydoc_data.topics import topics

    return {f"topic:{name}": [text] for name, text in topics.items()}


def _python_module_texts() -> dict[str, list[str]]:
    """Docstrings of every standard-library ``.py`` module, read from source with ``ast``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = {}
    for path in _source_files(root):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if parts[0] not in sys.stdlib_module_names:
            continue  # a file the distribution added, such as _sysconfigdata_*.py
        texts[f"module:{module}"] = _parsed_docstrings(path)
    return texts


def _source_files(root: Path) -> list[Path]:
    """The ``.py`` files under ``root`` in a fixed order, without tests, demos and ``__main__``."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders
                               if d not in SKIPPED_FOLDERS and not d.startswith("config-"))
        found += [Path(folder, f) for f in sorted(files) if f.endswith(".py") and f != "__main__.py"]
    return found


def _docstrings(node: ast.AST) -> Iterator[str]:
    """Docstrings of a module, its classes and functions, in source order.

    Only statements are visited (also inside ``if``, ``try``, ``with``, ...: the
    fallback definitions of a module), never expressions, which is where the time
    of a full tree walk goes.
    """
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield doc
    for field in ("body", "orelse", "finalbody", "handlers", "cases"):
        for child in getattr(node, field, ()):
            yield from _docstrings(child)


def _extension_module_names() -> list[str]:
    """Built-in and C extension modules, minus test and example modules and readline.

    ``readline`` is skipped because importing it can write terminal control codes.
    """
    names = set(sys.builtin_module_names)
    dynload = Path(sysconfig.get_paths()["stdlib"]) / "lib-dynload"
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    if dynload.is_dir():
        names |= {p.name.split(".")[0] for p in dynload.iterdir() if p.name.endswith(suffixes)}
    return sorted(n for n in names if "test" not in n and "xx" not in n and n not in {"readline", "__main__"})


def _extension_module_texts() -> dict[str, list[str]]:
    """Docstrings of C modules and of their own functions, classes and methods."""
    texts = {}
    for name in _extension_module_names():
        module = _quiet_import(name)
        if module is not None:
            texts[f"module:{name}"] = _object_docstrings(module)
    return texts


def _quiet_import(name: str):
    """Import a module with its output and warnings silenced; None if it cannot be imported here."""
    try:
        with (contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()),
              warnings.catch_warnings()):
            warnings.simplefilter("ignore")  # "audioop is deprecated" is not the user's business
            return importlib.import_module(name)
    except Exception as err:  # a C module missing its system library, another platform's module
        logger.debug("skipping module %s: %r", name, err)
        return None


def _object_docstrings(module) -> list[str]:
    docs = [inspect.cleandoc(module.__doc__)] if isinstance(module.__doc__, str) else []
    for _, obj in sorted(vars(module).items()):
        if getattr(obj, "__module__", module.__name__) != module.__name__:
            continue  # re-exported from elsewhere: documented there
        if inspect.isclass(obj) or inspect.isroutine(obj):
            docs += _own_doc(obj)
        if inspect.isclass(obj):
            for _, member in sorted(vars(obj).items()):
                if inspect.isroutine(member) or inspect.isdatadescriptor(member):
                    docs += _own_doc(member)
    return docs


def _own_doc(obj) -> list[str]:
    doc = getattr(obj, "__doc__", None)
    return [inspect.cleandoc(doc)] if isinstance(doc, str) and doc.strip() else []


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$NUMPY_BERT_CACHE`` if set, else ``~/.cache/numpy_bert``."""
    return Path(os.environ.get("NUMPY_BERT_CACHE") or Path.home() / ".cache" / "numpy_bert")


def _python_tag() -> str:
    return f"{sys.implementation.name}-{'.'.join(map(str, sys.version_info[:3]))}"


def default_corpus_cache_path() -> Path:
    """The cache file, named after the Python that built it and the corpus format."""
    return cache_dir() / f"default_corpus-{_python_tag()}-v{CORPUS_FORMAT_VERSION}.json"


def extended_corpus_cache_path() -> Path:
    """Named after the Python, the extension packages' versions and the corpus format."""
    versions = json.dumps(package_versions(), sort_keys=True).encode("utf-8")
    return cache_dir() / (f"extended_corpus-{_python_tag()}-{hashlib.sha256(versions).hexdigest()[:12]}"
                          f"-v{CORPUS_FORMAT_VERSION}.json")


def load_default_corpus(rebuild: bool = False) -> Corpus:
    """The default corpus, from the cache when there is a readable one, else built and cached."""
    return _load_cached(default_corpus_cache_path(), build_default_corpus, rebuild)


def load_extended_corpus(rebuild: bool = False) -> Corpus:
    """The default corpus plus the extension packages' docstrings (:func:`extended_corpus`), cached."""
    def build() -> Corpus:
        default = load_default_corpus(rebuild)
        return extended_corpus(default, build_package_corpus(exclude=default.texts()))

    return _load_cached(extended_corpus_cache_path(), build, rebuild)


def load_named_corpus(name: str, rebuild: bool = False) -> Corpus:
    """One of :data:`CORPUS_NAMES`."""
    if name not in CORPUS_NAMES:
        raise ValueError(f"unknown corpus name {name!r}; expected one of {', '.join(CORPUS_NAMES)} or a path")
    return load_default_corpus(rebuild) if name == DEFAULT_CORPUS_NAME else load_extended_corpus(rebuild)


def _load_cached(path: Path, build, rebuild: bool) -> Corpus:
    if not rebuild and path.exists():
        try:
            return Corpus.from_json(json.loads(path.read_bytes()))
        except (ValueError, OSError) as err:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            logger.warning("corpus cache %s is unreadable (%s); rebuilding it", path, err)
    corpus = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(corpus.to_json(), ensure_ascii=False).encode("utf-8"))
    except OSError as err:  # a read-only home is no reason to fail: the corpus is built
        logger.warning("could not cache the corpus at %s: %s", path, err)
    return corpus


# ---------------------------------------------------------------------------
# User corpora
# ---------------------------------------------------------------------------


def load_corpus(path: str | os.PathLike) -> Corpus:
    """A corpus from a UTF-8 text file or a folder of ``.txt`` files (read recursively, sorted).

    Blank lines separate documents; each line holds one or more sentences, split
    with :func:`split_sentences`. Documents are titled ``"<file>#<n>"``. Raises
    ValueError for a missing path, a binary or non-UTF-8 file (naming the file and
    where), a folder without ``.txt`` files, and a corpus with no text at all.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ValueError(f"corpus folder {str(path)!r} holds no .txt files")
        documents = [d for f in files for d in _read_documents(f, f.relative_to(path).as_posix())]
    elif path.is_file():
        documents = _read_documents(path, path.name)
    else:
        raise ValueError(f"corpus path {str(path)!r} does not exist (the named corpora are "
                         f"{', '.join(CORPUS_NAMES)})")
    corpus = Corpus(documents, name=path.name)
    if not corpus.documents:
        raise ValueError(f"corpus {str(path)!r} is empty: it holds no text")
    return corpus


def _read_documents(path: Path, title: str) -> list[Document]:
    return parse_documents(read_text(path), title)


def parse_documents(text: str, title: str) -> list[Document]:
    """Documents from text with blank lines between documents and sentences on lines."""
    documents: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip():
            documents[-1] += split_sentences(line)
        elif documents[-1]:
            documents.append([])
    return [Document(f"{title}#{i}", tuple(d)) for i, d in enumerate(d for d in documents if d)]


def main() -> None:
    """``python -m numpy_bert.data.corpus [NAME] [--rebuild]``: load (or build) a named corpus, print its size."""
    import time

    names = [a for a in sys.argv[1:] if a != "--rebuild"]
    name = names[0] if names else DEFAULT_CORPUS_NAME
    if name not in CORPUS_NAMES:
        print(f"python -m numpy_bert.data.corpus: error: unknown corpus {name!r}; choose one of "
              f"{', '.join(CORPUS_NAMES)}", file=sys.stderr)
        sys.exit(2)
    path = default_corpus_cache_path() if name == DEFAULT_CORPUS_NAME else extended_corpus_cache_path()
    cache_before = path.stat().st_mtime_ns if path.exists() else None
    start = time.perf_counter()
    corpus = load_named_corpus(name, rebuild="--rebuild" in sys.argv)
    seconds = time.perf_counter() - start
    cache_after = path.stat().st_mtime_ns if path.exists() else None
    source = "loaded from the cache" if cache_before is not None and cache_before == cache_after else "built"
    print(f"{corpus}: {source} in {seconds:.2f} s ({path})")
    for split in SPLITS:
        print(f"  {split}: {corpus.split(split).stats()}")


if __name__ == "__main__":
    main()
