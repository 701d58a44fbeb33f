"""The embedded default corpus, the sentence splitter and cleaner, user corpora, and the cache."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpy_bert.data import corpus as corpus_module
from numpy_bert.data.corpus import (
    EXTENDED_CORPUS_NAME,
    Corpus,
    Document,
    build_default_corpus,
    build_package_corpus,
    clean_text,
    default_corpus_cache_path,
    extended_corpus,
    extended_corpus_cache_path,
    load_corpus,
    load_default_corpus,
    load_named_corpus,
    split_of,
    split_sentences,
)


@functools.lru_cache(maxsize=1)
def default_corpus() -> Corpus:
    """Built once per test session (a few seconds), shared with test_pretraining_data."""
    return build_default_corpus()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder in place of ~/.cache/numpy_bert."""
    monkeypatch.setenv("NUMPY_BERT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fingerprint(corpus: Corpus) -> str:
    return hashlib.sha256(json.dumps(corpus.to_json()).encode()).hexdigest()


# ---- the default corpus ---------------------------------------------------------------


def test_default_corpus_is_deterministic():
    """A fresh interpreter with another hash seed builds exactly the same corpus.

    This is the first test to need the corpus: the other interpreter builds on the
    second core while this one builds the shared copy.
    """
    code = ("import hashlib, json; from numpy_bert.data.corpus import build_default_corpus; "
            "print(hashlib.sha256(json.dumps(build_default_corpus().to_json()).encode()).hexdigest())")
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONHASHSEED": "12345"})
    ours = _fingerprint(default_corpus())
    stdout, _ = other.communicate(timeout=120)
    assert other.returncode == 0 and stdout.strip() == ours


def test_default_corpus_size_and_shape():
    corpus = default_corpus()
    stats = corpus.stats()
    # About 340k words on CPython 3.11; other versions differ a little.
    assert 250_000 < stats["words"] < 450_000, stats
    assert stats["documents"] > 500 and stats["sentences"] > 15_000, stats
    titles = [d.title for d in corpus]
    assert titles == sorted(set(titles)), "documents are sorted by unique title"
    assert any(t.startswith("topic:") for t in titles) and "module:builtins" in titles
    assert "module:json" in titles and "module:os.path" not in titles  # os.path is posixpath
    assert all(d.sentences for d in corpus)
    assert sum(1 for _ in corpus.texts()) == corpus.num_sentences


def test_default_corpus_has_no_markup_or_code():
    for sentence in default_corpus().texts():
        assert not sentence.startswith(">>>") and "``" not in sentence and ":func:`" not in sentence, sentence
        assert len(sentence.split()) >= 3 and sentence == sentence.strip(), sentence


def test_train_validation_split_is_disjoint_complete_and_stable():
    corpus = default_corpus()
    train, validation = corpus.split("train"), corpus.split("validation")
    train_titles, validation_titles = {d.title for d in train}, {d.title for d in validation}
    assert not train_titles & validation_titles
    assert train_titles | validation_titles == {d.title for d in corpus}
    assert 0.02 < len(validation) / len(corpus) < 0.10
    assert validation.num_words > 5_000
    # The split is a function of the title alone: removing other documents changes nothing.
    half = Corpus(corpus.documents[::2])
    assert {d.title for d in half.split("validation")} == validation_titles & {d.title for d in half}
    with pytest.raises(ValueError, match="unknown split"):
        corpus.split("test")


def test_split_of_is_a_fixed_hash_of_the_title():
    # Pinned values (hash fractions 0.019, 0.009, 0.649, 0.481): a change to split_of would
    # silently move documents between splits.
    assert split_of("module:m2") == split_of("module:m3") == "validation"
    assert split_of("topic:assignment") == split_of("module:json") == "train"
    assert split_of("anything", validation_fraction=0.0) == "train"
    assert split_of("anything", validation_fraction=1.0) == "validation"


# ---- the cache ------------------------------------------------------------------------


def test_cache_path_is_keyed_by_python_and_format(cache):
    path = default_corpus_cache_path()
    assert path.parent == cache
    assert f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}" in path.name
    assert path.name.endswith(f"-v{corpus_module.CORPUS_FORMAT_VERSION}.json")


