"""The ``cloze`` command: whole-word accuracy on cloze sentences (numpy_bert/training/cloze.py).

    python -m numpy_bert cloze runs/np-tiny [--file more.jsonl] [--top-k 5]
    python -m numpy_bert cloze runs/np-tiny --unigram [--corpus PATH]   # the baseline, for comparison
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..checkpoint import named_model_dir
from ..data.cloze import load_builtin_cloze, read_cloze_file
from ..text.tokenization import BertTokenizer
from ..training.arguments import BackendOptions
from ..training.cloze import format_cloze_metrics, format_cloze_table, model_ranker, score_cloze, unigram_ranker
from ..training.pretraining import load_corpus_splits
from .arguments import positive_int


def add_cloze_command(commands, formatter) -> dict:
    """Register ``cloze`` on an ``add_subparsers()`` group; returns its parser by name."""
    parser = commands.add_parser(
        "cloze", help="top-1/top-k whole-word accuracy on cloze sentences about Python", formatter_class=formatter,
        description="Fill the [MASK] of each sentence of the built-in cloze set (and of --file) with the model's "
                    "MLM head; print a table of the sentences, then the figures, then the same as JSON.")
    parser.add_argument("run", help="a run folder, a checkpoint folder, or a transformers model folder")
    parser.add_argument("--file", help='more sentences: JSONL, one {"text": "... [MASK] ...", "answers": '
                                       '["word", ...]} per line')
    parser.add_argument("--top-k", type=positive_int, default=5, help="a hit is an answer among this many predictions")
    parser.add_argument("--unigram", action="store_true",
                        help="score the unigram baseline instead of the model: the corpus's most frequent words, "
                             "tokenized with the model's vocabulary, whatever the sentence")
    parser.add_argument("--corpus", help="with --unigram: count words in this corpus's training split "
                                         "(default: the embedded corpus's)")
    return {"cloze": parser}


def cloze_command(args: argparse.Namespace, options: BackendOptions, backend) -> int:
    if args.corpus and not args.unigram:
        raise ValueError("--corpus chooses the unigram baseline's corpus: use it with --unigram")
    folder = Path(named_model_dir(args.run))
    tokenizer = BertTokenizer.from_pretrained(folder)
    items = load_builtin_cloze() + (read_cloze_file(args.file) if args.file else [])
    if args.unigram:
        rank = unigram_ranker(tokenizer, load_corpus_splits(args.corpus)[0])
    else:
        loaded = backend.from_pretrained(folder, options)
        rank = model_ranker(loaded.predict, tokenizer, loaded.model.config.max_position_embeddings)
    results, metrics = score_cloze(items, rank, tokenizer, args.top_k)
    print(format_cloze_table(results))
    print(format_cloze_metrics(metrics))
    print(json.dumps({"model": str(folder), "predictor": "unigram" if args.unigram else "model", **metrics}))
    return 0
