"""Token classification (NER, tagging): a label per token, or entities of adjacent tokens, as transformers gives them.

Each token knows the characters it came from (``BertTokenizer.tokenize_with_spans``, the
same offsets transformers' fast tokenizer computes), so every entity points back into
the text with ``start`` and ``end``.
"""

from __future__ import annotations

import numpy as np

from ..layers import log_softmax
from .auto import TaskModel
from .base import FINETUNE, Pipeline, as_list
from .text_classification import label_names

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """transformers' ``pipeline("token-classification")`` (alias ``"ner"``).

    ``aggregation_strategy``, with transformers' meanings:

    * ``"none"``: one ``{"entity", "score", "index", "word", "start", "end"}`` per token
      ([CLS] and [SEP] left out), ``word`` being the token (``##`` piece or not);
    * ``"simple"``: adjacent tokens with the same tag (``I-X`` after ``B-X`` or ``I-X``; a
      ``B-`` starts a new entity) become one ``{"entity_group", "score", "word", "start", "end"}``,
      the score the mean of theirs;
    * ``"first"``, ``"average"``, ``"max"``: first the pieces of each word agree on one label
      (the first piece's, the mean scores' best, the most confident piece's), then as "simple".

    Tokens or entities whose label is in ``ignore_labels`` (default ``["O"]``) are left out.
    A text longer than the model takes is cut to fit, as in transformers.
    """

    task = "token-classification"
    models = {"bert": TaskModel("BertForTokenClassification", heads=("classifier.",))}
    advice = "fine-tune it first: " + FINETUNE.format(task="tag")

    def run(self, inputs: str | list[str], *, aggregation_strategy: str = "none",
            ignore_labels: list[str] | None = None) -> list:
        texts, single = as_list(inputs)
        strategy = str(aggregation_strategy).lower()
        if strategy not in STRATEGIES:
            raise ValueError(f"aggregation_strategy must be one of {STRATEGIES}, got {aggregation_strategy!r}")
        ignore = ["O"] if ignore_labels is None else ignore_labels
        results = []
        for text in texts:
            entities = self.aggregate(self.token_predictions(text), strategy)
            results.append([e for e in entities if e.get("entity", e.get("entity_group")) not in ignore])
        return results[0] if single else results

    def token_predictions(self, text: str) -> list[dict]:
        """Per token of the text: its word, label probabilities, characters, index in the input, and whether
        it continues a word (transformers' test: its text is not as long as the token)."""
        spans = self.tokenizer.tokenize_with_spans(text)[: self.max_length - 2]  # room for [CLS] and [SEP]
        ids = [self.tokenizer.cls_token_id, *self.tokenizer.convert_tokens_to_ids([s.token for s in spans]),
               self.tokenizer.sep_token_id]
        inputs = np.array([ids])  # (1, T)
        logits = self.forward(input_ids=inputs, attention_mask=np.ones_like(inputs),
                              token_type_ids=np.zeros_like(inputs))["logits"][0]  # (T, K)
        probs = np.exp(log_softmax(logits))
        predictions = []
        for index, span in enumerate(spans, start=1):
            unknown = span.token == self.tokenizer.unk_token  # its word is the text itself
            original = text[span.start:span.end]
            predictions.append({"word": original if unknown else span.token, "scores": probs[index],
                                "start": span.start, "end": span.end, "index": index,
                                "is_subword": not unknown and len(span.token) != len(original)})
        return predictions

    def aggregate(self, tokens: list[dict], strategy: str) -> list[dict]:
        names = label_names(self.model.config)
        if strategy in ("none", "simple"):
            entities = [{"entity": names[int(t["scores"].argmax())], "score": float(t["scores"].max()),
                         "index": t["index"], "word": t["word"], "start": t["start"], "end": t["end"]}
                        for t in tokens]
        else:
            entities = [self.word_entity(word, strategy, names) for word in _words(tokens)]
        return entities if strategy == "none" else self.group_entities(entities)

    def word_entity(self, pieces: list[dict], strategy: str, names: dict[int, str]) -> dict:
        """One label for all the pieces of a word."""
        if strategy == "first":
            scores = pieces[0]["scores"]
        elif strategy == "max":
            scores = max(pieces, key=lambda p: p["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean([p["scores"] for p in pieces], axis=0)
        best = int(scores.argmax())
        return {"entity": names[best], "score": float(scores[best]),
                "word": self.tokenizer.convert_tokens_to_string([p["word"] for p in pieces]),
                "start": pieces[0]["start"], "end": pieces[-1]["end"]}

    def group_entities(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities of one tag as one: an ``I-`` (or untagged) label continues a run of its tag."""
        groups: list[list[dict]] = []
        for entity in entities:
            bio, tag = _bio(entity["entity"])
            if groups and bio != "B" and tag == _bio(groups[-1][-1]["entity"])[1]:
                groups[-1].append(entity)
            else:
                groups.append([entity])
        return [{"entity_group": group[0]["entity"].split("-", 1)[-1],
                 "score": float(np.nanmean([e["score"] for e in group])),
                 "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in group]),
                 "start": group[0]["start"], "end": group[-1]["end"]} for group in groups]


def _bio(label: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER", ("I", "PER") for "I-PER", and ("I", label) for a label without a prefix."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _words(tokens: list[dict]) -> list[list[dict]]:
    """The tokens grouped into words: a token that continues a word joins the one before."""
    words: list[list[dict]] = []
    for token in tokens:
        if words and token["is_subword"]:
            words[-1].append(token)
        else:
            words.append([token])
    return words
