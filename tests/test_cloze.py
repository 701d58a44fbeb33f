"""The cloze evaluation: its scoring on a stand-in model whose answers are known, the file checks
(hypothesis), the built-in set, the unigram baseline, and ``cloze`` end to end for both backends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpy_bert import BertTokenizer
from numpy_bert.cli.main import main
from numpy_bert.data.cloze import MASK, ClozeItem, is_word, load_builtin_cloze, read_cloze_file
from numpy_bert.data.corpus import CORPUS_NAMES, Corpus, Document, load_named_corpus
from numpy_bert.training.arguments import TrainingArguments
from numpy_bert.training.cloze import format_cloze_table, model_ranker, score_cloze, unigram_ranker
from numpy_bert.training.pretraining import load_corpus_splits, train_tokenizer
from tests.test_faults import error_line
from torch_bert.training.pretraining import TorchBackend

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["a", "list", "is", "mutable", "sequence", "the", "statement", "exits", "loop", "break", "object", "of"]
TOKENIZER = BertTokenizer(vocab=[*SPECIALS, *WORDS, "##s", "."])
# The stand-in model's preference, best first, whatever the sentence: a continuation piece, a special
# token and punctuation come before the first word, and never count.
PREFERENCE = ["##s", "[UNK]", ".", "sequence", "the", "break", "object", "a", "list"]


def stand_in_predict(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """MLM logits that rank PREFERENCE first at every labelled position, as a backend's predict returns them."""
    scores = np.zeros(len(TOKENIZER))
    for rank, token in enumerate(PREFERENCE):
        scores[TOKENIZER.convert_tokens_to_ids(token)] = len(PREFERENCE) - rank
    masks = int((batch["labels"] != -100).sum())
    return np.tile(scores, (masks, 1)), np.zeros((len(batch["input_ids"]), 2))


def item(text: str, *answers: str) -> ClozeItem:
    return ClozeItem("test:1", text, answers)


def test_whole_word_accuracy_on_a_stand_in_model():
    items = [item("A list is a mutable [MASK].", "Sequence", "object"),  # top-1, whatever the case
             item("The [MASK] statement exits a loop.", "break"),  # third of the words
             item("A [MASK] is mutable.", "list"),  # sixth: beyond the top 5
             item("A function that calls itself is [MASK].", "recursive"),  # no token for it
             item("A list [MASK] mutable.", "is", "islands")]  # "islands" has no token, "is" has one
    results, metrics = score_cloze(items, model_ranker(stand_in_predict, TOKENIZER, 64), TOKENIZER, top_k=5)
    assert results[0].predictions == ("sequence", "the", "break", "object", "a")
    assert [result.rank for result in results] == [1, 3, None, None, None]
    assert [result.not_in_vocabulary for result in results] == [(), (), (), ("recursive",), ("islands",)]
    assert metrics == {"sentences": 5, "top_k": 5, "top1_accuracy": 0.2, "top_k_accuracy": 0.4, "top1_hits": 1,
                       "top_k_hits": 2, "unscorable": 1}
    assert score_cloze(items, model_ranker(stand_in_predict, TOKENIZER, 64), TOKENIZER, top_k=1)[1]["top_k_hits"] == 1
    table = format_cloze_table(results).splitlines()
    predictions = "sequence the break object a"
    assert table[2] == f"| 1 | A list is a mutable [MASK]. | Sequence, object | {predictions} | hit (rank 1) |"
    assert table[5].endswith(f"| recursive (not in the vocabulary) | {predictions} | miss |")


def test_a_mask_cut_off_by_truncation_names_the_sentence():
    far = ClozeItem("more.jsonl:7", "a " * 70 + "[MASK].", ("list",))
    with pytest.raises(ValueError, match=r"^more\.jsonl:7: 1 of the text's 1 \[MASK\] tokens lie beyond 64 tokens"):
        score_cloze([far], model_ranker(stand_in_predict, TOKENIZER, 64), TOKENIZER)


