"""What int8 weights (numpy_bert/quantization.py) cost in quality and save in size, against float32.

``python -m benchmarks.int8_quality [--sentences 500] [--epochs 3] [--plot]``

* MiniLM: the cosine between each sentence vector and its float32 original, over held-out
  passages of the embedded corpus (its validation split);
* python-docs: fill-mask on the built-in cloze set: how often int8's top token is float32's,
  how many of the top 5 they share, and how often an accepted answer is in each one's top 5;
* a classifier: python-docs fine-tuned on the demo task (``benchmarks.finetune_from``'s run),
  its held-out accuracy in float32 and in int8;
* the size of each model.safetensors, float32 against int8.

Speed is the benchmark matrix's (``python -m benchmarks``: the ``numpy_int8`` backend). Results go
to ``benchmarks/results/int8_quality.json`` with the figure ``int8_quality.png``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import numpy_bert
from numpy_bert.checkpoint import atomic_write_bytes, json_bytes, named_model_dir
from numpy_bert.data.cloze import load_builtin_cloze
from numpy_bert.pipelines.sentence_embeddings import SentenceEncoder
from numpy_bert.training.pretraining import load_corpus_splits
from numpy_bert.training.quantize import quantize_checkpoint

from .finetune_from import RUNS, finetune
from .recipe import RESULTS

PATH = RESULTS / "int8_quality.json"


def held_out_passages(count: int) -> list[str]:
    _, validation = load_corpus_splits("python-docs")
    passages = [text[:400] for text in validation.texts() if len(text.split()) >= 5]
    return passages[:count]


def sentence_vectors(int8_folder: Path, sentences: list[str]) -> dict:
    reference = SentenceEncoder.from_pretrained("minilm").encode(sentences, progress=True)
    quantized = SentenceEncoder.from_pretrained(int8_folder).encode(sentences, progress=True)
    cosine = (reference * quantized).sum(axis=1)  # both L2-normalised
    return {"sentences": len(sentences), "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
            "cosine_p01": float(np.quantile(cosine, 0.01)), "cosines": [round(float(c), 6) for c in cosine]}


def fill_mask_agreement(int8_folder: Path) -> dict:
    items = load_builtin_cloze()
    fills = {"float32": numpy_bert.pipeline("fill-mask", model="python-docs"),
             "int8": numpy_bert.pipeline("fill-mask", model=str(int8_folder))}
    top = {name: [[c["token_str"] for c in fill(item.text, top_k=5)] for item in items] for name, fill in fills.items()}
    pairs = list(zip(top["float32"], top["int8"], strict=True))
    hits = {name: float(np.mean([bool(set(t) & set(item.answers)) for t, item in zip(tops, items, strict=True)]))
            for name, tops in top.items()}
    return {"sentences": len(items), "top1_agreement": float(np.mean([a[0] == b[0] for a, b in pairs])),
            "top5_overlap": float(np.mean([len(set(a) & set(b)) / 5 for a, b in pairs])),
            "top5_answer_hit_float32": hits["float32"], "top5_answer_hit_int8": hits["int8"]}


def classifier_accuracy(float_folder: Path, int8_folder: Path, eval_file: Path) -> dict:
    rows = [json.loads(line) for line in eval_file.read_text().splitlines() if line.strip()]
    texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
    accuracy = {}
    for name, folder in (("float32", float_folder), ("int8", int8_folder)):
        classify = numpy_bert.pipeline("text-classification", model=str(folder))
        predicted = [classify(text)[0]["label"] for text in texts]
        accuracy[name] = float(np.mean([p == g for p, g in zip(predicted, gold, strict=True)]))
    return {"examples": len(rows), "accuracy_float32": accuracy["float32"], "accuracy_int8": accuracy["int8"],
            "difference_points": 100 * (accuracy["int8"] - accuracy["float32"])}


def measure(sentences: int, epochs: int, work: Path) -> dict:
    finetune("classify", "python-docs", epochs)
    classifier = RUNS / "classify-python-docs"
    sizes = {name: sizes_of(quantize_checkpoint(folder, work / name)) for name, folder in
             (("minilm", named_model_dir("minilm")), ("python-docs", named_model_dir("python-docs")),
              ("classify", classifier))}
    return {
        "minilm": {**sizes["minilm"], **sentence_vectors(work / "minilm", held_out_passages(sentences))},
        "python-docs": {**sizes["python-docs"], **fill_mask_agreement(work / "python-docs")},
        "classify": {**sizes["classify"], "epochs": epochs,
                     **classifier_accuracy(classifier, work / "classify", RUNS / "data" / "classify-eval.jsonl")},
    }


def sizes_of(report: dict) -> dict:
    """quantize_checkpoint's figures under the names of the results JSON."""
    return {"float32_bytes": report["float32_bytes"], "int8_bytes": report["bytes"], "size_ratio": report["size_ratio"]}


