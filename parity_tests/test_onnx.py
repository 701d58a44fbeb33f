"""The ONNX export (``python -m torch_bert export-onnx``), run in ONNX Runtime against numpy_bert and transformers.

Each architecture is exported once (a module fixture: tracing takes seconds), then hypothesis
draws padded batches of any size for the graph, whose axes are dynamic. float32 throughout:
ONNX Runtime adds in its own order, so the tolerance is float32's, max|ort - numpy| / max|numpy|
at most 1e-5 per output.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy_bert
from numpy_bert.cli.main import main as numpy_main
from numpy_bert.config import BertConfig
from parity_tests.compare import assert_close
from torch_bert.export.onnx import INPUT_NAMES, OUTPUTS, RECORD_NAME, export_onnx
from torch_bert.training.pretraining import TorchBackend

TOLERANCE = 1e-5  # float32: ONNX Runtime's kernels sum in another order than NumPy's BLAS
ARCHITECTURES = ["BertModel", "BertForPreTraining", "BertForSequenceClassification", "BertForQuestionAnswering"]


def torch_main(argv: list[str]) -> int:
    return numpy_main(argv, backend=TorchBackend)


def tiny_config() -> BertConfig:
    return BertConfig(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=48, max_position_embeddings=64, type_vocab_size=2, num_labels=3)


def write_tiny_checkpoint(folder, architecture: str) -> numpy_bert.BertModel:
    """A randomly initialised numpy_bert model of ``architecture`` with a vocabulary, saved in ``folder``."""
    model = getattr(numpy_bert, architecture)(tiny_config(), seed=1).eval()
    model.save_pretrained(folder)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (folder / "vocab.txt").write_text("\n".join(specials + [f"w{i}" for i in range(99 - len(specials))]) + "\n")
    return model


def padded_batch(config: BertConfig, rng: np.random.Generator, batch: int, length: int) -> dict[str, np.ndarray]:
    """Right padding of random length per row (at least one real token), two segments."""
    lengths = rng.integers(1, length + 1, batch)
    return {"input_ids": rng.integers(0, config.vocab_size, (batch, length)).astype(np.int64),
            "attention_mask": (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64),
            "token_type_ids": rng.integers(0, config.type_vocab_size, (batch, length)).astype(np.int64)}


def run_onnx(session: onnxruntime.InferenceSession, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, batch), strict=True))


def numpy_outputs(model, batch: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    out = model(**batch)
    return {name: getattr(out, name) for name in names}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple]:
    """{architecture: (numpy model, ONNX Runtime session, export record)}, each exported with the dynamo exporter."""
    models = {}
    for architecture in ARCHITECTURES:
        folder = tmp_path_factory.mktemp(architecture)
        model = write_tiny_checkpoint(folder / "model", architecture)
        record = export_onnx(folder / "model", folder / "onnx")
        session = onnxruntime.InferenceSession(str(folder / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
        models[architecture] = (model, session, record)
    return models


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_graph_has_the_documented_interface(exported, architecture):
    """int64 inputs with dynamic (batch, sequence) axes; outputs named as transformers names them."""
    _, session, record = exported[architecture]
    inputs = {i.name: i for i in session.get_inputs()}
    assert list(inputs) == list(INPUT_NAMES)
    assert all(i.type == "tensor(int64)" and [isinstance(d, str) for d in i.shape] == [True, True]
               for i in inputs.values())
    assert [o.name for o in session.get_outputs()] == list(OUTPUTS[architecture]) == record["outputs"]
    assert max(record["max_relative_difference_from_torch_bert"].values()) <= TOLERANCE


@settings(max_examples=20, deadline=None)
@given(architecture=st.sampled_from(ARCHITECTURES), batch=st.integers(1, 5), length=st.integers(1, 64),
       seed=st.integers(0, 2**16))
def test_onnx_runtime_matches_numpy_bert_on_padded_batches(exported, architecture, batch, length, seed):
    """Any batch size and length up to max_position_embeddings, rows padded to random lengths."""
    model, session, record = exported[architecture]
    inputs = padded_batch(model.config, np.random.default_rng(seed), batch, length)
    assert_close(run_onnx(session, inputs), numpy_outputs(model, inputs, tuple(record["outputs"])), TOLERANCE,
                 f"ONNX Runtime vs numpy_bert, {architecture}, batch {batch} x {length}")


def test_unpadded_batch_uses_the_same_graph(exported):
    """The eager models skip an all-ones mask; the graph applies it always, and gets the same numbers."""
    model, session, record = exported["BertModel"]
    inputs = padded_batch(model.config, np.random.default_rng(0), 3, 17)
    inputs["attention_mask"][:] = 1
    assert_close(run_onnx(session, inputs), numpy_outputs(model, inputs, tuple(record["outputs"])), TOLERANCE,
                 "ONNX Runtime vs numpy_bert without padding")


@pytest.fixture(scope="module")
def minilm_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm") / "onnx"
    assert torch_main(["export-onnx", "minilm", "--out", str(out)]) == 0
    return out


def test_minilm_export_matches_numpy_bert_and_transformers(minilm_onnx, minilm_dir):
    """The real all-MiniLM-L6-v2 through the command line: the same vectors as numpy_bert and transformers."""
    session = onnxruntime.InferenceSession(str(minilm_onnx / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = numpy_bert.BertTokenizer.from_pretrained(minilm_onnx)  # the folder carries the tokenizer
    texts = ["A list is a mutable sequence.", "Tuples cannot change once they are created, which is why"
             " they can be dictionary keys.", "Hi"]
    encoded = tokenizer(texts, padding=True, return_tensors="np")
    inputs = {name: np.asarray(encoded[name], dtype=np.int64) for name in INPUT_NAMES}
    got = run_onnx(session, inputs)
    ours = numpy_outputs(numpy_bert.BertModel.from_pretrained("minilm").eval(), inputs,
                         ("last_hidden_state", "pooler_output"))
    assert_close(got, ours, TOLERANCE, "ONNX Runtime vs numpy_bert, MiniLM")
    reference = transformers.BertModel.from_pretrained(minilm_dir).eval()
    with torch.inference_mode():
        theirs = reference(**{name: torch.from_numpy(array) for name, array in inputs.items()})
    assert_close(got, {"last_hidden_state": theirs.last_hidden_state, "pooler_output": theirs.pooler_output},
                 TOLERANCE, "ONNX Runtime vs transformers, MiniLM")
    record = json.loads((minilm_onnx / RECORD_NAME).read_text())
    assert record["architecture"] == "BertModel" and record["exporter"] == "dynamo"
    assert BertConfig.from_pretrained(minilm_onnx).hidden_size == 384


def test_torchscript_exporter_gives_the_same_graph_numbers(tmp_path):
    model = write_tiny_checkpoint(tmp_path / "model", "BertForMaskedLM")
    assert torch_main(["export-onnx", str(tmp_path / "model"), "--out", str(tmp_path / "onnx"),
                       "--exporter", "torchscript"]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, length in ((1, 5), (4, 33)):
        inputs = padded_batch(model.config, np.random.default_rng(length), batch, length)
        assert_close(run_onnx(session, inputs), numpy_outputs(model, inputs, ("logits",)), TOLERANCE,
                     f"TorchScript-exported graph vs numpy_bert, {batch} x {length}")
    # What an export killed mid-write leaves (its staging folder) goes with the next export; nothing else does.
    stale = tmp_path / "onnx" / ".model.onnx.k1lled00.tmp"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half a graph")
    before = sorted(p.name for p in (tmp_path / "onnx").iterdir() if p != stale)
    assert torch_main(["export-onnx", str(tmp_path / "model"), "--out", str(tmp_path / "onnx"),
                       "--exporter", "torchscript", "--overwrite-output-dir"]) == 0
    assert not stale.exists() and sorted(p.name for p in (tmp_path / "onnx").iterdir()) == before


def test_export_onnx_refuses_bad_input_in_one_line(tmp_path, capsys):
    """A missing model, an int8 checkpoint and a folder of someone else's files: exit 2, one line, no traceback."""
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    write_tiny_checkpoint(tmp_path / "model", "BertModel")
    assert numpy_main(["quantize", str(tmp_path / "model"), "--out", str(tmp_path / "int8")]) == 0
    capsys.readouterr()
    cases = {"does not exist": [str(tmp_path / "missing")],
             "int8 weights": [str(tmp_path / "int8")],
             "--overwrite-output-dir": [str(tmp_path / "model"), "--out", str(tmp_path / "theirs")]}
    for expected, args in cases.items():
        argv = ["export-onnx", *args] + ([] if "--out" in args else ["--out", str(tmp_path / "out")])
        assert torch_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "theirs").iterdir()) == ["notes.txt"]
