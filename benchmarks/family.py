"""The BERT family pre-trained side by side: what each objective buys at equal compute.

``python -m benchmarks.family [--budgets 300,900] [--plot]``

Each member is pre-trained from fresh weights on the embedded corpus by ``python -m numpy_bert
train``, in its own resumable run folder ``runs/family/<member>-<budget>``, at the tiny preset's
shape (2 layers, hidden 128): BERT (MLM + next-sentence prediction), RoBERTa (MLM on packed
sequences, no sentence task), ALBERT (MLM + sentence order, one layer shared by both depths) and
ELECTRA (a generator a quarter as wide, and the discriminator, replaced-token detection on every
token). DistilBERT is distilled from python-docs (a BERT-mini: its student has 2 layers of 256),
next to the same student shape trained from scratch with MLM alone, which is what distillation
is measured against.

Compute is counted as benchmarks/flops.py counts it (matrix products, 2 FLOPs per multiply-add,
a backward twice its forward): per real token, times the tokens each run logged. A budget is a
number of BERT steps; every other member gets the steps that cost as much (from a five-step pilot
of its own data), so the points line up on the compute axis.

The yardstick is the same for every member, whatever it learned from: a linear probe. Each model's
mean-pooled last hidden states of the demo task's passages (numpy_bert.data.demo_tasks "classify":
six parts of the documentation, split by document) train a softmax regression; its held-out
accuracy says how much of the task the encoder's features carry without fine-tuning. The same
probe on each shape with random weights is the floor. Results go to
``benchmarks/results/family.json`` and ``family.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import numpy_bert
from numpy_bert.checkpoint import atomic_write_bytes, json_bytes, named_model_dir
from numpy_bert.data.demo_tasks import demo_dataset
from numpy_bert.layers import cross_entropy

from .flops import Shape
from .recipe import RESULTS, environment

RUNS = Path("runs") / "family"
PATH = RESULTS / "family.json"
SEQ_LEN, BATCH = 128, 32
MLM_FRACTION = 0.15  # the positions that go through an MLM decoder
PROBE_TRAIN, PROBE_EVAL = 1000, 400  # demo-task passages for the probe's training and evaluation


@dataclass(frozen=True)
class Member:
    title: str
    learns_from: str  # the legend's second line
    options: tuple[str, ...]  # its `train` options beyond the shared ones


STUDENT_CONFIG = RUNS / "student-config"  # DistilBERT's shape as a BERT config, for the from-scratch baseline
MEMBERS = {
    "bert": Member("BERT", "MLM + next sentence", ("--architecture", "bert")),
    "roberta": Member("RoBERTa", "MLM, packed, no NSP", ("--architecture", "roberta")),
    "albert": Member("ALBERT", "MLM + sentence order, shared layer", ("--architecture", "albert")),
    "electra": Member("ELECTRA", "replaced-token detection", ("--objective", "electra")),
    "distilbert": Member("DistilBERT", "distilled from python-docs", ("--objective", "distillation",
                                                                     "--teacher", "python-docs")),
    "student-scratch": Member("BERT, DistilBERT's shape", "MLM from scratch",
                              ("--architecture", "bert", "--no-nsp", "--config", str(STUDENT_CONFIG))),
}


def run_folder(member: str, budget: int) -> Path:
    return RUNS / f"{member}-{budget}"


def train(folder: Path, member: str, steps: int, eval_every: int) -> None:
    """``python -m numpy_bert train`` for one member (resumed if the folder holds an unfinished run)."""
    command = [sys.executable, "-m", "numpy_bert", "train", "--out", str(folder), "--steps", str(steps),
               "--seq-len", str(SEQ_LEN), "--batch-size", str(BATCH), "--eval-every", str(eval_every),
               "--eval-batches", "10", "--checkpoint-every", str(max(eval_every, 50)), "--no-plots",
               *MEMBERS[member].options]
    if (folder / "args.json").is_file():
        if _finished(folder, steps):
            return
        command.append("--resume")
    # One BLAS thread per run (recipe.environment) and two runs at a time: small models use cores better so.
    subprocess.run(command, check=True, env=environment(), stdout=subprocess.DEVNULL)


def _finished(folder: Path, steps: int) -> bool:
    return any(row.get("step") == steps for row in metrics(folder) if row.get("split") == "train")


def metrics(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


# ---- compute -------------------------------------------------------------------------------------


def encoder_flops_per_token(config: dict) -> float:
    """Forward matmul FLOPs per token of a BERT-like encoder described by a config.json: flops.py's
    2 N_enc + 4 L T C, plus ALBERT's and ELECTRA's E -> H projection when E != H."""
    C = config.get("hidden_size", config.get("dim"))
    L = config.get("num_hidden_layers", config.get("n_layers"))
    shape = Shape(L, C, config.get("intermediate_size", config.get("hidden_dim")), config["vocab_size"])
    E = config.get("embedding_size", C)
    projection = 2 * E * C if E != C else 0
    return 2 * shape.encoder_matmul_params + 4 * L * SEQ_LEN * C + projection


def mlm_head_flops_per_token(config: dict) -> float:
    C = config.get("hidden_size", config.get("dim"))
    E = config.get("embedding_size", C)
    return MLM_FRACTION * 2 * (C * E + config["vocab_size"] * E)  # transform, then the tied decoder


def training_flops_per_token(folder: Path) -> float:
    """Forward + backward (3x forward) of everything trained, plus the teacher's forward when distilling."""
    config = json.loads((folder / "config.json").read_text())
    if config["model_type"] == "electra":  # the discriminator's head is O(C^2) per token: counted with its encoder
        generator = json.loads((folder / "generator" / "config.json").read_text())
        C = config["hidden_size"]
        return 3 * (encoder_flops_per_token(config) + 2 * C * C
                    + encoder_flops_per_token(generator) + mlm_head_flops_per_token(generator))
    student = 3 * (encoder_flops_per_token(config) + mlm_head_flops_per_token(config))
    if config["model_type"] == "distilbert":
        teacher = json.loads((Path(named_model_dir("python-docs")) / "config.json").read_text())
        student += encoder_flops_per_token(teacher) + mlm_head_flops_per_token(teacher)
    return student


