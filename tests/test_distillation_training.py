"""``train --objective distillation`` (numpy_bert/training/distillation.py): the student made from its teacher,
a tiny run through the command line, its files, its resume, and the options it refuses.

The teacher is a tiny BERT trained here in about a second (4 layers of width 32, MLM only, weights drawn
large enough that its layers do real work: a student with half of them then starts visibly off it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from numpy_bert import BertConfig, BertForMaskedLM, BertModel, DistilBertForMaskedLM
from numpy_bert.cli.main import main
from numpy_bert.distilbert import student_config, student_weights_from_teacher
from numpy_bert.optim import count_layers, decay_mask, layer_depth
from numpy_bert.text.tokenization import VOCAB_NAME
from numpy_bert.training.distillation import DistillationNumpyBackend, Distiller
from numpy_bert.training.run_folder import RunFolder
from tests.test_training import fail_on_call, final_state
from torch_bert.training.pretraining import TorchBackend

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, corpus) -> Path:
    """A BERT masked-LM run folder: 30 steps of --no-nsp on the toy corpus (its vocabulary: 200 tokens)."""
    folder = tmp_path_factory.mktemp("teacher")
    BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=64, initializer_range=0.2).save_pretrained(folder / "config")
    run = folder / "run"
    assert main(["train", "--out", str(run), "--corpus", corpus, "--config", str(folder / "config"), "--no-nsp",
                 "--vocab-size", "200", "--seq-len", "32", "--batch-size", "8", "--steps", "30", "--lr", "3e-3",
                 "--warmup", "0", "--eval-batches", "1", "--no-progress", "--no-plots"]) == 0
    return run


@pytest.fixture(scope="module")
def distil_args(corpus, teacher):
    def make(out: Path, *extra: str) -> list[str]:
        return ["train", "--objective", "distillation", "--teacher", str(teacher), "--out", str(out), "--corpus",
                corpus, "--seq-len", "32", "--batch-size", "4", "--lr", "3e-3", "--warmup", "0", "--eval-batches", "2",
                "--no-progress", "--no-plots", *extra]

    return make


# ---- the student, made from its teacher -------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 2, 3, 12])
def test_student_config_halves_the_layers(layers):
    teacher = BertConfig(vocab_size=77, hidden_size=24, num_hidden_layers=layers, num_attention_heads=3,
                         intermediate_size=40, max_position_embeddings=40, hidden_act="gelu_new",
                         hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.05, pad_token_id=3)
    student = student_config(teacher)
    assert student.n_layers == (layers + 1) // 2 and student.n_layers >= 1
    assert (student.vocab_size, student.dim, student.n_heads, student.hidden_dim, student.max_position_embeddings,
            student.activation, student.dropout, student.attention_dropout, student.pad_token_id) == (
        77, 24, 3, 40, 40, "gelu_new", 0.2, 0.05, 3)


def test_student_takes_every_other_layer():
    config = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=5, num_attention_heads=2,
                        intermediate_size=12, max_position_embeddings=16)
    teacher = BertForMaskedLM(config, seed=1, dtype=np.float64).state_dict()
    student_cfg = student_config(config)
    weights = student_weights_from_teacher(teacher, student_cfg)
    student = DistilBertForMaskedLM(student_cfg, seed=0, dtype=np.float64)
    student.load_state_dict(weights)  # strict: exactly the student's names and shapes
    for i, t in enumerate([0, 2, 4]):
        ours, theirs = f"distilbert.transformer.layer.{i}.", f"bert.encoder.layer.{t}."
        assert np.array_equal(weights[ours + "attention.q_lin.weight"], teacher[theirs + "attention.self.query.weight"])
        assert np.array_equal(weights[ours + "ffn.lin2.bias"], teacher[theirs + "output.dense.bias"])
        assert np.array_equal(weights[ours + "output_layer_norm.weight"], teacher[theirs + "output.LayerNorm.weight"])
    assert np.array_equal(weights["vocab_projector.bias"], teacher["cls.predictions.bias"])


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_a_one_layer_teacher_and_its_student_agree(hidden_act):
    """With one layer the student is its teacher, token-type table folded into the positions: the same
    logits and last hidden states, to rounding (float64, evaluation mode, padded single-segment batches)."""
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=24, max_position_embeddings=20, hidden_act=hidden_act,
                        initializer_range=0.3)
    teacher = BertForMaskedLM(config, seed=2, dtype=np.float64).eval()
    student = DistilBertForMaskedLM(student_config(config), seed=0, dtype=np.float64).eval()
    student.load_state_dict(student_weights_from_teacher(teacher.state_dict(), student.config))
    rng = np.random.default_rng(0)
    ids, mask = rng.integers(0, 50, (3, 11)), np.ones((3, 11), np.int64)
    mask[1, 6:] = 0
    theirs = teacher(ids, attention_mask=mask, output_hidden_states=True)
    ours = student(ids, attention_mask=mask, output_hidden_states=True)
    np.testing.assert_allclose(ours.logits, theirs.logits, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.hidden_states[-1], theirs.hidden_states[-1], rtol=0, atol=1e-12)
    batch = dict(input_ids=ids, attention_mask=mask, token_type_ids=np.zeros_like(ids),
                 labels=np.where(rng.random((3, 11)) < 0.4, ids, -100))
    parts = Distiller(student, teacher).forward(batch)
    assert abs(parts["kl_loss"]) < 1e-12 and abs(parts["cosine_loss"]) < 1e-12


def test_adamw_groups_the_student_as_bert():
    """No weight decay on biases and on any LayerNorm (DistilBERT names them *_layer_norm); the blocks
    (transformer.layer.i) are layers for layer-wise lr decay, as BERT's encoder.layer.i."""
    config = student_config(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=6, num_attention_heads=2,
                                       intermediate_size=8))
    names = [name for name, _ in DistilBertForMaskedLM(config).named_parameters()]
    undecayed = {name for name in names if not decay_mask(name)}
    assert undecayed == {n for n in names if n.endswith(".bias") or "LayerNorm." in n or "layer_norm." in n}
    assert any("sa_layer_norm" in name for name in undecayed) and "vocab_layer_norm.weight" in undecayed
    assert count_layers(names) == 3
    assert layer_depth("distilbert.transformer.layer.2.ffn.lin1.weight", 3) == 3
    assert layer_depth("distilbert.embeddings.position_embeddings.weight", 3) == 0


