"""Data files as people write them: UTF-8 with or without a byte-order mark; anything else named
by file, byte offset and line; every bad fine-tuning row named by file and line.

Each reader of a user's file is tried: corpora, fine-tuning JSONL and CSV, sentence files for
``embed``, vocab.txt, tokenizer_config.json and config.json. hypothesis writes the files.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import io
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from numpy_bert import BertConfig
from numpy_bert.checkpoint import decode_text
from numpy_bert.cli.embeddings import _sentences
from numpy_bert.cli.main import main
from numpy_bert.data.corpus import load_corpus
from numpy_bert.data.finetune_data import label_list, read_examples
from numpy_bert.pipelines.fill_mask import fill_mask
from numpy_bert.text.tokenization import BertTokenizer, read_vocab_file
from tests.test_faults import error_line

BOM = codecs.BOM_UTF8
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ONE_FILE_EACH = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_folder_tokenizer(path: Path):
    tokenizer = BertTokenizer.from_pretrained(path.parent)
    return repr(tokenizer), tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))


def without_places(examples):
    """Examples compared by content and line, not by the folder their file lies in."""
    return [replace(e, where=e.where.rpartition(":")[2]) for e in examples]


# Each reader: the file it reads, valid contents, and what reading gives (to compare).
READERS = {
    "corpus": ("corpus.txt", "Lists are mutable. Tuples are not.\nDicts map keys.\n\nSets hold unique items.\n",
               lambda p: [d.sentences for d in load_corpus(p).documents]),
    "jsonl": ("train.jsonl", '{"text": "Café au lait", "label": "drink"}\n{"text": "Open it", "label": "verb"}\n',
              lambda p: without_places(read_examples(p, "classify"))),
    "csv": ("train.csv", 'text,label\n"Café, au lait",drink\nOpen it,verb\n',
            lambda p: without_places(read_examples(p, "classify"))),
    "sentences": ("lines.txt", "The first sentence.\nThe second\u2028with a line separator inside.\n",
                  lambda p: _sentences(argparse.Namespace(texts=[], file=str(p)))),
    "vocab": ("vocab.txt", "\n".join([*SPECIALS, "café", "##s"]) + "\n", read_vocab_file),
    "tokenizer_config": ("tokenizer_config.json", '{"do_lower_case": false, "model_max_length": 128}',
                         read_folder_tokenizer),
    "config": ("config.json", json.dumps({"hidden_size": 32, "num_attention_heads": 2}),
               lambda p: BertConfig.from_pretrained(p.parent).to_dict()),
}


def write(folder: Path, reader: str, raw: bytes) -> Path:
    """The reader's file holding ``raw``, next to the vocab.txt a tokenizer folder needs."""
    folder.mkdir(parents=True, exist_ok=True)
    if reader == "tokenizer_config":
        (folder / "vocab.txt").write_text("\n".join([*SPECIALS, "Café"]) + "\n", encoding="utf-8")
    path = folder / READERS[reader][0]
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("reader", READERS)
def test_a_byte_order_mark_changes_nothing(tmp_path, reader):
    _, text, read = READERS[reader]
    plain = read(write(tmp_path / "plain", reader, text.encode("utf-8")))
    assert read(write(tmp_path / "bom", reader, BOM + text.encode("utf-8"))) == plain
    windows = text.replace("\n", "\r\n").encode("utf-8")  # as Notepad saves it
    assert read(write(tmp_path / "crlf", reader, BOM + windows)) == plain


def test_a_csv_with_a_byte_order_mark_keeps_its_first_column(tmp_path):
    """Excel's "CSV UTF-8" puts a BOM before the header: the first column must still be "text"."""
    path = write(tmp_path, "csv", BOM + b"text,label\nfine,a\ngood,b\n")
    assert [e.text for e in read_examples(path, "classify")] == ["fine", "good"]


# Bytes that can never start a UTF-8 character here: a stray continuation byte, bytes UTF-8
# never uses, a lead byte followed by ASCII, and a lead byte cut off at the end of the file.
NOT_UTF8 = [b"\x80", b"\xff", b"\xfe", b"\xc0\xaf", b"\xe9t", b"\xf0\x9f"]


@ONE_FILE_EACH
@given(reader=st.sampled_from(sorted(READERS)), bad=st.sampled_from(NOT_UTF8), data=st.data(),
       bom=st.booleans(), crlf=st.booleans())
