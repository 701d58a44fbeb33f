"""The project's main job, on the embedded default corpus (what `make demo` runs).

    python -m parity_tests.demo [--steps 300] [--out runs/demo]

1. The parity report: one BERT-mini checkpoint in numpy_bert, torch_bert and
   transformers; the worst per-tensor error of loss, logits and every gradient.
2. Pre-trains a tiny BERT briefly in both backends, from the *same* initial
   checkpoint (same weights, same WordPiece vocabulary trained on the corpus) on the
   same data, with dropout off, so the two loss curves should lie on top of each other.
3. Plots both curves in one figure, prints how far apart the losses are, and asks
   both trained models to fill in the same [MASK]s, next to the shipped ``python-docs``
   model (pre-trained by numpy_bert with the recipe of docs/python-docs.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import numpy_bert
from numpy_bert.cli.main import main as cli_main
from numpy_bert.pipelines.fill_mask import fill_mask
from numpy_bert.text.tokenization import BertTokenizer
from numpy_bert.training.arguments import BackendOptions
from numpy_bert.training.plots import plot_runs
from numpy_bert.training.pretraining import NumpyBackend, load_corpus_splits, train_tokenizer
from numpy_bert.training.run_folder import RunFolder
from torch_bert.training.pretraining import TorchBackend

from . import report

SENTENCES = ("A list is a mutable [MASK].", "The [MASK] statement is used to import a module.",
             "Raise an [MASK] if the file does not exist.")
BACKENDS = {"numpy_bert": NumpyBackend, "torch_bert": TorchBackend}


def initial_checkpoint(folder: Path, vocab_size: int, seed: int) -> None:
    """A tiny BERT with a vocabulary learned from the training split, saved before any step."""
    train, _ = load_corpus_splits(None)
    tokenizer = train_tokenizer(train, vocab_size)
    tokenizer.save_pretrained(folder)
    config = numpy_bert.BertConfig.from_preset("tiny", vocab_size=len(tokenizer))
    numpy_bert.BertForPreTraining(config, seed=seed).save_pretrained(folder)


def train_both(out: Path, init: Path, args: argparse.Namespace) -> dict[str, list[dict]]:
    rows = {}
    for name, backend in BACKENDS.items():
        run = out / name
        options = ["train", "--out", str(run), "--init-from", str(init), "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--dropout", "0",
                   "--lr", "1e-3", "--warmup", "0.1", "--log-every", "10", "--eval-every", str(args.steps // 3),
                   "--eval-batches", "8", "--checkpoint-every", str(args.steps), "--seed", str(args.seed),
                   "--overwrite-output-dir"]  # a second `make demo` starts these runs afresh
        if name == "torch_bert":
            options += ["--device", "cpu"]
        status = cli_main(options, backend)
        if status != 0:
            raise SystemExit(f"{name} training failed with status {status}")
        rows[name] = RunFolder(run).read_metrics()
    return rows


def largest_loss_gap(rows: dict[str, list[dict]]) -> float:
    """Max over logged steps of |loss_numpy - loss_torch| / loss_torch (training rows)."""
    a, b = ([r["loss"] for r in data if r["split"] == "train"] for data in rows.values())
    return float(np.max(np.abs(np.array(a) - np.array(b)) / np.abs(np.array(b))))


def show_fill_mask(out: Path) -> None:
    """The two 300-step models next to python-docs, pre-trained for two hours (docs/python-docs.md)."""
    print(f"\nfill-mask, top 3 (probability): the two {out.name} runs, then the shipped python-docs model:")
    predictors = {}
    for name, backend in BACKENDS.items():
        loaded = backend.from_pretrained(out / name, BackendOptions(device="cpu"))
        predictors[name] = (loaded.predict, BertTokenizer.from_pretrained(out / name))
    shipped = numpy_bert.pipeline("fill-mask", model="python-docs")  # a BertForMaskedLM, as transformers loads it
    predictors["python-docs"] = (shipped.predict, shipped.tokenizer)
    for sentence in SENTENCES:
        print(f"  {sentence}")
        for name, (predict, tokenizer) in predictors.items():
            (predictions,) = fill_mask(predict, tokenizer, sentence, 3, max_length=128)
            print(f"    {name:<11} " + "  ".join(f"{token} ({p:.3f})" for token, p in predictions))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/demo")
    args = parser.parse_args(argv)
    out = Path(args.out)

    print("== 1. parity: the same weights in numpy_bert, torch_bert and transformers ==\n")
    parity_ok = report.main(["--out", str(out / "parity")]) == 0

    print(f"\n== 2. pre-training a tiny BERT for {args.steps} steps in both backends, from one checkpoint ==\n")
    init = out / "tiny-initial"
    initial_checkpoint(init, args.vocab_size, args.seed)
    rows = train_both(out, init, args)
    plot_runs(rows, out / "curves.png", title="same start, same data")
    gap = largest_loss_gap(rows)
    finals = {name: [r for r in data if r["split"] == "validation"][-1] for name, data in rows.items()}
    print("\n== 3. how the two compare ==\n")
    for name, row in finals.items():
        print(f"  {name:<11} validation loss {row['loss']:.4f}  MLM accuracy {row['mlm_accuracy']:.4f}  "
              f"perplexity {row['perplexity']:.1f}  NSP accuracy {row['nsp_accuracy']:.3f}")
    print(f"  largest relative gap between the two training-loss curves: {gap:.2e} (float32 arithmetic)")
    show_fill_mask(out)
    print(f"\nwrote {out}/curves.png, {out}/parity/, and the two run folders {out}/numpy_bert, {out}/torch_bert")
    return 0 if parity_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
