"""numpy_bert.pipeline and torch_bert.pipeline against transformers' own pipelines.

Both backends and ``transformers.pipeline(task, model=folder, tokenizer=folder, device="cpu")``
read the same checkpoints: tiny random BERTs that numpy_bert writes (BertForPreTraining and
the three fine-tuning heads, with id2label), run folders written by ``finetune``, and the
real all-MiniLM-L6-v2. Everything runs in float32: tokens, labels, words, character spans
and answers must be equal, and every score within SCORE_TOLERANCE = 1e-5 (absolute: scores
are probabilities); feature vectors within 1e-5, relative and absolute.

transformers 5 dropped its question-answering pipeline. The reference for QA is therefore
the algorithm of its last one (4.x), written out below (:func:`reference_qa`) on
transformers' own tokenizer (windows, offsets and words from the Rust ``tokenizers``) and
transformers' BertForQuestionAnswering; only the scoring (softmaxes, outer product, merging
of equal answers) is done here.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy_bert
import torch_bert
from numpy_bert import BertConfig, BertTokenizer
from numpy_bert.cli.main import main as cli_main
from numpy_bert.training.pretraining import NumpyBackend

SCORE_TOLERANCE = 1e-5
FEATURE_TOLERANCE = 1e-5
LIBRARIES = {"numpy_bert": numpy_bert.pipeline, "torch_bert": torch_bert.pipeline}
HYPOTHESIS = settings(max_examples=20, deadline=None)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(
    "the a of is in on and to what where who which capital city country paris france london river "
    "list tuple python code file read write open close call join path cat dog sat mat big small red blue "
    ". , ! ? ' ( ) - play run jump ##ing ##s ##ed ##er cr ##eme br ##ule ##e os").split()]
TAGS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "B-CODE", 6: "I-CODE"}
CLASSES = {0: "files", 1: "lists", 2: "paths"}
# Words for random text: in the vocabulary, cut into pieces, cased, accented, unknown, punctuation.
WORDS = [w for w in VOCAB[5:] if not w.startswith("##")] + [
    "Paris", "FRANCE", "playing", "jumped", "runs", "Crème", "brûlée", "cafe\u0301", "xyz", "Zürich", "os.path",
    "don't", "(paths)", "中文", "naïve", "London's", "the\u0301", "pa\u0300ris", "ca\u0301t"]
SEPARATORS = [" ", " ", " ", "  ", "", "\t", "\n"]


def words_text(words: list[str], separators: list[str]) -> str:
    return "".join(w + s for w, s in zip(words, separators)).strip() or "the"


texts = st.builds(words_text, st.lists(st.sampled_from(WORDS), min_size=1, max_size=14),
                  st.lists(st.sampled_from(SEPARATORS), min_size=14, max_size=14))
short_texts = st.builds(words_text, st.lists(st.sampled_from(WORDS), min_size=1, max_size=4), st.just([" "] * 4))


@st.composite
def masked_texts(draw) -> str:
    """A random text with one or two [MASK]s among its words."""
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=10))
    for _ in range(draw(st.integers(1, 2))):
        words.insert(draw(st.integers(0, len(words))), "[MASK]")
    return words_text(words, draw(st.lists(st.sampled_from(SEPARATORS[:4]), min_size=12, max_size=12)))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    """Tiny random checkpoints, each with its vocabulary: a pre-trained BERT and three fine-tuned heads."""
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, initializer_range=0.5)
    models = {"mlm": numpy_bert.BertForPreTraining(config, seed=0),
              "classify": numpy_bert.BertForSequenceClassification(config, seed=1, id2label=CLASSES),
              "regress": numpy_bert.BertForSequenceClassification(config, seed=2, num_labels=1),
              "tag": numpy_bert.BertForTokenClassification(config, seed=3, id2label=TAGS),
              "qa": numpy_bert.BertForQuestionAnswering(config, seed=4)}
    paths = {}
    for name, model in models.items():
        paths[name] = str(tmp_path_factory.mktemp(name))
        model.save_pretrained(paths[name])
        BertTokenizer(vocab=VOCAB).save_pretrained(paths[name])
    return paths


@pytest.fixture(scope="module", params=list(LIBRARIES))
def library(request, one_torch_thread):
    """``pipeline(task, folder)`` of one backend, each pipeline built once (``.pipeline``: that backend's own)."""
    built = {}

    def make(task: str, folder: str):
        if (task, folder) not in built:
            built[task, folder] = LIBRARIES[request.param](task, model=folder)
        return built[task, folder]
    make.pipeline = LIBRARIES[request.param]
    return make


@pytest.fixture(scope="module")
def reference():
    """transformers.pipeline(task, folder), each built once."""
    transformers.logging.set_verbosity_error()
    built = {}

    def make(task: str, folder: str):
        if (task, folder) not in built:
            built[task, folder] = transformers.pipeline(task, model=folder, tokenizer=folder, device="cpu")
        return built[task, folder]
    return make


def assert_same(ours, expected, where: str = "result") -> None:
    """The same nesting and values; a "score" within SCORE_TOLERANCE."""
    if isinstance(expected, list):
        assert isinstance(ours, list) and len(ours) == len(expected), f"{where}: {ours} != {expected}"
        for i, (a, b) in enumerate(zip(ours, expected)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, dict):
        assert isinstance(ours, dict) and ours.keys() == expected.keys(), f"{where}: {ours} != {expected}"
        for key, value in expected.items():
            if key == "score":
                assert abs(ours[key] - float(value)) <= SCORE_TOLERANCE, f"{where}.score: {ours} != {expected}"
            else:
                assert ours[key] == value, f"{where}.{key}: {ours} != {expected}"
    else:
        assert ours == expected, f"{where}: {ours!r} != {expected!r}"


# ---- the tokens' characters (what token classification and QA point back with) ------------------


@pytest.fixture(scope="module")
def tokenizers(minilm_dir):
    """The real uncased BERT vocabulary, in both tokenizers."""
    return BertTokenizer.from_pretrained(minilm_dir), transformers.AutoTokenizer.from_pretrained(minilm_dir)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(exclude_categories=["Cs"]), max_size=30) | texts)