def test_bytes_that_are_not_utf8_are_named_with_offset_and_line(tmp_path_factory, reader, bad, data, bom, crlf):
    text = READERS[reader][1].replace("\n", "\r\n") if crlf else READERS[reader][1]
    at = data.draw(st.integers(0, len(text)), label="character")
    before = (BOM if bom else b"") + text[:at].encode("utf-8")
    if bad == b"\xf0\x9f":
        after = b""  # a four-byte character cut short: the file ends inside it
    else:
        after = text[at:].encode("utf-8")
    path = write(tmp_path_factory.mktemp(reader), reader, before + bad + after)
    line = len(io.StringIO(text[:at] + "x", newline=None).readlines())  # counted by universal newlines
    message = (f"{path} is not UTF-8 text: byte {bad[0]:#04x} at offset {len(before)} (line {line}) "
               f"cannot be decoded; save the file as UTF-8")
    with pytest.raises(ValueError) as caught:
        READERS[reader][2](path)
    assert str(caught.value) == message


def test_a_file_that_is_not_utf8_is_one_line_and_status_2_on_the_command_line(tmp_path, capsys):
    path = write(tmp_path, "corpus", "Lists are mutable.\nCaf\xe9 au lait.\n".encode("latin-1"))
    assert main(["train", "--corpus", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert error_line(capsys) == (f"python -m numpy_bert train: error: {path} is not UTF-8 text: byte 0xe9 "
                                  f"at offset 22 (line 2) cannot be decoded; save the file as UTF-8")
    assert not (tmp_path / "run").exists()


# ---- fine-tuning rows -------------------------------------------------------------------------

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=8)
FIELDS = {"classify": ["text", "text_pair", "label"], "tag": ["tokens", "tags"],
          "qa": ["question", "context", "answer"]}


def rows_of(task: str):
    """JSON objects with the task's field names (and some others) holding any JSON values."""
    names = st.sampled_from([*FIELDS[task], "extra"])
    return st.dictionaries(names, JSON_VALUES | st.text(max_size=12), max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(task=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_any_jsonl_row_loads_or_names_its_file_and_line(tmp_path, task, data):
    good = {"classify": {"text": "a", "label": "x"}, "tag": {"tokens": ["a"], "tags": ["O"]},
            "qa": {"question": "q?", "context": "an answer", "answer": "answer"}}[task]
    row = data.draw(rows_of(task) | st.just("{not json") | st.just("[" * 5000 + "]" * 5000), label="row")
    blank_lines = data.draw(st.integers(0, 2), label="blank lines before it")
    ascii_only = data.draw(st.booleans(), label="ensure_ascii")  # False: U+2028 and such stay raw
    path = tmp_path / "train.jsonl"
    line = row if isinstance(row, str) else json.dumps(row, ensure_ascii=ascii_only)
    path.write_text(json.dumps(good) + "\n" + "\n" * blank_lines + line + "\n", encoding="utf-8")
    try:
        examples = read_examples(path, task)
    except ValueError as err:
        assert str(err).startswith(f"{path}:{2 + blank_lines}: "), err
        assert "\n" not in str(err)
    else:
        assert len(examples) == 2 and examples[1].where == f"{path}:{2 + blank_lines}"


CELL = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\x00"), max_size=10)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(CELL, CELL), min_size=1, max_size=6), data=st.data())
def test_csv_line_numbers_count_the_lines_of_quoted_fields(tmp_path_factory, rows, data):
    """A row's line is the line it starts on, even after cells that span lines, as an editor shows it."""
    rows = [(text if text.strip() else "x", label if label.strip() else "y") for text, label in rows]
    broken = data.draw(st.integers(0, len(rows) - 1), label="row without a label")
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label"])
    start_lines = []
    for i, (text, label) in enumerate(rows):
        start_lines.append(out.getvalue().count("\n") + 1)
        writer.writerow([text] if i == broken else [text, label])
    path = tmp_path_factory.mktemp("csv") / "train.csv"
    path.write_bytes(out.getvalue().encode("utf-8"))
    with pytest.raises(ValueError) as caught:
        read_examples(path, "classify")
    assert str(caught.value) == f"{path}:{start_lines[broken]}: missing field 'label'"


@pytest.mark.parametrize("task, text, message", [
    ("classify", "text,label\nfine,a\nnul\x00here,b\n", r"data\.csv looks like a binary or UTF-16 file, not UTF-8 "
                                                      r"text: NUL byte at offset 21 \(line 3\)$"),
    ("classify", "text,label\nfine,a\n".encode("utf-16"), r"data\.csv is not UTF-8 text: it starts with a UTF-16 "
                                                         r"byte-order mark; save the file as UTF-8$"),
    ("classify", "text,label\n" + "x" * 200_000 + ",a\n", r"data\.csv:2: not a valid CSV row \(field larger than "),
    ("qa", "question,answer\nq?,a\n", r"data\.csv:1: the header has no 'context' column \(its columns: 'question', "
                                      r"'answer'\); a qa file needs question, context, answer$"),
])
def test_csv_faults_name_file_and_line(tmp_path, task, text, message):
    path = tmp_path / "data.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(ValueError, match=message):
        read_examples(path, task)


def test_a_deeply_nested_jsonl_row_is_one_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:2: nested too deeply \(arrays or objects"):
        read_examples(path, "classify")


def test_a_word_holding_whitespace_is_refused_in_tagging(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"tokens": ["New York", "is"], "tags": ["B-LOC", "O"]}) + "\n")
    with pytest.raises(ValueError, match=r"train\.jsonl:1: tokens\[0\] = 'New York' holds whitespace; "
                                         r"give each word on its own$"):
        read_examples(path, "tag")


def test_a_classification_file_with_one_label_is_refused(tmp_path):
    """With one label the head would have one output, which transformers treats as regression."""
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": "spam"}) + "\n" for t in ("a", "b", "c")))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: classification needs at least two labels, "
                                         r"found only 'spam'$"):
        label_list(read_examples(path, "classify"), "classify")
    assert label_list(read_examples(write(tmp_path / "two", "jsonl", READERS["jsonl"][1].encode()), "classify"),
                      "classify") == ["drink", "verb"]


# ---- tokenizer_config.json --------------------------------------------------------------------

@pytest.mark.parametrize("settings_json, message", [
    ('{"do_lower_case": "no"}', "do_lower_case must be true or false, got 'no'"),
    ('{"strip_accents": 0}', "strip_accents must be true or false, got 0"),
    ('{"model_max_length": "512"}', "model_max_length must be a positive integer, got '512'"),
    ('{"model_max_length": 0}', "model_max_length must be a positive integer, got 0"),
    ('["do_lower_case"]', "must hold a JSON object, got list"),
])
def test_tokenizer_config_fields_are_checked(tmp_path, settings_json, message):
    path = write(tmp_path, "tokenizer_config", settings_json.encode())
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:? {re.escape(message)}$"):
        BertTokenizer.from_pretrained(tmp_path)


def test_tokenizer_config_strip_accents_may_be_null(tmp_path):
    write(tmp_path, "tokenizer_config", b'{"strip_accents": null, "do_lower_case": true}')
    (tmp_path / "vocab.txt").write_text("\n".join([*SPECIALS, "cafe"]) + "\n", encoding="utf-8")
    assert BertTokenizer.from_pretrained(tmp_path).tokenize("Café") == ["cafe"]  # null: as do_lower_case


# ---- fill-mask and truncation -----------------------------------------------------------------

def uniform_predict(batch):
    """A stand-in model: equal MLM logits at every labelled position."""
    masks = int((batch["labels"] != -100).sum())
    return np.zeros((masks, len(SPECIALS) + 2)), None


@pytest.mark.parametrize("words_before, message", [
    (3, None),
    (20, r"^1 of the text's 1 \[MASK\] tokens lie beyond 8 tokens \(the text has 24\) and would be cut off"),
])
def test_a_mask_cut_off_by_truncation_is_named(words_before, message):
    tokenizer = BertTokenizer(vocab=[*SPECIALS, "a", "b"])
    text = "a " * words_before + "[MASK] b"
    if message is None:
        assert len(fill_mask(uniform_predict, tokenizer, text, top_k=2, max_length=8)) == 1
        return
    with pytest.raises(ValueError, match=message):
        fill_mask(uniform_predict, tokenizer, text, top_k=2, max_length=8)


def test_some_masks_cut_off_are_refused_too():
    tokenizer = BertTokenizer(vocab=[*SPECIALS, "a", "b"])
    with pytest.raises(ValueError, match=r"^2 of the text's 3 \[MASK\] tokens lie beyond 8 tokens"):
        fill_mask(uniform_predict, tokenizer, "[MASK] a a a a a [MASK] [MASK]", top_k=1, max_length=8)
    with pytest.raises(ValueError, match=r"^the text has no \[MASK\] token to fill: 'a b'$"):
        fill_mask(uniform_predict, tokenizer, "a b", top_k=1, max_length=8)


@given(text=st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40))
@settings(max_examples=100, deadline=None)
def test_reading_what_we_wrote_gives_it_back(text):
    """decode_text is the inverse of UTF-8 encoding, with or without a BOM, for any text but NUL (refused above)."""
    assume(not text.startswith("\ufeff"))  # a BOM in the text itself is read as the file's BOM
    assert decode_text(text.encode("utf-8"), "f") == text
    assert decode_text(BOM + text.encode("utf-8"), "f") == text