def table(document: dict) -> str:
    """The Markdown table docs/deployment.md shows (tests/test_benchmarks.py checks that it is this JSON's)."""
    minilm, docs, classify = document["minilm"], document["python-docs"], document["classify"]
    size = {name: f"{document[name]['int8_bytes'] / 1e6:.1f} MB / {document[name]['float32_bytes'] / 1e6:.1f} MB "
                  f"({document[name]['size_ratio']:.2f}x)" for name in document}
    return "\n".join([
        "| model | int8 / float32 size | quality, int8 against float32 |",
        "| --- | --- | --- |",
        f"| MiniLM | {size['minilm']} | sentence vectors' cosine to float32's over {minilm['sentences']} held-out "
        f"passages: mean {minilm['cosine_mean']:.4f}, 1st percentile {minilm['cosine_p01']:.4f}, "
        f"lowest {minilm['cosine_min']:.4f} |",
        f"| python-docs | {size['python-docs']} | fill-mask on {docs['sentences']} cloze sentences: same top token "
        f"{docs['top1_agreement']:.1%}, top-5 overlap {docs['top5_overlap']:.1%}; an answer in the top 5: "
        f"{docs['top5_answer_hit_int8']:.1%} (float32 {docs['top5_answer_hit_float32']:.1%}) |",
        f"| python-docs fine-tuned on the demo task ({classify['epochs']} epochs) | {size['classify']} | held-out "
        f"accuracy {classify['accuracy_int8']:.1%} (float32 {classify['accuracy_float32']:.1%}, "
        f"{classify['difference_points']:+.1f} points) on {classify['examples']} examples |",
    ])


def plot(document: dict, path: Path) -> Path:
    """Left: the histogram of MiniLM's cosines; right: each model's int8 size as a fraction of float32."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 3.6))
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    minilm = document["minilm"]
    left.hist(minilm["cosines"], bins=40, color="tab:purple")
    left.set(title=f"MiniLM int8 vs float32: cosine of {minilm['sentences']} sentence vectors",
             xlabel="cosine similarity", ylabel="sentences")
    names = ["minilm", "python-docs", "classify"]
    right.bar(names, [document[n]["size_ratio"] for n in names], color="tab:gray")
    right.axhline(0.35, color="tab:red", ls=":", label="target: 0.35")
    right.set(title="int8 checkpoint size / float32", ylim=(0, 1))
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_quality", description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=500, help="MiniLM sentences to compare (default 500)")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs of the classifier (default 3)")
    parser.add_argument("--plot", action="store_true", help="redraw the figure from the JSON, then exit")
    args = parser.parse_args(argv)
    if not args.plot:
        with tempfile.TemporaryDirectory(prefix="int8-") as work:
            document = measure(args.sentences, args.epochs, Path(work))
        atomic_write_bytes(PATH, json_bytes(document))
    document = json.loads(PATH.read_text())
    print(table(document))
    print(f"wrote {PATH} and {plot(document, RESULTS / 'int8_quality.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