def test_the_unigram_baseline_beats_nothing_and_is_deterministic():
    corpus = Corpus([Document("d", ("A list is a mutable sequence.", "The list is the object of a loop."))])
    items = [item("A list [MASK] mutable.", "is"), item("[MASK] loop exits.", "the"), item("A [MASK].", "break")]
    ranker = unigram_ranker(TOKENIZER, corpus)
    assert list(ranker("anything")) == ["a", "list", "is", ".", "the", "mutable", "sequence", "object", "of", "loop"]
    results, metrics = score_cloze(items, ranker, TOKENIZER)
    assert [result.rank for result in results] == [3, 4, None]  # "a" and "list" outrank them, "break" never occurs
    assert metrics["top_k_hits"] > score_cloze(items, lambda text: [], TOKENIZER)[1]["top_k_hits"] == 0
    assert score_cloze(items, unigram_ranker(TOKENIZER, corpus), TOKENIZER) == (results, metrics)


# ---- cloze files ------------------------------------------------------------------------------


def write_rows(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("line, message", [
    ('{"text": "A list is mutable.", "answers": ["yes"]}', "the text must hold exactly one [MASK], it holds 0"),
    ('{"text": "[MASK] and [MASK].", "answers": ["a"]}', "the text must hold exactly one [MASK], it holds 2"),
    ('{"text": "A [MASK].", "answers": []}', "field 'answers' must be a non-empty list of words, got list []"),
    ('{"text": "A [MASK]."}', "field 'answers' must be a non-empty list of words, got nothing"),
    ('{"text": "A [MASK].", "answers": "list"}', "field 'answers' must be a non-empty list of words, got str 'list'"),
    ('{"text": "A [MASK].", "answers": ["list", 3]}', "answers[1] must be a string, got int 3"),
    ('{"text": "A [MASK].", "answers": ["os.path"]}', "answers[0] = 'os.path' is not a single word"),
    ('{"text": 5, "answers": ["a"]}', "field 'text' must be a string, got int 5"),
    ('["A [MASK].", ["a"]]', "expected a JSON object, got list"),
    ('{"text": "A [MASK]."', "not valid JSON"),
])
def test_a_bad_row_names_its_file_and_line(tmp_path, line, message):
    path = write_rows(tmp_path / "more.jsonl", '{"text": "A list is a [MASK].", "answers": ["sequence"]}', "", line)
    with pytest.raises(ValueError) as err:
        read_cloze_file(path)
    assert str(err.value).startswith(f"{path}:3: {message}"), err.value


def test_an_empty_or_missing_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no cloze sentences"):
        read_cloze_file(write_rows(tmp_path / "empty.jsonl", "", "  "))
    with pytest.raises(ValueError, match="does not exist"):
        read_cloze_file(tmp_path / "missing.jsonl")


TEXTS = st.lists(st.text(max_size=12) | st.just(MASK), max_size=4).map("".join)
ANSWERS = st.lists(st.text(max_size=8) | st.sampled_from(["list", "Break", "über", "##s", "."]) | st.integers()
                   | st.none(), max_size=3)
ROWS = (st.fixed_dictionaries({"text": TEXTS, "answers": ANSWERS})
        | st.dictionaries(st.sampled_from(["text", "answers", "note"]), TEXTS | ANSWERS, max_size=3)
        | st.lists(st.integers(), max_size=2) | st.just("{not json"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROWS, min_size=1, max_size=4), ascii_only=st.booleans())
def test_any_file_loads_or_names_its_first_bad_line(tmp_path, rows, ascii_only):
    """Either every row loads, as written, or the error names the first bad line: the lines before it
    load, and that line alone fails with the same message."""
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=ascii_only) for row in rows]
    path = write_rows(tmp_path / "cloze.jsonl", *lines)
    try:
        items = read_cloze_file(path)
    except ValueError as err:
        prefix, _, problem = str(err).partition(": ")
        line = int(prefix.rpartition(":")[2])
        assert prefix == f"{path}:{line}" and 1 <= line <= len(lines) and "\n" not in problem, err
        if line > 1:
            assert len(read_cloze_file(write_rows(tmp_path / "before.jsonl", *lines[: line - 1]))) == line - 1
        with pytest.raises(ValueError) as alone:
            read_cloze_file(write_rows(tmp_path / "alone.jsonl", lines[line - 1]))
        assert str(alone.value).partition(": ")[2] == problem
    else:
        assert [(i.text, list(i.answers)) for i in items] == [(row["text"], row["answers"]) for row in rows]
        assert all(i.text.count(MASK) == 1 and i.answers and all(map(is_word, i.answers)) for i in items)