def _small_corpus() -> Corpus:
    return Corpus([Document("b", ("One sentence here.", "Another one here.")), Document("a", ("Só ünïcode.",))],
                  name="small")


@pytest.fixture
def counted_builds(monkeypatch):
    """Replace the (slow) build by a small corpus and count the calls."""
    calls = []

    def fake_build():
        calls.append(1)
        return _small_corpus()

    monkeypatch.setattr(corpus_module, "build_default_corpus", fake_build)
    return calls


def test_cache_round_trip(cache, counted_builds):
    first = load_default_corpus()
    assert default_corpus_cache_path().is_file() and len(counted_builds) == 1
    second = load_default_corpus()
    assert len(counted_builds) == 1, "the second load reads the cache"
    assert second.to_json() == first.to_json() == _small_corpus().to_json()
    load_default_corpus(rebuild=True)
    assert len(counted_builds) == 2


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b'{"name": "x", "documents": [["t", "s"]]}',
                                     b"[]", b""])
def test_corrupt_cache_is_rebuilt(cache, counted_builds, content, caplog):
    cache.mkdir()
    default_corpus_cache_path().write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="numpy_bert"):
        corpus = load_default_corpus()
    assert len(counted_builds) == 1 and "rebuilding" in caplog.text
    assert corpus.to_json() == _small_corpus().to_json()
    assert Corpus.from_json(json.loads(default_corpus_cache_path().read_bytes())).to_json() == corpus.to_json()


def test_real_cache_round_trip(cache, monkeypatch):
    built = default_corpus()
    monkeypatch.setattr(corpus_module, "build_default_corpus", lambda: built)
    load_default_corpus()
    monkeypatch.setattr(corpus_module, "build_default_corpus", lambda: pytest.fail("should read the cache"))
    assert _fingerprint(load_default_corpus()) == _fingerprint(built)


# ---- the extended corpus: package docstrings -------------------------------------------


