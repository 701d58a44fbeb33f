"""The ``embed`` and ``similarity`` commands (the encoder: numpy_bert/pipelines/sentence_embeddings.py).

    python -m numpy_bert embed minilm "A list is mutable." "Tuples cannot change." [--out vectors.npy]
    python -m numpy_bert similarity minilm "How do I change a list?" "A list is mutable." ... [--top-k 3]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..checkpoint import read_lines
from ..pipelines.sentence_embeddings import SentenceEncoder
from .arguments import positive_int


def add_embedding_commands(commands, formatter) -> dict:
    """Register ``embed`` and ``similarity`` on an argparse sub-parser collection."""
    embed = commands.add_parser("embed", help="sentence embeddings from a pretrained BERT", formatter_class=formatter,
                                description="Mean-pooled, L2-normalised sentence vectors (as the model's pooling "
                                            "config says). MODEL is a checkpoint folder or 'minilm'.")
    similarity = commands.add_parser("similarity", help="rank sentences by cosine similarity to a query",
                                     formatter_class=formatter,
                                     description="Cosine similarity of each sentence to the query, most similar first.")
    for parser in (embed, similarity):
        parser.add_argument("model", help="a BERT checkpoint folder, or 'minilm' (all-MiniLM-L6-v2)")
    embed.add_argument("texts", nargs="*", help="sentences to embed")
    similarity.add_argument("query", help="the query sentence")
    similarity.add_argument("texts", nargs="*", help="sentences to rank")
    for parser in (embed, similarity):
        parser.add_argument("--file", help="also read sentences from this UTF-8 file, one per line")
        parser.add_argument("--batch-size", type=positive_int, default=32, help="sentences per forward pass")
    embed.add_argument("--out", help="write the vectors to a .npy or .json file (default: JSON on stdout)")
    similarity.add_argument("--top-k", type=positive_int, default=None, help="print only the k most similar")
    return {"embed": embed, "similarity": similarity}


def _sentences(args: argparse.Namespace) -> list[str]:
    sentences = list(args.texts)
    if args.file:
        sentences += [line for line in read_lines(args.file) if line.strip()]
    if not sentences:
        raise ValueError("no sentences: give them as arguments or with --file")
    return sentences


def embedding_command(args: argparse.Namespace) -> int:
    """``embed`` (the vectors, as JSON or .npy) or ``similarity`` (the sentences ranked, with their scores)."""
    encoder = SentenceEncoder.from_pretrained(args.model)
    sentences = _sentences(args)
    if args.command == "similarity":
        ranked = encoder.rank(args.query, sentences, batch_size=args.batch_size)[: args.top_k]
        for score, sentence in ranked:
            print(f"{score:+.4f}  {sentence}")
        return 0
    vectors = encoder.encode(sentences, batch_size=args.batch_size)
    if args.out and args.out.endswith(".npy"):
        np.save(args.out, vectors, allow_pickle=False)
    else:
        text = json.dumps({"model": str(args.model), "sentences": sentences, "embeddings": vectors.tolist()})
        if args.out:
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        else:
            print(text)
    if args.out:
        print(f"wrote {len(sentences)} vectors of dimension {vectors.shape[1]} to {args.out}")
    return 0