# ---- the built-in set -------------------------------------------------------------------------


def test_the_builtin_set_is_well_formed():
    items = load_builtin_cloze()
    assert len(items) >= 48
    assert len({i.text for i in items}) == len(items), "a sentence occurs twice"
    for i in items:
        assert i.text.count(MASK) == 1 and i.answers and all(map(is_word, i.answers)), i.where


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_no_builtin_sentence_is_copied_from_the_corpus(name):
    """Filled in with any of its answers, no sentence occurs in a named corpus (not even inside a longer one)."""
    corpus = "\n".join(load_named_corpus(name).texts()).lower()
    copied = [(i.where, answer) for i in load_builtin_cloze() for answer in i.answers
              if i.text.replace(MASK, answer).lower().rstrip(".") in corpus]
    assert not copied


def test_every_builtin_answer_is_a_token_of_the_default_vocabulary():
    """A default ``train`` run (the embedded corpus, an 8,192-token vocabulary) can score every sentence."""
    tokenizer = train_tokenizer(load_corpus_splits(None)[0], TrainingArguments.vocab_size)
    missing = [(i.where, a) for i in load_builtin_cloze() for a in i.answers if len(tokenizer.tokenize(a)) != 1]
    assert not missing


# ---- the command line -------------------------------------------------------------------------


def printed_figures(capsys) -> dict:
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| # | sentence | answers | top predictions | result |"
    assert lines[-2].startswith("top-1 accuracy ")
    return json.loads(lines[-1])


@pytest.mark.parametrize("backend", [None, TorchBackend], ids=["numpy_bert", "torch_bert"])
def test_cloze_end_to_end(tmp_path, trained_run, backend, capsys):
    more = write_rows(tmp_path / "more.jsonl", '{"text": "A list is a mutable [MASK].", "answers": ["sequence"]}')
    on_cpu = ["--device", "cpu"] if backend else []
    assert main(["cloze", str(trained_run), "--file", str(more), "--top-k", "3", *on_cpu], backend) == 0
    figures = printed_figures(capsys)
    assert figures["model"] == str(trained_run) and figures["predictor"] == "model"
    assert figures["sentences"] == len(load_builtin_cloze()) + 1 and figures["top_k"] == 3
    assert 0 <= figures["top1_hits"] <= figures["top_k_hits"] <= figures["sentences"]
    assert figures["top_k_accuracy"] == figures["top_k_hits"] / figures["sentences"]
    assert 0 < figures["unscorable"] < figures["sentences"]  # a 200-token vocabulary lacks most answers


def test_the_unigram_baseline_on_the_command_line(trained_run, corpus, capsys):
    argv = ["cloze", str(trained_run), "--unigram", "--corpus", corpus]
    assert main(argv) == 0
    figures = printed_figures(capsys)
    assert figures["predictor"] == "unigram" and figures["top_k_hits"] > 0
    assert main(argv) == 0
    assert printed_figures(capsys) == figures


@pytest.mark.parametrize("argv, message", [
    (["cloze", "{run}", "--file", "{tmp}/bad.jsonl"], "{tmp}/bad.jsonl:2: the text must hold exactly one [MASK]"),
    (["cloze", "{run}", "--corpus", "{tmp}"], "--corpus chooses the unigram baseline's corpus: use it with --unigram"),
    (["cloze", "minilm"], "has no masked-LM head (no cls.predictions.* tensors)"),
])
def test_cloze_failures_are_one_line(tmp_path, trained_run, argv, message, capsys):
    write_rows(tmp_path / "bad.jsonl", '{"text": "A [MASK].", "answers": ["list"]}', '{"text": "A.", "answers": ["a"]}')
    fill = {"tmp": str(tmp_path), "run": str(trained_run)}
    assert main([part.format(**fill) for part in argv]) == 2
    line = error_line(capsys)
    assert line.startswith("python -m numpy_bert cloze: error: ") and message.format(**fill) in line
