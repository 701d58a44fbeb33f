"""Fine-tuning: reading data (and its errors), encoding, metrics, span search, demo data, the command line.

Covered: every kind of malformed row, in JSONL and CSV, is a ValueError naming the
file and the line; labels that only the eval file has are refused; metrics against
hand-computed values and against seqeval's (conlleval's) treatment of tricky BIO
sequences; SQuAD normalisation; best_span's constraints; the alignment of answers and
word labels with WordPiece tokens; the demo data's construction and determinism; the
fine-tuning command end to end for both backends, from a pre-training checkpoint (the
new head tensors are announced), with distillation, and its report in the run folder.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import transformers

from numpy_bert import BertConfig, BertForPreTraining
from numpy_bert.cli.main import main as cli_main
from numpy_bert.data.corpus import Corpus, Document
from numpy_bert.data.demo_tasks import code_spans, demo_dataset, family, tag_words, write_demo_data
from numpy_bert.data.finetune_data import (
    check_known_labels,
    encode,
    label_list,
    read_examples,
    split_words_with_offsets,
    tokenize_with_offsets,
)
from numpy_bert.heads import best_span
from numpy_bert.text.tokenization import BertTokenizer
from numpy_bert.text.wordpiece_trainer import train_wordpiece_vocab
from numpy_bert.training.metrics import (
    bio_entities,
    classification_report,
    entity_report,
    normalize_answer,
    squad_report,
)
from numpy_bert.training.pretraining import NumpyBackend
from torch_bert.training.pretraining import TorchBackend

# ---- data files ----------------------------------------------------------------------------

CLASSIFY = [{"text": "Return a new list of the items.", "label": "lists"},
            {"text": "Open the file and read its lines.", "text_pair": "A file object.", "label": "files"},
            {"text": "Sort the list in place.", "label": "lists"},
            {"text": "Close the file when done.", "label": "files"},
            {"text": "Append an item to the list.", "label": "lists"},
            {"text": "Write the bytes to the file.", "label": "files"}]
TAG = [{"tokens": ["Call", "os", ".", "path", "today"], "tags": ["O", "B-CODE", "I-CODE", "I-CODE", "O"]},
       {"tokens": ["The", "follow_symlinks", "flag"], "tags": ["O", "B-CODE", "O"]},
       {"tokens": ["Use", "close", "(", ")", "now", "."], "tags": ["O", "B-CODE", "I-CODE", "I-CODE", "O", "O"]},
       {"tokens": ["Nothing", "here", "."], "tags": ["O", "O", "O"]}]
QA = [{"question": "Use [MASK] to join paths.", "context": "Paths matter. Use os.path.join to join paths.",
       "answer": "os.path.join"},
      {"question": "The [MASK] flag follows links.", "context": "The follow_symlinks flag follows links.",
       "answer": "follow_symlinks"},
      {"question": "Call [MASK] at the end.", "context": "Files are closed. Call close() at the end.",
       "answer": "close()"},
      {"question": "Read it with [MASK].", "context": "Read it with read_text, said the docs.",
       "answer": "read_text"}]
DATA = {"classify": CLASSIFY, "tag": TAG, "qa": QA}


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("task, rows, message", [
    ("classify", [CLASSIFY[0], '{"text": "broken", "label": '], r"train\.jsonl:2: not valid JSON"),
    ("classify", [CLASSIFY[0], CLASSIFY[1], {"text": "no label"}], r"train\.jsonl:3: missing field 'label'"),
    ("classify", [{"text": 7, "label": "x"}], r"train\.jsonl:1: field 'text' must be a str, got int 7"),
    ("classify", [{"text": "a", "label": 1.5}], r"train\.jsonl:1: field 'label' must be a str, got float"),
    ("classify", [{"text": "   ", "label": "x"}], r"train\.jsonl:1: field 'text' is empty"),
    ("classify", ["[1, 2]"], r"train\.jsonl:1: expected a JSON object, got list"),
    ("tag", [TAG[0], {"tokens": ["a", "b"], "tags": ["O"]}], r"train\.jsonl:2: 2 tokens but 1 tags"),
    ("tag", [{"tokens": "a b", "tags": ["O", "O"]}], r"train\.jsonl:1: field 'tokens' must be a list"),
    ("tag", [{"tokens": ["a", 3], "tags": ["O", "O"]}], r"train\.jsonl:1: tokens\[1\] must be a non-empty string"),
    ("tag", [{"tokens": ["a"], "tags": ["CODE"]}], r"train\.jsonl:1: tags\[0\] = 'CODE' is not a BIO tag"),
    ("qa", [QA[0], {**QA[1], "answer": "symlinks_follow"}],
     r"train\.jsonl:2: the answer 'symlinks_follow' does not occur in the context"),
    ("qa", [{"question": "q?", "answer": "x"}], r"train\.jsonl:1: missing field 'context'"),
])
def test_malformed_jsonl_rows_name_file_and_line(tmp_path, task, rows, message):
    with pytest.raises(ValueError, match=message):
        read_examples(write_jsonl(tmp_path / "train.jsonl", rows), task)


def test_blank_lines_keep_line_numbers(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [CLASSIFY[0], "", "  ", '{"text": "x"}'])
    with pytest.raises(ValueError, match=r"train\.jsonl:4: missing field 'label'"):
        read_examples(path, "classify")


@pytest.mark.parametrize("task, text, message", [
    ("classify", 'text,label\n"one, two",a\n"multi\nline text",b\nthird\n', r"data\.csv:5: missing field 'label'"),
    ("classify", "text,label\nfine,a\ntoo,many,cells\n", r"data\.csv:3: more cells than the header has columns"),
    ("classify", "text,category\nfine,a\n", r"data\.csv:1: the header has no 'label' column \(its columns: "
                                           r"'text', 'category'\); a classify file needs text, label$"),
    ("tag", "tokens,tags\nCall os . path,O B-CODE I-CODE\n", r"data\.csv:2: 4 tokens but 3 tags"),
    ("qa", "question,context,answer\nq?,The context.,elsewhere\n", r"data\.csv:2: the answer 'elsewhere' does not"),
])
def test_malformed_csv_rows_name_file_and_line(tmp_path, task, text, message):
    with pytest.raises(ValueError, match=message):
        read_examples(write_csv(tmp_path / "data.csv", text), task)


def test_csv_rows_read_like_jsonl(tmp_path):
    csv_path = write_csv(tmp_path / "data.csv",
                         'text,text_pair,label\n"Open, then read",,files\nSort it,A list,lists\n')
    examples = read_examples(csv_path, "classify")
    assert [(e.text, e.text_pair, e.label, e.where.rsplit(":", 1)[1]) for e in examples] == [
        ("Open, then read", None, "files", "2"), ("Sort it", "A list", "lists", "3")]
    tags = read_examples(write_csv(tmp_path / "tags.csv", "tokens,tags\nCall os . path,O B-CODE I-CODE I-CODE\n"),
                         "tag")
    assert tags[0].tokens == ["Call", "os", ".", "path"] and tags[0].tags[1] == "B-CODE"
    with pytest.raises(ValueError, match=r"unknown data format '\.txt'"):
        read_examples(write_csv(tmp_path / "data.txt", "x"), "classify")


def test_unknown_labels_in_the_eval_file(tmp_path):
    train = read_examples(write_jsonl(tmp_path / "train.jsonl", CLASSIFY), "classify")
    evaluation = read_examples(write_jsonl(tmp_path / "eval.jsonl", [CLASSIFY[0], {"text": "x", "label": "sets"}]),
                               "classify")
    labels = label_list(train, "classify")
    assert labels == ["files", "lists"]
    with pytest.raises(ValueError, match=r"eval\.jsonl:2: label 'sets' does not occur in the training file"):
        check_known_labels(evaluation, labels)
    tags = read_examples(write_jsonl(tmp_path / "tags.jsonl", [{"tokens": ["x"], "tags": ["B-FUNC"]}]), "tag")
    assert label_list(read_examples(write_jsonl(tmp_path / "t.jsonl", TAG), "tag"), "tag") == ["O", "B-CODE", "I-CODE"]
    with pytest.raises(ValueError, match=r"tags\.jsonl:1: label 'B-FUNC'"):
        check_known_labels(tags, ["O", "B-CODE", "I-CODE"])


# ---- metrics ---------------------------------------------------------------------------------


def test_classification_metrics_by_hand():
    labels = ["a", "b", "c", "unused"]
    gold = [0, 0, 0, 1, 1, 2]
    predicted = [0, 1, 0, 1, 2, 2]
    report = classification_report(gold, predicted, labels)
    # confusion: a->a 2, a->b 1; b->b 1, b->c 1; c->c 1
    assert report["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    a, b, c = (report["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((1.0, 2 / 3, 0.8, 3))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert "unused" not in report["per_class"], "classes absent from gold and predictions are not averaged"
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report["macro_precision"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("tags, entities", [
    (["B-CODE", "I-CODE", "O", "B-CODE"], [("CODE", 0, 1), ("CODE", 3, 3)]),
    (["I-CODE", "I-CODE", "O"], [("CODE", 0, 1)]),  # I- without B- starts an entity (conlleval)
    (["O", "I-A", "B-A", "I-A"], [("A", 1, 1), ("A", 2, 3)]),
    (["B-A", "I-B", "I-B"], [("A", 0, 0), ("B", 1, 2)]),  # a type change ends one entity and starts another
    (["B-A", "B-A"], [("A", 0, 0), ("A", 1, 1)]),
    (["I-A", "I-B", "O", "I-A"], [("A", 0, 0), ("B", 1, 1), ("A", 3, 3)]),
    ([], []),
])
def test_bio_entities_follow_seqeval(tags, entities):
    assert bio_entities(tags) == entities


def test_entity_scores_as_seqeval():
    # seqeval's own docstring example: micro P = R = F1 = 0.5 (MISC is wrong, PER right).
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    predicted = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    report = entity_report(gold, predicted)
    assert (report["precision"], report["recall"], report["f1"]) == (0.5, 0.5, 0.5)
    assert report["per_type"]["MISC"]["f1"] == 0 and report["per_type"]["PER"]["f1"] == 1
    assert report["token_accuracy"] == pytest.approx(8 / 10)  # two tags differ
    # I- without B- in the prediction still finds the entity; a type change splits it.
    report = entity_report([["B-A", "I-A", "O", "B-B"]], [["I-A", "I-A", "O", "I-A"]])
    assert report["per_type"]["A"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert report["per_type"]["B"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert (report["precision"], report["recall"]) == (0.5, 0.5)
    assert report["macro_f1"] == pytest.approx(1 / 3)
    # Entities never cross sentences.
    assert entity_report([["B-A"], ["I-A"]], [["B-A"], ["O"]])["recall"] == 0.5


def test_squad_metrics():
    assert normalize_answer("The  os.path  Module!") == "ospath module"
    report = squad_report(["the sys.argv list", "a new dict", "nothing"], ["sys.argv", "A new dict.", "close()"])
    assert report["exact_match"] == pytest.approx(1 / 3)
    # F1: "sysargv list" vs "sysargv": P 1/2, R 1 -> 2/3; exact -> 1; no overlap -> 0
    assert report["f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert squad_report(["the"], ["a"])["f1"] == 1.0, "both normalise to nothing"


# ---- best_span ---------------------------------------------------------------------------------


def test_best_span_respects_order_length_and_context():
    start = np.array([0.0, 1.0, 5.0, 0.0, 0.0, 3.0])
    end = np.array([9.0, 0.0, 0.0, 2.0, 1.0, 0.0])
    assert best_span(start, end) == (0, 0)  # unconstrained: start 0 + end 0 is 9
    context = np.array([False, True, True, True, True, False])
    assert best_span(start, end, allowed=context) == (2, 3)  # 5 + 2; the end 0 is not in the context
    assert best_span(start, end, max_answer_len=1, allowed=context) == (2, 2)  # 5 + 0 beats 1 + 0
    assert best_span(-start, end, allowed=context) == (3, 3)  # the best end before the start is not allowed
    with pytest.raises(ValueError, match="no valid answer span"):
        best_span(start, end, allowed=np.zeros(6, bool))


# ---- encoding ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizer:
    texts = [row.get("text", "") + " " + row.get("context", "") + " " + " ".join(row.get("tokens", []))
             for rows in DATA.values() for row in rows]
    return BertTokenizer(vocab=train_wordpiece_vocab(texts * 3, 150))


def test_offsets_match_the_tokenizer(tokenizer):
    text = "Use os.path.join(a, b) — or Héllo_World's [x] 3.11!  \tdone"
    words = split_words_with_offsets(text)
    assert all(text[start:end] == word for word, start, end in words)
    assert [w for w, _, _ in words][:6] == ["Use", "os", ".", "path", ".", "join"]
    basic = tokenizer.basic_tokenizer  # the words split exactly where the tokenizer's pre-tokenizer does
    assert [piece for word, _, _ in words for piece in basic.tokenize(word)] == basic.tokenize(text)
    ids, offsets = tokenize_with_offsets(tokenizer, text)
    assert tokenizer.convert_ids_to_tokens(ids) == tokenizer.tokenize(text) and len(offsets) == len(ids)


def test_qa_targets_point_at_the_answer(tmp_path, tokenizer):
    examples = read_examples(write_jsonl(tmp_path / "qa.jsonl", QA), "qa")
    for example, feature in zip(examples, encode(examples, "qa", tokenizer, [], 64)):
        start, end = feature.targets["start_positions"], feature.targets["end_positions"]
        assert example.context[feature.offsets[start][0]:feature.offsets[end][1]] == example.answer
        assert feature.token_type_ids[start] == 1 and feature.input_ids[-1] == tokenizer.sep_token_id
    # Truncated before the answer: the target is [CLS], as in transformers' run_qa.py.
    cut = encode(examples[:1], "qa", tokenizer, [], 12)[0]
    assert cut.targets == {"start_positions": 0, "end_positions": 0} and len(cut.input_ids) == 12


def test_word_labels_go_on_first_pieces(tmp_path, tokenizer):
    examples = read_examples(write_jsonl(tmp_path / "tag.jsonl", TAG), "tag")
    labels = label_list(examples, "tag")
    feature = encode(examples[1:2], "tag", tokenizer, labels, 64)[0]
    pieces = [tokenizer.tokenize(w) for w in examples[1].tokens]
    assert len(pieces[1]) > 1, "follow_symlinks is several pieces"
    expected = [-100, 0] + [1] + [-100] * (len(pieces[1]) - 1) + [0] * len(pieces[2]) + [-100]
    assert feature.targets["labels"][: len(expected)] == expected[: len(feature.targets["labels"])]
    assert feature.word_starts == [1, 2, 2 + len(pieces[1])]
    short = encode(examples[1:2], "tag", tokenizer, labels, 4)[0]
    assert short.word_starts[-1] == -1, "a word cut off by truncation is not predicted"


# ---- demo data ---------------------------------------------------------------------------------


def test_demo_labels_come_from_the_text():
    words, tags = tag_words("Call os.path.join() or read follow_symlinks, e.g. now.")
    assert list(zip(words, tags))[1:8] == [("os", "B-CODE"), (".", "I-CODE"), ("path", "I-CODE"), (".", "I-CODE"),
                                           ("join", "I-CODE"), ("(", "I-CODE"), (")", "I-CODE")]
    assert tags[words.index("follow_symlinks")] == "B-CODE" and tags[words.index("e")] == "O"
    assert code_spans("See e.g. close().") == [(9, 16)]
    assert family("topic:with") == "language reference"
    assert family("module:os.path") == "files and the operating system"
    assert family("module:_decimal") == "numbers and dates", "C modules count as their Python twins"
    assert family("module:json.decoder") == "text and data formats" and family("module:antigravity") is None


def test_demo_data_is_deterministic_and_split_by_document(tmp_path):
    documents = [Document(f"module:{name}.m{i}", tuple(f"Sentence {j} of {name} {i} uses {name}.attr_{j}() here."
                                                      for j in range(6)))
                 for i in range(6) for name in ("json", "os", "asyncio")]
    corpus = Corpus(documents)
    for task in ("classify", "tag", "qa"):
        first = write_demo_data(task, tmp_path / "a", corpus, train_size=30, eval_size=10, seed=3)
        second = write_demo_data(task, tmp_path / "b", corpus, train_size=30, eval_size=10, seed=3)
        assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
        train = read_examples(first[0], task)
        evaluation = read_examples(first[1], task)
        check_known_labels(evaluation, label_list(train, task))
    train, evaluation = demo_dataset("classify", corpus, 30, 10, seed=3)
    assert {r["label"] for r in train} == {"text and data formats", "files and the operating system",
                                           "concurrency and networking"}
    assert not {r["text"] for r in train} & {r["text"] for r in evaluation}, "documents do not straddle the split"
    assert demo_dataset("classify", corpus, 30, 10, seed=4) != (train, evaluation)


# ---- the command line, end to end --------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, tokenizer) -> Path:
    """A pre-training-style checkpoint: BertForPreTraining.save_pretrained and its vocabulary."""
    folder = tmp_path_factory.mktemp("pretrained")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertForPreTraining(config, seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, tuple[str, str]]:
    folder = tmp_path_factory.mktemp("data")
    return {task: (str(write_jsonl(folder / f"{task}-train.jsonl", rows)),
                   str(write_jsonl(folder / f"{task}-eval.jsonl", rows[:3]))) for task, rows in DATA.items()}


def finetune_args(task: str, model, data, out, *extra) -> list[str]:
    return ["finetune", "--task", task, "--model", str(model), "--train", data[task][0], "--eval", data[task][1],
            "--out", str(out), "--steps", "3", "--batch-size", "2", "--max-length", "48", "--eval-every", "2",
            "--log-every", "1", "--lr", "1e-3", "--no-progress", *extra]


def finetune_main(argv):
    """``python -m numpy_bert ARGV``, in process."""
    return cli_main(argv, backend=NumpyBackend)


def torch_finetune_main(argv):
    """``python -m torch_bert ARGV``, in process."""
    return cli_main(argv, backend=TorchBackend)


BACKENDS = {"numpy_bert": finetune_main, "torch_bert": torch_finetune_main}
NEW_HEADS = {"classify": "classifier.bias, classifier.weight", "tag": "classifier.bias, classifier.weight",
             "qa": "qa_outputs.bias, qa_outputs.weight"}


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("task", ["classify", "tag", "qa"])
def test_finetune_end_to_end(tmp_path, pretrained, data, backend, task, caplog, capsys):
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="numpy_bert"):
        assert BACKENDS[backend](finetune_args(task, pretrained, data, out)) == 0
    assert f"newly initialised (not in the checkpoint): {NEW_HEADS[task]}" in caplog.text
    printed = capsys.readouterr().out
    assert "step 2: validation loss" in printed and "step 3: validation loss" in printed
    for name in ("metrics.json", "metrics.jsonl", "misclassified.jsonl", "args.json", "model.safetensors",
                 "config.json", "vocab.txt", "plots/loss.png", "plots/validation.png"):
        assert (out / name).is_file(), name
    assert (out / "plots/confusion_matrix.png").is_file() == (task != "qa")
    report = json.loads((out / "metrics.json").read_text())
    assert report["backend"] == backend and report["eval"]["step"] == 3
    assert report["new_head_tensors"] == NEW_HEADS[task].split(", ")
    main_metric = {"classify": "accuracy", "tag": "f1", "qa": "f1"}[task]
    assert 0 <= report["eval"][main_metric] <= 1
    wrong = [json.loads(line) for line in (out / "misclassified.jsonl").read_text().splitlines()]
    assert all(row["where"].startswith(data[task][1]) and "predicted" in row for row in wrong)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3]
    assert [r["step"] for r in rows if r["split"] == "validation"] == [2, 3]


def test_module_entry_point_prints_the_notice(tmp_path, pretrained, data):
    """Run as a program (no logging set up), the notice of the new head tensors reaches the terminal."""
    argv = finetune_args("qa", pretrained, data, tmp_path / "run")
    done = subprocess.run([sys.executable, "-m", "numpy_bert", *argv], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "newly initialised (not in the checkpoint): qa_outputs.bias, qa_outputs.weight" in done.stderr
    assert "ignored (the model has no such head): bert.pooler.dense.bias" in done.stderr
    assert "done: " in done.stdout


def test_finetuned_model_loads_in_transformers_and_distils(tmp_path, pretrained, data, caplog):
    teacher = tmp_path / "teacher"
    assert finetune_main(finetune_args("classify", pretrained, data, teacher)) == 0
    model, info = transformers.BertForSequenceClassification.from_pretrained(teacher, output_loading_info=True)
    assert not any(info.values()) and model.config.id2label == {0: "files", 1: "lists"}
    for backend, run in BACKENDS.items():
        out = tmp_path / f"student-{backend}"
        assert run(finetune_args("classify", pretrained, data, out, "--distill-from", str(teacher),
                                 "--temperature", "3", "--alpha", "0.7")) == 0
        assert json.loads((out / "metrics.json").read_text())["distilled_from"] == str(teacher)


@pytest.mark.parametrize("change, message", [
    (dict(distill_from="pretrained"), r"the teacher's labels None are not the training file's \['files', 'lists'\]"),
    (dict(eval_rows=[{"text": "x", "label": "sets"}]), r"eval\.jsonl:1: label 'sets' does not occur"),
    (dict(train_rows=[{"text": "x"}]), r"train\.jsonl:1: missing field 'label'"),
])
def test_finetune_errors_exit_2_with_the_place(tmp_path, pretrained, data, capsys, change, message):
    train = write_jsonl(tmp_path / "train.jsonl", change.get("train_rows", CLASSIFY))
    evaluation = write_jsonl(tmp_path / "eval.jsonl", change.get("eval_rows", CLASSIFY))
    extra = ["--distill-from", str(pretrained)] if "distill_from" in change else []
    argv = finetune_args("classify", pretrained, {"classify": (str(train), str(evaluation))}, tmp_path / "run", *extra)
    assert finetune_main(argv) == 2
    assert re.search(message, capsys.readouterr().err)


def test_run_folder_is_not_overwritten(tmp_path, pretrained, data, capsys):
    out = tmp_path / "run"
    assert finetune_main(finetune_args("tag", pretrained, data, out)) == 0
    assert finetune_main(finetune_args("tag", pretrained, data, out)) == 2
    assert "already holds a finetune run" in capsys.readouterr().err


def test_demo_data_command(tmp_path, capsys, monkeypatch):
    corpus = Corpus([Document(f"topic:t{i}", ("Use sys.path here.", "Then call run() now.", "Plain words.",
                                              "More plain words.")) for i in range(4)])
    monkeypatch.setattr("numpy_bert.data.demo_tasks.load_default_corpus", lambda: corpus)
    assert finetune_main(["demo-data", "--task", "qa", "--out", str(tmp_path), "--train-size", "5"]) == 0
    assert "python -m numpy_bert finetune --task qa" in capsys.readouterr().out
    assert len(read_examples(tmp_path / "qa-train.jsonl", "qa")) >= 1


def test_torch_demo_data_command(tmp_path, monkeypatch):
    corpus = Corpus([Document(f"module:json.m{i}", ("Use sys.path here.", "Then call run() now.")) for i in range(4)])
    monkeypatch.setattr("numpy_bert.data.demo_tasks.load_default_corpus", lambda: corpus)
    assert torch_finetune_main(["demo-data", "--task", "tag", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tag-eval.jsonl").is_file()