def flops_per_step(member: str) -> float:
    """From a five-step pilot run of the member's own data: its real tokens per step times their cost."""
    folder = RUNS / f"pilot-{member}"
    train(folder, member, steps=5, eval_every=5)
    tokens = sum(row["tokens"] for row in metrics(folder) if row.get("split") == "train")
    return training_flops_per_token(folder) * tokens / 5


def run_flops(folder: Path) -> float:
    return training_flops_per_token(folder) * sum(row["tokens"] for row in metrics(folder)
                                                   if row.get("split") == "train")


# ---- the probe -----------------------------------------------------------------------------------

ENCODERS = {"bert": "BertModel", "roberta": "RobertaModel", "albert": "AlbertModel", "electra": "ElectraModel",
            "distilbert": "DistilBertModel"}


def load_encoder(folder: Path, random_weights: bool = False):
    """The run's encoder (ELECTRA: the discriminator's), or one of the same config with fresh weights."""
    config = json.loads((folder / "config.json").read_text())
    cls = getattr(numpy_bert, ENCODERS[config["model_type"]])
    model = cls(cls.config_class.from_pretrained(folder), seed=0) if random_weights else cls.from_pretrained(folder)
    return model.eval()


def sentence_features(model, tokenizer, texts: list[str]) -> np.ndarray:
    """Mean of the last hidden states over each passage's real tokens, (N, C) in float64."""
    rows = []
    for start in range(0, len(texts), 32):
        batch = tokenizer(texts[start:start + 32], padding=True, truncation=True, max_length=SEQ_LEN,
                          return_tensors="np")
        hidden = model(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"][..., None]
        rows.append((hidden * mask).sum(axis=1) / mask.sum(axis=1))
    return np.concatenate(rows).astype(np.float64)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray,
                 steps: int = 500, lr: float = 0.5, weight_decay: float = 1e-3) -> float:
    """Held-out accuracy of a softmax regression on standardised features, full-batch gradient descent."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    train_x, eval_x = (train_x - mean) / std, (eval_x - mean) / std
    W, b = np.zeros((train_x.shape[1], int(train_y.max()) + 1)), np.zeros(int(train_y.max()) + 1)
    for _ in range(steps):
        _, d_logits = cross_entropy(train_x @ W + b, train_y)
        W -= lr * (train_x.T @ d_logits + weight_decay * W)
        b -= lr * d_logits.sum(axis=0)
    return float(np.mean((eval_x @ W + b).argmax(axis=1) == eval_y))


class Probe:
    """The demo task's passages and labels, probed on any encoder."""

    def __init__(self) -> None:
        train_rows, eval_rows = demo_dataset("classify", train_size=PROBE_TRAIN, eval_size=PROBE_EVAL)
        self.labels = sorted({row["label"] for row in train_rows})
        self.texts = [r["text"] for r in train_rows], [r["text"] for r in eval_rows]
        self.targets = [np.array([self.labels.index(r["label"]) for r in rows]) for rows in (train_rows, eval_rows)]

    def accuracy(self, folder: Path, random_weights: bool = False) -> float:
        model, tokenizer = load_encoder(folder, random_weights), numpy_bert.BertTokenizer.from_pretrained(folder)
        train_x, eval_x = (sentence_features(model, tokenizer, texts) for texts in self.texts)
        return linear_probe(train_x, self.targets[0], eval_x, self.targets[1])