# ---- a tiny run ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, distil_args) -> Path:
    run = tmp_path_factory.mktemp("distilled") / "run"
    assert main(distil_args(run, "--steps", "6", "--log-every", "1", "--eval-every", "1")) == 0
    return run


def test_the_run_folder_holds_a_distilbert_student(distilled, teacher):
    config = json.loads((distilled / "config.json").read_text())
    assert config["model_type"] == "distilbert" and config["architectures"] == ["DistilBertForMaskedLM"]
    assert config["n_layers"] == 2 and config["dim"] == 32  # half the teacher's 4 layers, its width
    assert (distilled / VOCAB_NAME).read_text() == (teacher / VOCAB_NAME).read_text(), "not the teacher's vocabulary"
    assert (distilled / "checkpoint-6" / "model.safetensors").is_file()
    args = RunFolder(distilled).read_args()
    assert (args["objective"], args["task"], args["teacher"]) == ("distillation", "mlm", str(teacher))
    assert (args["temperature"], args["alpha_ce"], args["alpha_mlm"], args["alpha_cos"]) == (2.0, 5.0, 2.0, 1.0)


def test_the_loss_parts_are_logged_and_the_kl_falls(distilled):
    rows = RunFolder(distilled).read_metrics()
    train = [r for r in rows if r["split"] == "train"]
    validation = [r for r in rows if r["split"] == "validation"]
    assert len(train) == len(validation) == 6
    for row in train:
        assert {"loss", "kl_loss", "mlm_loss", "cosine_loss"} <= row.keys() and "nsp_loss" not in row
        assert row["loss"] == pytest.approx(5 * row["kl_loss"] + 2 * row["mlm_loss"] + row["cosine_loss"])
    kl = [r["kl_loss"] for r in validation]  # the same fixed validation batches after every step
    assert kl[-1] < 0.5 * kl[0], f"the KL term did not fall: {kl}"
    assert train[-1]["kl_loss"] < train[0]["kl_loss"]


def test_the_student_loads_in_transformers(distilled):
    hf_model, info = transformers.DistilBertForMaskedLM.from_pretrained(distilled, attn_implementation="eager",
                                                                        output_loading_info=True)
    assert not any(info.values()), info
    ours = DistillationNumpyBackend.from_pretrained(distilled, None).model.eval()
    ids = np.random.default_rng(1).integers(0, 200, (2, 9))
    theirs = hf_model.eval()(torch.from_numpy(ids)).logits.detach().numpy()
    np.testing.assert_allclose(ours(ids).logits, theirs, rtol=1e-4, atol=1e-4)