def test_token_spans_are_transformers_offsets_and_words(tokenizers, text):
    """BertTokenizer.tokenize_with_spans gives transformers' tokens, offset_mapping and word_ids(), exactly."""
    ours, reference = tokenizers
    theirs = reference(text, add_special_tokens=False, return_offsets_mapping=True)
    assert [s.token for s in ours.tokenize_with_spans(text)] == reference.convert_ids_to_tokens(theirs["input_ids"])
    assert [(s.start, s.end) for s in ours.tokenize_with_spans(text)] == [tuple(o) for o in theirs["offset_mapping"]]
    assert [s.word for s in ours.tokenize_with_spans(text)] == theirs.word_ids()


# ---- fill-mask -------------------------------------------------------------------------------


@HYPOTHESIS
@given(text=masked_texts(), top_k=st.integers(1, 6))
def test_fill_mask_matches_transformers(library, reference, folders, text, top_k):
    """One [MASK]: a list of candidates; two: a list per mask (special tokens kept in the sequence).
    Same tokens and sequences, scores within 1e-5."""
    assert_same(library("fill-mask", folders["mlm"])(text, top_k=top_k),
                reference("fill-mask", folders["mlm"])(text, top_k=top_k))


def test_fill_mask_takes_lists(library, reference, folders):
    texts = ["The [MASK] sat on the mat.", "Paris is the [MASK] of France, [MASK] ?"]
    for inputs in (texts, texts[:1]):  # a list of one text gives that text's result alone, as transformers
        assert_same(library("fill-mask", folders["mlm"])(inputs), reference("fill-mask", folders["mlm"])(inputs))


