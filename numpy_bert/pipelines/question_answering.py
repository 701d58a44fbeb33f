"""Extractive question answering: the span of the context that answers the question, as transformers gave it.

transformers 5 removed its question-answering pipeline; this follows the last one (4.x)
step for step, so its answers and scores are those of ``pipeline("question-answering")``:

1. ``[CLS] question [SEP] context [SEP]``; a context too long for ``max_seq_len`` is cut
   into windows of the tokens that fit, each overlapping the one before by ``doc_stride``
   tokens (tokenizers' overflowing windows).
2. In each window, p_start and p_end are softmaxes over the window's context tokens and
   [CLS], and a span's score is p_start(i) * p_end(j). The ``2 top_k + 10`` best spans
   (:func:`numpy_bert.heads.best_spans`: i <= j < i + max_answer_len, context tokens only)
   become answers.
3. With ``align_to_words`` a span widens to the whole words of its first and last tokens.
   Answers with the same text (ignoring case), from any span of any window, add their scores.
4. The ``top_k`` best answers; with ``handle_impossible_answer``, the empty answer too,
   scored p_start([CLS]) * p_end([CLS]) (its lowest over the windows).

One difference: when a context has fewer possible spans than asked for, transformers pads
its list with spans of score 0 that start at [CLS]; here the list is shorter.
"""

from __future__ import annotations

import numpy as np

from ..heads import best_spans
from ..layers import log_softmax
from ..text.tokenization import TokenSpan
from .auto import TaskModel
from .base import FINETUNE, Pipeline


class QuestionAnsweringPipeline(Pipeline):
    """transformers' ``pipeline("question-answering")``: ``{"score", "start", "end", "answer"}``.

    Call it with ``question=`` and ``context=`` (strings, or lists: one context per question,
    or one context for every question), or with ``{"question", "context"}`` dicts. ``start``
    and ``end`` are characters of the context: ``context[start:end] == answer``. One question
    gives a dict (a list of them for ``top_k`` > 1), several a list of those.
    """

    task = "question-answering"
    models = {"bert": TaskModel("BertForQuestionAnswering", heads=("qa_outputs.",))}
    advice = "fine-tune it first: " + FINETUNE.format(task="qa")

    def run(self, inputs: dict | list[dict] | None = None, *, question: str | list[str] | None = None,
            context: str | list[str] | None = None, top_k: int = 1, max_answer_len: int = 15,
            max_seq_len: int | None = None, doc_stride: int | None = None, handle_impossible_answer: bool = False,
            align_to_words: bool = True):
        examples = _examples(inputs, question, context)
        for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        max_seq_len = max_seq_len or min(self.max_length, 384)
        doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
        results = [self.answer(q, c, top_k, max_answer_len, max_seq_len, doc_stride, handle_impossible_answer,
                               align_to_words) for q, c in examples]
        return results[0] if len(results) == 1 else results

    def answer(self, question: str, context: str, top_k: int, max_answer_len: int, max_seq_len: int,
               doc_stride: int, handle_impossible_answer: bool, align_to_words: bool) -> dict | list[dict]:
        question_ids = self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(question))
        spans = self.tokenizer.tokenize_with_spans(context)
        if not spans:
            raise ValueError(f"the context holds no token to answer from: {context!r:.80}")
        room = max_seq_len - len(question_ids) - 3  # context tokens per window, beside [CLS] question [SEP] ... [SEP]
        if room < 1:
            raise ValueError(f"the question has {len(question_ids)} tokens, which leaves no room for the context "
                             f"in max_seq_len={max_seq_len}: shorten the question or raise max_seq_len")
        if len(spans) > room and not 0 <= doc_stride < room:
            raise ValueError(f"doc_stride={doc_stride} must be at least 0 and less than the {room} context tokens "
                             f"that fit beside the question in max_seq_len={max_seq_len}")
        answers: list[dict] = []
        null_score = 1e6  # the empty answer's score: its lowest over the windows
        for window in _windows(len(spans), room, doc_stride):
            chunk = spans[window]
            candidates, null = self.score_spans(question_ids, chunk, max_answer_len,
                                                k=2 * top_k + 10 if align_to_words else top_k)  # some will merge
            null_score = min(null_score, null)
            for score, i, j in candidates:
                start, end = _characters(chunk, i, j, align_to_words)
                same = next((a for a in answers if a["answer"].lower() == context[start:end].lower()), None)
                if same:
                    same["score"] += score
                else:
                    answers.append({"score": score, "start": start, "end": end, "answer": context[start:end]})
        if handle_impossible_answer:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers

    def score_spans(self, question_ids: list[int], chunk: list[TokenSpan], max_answer_len: int,
                    k: int) -> tuple[list[tuple[float, int, int]], float]:
        """The ``k`` best spans of one window as (p_start(i) * p_end(j), i, j), i and j counted in ``chunk``,
        and the empty answer's score p_start([CLS]) * p_end([CLS])."""
        tok = self.tokenizer
        context_ids = tok.convert_tokens_to_ids([s.token for s in chunk])
        input_ids = np.array([[tok.cls_token_id, *question_ids, tok.sep_token_id, *context_ids, tok.sep_token_id]])
        first = len(question_ids) + 2  # the first context token
        token_type_ids = (np.arange(input_ids.shape[1]) >= first)[None].astype(np.int64)  # (1, T)
        out = self.forward(input_ids=input_ids, attention_mask=np.ones_like(input_ids), token_type_ids=token_type_ids)
        context_tokens = np.zeros(input_ids.shape[1], bool)
        context_tokens[first:first + len(chunk)] = True
        scored = context_tokens.copy()
        scored[0] = True  # [CLS] takes part in the softmax: it stands for "no answer"
        log_start, log_end = (log_softmax(np.where(scored, out[name][0], -np.inf))  # (T,) each
                              for name in ("start_logits", "end_logits"))
        spans = best_spans(out["start_logits"][0], out["end_logits"][0], max_answer_len, context_tokens, k)
        return ([(float(np.exp(log_start[i] + log_end[j])), i - first, j - first) for i, j in spans],
                float(np.exp(log_start[0] + log_end[0])))


