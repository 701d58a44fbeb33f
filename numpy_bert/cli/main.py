"""The command line shared by ``python -m numpy_bert`` and ``python -m torch_bert``.

    python -m numpy_bert train --out runs/np-tiny [--config tiny --steps 2000 ...]
    python -m numpy_bert train --out runs/np-tiny --resume
    python -m numpy_bert eval runs/np-tiny
    python -m numpy_bert fill-mask runs/np-tiny "A list is a mutable [MASK]." --top-k 5
    python -m numpy_bert compare runs/np-tiny runs/pt-tiny --out runs/compare.png
    python -m numpy_bert finetune ... / demo-data ...   (numpy_bert/cli/finetune.py)
    python -m numpy_bert embed minilm "text" ... / similarity minilm "query" "text" ...
                                                        (numpy_bert/cli/embeddings.py)
    python -m numpy_bert quantize minilm --out runs/minilm-int8   (numpy_bert/cli/deployment.py;
    python -m torch_bert export-onnx minilm --out runs/minilm-onnx  the second: torch_bert only)

The parser is built here once, with the options of the backend that does the computing
(``NumpyBackend`` or torch_bert's ``TorchBackend``; numpy: ``--fast``; torch: ``--device``,
``--precision``; see numpy_bert/cli/backends.py). A command that computes with a model gets
its options as a typed object (numpy_bert/training/arguments.py), which the backend
completes for this machine (``resolve_options``: torch's default device). ``eval`` and
``fill-mask`` read any folder with config.json, model.safetensors and vocab.txt: a run of
either backend, one of its checkpoints, or a BertForPreTraining saved by transformers;
``fill-mask`` also a RoBERTa folder with a byte-level BPE tokenizer (vocab.json + merges.txt), the
tokenizer chosen as the pipelines choose it (numpy_bert/pipelines/auto.py).
"""

from __future__ import annotations

import argparse
import errno
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import named_model_dir
from ..config import PRESETS
from ..pipelines.auto import tokenizer_from_folder
from ..pipelines.fill_mask import fill_mask, format_fill_mask
from ..text.tokenization import BertTokenizer
from ..training.arguments import (
    ARCHITECTURES,
    DTYPES,
    MASKING_STRATEGIES,
    OBJECTIVES,
    BackendOptions,
    FinetuningArguments,
    TrainingArguments,
)
from ..training.evaluation import format_metrics
from ..training.export import EXPORT_DTYPES, export_run
from ..training.plots import plot_runs
from ..training.pretraining import (
    NumpyBackend,
    Trainer,
    TrainingDiverged,
    evaluate_backend,
    evaluation_task,
    load_corpus_splits,
    max_sequence_length,
    validation_batches,
)
from ..training.run_folder import RunFolder
from .arguments import (
    add_optimizer_arguments,
    add_overwrite_argument,
    decay_factor,
    fraction,
    non_negative_float,
    option_defaults,
    positive_float,
    positive_int,
    probability,
    typed_options,
)
from .backends import add_backend_options
from .cloze import add_cloze_command, cloze_command
from .deployment import add_deployment_commands, deployment_command
from .embeddings import add_embedding_commands, embedding_command
from .finetune import add_finetune_commands, demo_data_command, finetune_command

# ---- the parser -------------------------------------------------------------------------