def test_fill_mask_reads_a_transformers_masked_lm(library, reference, folders, tmp_path):
    """A BertForMaskedLM folder (no NSP head, no pooler) written by transformers."""
    transformers.BertForMaskedLM.from_pretrained(folders["mlm"]).save_pretrained(tmp_path)
    BertTokenizer(vocab=VOCAB).save_pretrained(tmp_path)
    text = "The [MASK] sat on the mat."
    assert_same(library.pipeline("fill-mask", tmp_path)(text), reference("fill-mask", str(tmp_path))(text))


# ---- feature extraction ----------------------------------------------------------------------


def assert_features(ours, expected) -> None:
    ours, expected = np.asarray(ours), np.asarray(expected)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=FEATURE_TOLERANCE, atol=FEATURE_TOLERANCE)


@HYPOTHESIS
@given(text=texts)
def test_feature_extraction_matches_transformers(library, reference, folders, text):
    """Nested lists of shape 1 x T x C, [CLS] and [SEP] included, within 1e-5."""
    assert_features(library("feature-extraction", folders["mlm"])(text),
                    reference("feature-extraction", folders["mlm"])(text))


def test_feature_extraction_of_minilm(library, reference, minilm_dir):
    """The real all-MiniLM-L6-v2 (6 layers, 384 wide), by name and by folder, within 1e-5."""
    texts = ["A list is a mutable sequence.", "Crème brûlée costs 5€ in Zürich 🙂", "Москва — столица России.",
             "東京は日本の首都です。"]
    ours = library("feature-extraction", "minilm")(texts)
    expected = reference("feature-extraction", minilm_dir)(texts)
    assert len(ours) == len(expected) == 4 and np.asarray(ours[0]).shape[2] == 384
    for a, b in zip(ours, expected):
        assert_features(a, b)
    tensor = library("feature-extraction", minilm_dir)(texts[0], return_tensors=True)
    assert isinstance(tensor, np.ndarray) and tensor.shape == np.asarray(expected[0]).shape


# ---- text classification ---------------------------------------------------------------------

OPTIONS = [{}, {"top_k": 2}, {"top_k": None}, {"function_to_apply": "sigmoid"}, {"function_to_apply": "none"}]


@HYPOTHESIS
@given(text=texts, pair=texts, options=st.sampled_from(OPTIONS))
def test_text_classification_matches_transformers(library, reference, folders, text, pair, options):
    """Labels from config.id2label; top_k as transformers (absent: the best as a dict; None: all labels);
    a single text, a text pair, and a list of both. Same labels in the same order, scores within 1e-5."""
    ours, theirs = library("text-classification", folders["classify"]), reference("text-classification",
                                                                                  folders["classify"])
    for inputs in (text, {"text": text, "text_pair": pair}, [text, {"text": text, "text_pair": pair}]):
        assert_same(ours(inputs, **options), theirs(inputs, **options))


def test_one_output_is_a_sigmoid(library, reference, folders):
    """num_labels == 1: sigmoid of the one logit, named LABEL_0 (transformers' default name)."""
    for options in ({}, {"top_k": None}):
        assert_same(library("sentiment-analysis", folders["regress"])("the cat sat", **options),
                    reference("sentiment-analysis", folders["regress"])("the cat sat", **options))


# ---- token classification --------------------------------------------------------------------


@HYPOTHESIS
@given(text=texts, strategy=st.sampled_from(["none", "simple", "first", "average", "max"]),
       ignore=st.sampled_from([None, [], ["O", "B-LOC"]]))
def test_token_classification_matches_transformers(library, reference, folders, text, strategy, ignore):
    """Entities with entity (or entity_group), score, index, word, start and end, for every strategy:
    all equal, scores within 1e-5."""
    options = {"aggregation_strategy": strategy, "ignore_labels": ignore}
    assert_same(library("ner", folders["tag"])(text, **options), reference("ner", folders["tag"])(text, **options))


