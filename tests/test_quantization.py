"""Int8 weights (numpy_bert/quantization.py) and ``python -m numpy_bert quantize``.

The arithmetic is checked against its derivation (|w - sQ| <= s/2, the scale factored out of
the sum), the checkpoint against its layout (int8 tensors, float32 scales, a config that says
so, a quarter of the size), and the model against float32: MiniLM's sentence vectors keep a
cosine of at least 0.99, the python-docs model fills masks with the same top tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors.numpy import load_file

import numpy_bert
from numpy_bert.cli.main import main
from numpy_bert.config import BertConfig
from numpy_bert.layers import Linear
from numpy_bert.pipelines.sentence_embeddings import SentenceEncoder
from numpy_bert.quantization import (
    INT8_MAX,
    QuantizedEmbedding,
    QuantizedLinear,
    dequantize_rows,
    quantize_model,
    quantize_rows,
)

finite_floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)
matrices = hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=finite_floats)


@pytest.mark.filterwarnings("error")  # hypothesis found rows of tiny weights whose scale underflowed
@settings(max_examples=200, deadline=None)
@given(w=matrices)
def test_rounding_error_is_at_most_half_a_step_per_row(w):
    """Q is int8 in [-127, 127]; |w - sQ| <= s/2 in every row; a row's largest weight maps to ±127, unless
    the row is so small that its step would be a subnormal float32 (hypothesis found such rows)."""
    q, scale = quantize_rows(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (w.shape[0],)
    assert np.abs(q.astype(np.int32)).max() <= INT8_MAX
    error = np.abs(dequantize_rows(q, scale) - w)
    assert (error <= scale[:, None] / 2 * (1 + 1e-6)).all()
    largest = np.abs(w).max(axis=1)
    normal = largest >= INT8_MAX * np.finfo(np.float32).tiny  # a step that float32 holds to full precision
    assert (np.abs(q[normal].astype(np.int32)).max(axis=1) == INT8_MAX).all()
    assert (q[largest == 0] == 0).all()


@settings(max_examples=50, deadline=None)
@given(w=matrices, rows=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_quantized_linear_is_the_linear_of_the_dequantized_weights(w, rows, seed):
    """s * (x Q^T) + b == x (sQ)^T + b: the scale leaves the sum because it belongs to the output."""
    linear = Linear(w.shape[1], w.shape[0])
    linear.weight.data, linear.bias.data = w, np.random.default_rng(seed).normal(size=w.shape[0]).astype(np.float32)
    layer = QuantizedLinear.from_linear(linear)
    x = np.random.default_rng(seed + 1).normal(size=(rows, w.shape[1])).astype(np.float32)
    weights = dequantize_rows(layer.weight.data, layer.weight_scale.data).astype(np.float64)
    expected = x.astype(np.float64) @ weights.T + linear.bias.data
    got = layer(x)
    assert got.dtype == np.float32
    # float32 rounding is relative to the sizes of the terms summed, not to their sum (which may cancel)
    magnitude = np.abs(x) @ np.abs(weights).T + np.abs(linear.bias.data)
    assert (np.abs(got - expected) <= 1e-6 * (w.shape[1] + 2) * magnitude + 1e-30).all()


def tiny(cls=numpy_bert.BertForPreTraining):
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=32, max_position_embeddings=32)
    return cls(config, seed=0).eval()


def test_quantize_model_swaps_every_matrix_and_keeps_the_decoder_tied():
    model = quantize_model(tiny())
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    assert "Linear" not in kinds.values() and "Embedding" in kinds.values()  # position and token-type tables
    assert kinds["bert.embeddings.word_embeddings"] == "QuantizedEmbedding"
    decoder, table = model.cls.predictions.decoder, model.bert.embeddings.word_embeddings
    assert isinstance(table, QuantizedEmbedding) and decoder.weight is table.weight
    assert decoder.weight_scale is table.weight_scale
    assert model.dtype == np.float32
    assert model.to(np.float64).bert.embeddings.word_embeddings.weight.data.dtype == np.int8  # only floats cast
    with pytest.raises(NotImplementedError, match="inference only"):
        model.bert.encoder.layer[0].intermediate.dense.backward(np.zeros((1, 32), np.float32))


def test_checkpoint_round_trip_is_exact_and_laid_out_as_documented(tmp_path):
    model = quantize_model(tiny())
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "numpy_bert_int8"
    assert tensors["bert.embeddings.word_embeddings.weight"].dtype == np.int8
    assert tensors["bert.embeddings.word_embeddings.weight_scale"].dtype == np.float32
    assert tensors["bert.embeddings.position_embeddings.weight"].dtype == np.float32
    assert "cls.predictions.decoder.weight" not in tensors  # tied, stored once
    loaded = numpy_bert.BertForPreTraining.from_pretrained(tmp_path).eval()
    ids = np.random.default_rng(0).integers(0, 50, (2, 9))
    np.testing.assert_array_equal(loaded(ids).prediction_logits, model(ids).prediction_logits)
    with pytest.raises(ValueError, match="dtype float32"):
        numpy_bert.BertForPreTraining.from_pretrained(tmp_path, dtype=np.float64)


@pytest.fixture(scope="module")
def minilm_int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "minilm-int8"
    assert main(["quantize", "minilm", "--out", str(out)]) == 0
    return out


def test_minilm_int8_is_a_quarter_of_the_size_with_the_same_sentence_vectors(minilm_int8):
    """The README's targets: at most 0.35x the float32 file, cosine to float32's vectors at least 0.99."""
    float32_file = Path(numpy_bert.checkpoint.named_model_dir("minilm")) / "model.safetensors"  # float32 already
    assert (minilm_int8 / "model.safetensors").stat().st_size <= 0.35 * float32_file.stat().st_size
    from pydoc_data.topics import topics

    sentences = [text.split(".")[0][:300] for text in list(topics.values())[:48]]
    reference = SentenceEncoder.from_pretrained("minilm").encode(sentences)
    quantized = SentenceEncoder.from_pretrained(minilm_int8).encode(sentences)
    cosine = (reference * quantized).sum(axis=1)  # both L2-normalised
    assert cosine.min() >= 0.99, f"lowest cosine {cosine.min():.4f} on {sentences[int(cosine.argmin())]!r}"


def test_python_docs_int8_fills_masks_like_float32(tmp_path, capsys):
    assert main(["quantize", "python-docs", "--out", str(tmp_path / "int8")]) == 0
    fill = numpy_bert.pipeline("fill-mask", model="python-docs")
    fill_int8 = numpy_bert.pipeline("fill-mask", model=str(tmp_path / "int8"))
    for text in ("A list is a mutable [MASK].", "Return the number of items in the [MASK].",
                 "The [MASK] statement is used for repeated execution."):
        assert fill(text, top_k=1)[0]["token_str"] == fill_int8(text, top_k=1)[0]["token_str"], text


def test_quantize_refuses_what_it_cannot_do_in_one_line(tmp_path, minilm_int8, capsys):
    """An int8 model again, --fast on int8 weights, torch_bert on them: exit 2, one line each."""
    import torch_bert
    from torch_bert.training.pretraining import TorchBackend

    capsys.readouterr()
    model = tiny()
    model.save_pretrained(tmp_path / "float")
    (tmp_path / "float" / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                                            + [f"w{i}" for i in range(45)]) + "\n")
    assert main(["quantize", str(tmp_path / "float"), "--out", str(tmp_path / "int8")]) == 0
    capsys.readouterr()
    cases = [(main, ["quantize", str(minilm_int8), "--out", str(tmp_path / "again")], "already int8"),
             (main, ["fill-mask", str(tmp_path / "int8"), "a [MASK]", "--fast"], "without --fast"),
             (lambda argv: main(argv, backend=TorchBackend), ["fill-mask", str(tmp_path / "int8"), "a [MASK]"],
              "float32 model")]
    for run, argv, expected in cases:
        assert run(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
    with pytest.raises(ValueError, match="int8"):
        torch_bert.BertForPreTraining.from_pretrained(tmp_path / "int8")


def test_deployment_doc_shows_the_committed_int8_figures():
    """docs/deployment.md's table is benchmarks/results/int8_quality.json rendered (regenerate both together)."""
    from benchmarks.int8_quality import PATH, table

    doc = (Path(__file__).resolve().parent.parent / "docs" / "deployment.md").read_text()
    assert table(json.loads(PATH.read_text())) in doc, "re-render: python -m benchmarks.int8_quality --plot"
