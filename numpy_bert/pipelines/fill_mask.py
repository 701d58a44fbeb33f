"""Fill-mask: a masked-language-model head answering "what goes in [MASK]?", for either backend.

``fill_mask`` takes a ``predict(batch)`` callable (a backend's ``predict`` method) that
returns ``(mlm_logits, nsp_logits)`` as NumPy arrays, the MLM logits only at the
positions where ``batch["labels"] != -100``. :class:`FillMaskPipeline` is transformers'
``pipeline("fill-mask")`` on top of the same steps, for BERT and each family member
(RobertaForMaskedLM, AlbertForMaskedLM, ElectraForMaskedLM: the generator, DistilBertForMaskedLM,
by config.json's model_type: :mod:`numpy_bert.pipelines.auto`). The mask is the tokenizer's:
``[MASK]`` for WordPiece, ``<mask>`` for RoBERTa's byte-level BPE.
"""

from __future__ import annotations

import os

import numpy as np

from ..checkpoint import GENERATOR_DIR
from ..config import CONFIG_NAME, IGNORE_INDEX
from ..layers import log_softmax
from .auto import TaskModel, folder_model_type
from .base import Pipeline, as_list

ELECTRA_ADVICE = (f"give ELECTRA's generator (an ElectraForMaskedLM folder), or a train --objective electra run "
                  f"folder, whose {GENERATOR_DIR}/ fills masks")