def test_token_classification_of_hard_text(library, reference, folders):
    """Pieces, cased and accented words, an accent written as a combining mark, unknown words, a list."""
    text = "Paris   is in FRANCE ; playing with Crème brûlée , cafe\u0301 pa\u0300ris and xyz os.path.join(paths) 中文!"
    for strategy in ("none", "simple", "first", "average", "max"):
        assert_same(library("ner", folders["tag"])([text, "the"], aggregation_strategy=strategy, ignore_labels=[]),
                    reference("ner", folders["tag"])([text, "the"], aggregation_strategy=strategy, ignore_labels=[]))


# ---- question answering ----------------------------------------------------------------------


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


@functools.cache
def transformers_qa(folder: str):
    transformers.logging.set_verbosity_error()
    return (transformers.AutoTokenizer.from_pretrained(folder),
            transformers.AutoModelForQuestionAnswering.from_pretrained(folder).eval())


def reference_qa(folder: str, question: str, context: str, top_k: int = 1, max_answer_len: int = 15,
                 max_seq_len: int = 384, doc_stride: int = 128, handle_impossible_answer: bool = False,
                 align_to_words: bool = True):
    """transformers 4.x's QuestionAnsweringPipeline, its steps done again on transformers' tokenizer and model.

    One difference is kept out: when a window holds fewer than top_k possible spans,
    transformers also returns spans of score 0 that start at [CLS]; this does not.
    """
    tokenizer, model = transformers_qa(folder)
    encoded = tokenizer(question, context, truncation="only_second", max_length=max_seq_len, stride=doc_stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    answers, null_score = [], 1e6
    for window, encoding in enumerate(encoded.encodings):
        inputs = {k: torch.tensor([encoded[k][window]]) for k in ("input_ids", "token_type_ids", "attention_mask")}
        with torch.no_grad():
            out = model(**inputs)
        in_context = np.array([s == 1 for s in encoding.sequence_ids])
        scored = in_context.copy()
        scored[0] = True  # [CLS] is in the softmax
        p_start, p_end = (softmax(np.where(scored, logits[0].numpy(), -10000.0))
                          for logits in (out.start_logits, out.end_logits))
        null_score = min(null_score, float(p_start[0] * p_end[0]))
        p_start[0] = p_end[0] = 0.0
        table = np.tril(np.triu(np.outer(p_start, p_end)), max_answer_len - 1)  # (T, T): i <= j < i + max_answer_len
        T = len(p_start)
        for flat in np.argsort(-table, axis=None, kind="stable")[:2 * top_k + 10 if align_to_words else top_k]:
            i, j = divmod(int(flat), T)
            if not (in_context[i] and in_context[j] and table[i, j] > 0):
                continue
            if align_to_words:
                start = encoding.word_to_chars(encoding.token_to_word(i), sequence_index=1)[0]
                end = encoding.word_to_chars(encoding.token_to_word(j), sequence_index=1)[1]
            else:
                start, end = encoding.offsets[i][0], encoding.offsets[j][1]
            same = [a for a in answers if a["answer"].lower() == context[start:end].lower()]
            if same:
                same[0]["score"] += float(table[i, j])
            else:
                answers.append({"score": float(table[i, j]), "start": start, "end": end, "answer": context[start:end]})
    if handle_impossible_answer:
        answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
    return answers[0] if len(answers) == 1 else answers


@HYPOTHESIS
@given(question=texts, context=texts, top_k=st.integers(1, 3), align_to_words=st.booleans(),
       handle_impossible_answer=st.booleans())
def test_question_answering_matches_transformers(library, folders, question, context, top_k, align_to_words,
                                                 handle_impossible_answer):
    """score = p_start(i) * p_end(j), summed over the spans that give the same text; spans of whole words.
    Same answers and characters, scores within 1e-5."""
    options = {"top_k": top_k, "align_to_words": align_to_words, "handle_impossible_answer": handle_impossible_answer}
    assert_same(library("question-answering", folders["qa"])(question=question, context=context, **options),
                reference_qa(folders["qa"], question, context, **options))


@HYPOTHESIS
@given(question=short_texts, context=st.lists(texts, min_size=2, max_size=4).map(" ".join),
       max_seq_len=st.integers(12, 24), doc_stride=st.integers(0, 5), max_answer_len=st.integers(1, 4))
def test_long_contexts_are_read_in_overlapping_windows(library, folders, question, context, max_seq_len,
                                                       doc_stride, max_answer_len):
    """A context longer than max_seq_len: windows overlapping by doc_stride, answers merged across them."""
    qa = library("question-answering", folders["qa"])
    room = max_seq_len - len(qa.tokenizer.tokenize(question)) - 3  # context tokens per window
    if room < 1:  # tokenizers refuses to truncate, and so do we
        with pytest.raises(ValueError, match="leaves no room for the context"):
            qa(question=question, context=context, max_seq_len=max_seq_len)
        return
    options = {"max_seq_len": max_seq_len, "doc_stride": doc_stride % room, "max_answer_len": max_answer_len,
               "top_k": 2}
    assert_same(qa(question=question, context=context, **options), reference_qa(folders["qa"], question, context,
                                                                                  **options))


def test_question_answering_inputs(library, folders):
    """Dicts, lists of questions for one context, and one question per context; lists of one give one answer."""
    qa = library("question-answering", folders["qa"])
    context = "Paris is the capital city of France."
    one = qa(question="what is the capital of france ?", context=context)
    assert one == qa({"question": "what is the capital of france ?", "context": context})
    assert one == qa(question=["what is the capital of france ?"], context=context)
    assert context[one["start"]:one["end"]] == one["answer"]
    many = qa(question=["what is the capital ?", "where is paris ?"], context=[context, "paris is in france ."])
    assert isinstance(many, list) and len(many) == 2
    assert many[0] == qa(question="what is the capital ?", context=context)


# ---- fine-tuning run folders -----------------------------------------------------------------

RUN_DATA = {
    "classify": [{"text": "read the file", "label": "files"}, {"text": "join the path", "label": "paths"},
                 {"text": "sort the list", "label": "lists"}, {"text": "open and close the file", "label": "files"}],
    "tag": [{"tokens": ["call", "os", ".", "path", "now"], "tags": ["O", "B-CODE", "I-CODE", "I-CODE", "O"]},
            {"tokens": ["paris", "is", "in", "france"], "tags": ["B-LOC", "O", "O", "B-LOC"]}],
    "qa": [{"question": "what is the capital ?", "context": "paris is the capital city .", "answer": "paris"},
           {"question": "what do we call ?", "context": "we call os . path now .", "answer": "os . path"}],
}
RUN_TASKS = {"classify": "text-classification", "tag": "token-classification", "qa": "question-answering"}


@pytest.fixture(scope="module")
def run_folders(tmp_path_factory, folders) -> dict[str, str]:
    """``python -m numpy_bert finetune`` runs (3 steps) from the tiny pre-trained BERT, one per task."""
    runs = {}
    for task, rows in RUN_DATA.items():
        data = tmp_path_factory.mktemp(f"{task}-data") / "train.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        runs[task] = str(tmp_path_factory.mktemp(f"{task}-run") / "run")
        argv = ["finetune", "--task", task, "--model", folders["mlm"], "--train", str(data), "--eval", str(data),
                "--out", runs[task], "--steps", "3", "--batch-size", "2", "--max-length", "32", "--no-progress"]
        assert cli_main(argv, backend=NumpyBackend) == 0
    return runs


@pytest.mark.parametrize("task", list(RUN_TASKS))
def test_finetuned_run_folders_load(library, reference, run_folders, task):
    """A finetune run folder (config.json with id2label, model.safetensors, vocab.txt) is a pipeline's model."""
    folder, name = run_folders[task], RUN_TASKS[task]
    pipe = library(name, folder)
    assert pipe.task == name and pipe.tokenizer.vocab == BertTokenizer.from_pretrained(folder).vocab
    if task == "qa":
        assert_same(pipe(question="what is the capital ?", context="paris is the capital city ."),
                    reference_qa(folder, "what is the capital ?", "paris is the capital city ."))
    else:
        text = "call os . path in paris"
        options = {"aggregation_strategy": "simple"} if task == "tag" else {"top_k": None}
        assert_same(pipe(text, **options), reference(name, folder)(text, **options))
        labels = {"classify": {"files", "lists", "paths"}, "tag": {"O", "B-CODE", "I-CODE", "B-LOC"}}[task]
        assert set(pipe.model.config.id2label.values()) == labels


# ---- the pipeline object and its errors ------------------------------------------------------


def test_the_pipeline_object(library, folders):
    """Like transformers': .task (aliases resolved), .model (the backend's class), .tokenizer; options as defaults."""
    ner = library("ner", folders["tag"])
    assert ner.task == "token-classification" and type(ner.model).__name__ == "BertForTokenClassification"
    assert isinstance(ner.tokenizer, BertTokenizer)
    assert isinstance(ner.model, (numpy_bert.BertForTokenClassification, torch_bert.BertForTokenClassification))
    grouped = library.pipeline("ner", folders["tag"], aggregation_strategy="simple", ignore_labels=[])
    assert grouped("paris is in france") == ner("paris is in france", aggregation_strategy="simple", ignore_labels=[])


@pytest.mark.parametrize("task, model, call, message", [
    ("translation", "mlm", None, r"unknown task 'translation': the tasks are feature-extraction, fill-mask"),
    ("fill-mask", "minilm", None, r"has no fill-mask head \(no cls\.predictions\.\* tensors\).*pre-train it first"),
    ("text-classification", "mlm", None, r"has no text-classification head \(no classifier\.\* tensors\).*"
                                         r"finetune --task classify"),
    ("token-classification", "qa", None, r"has no token-classification head.*finetune --task tag"),
    ("question-answering", "tag", None, r"has no question-answering head \(no qa_outputs\.\* tensors\)"),
    ("fill-mask", "mlm", lambda p: p("no mask here"), r"the text has no \[MASK\] token to fill"),
    ("fill-mask", "mlm", lambda p: p("a [MASK]", top_k=0), r"top_k \(--top-k\) must be between 1 and"),
    ("fill-mask", "mlm", lambda p: p("a [MASK]", topk=3), r"the fill-mask pipeline has no option 'topk'; "
                                                          r"its options: top_k"),
    ("ner", "tag", lambda p: p("a", aggregation_strategy="longest"), r"aggregation_strategy must be one of"),
    ("text-classification", "classify", lambda p: p("the " * 80), r"has 82 tokens, more than the 64.*truncation=True"),
    ("text-classification", "classify", lambda p: p(3), r"expected a str or dict or a non-empty list"),
    ("question-answering", "qa", lambda p: p(question="what ?"), r"needs question= and context="),
    ("question-answering", "qa", lambda p: p(question="the " * 30, context="a", max_seq_len=20),
     r"the question has 30 tokens, which leaves no room for the context in max_seq_len=20"),
    ("question-answering", "qa", lambda p: p(question="the", context="the " * 30, max_seq_len=20, doc_stride=16),
     r"doc_stride=16 must be at least 0 and less than the 16 context tokens that fit beside the question"),
])
def test_bad_input_is_one_clear_error(library, folders, task, model, call, message):
    with pytest.raises(ValueError, match=message):
        call(library(task, folders.get(model, model))) if call else library(task, folders.get(model, model))


def test_long_inputs_with_truncation(library, reference, folders):
    """truncation=True cuts to the model's 64 positions; token classification always does, as transformers."""
    text = "the cat sat on the mat . " * 12
    features = library("feature-extraction", folders["mlm"])(text, truncation=True)
    assert np.asarray(features).shape == (1, 64, 16)
    assert len(library("text-classification", folders["classify"])(text, truncation=True)) == 1
    tagged = library("ner", folders["tag"])(text, ignore_labels=[])
    assert [t["index"] for t in tagged] == list(range(1, 63))