BERT_MASK = "[MASK]"  # WordPiece's mask token, which fill-mask also reads as another tokenizer's
# They compute nothing with a model, or not with the backend options: none offered.
MODEL_FREE_COMMANDS = ("demo-data", "compare", "export", "quantize", "export-onnx")
# The class of the typed options of each command that computes with a model.
OPTIONS_CLASS = {"train": TrainingArguments, "finetune": FinetuningArguments, "eval": BackendOptions,
                 "fill-mask": BackendOptions, "cloze": BackendOptions}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where the help text explains it (None), on/off
    switches (BooleanOptionalAction shows its own) and --nsp/--sop."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool) or action.const is not None:
            return action.help
        return super()._get_help_string(action)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` options, with the defaults of :class:`TrainingArguments`."""
    parser.set_defaults(**option_defaults(TrainingArguments))
    run = parser.add_argument_group("run")
    run.add_argument("--out", required=True, help="run folder (created; see numpy_bert/training/run_folder.py)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its latest checkpoint, with its saved arguments")
    add_overwrite_argument(run)
    run.add_argument("--seed", type=int, help="seeds the weights, the data order, masks and dropout")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction,
                     help="show a progress bar on stderr (default: on)")
    run.add_argument("--plots", action=argparse.BooleanOptionalAction,
                     help="redraw plots/*.png at every evaluation; matplotlib takes a second or two (default: on)")

    model = parser.add_argument_group("model")
    model.add_argument("--objective", choices=OBJECTIVES,
                       help="mlm: BERT's masked LM (with --nsp/--sop/--no-nsp); electra: ELECTRA's replaced-token "
                            "detection, a small generator (MLM) and the model, a discriminator, trained together "
                            "(numpy_bert/training/electra.py); distillation: DistilBERT's, a student of half the "
                            "layers of --teacher learns its softened MLM predictions "
                            "(numpy_bert/training/distillation.py)")
    model.add_argument("--architecture", choices=ARCHITECTURES,
                       help="mlm: the network to pre-train. bert: BertForPreTraining (MLM + NSP/SOP); roberta: "
                            "RobertaForMaskedLM, MLM alone on packed sequences (--nsp/--sop refused); albert: "
                            "AlbertForPreTraining, MLM + sentence-order prediction (the default --sop; --no-nsp: "
                            "AlbertForMaskedLM), embedding_size min(128, hidden size), one shared layer group. Each "
                            "reads --config through its own config class and uses the WordPiece vocabulary trained "
                            "on the corpus, as BERT does (train does not use the byte-level BPE tokenizer). "
                            "Default: the model_type of a --config or --init-from folder, else bert")
    model.add_argument("--generator-size", type=decay_factor, metavar="FRACTION",
                       help="electra: the generator's hidden size, feed-forward size and heads as a fraction of "
                            "the model's (the paper's small models: 1/4)")
    model.add_argument("--discriminator-weight", type=positive_float, metavar="LAMBDA",
                       help="electra: λ in loss = generator MLM loss + λ · discriminator loss (the paper: 50)")
    model.add_argument("--teacher", metavar="MODEL",
                       help="distillation: the BERT masked-LM model to distil (a folder, or python-docs); the "
                            "student gets its vocabulary, its width and every other layer. --config and --vocab-size "
                            "are unused")
    model.add_argument("--temperature", type=positive_float, metavar="TAU",
                       help="distillation: τ, dividing the teacher's and the student's logits before the softmax")
    model.add_argument("--alpha-ce", type=non_negative_float,
                       help="distillation: the weight of τ² KL(teacher || student) on the masked tokens")
    model.add_argument("--alpha-mlm", type=non_negative_float,
                       help="distillation: the weight of the student's masked-LM loss")
    model.add_argument("--alpha-cos", type=non_negative_float,
                       help="distillation: the weight of 1 - cos(student, teacher last hidden states) (0: off)")
    model.add_argument("--config",
                       help=f"a preset ({', '.join(PRESETS)}) or a folder holding a config.json")
    model.add_argument("--init-from", metavar="MODEL",
                       help="continue pre-training a pretrained BERT (a checkpoint folder, or 'minilm'): its "
                            "config, vocabulary and weights; missing MLM/NSP heads are initialised, the decoder "
                            "tied to its word embeddings (domain adaptation). --config and --vocab-size are unused")
    model.add_argument("--dropout", type=probability,
                       help="overrides both dropout rates of the config (default: the config's, 0.1)")
    model.add_argument("--dtype", choices=DTYPES,
                       help="parameter dtype (float64: for exactness checks, slower)")

    data = parser.add_argument_group("data")
    data.add_argument("--corpus",
                      help="a UTF-8 text file (blank lines between documents), a folder of .txt files, or a "
                           "named corpus: python-docs (the default: Python's own documentation) or "
                           "python-docs+packages (plus the docstrings of numpy, torch, matplotlib and other installed "
                           "packages, training only: the validation split stays python-docs')")
    data.add_argument("--vocab-size", type=positive_int,
                      help="size of the WordPiece vocabulary trained on the corpus (saved in the run folder)")
    data.add_argument("--seq-len", type=positive_int, help="maximum tokens per sentence pair")
    data.add_argument("--batch-size", type=positive_int,
                      help="sentence pairs per micro-batch (under torchrun: over all processes together)")
    data.add_argument("--masking", choices=tuple(MASKING_STRATEGIES),
                      help="dynamic: fresh token masks every time (RoBERTa); static: the same mask for a pair "
                           "every epoch (BERT); whole-word; span (SpanBERT)")
    task = data.add_mutually_exclusive_group()
    task.add_argument("--nsp", dest="task", action="store_const", const="nsp",
                      help="next-sentence prediction (BERT; the default, but --objective distillation and electra "
                           "and --architecture roberta: --no-nsp, --architecture albert: --sop)")
    task.add_argument("--sop", dest="task", action="store_const", const="sop",
                      help="sentence-order prediction (ALBERT's; BERT's NSP head can learn it too)")
    task.add_argument("--no-nsp", dest="task", action="store_const", const="mlm",
                      help="masked LM only, on sequences packed to --seq-len across sentence and document "
                           "boundaries (RoBERTa, Cramming)")
    data.add_argument("--mlm-probability", type=fraction,
                      help="the fraction of tokens masked for MLM (transformers' run_mlm.py name)")

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--steps", type=positive_int, help="optimizer steps")
    add_optimizer_arguments(optim)
    optim.add_argument("--grad-accum", type=positive_int,
                       help="micro-batches per optimizer step (batch = batch-size x grad-accum)")

    schedule = parser.add_argument_group("logging, evaluation, checkpoints")
    schedule.add_argument("--log-every", type=positive_int, help="steps per metrics.jsonl row")
    schedule.add_argument("--eval-every", type=positive_int, help="steps between evaluations")
    schedule.add_argument("--eval-batches", type=positive_int,
                          help="validation batches per evaluation (fixed and seeded)")
    schedule.add_argument("--checkpoint-every", type=positive_int, help="steps between checkpoints")


def add_evaluation_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Where held-out data comes from; by default what the run folder's args.json says."""
    parser.add_argument("--corpus", default=None,
                        help="corpus whose validation split to use (default: the run's, else the embedded one)")
    parser.add_argument("--seq-len", type=positive_int, default=None, help="default: the run's, else 128")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: the run's, else 32")
    parser.add_argument("--max-batches", type=positive_int, default=None,
                        help="evaluate on this many batches (default: the run's --eval-batches, else all)")
    task = parser.add_mutually_exclusive_group()
    task.add_argument("--nsp", dest="task", action="store_const", const="nsp", help="next-sentence pairs")
    task.add_argument("--sop", dest="task", action="store_const", const="sop", help="sentence-order pairs")
    task.add_argument("--no-nsp", dest="task", action="store_const", const="mlm", help="packed MLM sequences")


def build_parser(backend) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and its sub-parsers by command."""
    formatter = HelpFormatter
    parser = argparse.ArgumentParser(prog=f"python -m {backend.name}",
                                     description=f"Pre-train, evaluate and use a Mini-BERT with {backend.name}.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = {
        "train": commands.add_parser("train", help="pre-train with MLM + NSP/SOP", formatter_class=formatter,
                                     description="Pre-train BERT (masked LM + next-sentence or sentence-order "
                                                 "prediction) into a run folder."),
        "eval": commands.add_parser("eval", help="held-out MLM accuracy, perplexity and NSP accuracy",
                                    formatter_class=formatter,
                                    description="Evaluate a run folder (or any BertForPreTraining folder) on "
                                                "held-out data; prints the metrics, then the same as JSON."),
        "fill-mask": commands.add_parser("fill-mask", help="predict the mask tokens of a sentence",
                                         formatter_class=formatter,
                                         description="Print the most likely tokens for each mask token "
                                                     "([MASK], or <mask>) in TEXT."),
        "compare": commands.add_parser("compare", help="plot and tabulate several runs side by side",
                                       formatter_class=formatter,
                                       description="Read the metrics.jsonl of each RUN folder (either backend): "
                                                   "plot their loss and held-out accuracy curves into one PNG and "
                                                   "print a table of their final figures."),
        "export": commands.add_parser("export", help="write a run's model to share (float16, with a manifest)",
                                      formatter_class=formatter,
                                      description="Copy the model of RUN (weights, config, vocabulary) into OUT, "
                                                  "with args.json, metrics.jsonl, plots and a manifest.json of "
                                                  "SHA-256 sums; float16 weights halve the size."),
    }
    add_train_arguments(sub["train"])
    sub["eval"].add_argument("run", help="a run folder, a checkpoint folder, or a transformers model folder")
    add_evaluation_data_arguments(sub["eval"])
    sub["fill-mask"].add_argument("run", help="a run folder, a checkpoint folder, or a transformers model folder")
    sub["fill-mask"].add_argument("text", help='text with one or more mask tokens, e.g. "A list is a mutable '
                                  '[MASK]." ([MASK] for a WordPiece vocab.txt, <mask> for a byte-level BPE '
                                  'vocab.json + merges.txt, where [MASK] is read as <mask> too)')
    sub["fill-mask"].add_argument("--top-k", type=positive_int, default=5, help="predictions per mask token")
    sub["compare"].add_argument("runs", nargs="+", metavar="RUN", help="run folders (with a metrics.jsonl)")
    sub["compare"].add_argument("--out", default="compare.png", help="the PNG to write")
    sub["compare"].add_argument("--up-to-step", type=positive_int, metavar="STEP",
                                help="only the rows up to this step: a short run against the start of a long one")
    sub["export"].add_argument("run", help="a train or finetune run folder (or any model folder)")
    sub["export"].add_argument("out", help="the folder to write (created)")
    sub["export"].add_argument("--dtype", choices=EXPORT_DTYPES, default="float16", help="the weights' dtype")
    add_overwrite_argument(sub["export"])
    sub.update(add_finetune_commands(commands, formatter))
    sub.update(add_cloze_command(commands, formatter))
    sub.update(add_deployment_commands(commands, formatter, backend.name))
    for command, subparser in sub.items():
        if command not in MODEL_FREE_COMMANDS:
            add_backend_options(subparser, backend.name, command)
    if backend.name == "numpy_bert":  # sentence embeddings: pure NumPy, so only under numpy_bert
        sub.update(add_embedding_commands(commands, formatter))
    return parser, sub


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The options that ``argv`` sets, as opposed to those left at their defaults.

    argparse fills in a default only for attributes the namespace lacks, so parsing
    into a namespace pre-filled with a marker shows which ones the command line set.
    """
    unset = object()
    prefilled = argparse.Namespace(**{action.dest: unset for action in parser._actions})
    parsed = parser.parse_args(argv, prefilled)
    return {action.dest for action in parser._actions if getattr(parsed, action.dest) is not unset}


# ---- the commands -----------------------------------------------------------------------


def train_command(options: TrainingArguments, resume: bool, explicit: set[str], backend) -> int:
    options = options.for_run_folder(resume, explicit)
    options = backend.resolve_options(options, "train")  # again: a resumed run's saved options meet this machine
    Trainer(options, backend, resume=resume).train()
    return 0


def _run_arguments(folder: Path) -> dict:
    """The args.json of a run folder, or of the run a checkpoint folder belongs to; {} for others."""
    for candidate in (folder, folder.parent):
        if RunFolder(candidate).has_run():
            return RunFolder(candidate).read_args()
    return {}


def eval_command(args: argparse.Namespace, options: BackendOptions, backend) -> int:
    """Held-out metrics of a model folder, on the validation split of the run's corpus."""
    folder = Path(named_model_dir(args.run))
    saved = _run_arguments(folder)
    tokenizer = BertTokenizer.from_pretrained(folder)
    loaded = backend.from_pretrained(folder, options)  # by its model_type: BERT, RoBERTa, ALBERT, ELECTRA, ...
    corpus = args.corpus or saved.get("corpus")
    _, validation = load_corpus_splits(corpus)
    batches = validation_batches(validation, tokenizer, args.seq_len or saved.get("seq_len", 128),
                                 args.batch_size or saved.get("batch_size", 32),
                                 args.task or saved.get("task") or evaluation_task(loaded.model),
                                 args.max_batches or saved.get("eval_batches"))
    metrics = evaluate_backend(loaded, batches)  # ELECTRA's: the discriminator's figures too
    sequences = sum(len(batch["input_ids"]) for batch in batches)
    print(f"{folder}: {len(batches)} validation batches of {validation.name} ({sequences} sequences, "
          f"{metrics['masked_tokens']} masked tokens)")
    print(format_metrics(metrics))
    print(json.dumps(metrics))
    return 0


def with_mask_token(text: str, mask_token: str) -> str:
    """``text`` with each [MASK] written as the tokenizer's ``mask_token`` (RoBERTa's ``<mask>``): a convenience,
    so that one sentence works for every folder."""
    return text if mask_token == BERT_MASK else text.replace(BERT_MASK, mask_token)


def fill_mask_command(args: argparse.Namespace, options: BackendOptions, backend) -> int:
    folder = Path(named_model_dir(args.run))
    tokenizer = tokenizer_from_folder(folder)  # WordPiece or byte-level BPE, as the fill-mask pipeline picks
    loaded = backend.from_pretrained(folder, options)
    model = getattr(loaded.model, "generator", loaded.model)  # an ELECTRA run fills masks with its generator
    text = with_mask_token(args.text, tokenizer.mask_token)
    predictions = fill_mask(loaded.predict, tokenizer, text, args.top_k,
                            max_length=max_sequence_length(model.config))
    print(format_fill_mask(args.text, predictions))
    return 0


def compare_command(args: argparse.Namespace) -> int:
    """One figure and one table for several run folders."""
    runs = {}
    for folder in args.runs:
        run = RunFolder(folder)
        owner = run.owner_command()
        rows = run.read_metrics()
        if owner not in (None, "train") or any(r.get("split") == "train" and "tokens_per_s" not in r for r in rows):
            raise ValueError(f"{folder} is a {owner or 'fine-tuning'} run; compare plots pre-training runs (train): "
                             "a fine-tuning run's figures are in its metrics.json and plots/")
        if not rows:
            raise ValueError(f"{folder} is not a run folder with training metrics: no rows in {folder}/metrics.jsonl")
        runs[folder] = [r for r in rows if args.up_to_step is None or r["step"] <= args.up_to_step]
    print(format_run_table(runs))
    print(f"wrote {plot_runs(runs, args.out)}")
    return 0


def format_run_table(runs: dict[str, list[dict]]) -> str:
    """A Markdown table: per run, its last step, median speed, last validation figures and tokens seen."""
    lines = ["| run | steps | tokens/s (median) | validation step | MLM accuracy | perplexity | NSP/SOP accuracy "
             "| tokens |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, rows in runs.items():
        train = [r for r in rows if r.get("split") == "train"]
        validation = [r for r in rows if r.get("split") == "validation"]
        speed = f"{statistics.median(r['tokens_per_s'] for r in train):,.0f}" if train else "-"
        last = validation[-1] if validation else {}
        pair = last.get("nsp_accuracy", last.get("sop_accuracy"))  # BERT's head or ALBERT's; none: MLM only
        nsp = "-" if pair is None else f"{pair:.1%}"
        figures = ([f"{last['step']:,}", f"{last['mlm_accuracy']:.1%}", f"{last['perplexity']:.1f}", nsp]
                   if last else ["-"] * 4)
        tokens = f"{sum(r['tokens'] for r in train):,}" if train and all("tokens" in r for r in train) else "-"
        lines.append(f"| {name} | {train[-1]['step'] if train else 0:,} | {speed} | " + " | ".join(figures)
                     + f" | {tokens} |")
    return "\n".join(lines)


# What to do about the OS errors a user can cause or fix.
OS_ERROR_ADVICE = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
                   errno.EACCES: "check its permissions, or choose another folder",
                   errno.EROFS: "choose a folder on a writable file system",
                   errno.ENOENT: "check the path", errno.ENOTDIR: "check the path",
                   errno.EISDIR: "give a file, not a folder",
                   errno.EEXIST: "a file of that name is in the way of a folder; choose another path"}


def describe_os_error(err: OSError, command: str) -> str:
    """One line for an OS error: what failed, on which file, and what to do."""
    where = f": {err.filename}" if err.filename else ""
    advice = OS_ERROR_ADVICE.get(err.errno, "")
    if command == "train" and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES):
        advice += "; the last checkpoint is intact: continue with --resume"
    return f"{err.strerror or err}{where}" + (f"; {advice}" if advice else "")


def run_command(args: argparse.Namespace, options: BackendOptions | None, argv: list[str], sub: dict,
                backend) -> int:
    """Run the parsed command (ValueError or OSError: an expected failure, reported by :func:`main`)."""
    if args.command == "train":
        return train_command(options, args.resume, explicit_options(sub["train"], argv[1:]), backend)
    if args.command == "eval":
        return eval_command(args, options, backend)
    if args.command == "fill-mask":
        return fill_mask_command(args, options, backend)
    if args.command == "cloze":
        return cloze_command(args, options, backend)
    if args.command == "finetune":
        return finetune_command(options, backend)
    if args.command == "demo-data":
        return demo_data_command(args, backend)
    if args.command == "compare":
        return compare_command(args)
    if args.command == "export":
        manifest = export_run(named_model_dir(args.run), args.out, args.dtype, args.overwrite_output_dir)
        print(f"wrote {args.out} ({args.dtype} weights); its files and their SHA-256 are in {manifest}")
        return 0
    if args.command in ("quantize", "export-onnx"):
        return deployment_command(args, backend)
    return embedding_command(args)  # embed, similarity


def main(argv: Sequence[str] | None = None, backend=None) -> int:
    """Parse ``argv`` and run the command with ``backend``; returns the exit status.

    Exit status: 0 done; 1 training diverged (NaN/inf); 2 an expected failure: bad arguments,
    inputs or files, or an OS error such as a full disk or a missing folder, each told in one
    line on stderr, ``python -m numpy_bert CMD: error: ...``, without a traceback; 130
    interrupted. Any other exception is a bug, and shows its traceback.
    """
    backend = backend or NumpyBackend
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, sub = build_parser(backend)
    args = parser.parse_args(argv)
    prefix = f"{parser.prog} {args.command}"
    options = None
    if args.command in OPTIONS_CLASS:  # a bad option value: argparse's usage and error line, status 2
        try:
            options = backend.resolve_options(typed_options(OPTIONS_CLASS[args.command], args), args.command)
        except ValueError as err:
            sub[args.command].error(str(err))
    try:
        return run_command(args, options, argv, sub, backend)
    except ValueError as err:  # a message that lists several problems, one per line, becomes one line
        print(f"{prefix}: error: " + " ".join(line.strip() for line in str(err).splitlines()), file=sys.stderr)
    except OSError as err:
        print(f"{prefix}: error: {describe_os_error(err, args.command)}", file=sys.stderr)
    except TrainingDiverged as err:
        print(f"{prefix}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resume = "; continue the run with --resume" if args.command == "train" else ""
        print(f"\n{prefix}: interrupted{resume}", file=sys.stderr)
        return 130
    return 2