def _examples(inputs, question, context) -> list[tuple[str, str]]:
    """(question, context) pairs from a dict, a list of dicts, or question= and context=."""
    if inputs is not None:
        if question is not None or context is not None:
            raise ValueError("give the inputs either as {'question', 'context'} dicts or as question= and context=")
        items = [inputs] if isinstance(inputs, dict) else inputs
        if not (isinstance(items, list) and items and all(isinstance(i, dict) for i in items)):
            raise ValueError(f"expected a {{'question', 'context'}} dict or a list of them, got {inputs!r:.80}")
        question, context = [i.get("question") for i in items], [i.get("context") for i in items]
    elif question is None or context is None:
        raise ValueError("question answering needs question= and context= (or {'question', 'context'} dicts)")
    questions = question if isinstance(question, list) else [question]
    contexts = context if isinstance(context, list) else [context] * len(questions)
    if len(contexts) != len(questions):
        raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts: give one context per question, "
                         "or a single context for all")
    for name, texts in (("question", questions), ("context", contexts)):
        for text in texts:
            if not isinstance(text, str) or not text:
                raise ValueError(f"each {name} must be a non-empty str, got {text!r:.80}")
    return list(zip(questions, contexts))


def _windows(n: int, room: int, stride: int) -> list[slice]:
    """The context's windows: ``room`` tokens each, from 0, each starting ``room - stride`` tokens after the one
    before, until one reaches the end (tokenizers' overflowing tokens with a stride)."""
    starts = [0]
    while starts[-1] + room < n:
        starts.append(starts[-1] + room - stride)
    return [slice(start, min(start + room, n)) for start in starts]


def _characters(chunk: list[TokenSpan], first: int, last: int, whole_words: bool) -> tuple[int, int]:
    """The characters of the context from token ``first`` to token ``last`` of a window, widened to whole
    words (as far as the window holds them, as transformers' word_to_chars) with ``whole_words``."""
    if not whole_words:
        return chunk[first].start, chunk[last].end
    return (min(s.start for s in chunk if s.word == chunk[first].word),
            max(s.end for s in chunk if s.word == chunk[last].word))