PACKAGE_SOURCES = {
    "__init__.py": '"""A package for testing the corpus builder with plain sentences."""\n',
    "core.py": ('"""The core module explains what the package does in many words."""\n'
                'def f():\n    """The function returns a value that callers can use."""\n'
                'class C:\n    """The class holds the state that the functions share."""\n'),
    "repeat.py": '"""The core module explains what the package does in many words."""\n',  # a repeated docstring
    "tests/test_core.py": '"""Tests are not documentation and are always skipped here."""\n',
    "broken.py": "def (:\n",
}


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An importable package ``corpuspkg`` with docstrings, a repeat, tests and a syntax error."""
    for name, source in PACKAGE_SOURCES.items():
        path = tmp_path / "corpuspkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "corpuspkg"


def test_package_corpus_reads_docstrings_once_without_tests(fake_package):
    corpus = build_package_corpus([fake_package, "no_such_package_anywhere"])
    documents = {d.title: d.sentences for d in corpus}
    assert documents == {
        "package:corpuspkg": ("A package for testing the corpus builder with plain sentences.",),
        "package:corpuspkg.core": ("The core module explains what the package does in many words.",
                                   "The function returns a value that callers can use.",
                                   "The class holds the state that the functions share."),
    }, "repeat.py repeats a docstring (used once), tests/ and broken.py give nothing"
    assert "corpuspkg" not in sys.modules, "packages are read with ast, never imported"


def test_package_corpus_leaves_out_excluded_sentences(fake_package):
    excluded = "The function returns a value that callers can use."
    corpus = build_package_corpus([fake_package], exclude=[excluded])
    assert excluded not in set(corpus.texts()) and len(list(corpus.texts())) == 3


WORDS = st.sampled_from(["the", "list", "value", "returns", "module", "object", "a", "is", "every", "file"])
SENTENCE = st.lists(WORDS, min_size=4, max_size=8).map(lambda words: " ".join(words).capitalize() + ".")
DOCSTRING = st.lists(SENTENCE, min_size=1, max_size=4).map(" ".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(modules=st.lists(st.lists(DOCSTRING, min_size=1, max_size=3), min_size=1, max_size=4),
       excluded=st.lists(SENTENCE, max_size=5))
def test_package_corpus_never_repeats_or_leaks_a_sentence(tmp_path_factory, monkeypatch, modules, excluded):
    root = tmp_path_factory.mktemp("site")
    package = root / "hypopkg"
    package.mkdir()
    for i, docstrings in enumerate(modules):
        functions = "".join(f"def f{j}():\n    {doc!r}\n" for j, doc in enumerate(docstrings))
        (package / f"m{i}.py").write_text(functions)
    monkeypatch.syspath_prepend(str(root))
    sentences = list(build_package_corpus(["hypopkg"], exclude=excluded).texts())
    assert len(sentences) == len(set(sentences)), "a sentence is used once"
    assert not set(sentences) & set(excluded)
    written = {s for docs in modules for doc in docs for s in clean_text(doc)}
    assert set(sentences) == written - set(excluded), "every other sentence is kept"


def test_extended_corpus_keeps_the_default_validation_split(fake_package):
    default = _split_corpus()
    packages = Corpus([Document(f"package:m{i}", (f"Package sentence number {i} is here.",)) for i in range(200)])
    extended = extended_corpus(default, packages)
    assert extended.split("validation").to_json()["documents"] == default.split("validation").to_json()["documents"]
    train_titles = [d.title for d in extended.split("train")]
    package_titles = [t for t in train_titles if t.startswith("package:")]
    assert 150 < len(package_titles) < 200, "package documents only train; those hashed to validation are dropped"
    assert set(train_titles) - set(package_titles) == {d.title for d in default.split("train")}


def _split_corpus() -> Corpus:
    return Corpus([Document(f"doc{i}", (f"Default sentence number {i}.",)) for i in range(100)], name="default")


def test_extended_corpus_cache_is_keyed_by_package_versions(cache, monkeypatch):
    first = extended_corpus_cache_path()
    assert first.parent == cache and first.name.startswith("extended_corpus-")
    monkeypatch.setattr(corpus_module, "package_versions", lambda packages=(): {"numpy": "0.0.1"})
    assert extended_corpus_cache_path() != first


def test_named_corpora(cache, monkeypatch, fake_package):
    monkeypatch.setattr(corpus_module, "build_default_corpus", _split_corpus)
    monkeypatch.setattr(corpus_module, "EXTENSION_PACKAGES", (fake_package,))
    monkeypatch.setattr(corpus_module, "build_package_corpus",
                        functools.partial(build_package_corpus, [fake_package]))
    extended = load_named_corpus(EXTENDED_CORPUS_NAME)
    assert extended_corpus_cache_path().is_file(), "cached like the default corpus"
    default_texts = set(load_named_corpus("python-docs").texts())
    assert default_texts < set(extended.texts())
    with pytest.raises(ValueError, match="unknown corpus name 'wikipedia'"):
        load_named_corpus("wikipedia")


def test_a_mistyped_corpus_name_is_one_line_listing_the_names(tmp_path, capsys):
    from numpy_bert.cli.main import main

    names = "python-docs, python-docs+packages"
    assert main(["train", "--out", str(tmp_path / "run"), "--corpus", "python-doc", "--steps", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "corpus path" in error and names in error
    done = subprocess.run([sys.executable, "-m", "numpy_bert.data.corpus", "wikipedia"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and names in done.stderr


# ---- sentence splitting ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One here. Two there.", ["One here.", "Two there."]),
        ("Use a module, e.g. Python's json. It works.", ["Use a module, e.g. Python's json.", "It works."]),
        ("That is, i.e. Foo is bar. Next one.", ["That is, i.e. Foo is bar.", "Next one."]),
        ("See cf. PEP 8 for style.", ["See cf. PEP 8 for style."]),
        ("Call os.path.join to join. Then open it.", ["Call os.path.join to join.", "Then open it."]),
        ("Python 3.11 is new. Version 2.7 is old.", ["Python 3.11 is new.", "Version 2.7 is old."]),
        ("Lists, tuples, etc. are sequences.", ["Lists, tuples, etc. are sequences."]),
        ("Lists, tuples, etc. The rest are not.", ["Lists, tuples, etc.", "The rest are not."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("It works (mostly.) Then it fails.", ["It works (mostly.)", "Then it fails."]),
        ("What? Yes! No.", ["What?", "Yes!", "No."]),
        ("Wait... Then go.", ["Wait... Then go."]),
        ("The count is 3. 4 is next.", ["The count is 3.", "4 is next."]),
        ("Ends here. lowercase goes on.", ["Ends here. lowercase goes on."]),
        ('Returns x. "Quoted" starts.', ["Returns x.", '"Quoted" starts.']),
        ("", []),
        ("   ", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


@given(st.text(alphabet=st.sampled_from(list("aAbB .?!\"()3e.g\n")), max_size=80))
def test_split_sentences_keeps_every_word(text):
    sentences = split_sentences(text)
    assert " ".join(sentences).split() == text.split()
    assert all(s and s == s.strip() for s in sentences)


# ---- cleaning -------------------------------------------------------------------------


def test_clean_text_drops_code_tables_headings_and_markup():
    text = """Title of a section