def test_eval_and_fill_mask_read_the_student(distilled, capsys):
    """``eval`` of the run folder recomputes its last validation row's MLM figures; ``fill-mask`` runs the student."""
    assert main(["eval", str(distilled)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    last = [r for r in RunFolder(distilled).read_metrics() if r["split"] == "validation"][-1]
    assert metrics["mlm_loss"] == pytest.approx(last["mlm_loss"], rel=1e-12)
    assert metrics["mlm_accuracy"] == last["mlm_accuracy"]
    assert main(["fill-mask", str(distilled), "The list [MASK] the value.", "--top-k", "3"]) == 0
    assert capsys.readouterr().out.count("  3. ") == 1


# Dropout on (the teacher's 0.1), gradient accumulation, checkpoints at steps 3 and 6, in the middle of a
# logging window (rows at 2, 4, 6): the window's sums, the optimizer and the dropout generator are restored.
RESUME_OPTIONS = ("--steps", "6", "--checkpoint-every", "3", "--log-every", "2", "--eval-every", "3",
                  "--grad-accum", "2")


def test_resume_is_bitwise_identical(tmp_path, distil_args, monkeypatch):
    straight = tmp_path / "straight"
    assert main(distil_args(straight, *RESUME_OPTIONS)) == 0
    run = tmp_path / "run"
    with monkeypatch.context() as patch:  # killed during step 5: the last checkpoint is step 3's
        fail_on_call(patch, DistillationNumpyBackend, "optimizer_step", 5, KeyboardInterrupt())
        assert main(distil_args(run, *RESUME_OPTIONS)) == 130
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    weights, state, rows = final_state(run)
    expected = final_state(straight)
    assert weights == expected[0], "resumed weights differ from the uninterrupted run's"
    assert state == expected[1], "resumed optimizer/RNG state differs"
    assert rows == expected[2], "metrics.jsonl differs (rows duplicated or changed)"


# ---- what it refuses -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def not_a_teacher(tmp_path_factory, teacher) -> Path:
    """A BertModel with the teacher's vocabulary: an encoder without the masked-LM head a teacher needs."""
    folder = tmp_path_factory.mktemp("encoder")
    BertModel(BertConfig(vocab_size=200, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=8), seed=0).save_pretrained(folder)
    (folder / VOCAB_NAME).write_text((teacher / VOCAB_NAME).read_text())
    return folder


@pytest.mark.parametrize("options, message", [
    (["--objective", "distillation"], "--objective distillation needs --teacher MODEL"),
    (["--objective", "distillation", "--teacher", "no-such-folder"], "--teacher 'no-such-folder' is neither"),
    (["--teacher", "python-docs"], "--teacher is for --objective distillation"),
    (["--objective", "distillation", "--teacher", "python-docs", "--nsp"], "drop --nsp"),
    (["--objective", "distillation", "--teacher", "python-docs", "--sop"], "drop --sop"),
    (["--objective", "distillation", "--teacher", "python-docs", "--fast"], "drop --fast"),
    (["--objective", "distillation", "--teacher", "python-docs", "--init-from", "python-docs"], "drop --init-from"),
    (["--objective", "distillation", "--teacher", "python-docs", "--alpha-ce", "0", "--alpha-mlm", "0",
      "--alpha-cos", "0"], "nothing to learn"),
    (["--objective", "distillation", "--teacher", "python-docs", "--temperature", "0"], "--temperature"),
    (["--objective", "distillation", "--teacher", "python-docs", "--alpha-mlm", "-1"], "--alpha-mlm"),
])
def test_bad_options_give_one_line_and_exit_2(tmp_path, options, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), *options])
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0], error_lines
    assert not (tmp_path / "run").exists()


def test_bad_teachers_give_one_line_and_exit_2(tmp_path, distil_args, not_a_teacher, teacher, distilled, capsys):
    def error(argv, backend=None) -> str:
        assert main(argv, backend) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]  # not the log's warnings
        assert len(lines) == 1, lines
        return lines[0]

    def with_teacher(folder) -> list[str]:
        argv = distil_args(tmp_path / "run", "--steps", "1")
        argv[argv.index("--teacher") + 1] = str(folder)
        return argv

    assert "has no masked-LM head" in error(with_teacher(not_a_teacher))
    assert "model_type is 'distilbert', not 'bert'" in error(with_teacher(distilled))  # a student is no teacher
    assert "exceeds the teacher's max_position_embeddings (64)" in error(
        distil_args(tmp_path / "run", "--seq-len", "100"))
    assert "--objective distillation trains with python -m numpy_bert" in error(
        distil_args(tmp_path / "run", "--device", "cpu"), TorchBackend)
    assert not (tmp_path / "run" / "args.json").exists(), "a failed start must not leave a run to --resume"