# ---- the measurement -----------------------------------------------------------------------------


def write_student_config() -> None:
    """DistilBERT's student shape (python-docs' width, half its layers) as a BERT config for ``--config``."""
    teacher = numpy_bert.BertConfig.from_pretrained("python-docs")
    teacher.replace(num_hidden_layers=(teacher.num_hidden_layers + 1) // 2, extra={}).save_pretrained(STUDENT_CONFIG)


CURVE_FIGURES = ("mlm_loss", "mlm_accuracy", "discriminator_loss", "discriminator_accuracy", "replaced_fraction")


def curve(folder: Path) -> dict:
    """The run's validation rows against compute: its own loss and, where it predicts masked tokens, MLM's."""
    per_token = training_flops_per_token(folder)
    tokens, points = 0, []
    for row in metrics(folder):
        if row.get("split") == "train":
            tokens += row["tokens"]
        elif row.get("split") == "validation":
            points.append({"step": row["step"], "flops": per_token * tokens, "loss": row["loss"],
                           **{key: row.get(key) for key in CURVE_FIGURES}})
    return {"validation": points}


def steps_for(budget: int, member: str, cost: dict[str, float]) -> int:
    return max(5, round(budget * cost["bert"] / cost[member]))


def measure(budgets: list[int]) -> dict:
    RUNS.mkdir(parents=True, exist_ok=True)
    write_student_config()
    with ThreadPoolExecutor(max_workers=2) as pool:  # each run is its own process
        cost = dict(zip(MEMBERS, pool.map(flops_per_step, MEMBERS), strict=True))
        jobs = [(member, budget, steps_for(budget, member, cost)) for member in MEMBERS for budget in budgets]
        list(tqdm(pool.map(lambda job: train(run_folder(job[0], job[1]), job[0], job[2], max(5, job[2] // 10)),
                           jobs), total=len(jobs), desc="family runs", unit="run"))
    probe = Probe()
    document = {"budgets_in_bert_steps": budgets, "seq_len": SEQ_LEN, "batch_size": BATCH,
                "probe": {"task": "classify", "train": PROBE_TRAIN, "eval": PROBE_EVAL,
                          "classes": len(probe.labels), "chance": 1 / len(probe.labels)}, "members": {}}
    for member, spec in tqdm(MEMBERS.items(), desc="probes", unit="member"):
        runs = [{"budget": budget, "steps": steps_for(budget, member, cost), "flops": run_flops(folder),
                 "probe_accuracy": probe.accuracy(folder), **curve(folder)}
                for budget in budgets for folder in [run_folder(member, budget)]]
        largest = run_folder(member, budgets[-1])
        document["members"][member] = {
            "title": spec.title, "learns_from": spec.learns_from, "options": list(spec.options),
            "parameters": load_encoder(largest).num_parameters(), "flops_per_step": cost[member],
            "random_weights_probe_accuracy": probe.accuracy(largest, random_weights=True), "runs": runs}
    return document


def members_in_order(document: dict) -> list[dict]:
    """The results of each member in MEMBERS' order (the JSON is written with sorted keys)."""
    return [document["members"][name] for name in MEMBERS if name in document["members"]]


def table(document: dict) -> str:
    """The Markdown table of the notebook and docs: each member's probe accuracy at each budget."""
    budgets = document["budgets_in_bert_steps"]
    lines = ["| member | learns from | encoder parameters | random weights | "
             + " | ".join(f"{b} BERT-step budget" for b in budgets) + " |",
             "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in budgets) + " |"]
    for entry in members_in_order(document):
        cells = [f"{run['probe_accuracy']:.1%} ({run['steps']} steps)" for run in entry["runs"]]
        lines.append(f"| {entry['title']} | {entry['learns_from']} | {entry['parameters'] / 1e6:.2f} M | "
                     f"{entry['random_weights_probe_accuracy']:.1%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(document: dict, path: Path) -> Path:
    """Left: MLM validation loss against compute (the members that predict masked tokens; ELECTRA's is its
    generator's). Right: the linear probe's accuracy at each budget, with random weights and chance."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.2))
    left, right = figure.subplots(1, 2)
    for index, (name, entry) in enumerate((n, document["members"][n]) for n in MEMBERS if n in document["members"]):
        color = f"C{index}"
        points = entry["runs"][-1]["validation"]
        if points and points[-1]["mlm_loss"] is not None:
            left.plot([p["flops"] for p in points], [p["mlm_loss"] for p in points], color=color,
                      ls="--" if name == "electra" else "-",
                      label=entry["title"] + (" (its generator)" if name == "electra" else ""))
        right.plot([run["flops"] for run in entry["runs"]], [run["probe_accuracy"] for run in entry["runs"]],
                   "o-", color=color, label=f"{entry['title']}: {entry['learns_from']}")
        right.axhline(entry["random_weights_probe_accuracy"], color=color, ls=":", lw=0.8)
    right.axhline(document["probe"]["chance"], color="gray", ls="--", lw=0.8, label="chance")
    left.set(xscale="log", xlabel="training FLOPs", ylabel="validation MLM loss (nats)",
             title="masked-token prediction against compute")
    right.set(xscale="log", xlabel="training FLOPs", ylabel="held-out accuracy",
              title="linear probe on the demo task (dotted: random weights)")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def budget_list(text: str) -> list[int]:
    """``--budgets``: positive integers, comma-separated, in increasing order (argparse's error otherwise)."""
    try:
        budgets = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of step counts") from None
    if budgets[0] < 1:
        raise argparse.ArgumentTypeError(f"budgets must be positive numbers of BERT steps, got {text!r}")
    return budgets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.family", description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", type=budget_list, default=budget_list("300,900"),
                        help="compute budgets as numbers of BERT steps, comma-separated (default 300,900)")
    parser.add_argument("--plot", action="store_true", help="redraw the figure from the JSON, then exit")
    args = parser.parse_args(argv)
    if not args.plot:
        try:
            document = measure(args.budgets)
        except subprocess.CalledProcessError as err:  # the run said why, in one line, above
            parser.exit(2, f"{parser.prog}: a run stopped (`{' '.join(err.cmd[1:5])} ...`, exit {err.returncode}); "
                           "fix what it said and run this again: finished runs are kept, unfinished ones resume\n")
        atomic_write_bytes(PATH, json_bytes(document))
    elif not PATH.is_file():
        parser.error(f"--plot redraws {PATH}, which does not exist yet: run without --plot first")
    document = json.loads(PATH.read_text())
    print(table(document))
    print(f"wrote {PATH} and {plot(document, RESULTS / 'family.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