==================

Use :func:`os.path.join` and ``str.split`` with *care* and **force**. See [1]_ too.

Example::

    >>> import json
    >>> json.dumps([1, 2])
    '[1, 2]'

    more_code(x)

After the example the prose continues here.

+-------+-------+
| a     | table |
+-------+-------+

.. versionadded:: 3.2
   Some directive body text here.

Note:

   An admonition is prose and stays here.

foo(a, b) -> int

* a first item in a list.
* a second item in a list.

   width (default: 70)
      the maximum width of wrapped lines.
"""
    assert clean_text(text) == [
        "Use os.path.join and str.split with care and force.",
        "After the example the prose continues here.",
        "An admonition is prose and stays here.",
        "a first item in a list.",
        "a second item in a list.",
        "the maximum width of wrapped lines.",
    ]


def test_clean_text_drops_doctest_lines_in_a_paragraph():
    text = "Add two numbers together:\n>>> add(1, 2)\n3\n\nIt returns their sum always."
    assert clean_text(text) == ["Add two numbers together:", "It returns their sum always."]


def test_clean_text_drops_short_and_symbolic_sentences():
    assert clean_text("Return self==value.\n\na % b\n\nx = y + z * 2 / w\n\nThis is a fine sentence.") == [
        "This is a fine sentence."
    ]


# ---- user corpora ---------------------------------------------------------------------


def test_load_corpus_from_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("\ufeffFirst line here. Second sentence here.\nThird line.\n\n\n\nAnother document.\n",
                    encoding="utf-8")
    corpus = load_corpus(path)
    assert [d.title for d in corpus] == ["mine.txt#0", "mine.txt#1"]
    assert corpus[0].sentences == ("First line here.", "Second sentence here.", "Third line.")
    assert corpus[1].sentences == ("Another document.",)
    assert corpus.stats() == {"documents": 2, "sentences": 4, "words": 10}


def test_load_corpus_from_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("Bee one.\n\nBee two.", encoding="utf-8")
    (tmp_path / "sub" / "a.txt").write_text("Ay one.", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    (tmp_path / "ignored.md").write_bytes(b"\x00\x01 not read")
    corpus = load_corpus(tmp_path)
    assert [d.title for d in corpus] == ["b.txt#0", "b.txt#1", "sub/a.txt#0"]
    assert list(corpus.texts()) == ["Bee one.", "Bee two.", "Ay one."]


def test_load_corpus_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text(" \n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(tmp_path / "empty.txt")
    (tmp_path / "model.bin").write_bytes(b"GGUF\x00\x00\x01")
    with pytest.raises(ValueError, match=r"model\.bin.*binary.*offset 4"):
        load_corpus(tmp_path / "model.bin")
    (tmp_path / "latin1.txt").write_bytes("First line.\nCafé au lait.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt is not UTF-8 text: byte 0xe9 at offset 15 \(line 2\)"):
        load_corpus(tmp_path / "latin1.txt")
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"no \.txt files"):
        load_corpus(folder)
    (folder / "ok.txt").write_text("Fine text here.", encoding="utf-8")
    (folder / "bad.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(ValueError, match=r"bad\.txt is not UTF-8"):
        load_corpus(folder)


def test_corpus_json_round_trip_and_validation():
    small = _small_corpus()
    assert Corpus.from_json(json.loads(json.dumps(small.to_json()))).to_json() == small.to_json()
    for bad in ([], {"name": "x"}, {"name": 1, "documents": []}, {"name": "x", "documents": [["t"]]},
                {"name": "x", "documents": [["t", [1]]]}):
        with pytest.raises(ValueError, match="not a serialised corpus"):
            Corpus.from_json(bad)