def mask_probabilities(predict, tokenizer, text: str, max_length: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The text's input ids (T,) and, for each of its mask tokens in order, the MLM head's probabilities (masks, V).

    Each mask is predicted from the whole sentence at once (the masks do not see each
    other's predictions), which is how BERT's MLM head was trained. ``batch`` holds what the
    tokenizer gives (a byte-level BPE tokenizer gives no token_type_ids) and the labels.
    """
    encoding = tokenizer(text, truncation=True, max_length=max_length, return_tensors="np")
    input_ids = encoding["input_ids"]
    is_mask = input_ids == tokenizer.mask_token_id
    _check_masks_kept(tokenizer, text, int(is_mask.sum()), max_length)
    # The model computes MLM logits where labels are set; the values themselves are unused.
    batch = {**encoding, "labels": np.where(is_mask, tokenizer.mask_token_id, IGNORE_INDEX)}
    mlm_logits, _ = predict(batch)
    return input_ids[0], np.exp(log_softmax(mlm_logits))


def check_top_k(top_k: int, tokenizer) -> None:
    if not 1 <= top_k <= len(tokenizer):
        raise ValueError(f"top_k (--top-k) must be between 1 and the vocabulary size {len(tokenizer)}, got {top_k}")


def top_tokens(probs: np.ndarray, top_k: int) -> np.ndarray:
    """The ids of the ``top_k`` most likely tokens of each row, most likely first (ties: lower id).  (masks, top_k)"""
    return np.argsort(-probs, axis=-1, kind="stable")[:, :top_k]


def fill_mask(predict, tokenizer, text: str, top_k: int = 5,
              max_length: int = 512) -> list[list[tuple[str, float]]]:
    """The ``top_k`` most likely tokens, with probabilities, for each [MASK] of ``text``: one list per [MASK]."""
    check_top_k(top_k, tokenizer)
    _, probs = mask_probabilities(predict, tokenizer, text, max_length)
    return [[(tokenizer.convert_ids_to_tokens(int(i)), float(p[i])) for i in row]
            for p, row in zip(probs, top_tokens(probs, top_k))]


class FillMaskPipeline(Pipeline):
    """transformers' ``pipeline("fill-mask")``: ``{"score", "token", "token_str", "sequence"}`` per candidate.

    A text with one mask token (the tokenizer's: ``[MASK]``, or ``<mask>``) gives a list of
    ``top_k`` candidates, one with several masks a list of such lists (each mask predicted on
    its own, as in transformers). A list of texts gives one result per text. A text longer than
    the model takes is truncated (transformers fails on it); a mask cut off that way is a ValueError.

    The model is the masked-LM class of the folder's model_type, as transformers'
    AutoModelForMaskedLM: a pre-training checkpoint's sentence head (BERT's NSP, ALBERT's SOP) is
    left out. An ELECTRA run folder fills masks with its generator (generator/), a DistilBERT
    gets no token_type_ids; a folder without a masked-LM head is refused.
    """

    task = "fill-mask"
    models = {
        "bert": TaskModel("BertForMaskedLM", heads=("cls.predictions.",)),
        "roberta": TaskModel("RobertaForMaskedLM", heads=("lm_head.",)),
        "albert": TaskModel("AlbertForMaskedLM", heads=("predictions.",)),
        "electra": TaskModel("ElectraForMaskedLM", heads=("generator_predictions.", "generator_lm_head."),
                             advice=ELECTRA_ADVICE),
        "distilbert": TaskModel("DistilBertForMaskedLM", heads=("vocab_transform.", "vocab_layer_norm.",
                                                                 "vocab_projector."),
                                advice="give a DistilBertForMaskedLM folder (train --objective distillation "
                                       "writes one)"),
    }
    advice = "pre-train it first (python -m numpy_bert train --init-from MODEL)"

    @classmethod
    def weights_folder(cls, folder: str) -> str:
        """An ELECTRA run folder holds the discriminator, with no masked-LM head, and its generator in
        generator/ (the model that fills masks, as ``python -m numpy_bert fill-mask RUN`` uses it)."""
        generator = os.path.join(folder, GENERATOR_DIR)
        if folder_model_type(folder) == "electra" and os.path.isfile(os.path.join(generator, CONFIG_NAME)):
            return generator
        return folder

    def predict(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """A backend's ``predict``: MLM logits at the labelled positions (N, V), and no NSP logits."""
        out = self.forward(**batch, labelled_positions_only=True)
        return out["logits"], None

    def run(self, inputs: str | list[str], *, top_k: int = 5) -> list:
        texts, _ = as_list(inputs)
        check_top_k(top_k, self.tokenizer)
        results = [self.fill(text, top_k) for text in texts]
        return results[0] if len(results) == 1 else results  # a list of one text too, as transformers

    def fill(self, text: str, top_k: int) -> list:
        input_ids, probs = mask_probabilities(self.predict, self.tokenizer, text, self.max_length)
        positions = np.flatnonzero(input_ids == self.tokenizer.mask_token_id)
        # The sequence drops the padding; with one mask it drops every special token, with several it keeps
        # them, so that the other masks stay visible (transformers' rule, [CLS] and [SEP] or <s> and </s> too).
        single = len(positions) == 1
        results = []
        for position, p, best in zip(positions, probs, top_tokens(probs, top_k)):
            candidates = []
            for token in map(int, best):
                filled = input_ids.copy()
                filled[position] = token
                sequence = self.tokenizer.decode(filled[filled != self.tokenizer.pad_token_id],
                                                 skip_special_tokens=single)
                candidates.append({"score": float(p[token]), "token": token,
                                   "token_str": self.tokenizer.decode([token]), "sequence": sequence})
            results.append(candidates)
        return results[0] if single else results


def _check_masks_kept(tokenizer, text: str, kept: int, max_length: int) -> None:
    """Every mask token of ``text`` must survive truncation: a lost one would silently get no prediction."""
    ids = tokenizer(text)["input_ids"]
    written = ids.count(tokenizer.mask_token_id)
    if written == 0:
        raise ValueError(f"the text has no {tokenizer.mask_token} token to fill: {text!r}")
    if kept < written:
        raise ValueError(f"{written - kept} of the text's {written} {tokenizer.mask_token} tokens lie beyond "
                         f"{max_length} tokens (the text has {len(ids)}) and would be cut off: shorten the text "
                         f"or put the {tokenizer.mask_token} nearer its start")


def format_fill_mask(text: str, predictions: list[list[tuple[str, float]]]) -> str:
    lines = [text]
    for n, candidates in enumerate(predictions, start=1):
        if len(predictions) > 1:
            lines.append(f"[MASK] {n} of {len(predictions)}:")
        width = max(len(token) for token, _ in candidates)
        lines += [f"  {rank}. {token:<{width}}  {prob:.4f}" for rank, (token, prob) in enumerate(candidates, 1)]
    return "\n".join(lines)
