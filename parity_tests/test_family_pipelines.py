"""numpy_bert.pipeline and torch_bert.pipeline on the BERT family, against transformers' own pipelines.

For each family member a tiny random model is saved with ``save_pretrained`` beside a
tokenizer: a WordPiece vocabulary learned from a small text (what ``train`` gives RoBERTa,
ALBERT and ELECTRA) and, for RoBERTa, also a byte-level BPE one learned by
``numpy_bert.text.bpe_trainer.train_bpe``. ALBERT is saved as AlbertForPreTraining (its
sentence-order head is left out by fill-mask), ELECTRA both as a generator folder and as a
``train --objective electra`` checkpoint (the discriminator on top, the generator in
generator/). ``transformers.pipeline(task, model=folder)`` reads the same folders (an
ELECTRA run's generator/ for fill-mask, as ``python -m numpy_bert fill-mask RUN`` does).
Everything runs in float32: the chosen class, the tokens, their order and the sequences
must be equal, scores within 1e-5 (absolute), features within 1e-5.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy_bert
from numpy_bert import (
    AlbertConfig,
    AlbertForPreTraining,
    AlbertModel,
    BertTokenizer,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertModel,
    ElectraConfig,
    ElectraForMaskedLM,
    ElectraForPreTraining,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaModel,
    RobertaTokenizer,
)
from numpy_bert.checkpoint import GENERATOR_DIR
from numpy_bert.text.bpe_trainer import train_bpe
from numpy_bert.text.wordpiece_trainer import train_wordpiece_vocab
from numpy_bert.training.electra import ReplacedTokenDetection

from .test_pipelines import LIBRARIES, assert_features, assert_same

CORPUS = [
    "A list is a mutable sequence, and a tuple is an immutable one.",
    "The sort method sorts the list in place; sorted returns a new list.",
    "Open the file, read its lines, then close the file again.",
    "A dictionary maps keys to values, and a set holds unique values.",
    "The path module joins and splits the names of files and folders.",
    "Strings are immutable sequences of characters in Python.",
] * 3
# The corpus's words, and words it lacks: cased, accented, pieces, unknown, an emoji, punctuation.
WORDS = [*sorted({w.strip(".,;") for text in CORPUS for w in text.split()}),
         "Zürich", "naïve", "lists", "sorting", "xyz", "🙂", "don't", ",", ".", "(files)"]
SIZES = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
             max_position_embeddings=80, initializer_range=0.3)
MEMBERS = ["roberta", "roberta-bpe", "albert", "electra", "electra-run", "distilbert"]
HYPOTHESIS = settings(max_examples=8, deadline=None)


def special_ids(tokenizer) -> dict[str, int]:
    """A family config's pad, bos and eos ids from its tokenizer, as ``train`` sets them."""
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.cls_token_id,
            "eos_token_id": tokenizer.sep_token_id}


def family_models(wordpiece: BertTokenizer, bpe: RobertaTokenizer) -> dict[str, tuple]:
    """(model, tokenizer) of each member; ELECTRA's run is the generator and discriminator pair."""
    words = {"vocab_size": len(wordpiece), **SIZES}
    roberta = dict(words, **special_ids(wordpiece), type_vocab_size=1)
    electra = ElectraConfig(**words, embedding_size=8)
    return {
        "roberta": (RobertaForMaskedLM(RobertaConfig(**roberta), seed=1), wordpiece),
        "roberta-bpe": (RobertaForMaskedLM(RobertaConfig(**dict(roberta, vocab_size=len(bpe), **special_ids(bpe))),
                                           seed=2), bpe),
        "albert": (AlbertForPreTraining(AlbertConfig(**words, **special_ids(wordpiece), embedding_size=8), seed=3),
                   wordpiece),
        "electra": (ElectraForMaskedLM(electra, seed=4), wordpiece),
        "electra-run": (ReplacedTokenDetection.create(electra, generator_size=0.5, seed=5), wordpiece),
        "distilbert": (DistilBertForMaskedLM(DistilBertConfig(vocab_size=len(wordpiece), dim=16, n_layers=2, n_heads=2,
                                                              hidden_dim=32, max_position_embeddings=80,
                                                              initializer_range=0.3), seed=6), wordpiece),
    }


@pytest.fixture(scope="module")
def tokenizers() -> tuple[BertTokenizer, RobertaTokenizer]:
    tokens, merges = train_bpe(CORPUS, vocab_size=300)
    return BertTokenizer(vocab=train_wordpiece_vocab(CORPUS, vocab_size=150)), RobertaTokenizer(vocab=tokens,
                                                                                               merges=merges)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizers) -> dict[str, str]:
    """Each member's folder: its model's save_pretrained and its tokenizer's."""
    paths = {}
    for name, (model, tokenizer) in family_models(*tokenizers).items():
        paths[name] = str(tmp_path_factory.mktemp(name))
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return paths


def reference_folder(folders: dict[str, str], member: str, task: str) -> str:
    """Where transformers reads the member's model for the task: an ELECTRA run fills masks with generator/."""
    folder = folders[member]
    return os.path.join(folder, GENERATOR_DIR) if member == "electra-run" and task == "fill-mask" else folder


@pytest.fixture(scope="module", params=list(LIBRARIES))
def library(request, one_torch_thread):
    """``pipeline(task, folder)`` of one backend, each built once."""
    built = {}

    def make(task: str, folder: str):
        if (task, folder) not in built:
            built[task, folder] = LIBRARIES[request.param](task, model=folder)
        return built[task, folder]
    return make


@pytest.fixture(scope="module")
def reference(folders):
    """transformers.pipeline(task, member's folder), each built once."""
    transformers.logging.set_verbosity_error()
    built = {}

    def make(task: str, member: str):
        if (task, member) not in built:
            built[task, member] = transformers.pipeline(task, model=reference_folder(folders, member, task),
                                                        tokenizer=folders[member], device="cpu")
        return built[task, member]
    return make


@st.composite
def masked_texts(draw, mask: str) -> str:
    """Up to 8 of WORDS with one or two mask tokens."""
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8))
    for _ in range(draw(st.integers(1, 2))):
        words.insert(draw(st.integers(0, len(words))), mask)
    return " ".join(words)


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join)


@pytest.mark.parametrize("member", MEMBERS)
def test_the_class_and_tokenizer_are_transformers_choice(library, reference, folders, member):
    """The model class (by config.json's model_type) and the tokenizer (by the folder's files) that
    transformers' Auto classes pick; the mask is the tokenizer's ("<mask>" for the BPE)."""
    for task in ("fill-mask", "feature-extraction"):
        ours, theirs = library(task, folders[member]), reference(task, member)
        assert type(ours.model).__name__ == type(theirs.model).__name__
        assert type(ours.tokenizer).__name__ == type(theirs.tokenizer).__name__
        assert ours.tokenizer.mask_token == theirs.tokenizer.mask_token == ("<mask>" if member == "roberta-bpe"
                                                                            else "[MASK]")


@pytest.mark.parametrize("member", MEMBERS)
@HYPOTHESIS
@given(data=st.data(), top_k=st.integers(1, 6))
def test_fill_mask_matches_transformers(library, reference, folders, member, data, top_k):
    """One mask: a list of candidates; two: a list per mask. Same tokens in the same order, same token_str
    and sequences, scores within 1e-5."""
    fill = library("fill-mask", folders[member])
    text = data.draw(masked_texts(fill.tokenizer.mask_token))
    assert_same(fill(text, top_k=top_k), reference("fill-mask", member)(text, top_k=top_k))


@pytest.mark.parametrize("member", MEMBERS)
@HYPOTHESIS
@given(text=texts)
def test_feature_extraction_matches_transformers(library, reference, folders, member, text):
    """The last hidden state, 1 x T x C with the special tokens, within 1e-5 (ELECTRA's run: the discriminator)."""
    assert_features(library("feature-extraction", folders[member])(text), reference("feature-extraction", member)(text))


# ---- refusals --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refused(tmp_path_factory, folders, tokenizers) -> dict[str, str]:
    """Folders that a task must refuse: encoders without a masked-LM head, a discriminator alone, a generator
    folder without a tokenizer, and a model_type outside the family."""
    wordpiece, _ = tokenizers
    words = {"vocab_size": len(wordpiece), **SIZES}
    encoders = {"RobertaModel": RobertaModel(RobertaConfig(**words, **special_ids(wordpiece))),
                "AlbertModel": AlbertModel(AlbertConfig(**words, embedding_size=8)),
                "DistilBertModel": DistilBertModel(DistilBertConfig(vocab_size=len(wordpiece), dim=16, n_layers=1,
                                                                    n_heads=2, hidden_dim=32)),
                "ElectraForPreTraining": ElectraForPreTraining(ElectraConfig(**words, embedding_size=8))}
    paths = {}
    for name, model in encoders.items():
        paths[name] = str(tmp_path_factory.mktemp(name))
        model.save_pretrained(paths[name])
        wordpiece.save_pretrained(paths[name])
    paths["deberta"] = shutil.copytree(folders["roberta"], tmp_path_factory.mktemp("deberta") / "model")
    config_path = os.path.join(paths["deberta"], "config.json")
    with open(config_path) as file:
        config = json.load(file)
    with open(config_path, "w") as file:
        json.dump({**config, "model_type": "deberta"}, file)
    paths["generator-alone"] = os.path.join(folders["electra-run"], GENERATOR_DIR)
    paths["roberta"] = folders["roberta"]
    return paths


@pytest.mark.parametrize("task, folder, message", [
    ("fill-mask", "RobertaModel", r"\(RobertaModel weights\) has no fill-mask head \(no lm_head\.\* tensors\)"),
    ("fill-mask", "AlbertModel", r"\(AlbertModel weights\) has no fill-mask head \(no predictions\.\* tensors\)"),
    ("fill-mask", "DistilBertModel", r"\(DistilBertModel weights\) has no fill-mask head \(no vocab_transform\.\* or "
                                     r"vocab_layer_norm\.\* or vocab_projector\.\* tensors\).*DistilBertForMaskedLM"),
    ("fill-mask", "ElectraForPreTraining", r"\(ElectraForPreTraining weights\) has no fill-mask head "
                                           r"\(no generator_predictions\.\*.*run folder, whose generator/ fills masks"),
    ("fill-mask", "deberta", r"holds a 'deberta' model \(config\.json's model_type\), which the fill-mask pipeline "
                             r"does not read: it reads bert, roberta, albert, electra, distilbert models"),
    ("feature-extraction", "deberta", r"holds a 'deberta' model .* which the feature-extraction pipeline"),
    ("text-classification", "roberta", r"holds a 'roberta' model .* which the text-classification pipeline does not "
                                       r"read: it reads bert models"),
    ("fill-mask", "generator-alone", r"holds no tokenizer: neither vocab\.txt \(WordPiece\) nor vocab\.json and "
                                     r"merges\.txt \(byte-level BPE\); save the tokenizer there"),
])
def test_refusals_are_one_line_naming_the_folder(library, refused, task, folder, message):
    with pytest.raises(ValueError, match=message) as error:
        library(task, refused[folder])
    assert str(error.value).startswith(os.fspath(refused[folder])) and "\n" not in str(error.value)


def test_a_generator_folder_reads_with_the_runs_tokenizer(folders):
    """generator/ alone, given the run's tokenizer, is the fill-mask pipeline of the run folder itself."""
    run = folders["electra-run"]
    text = "A list is a [MASK] sequence."
    assert (numpy_bert.pipeline("fill-mask", os.path.join(run, GENERATOR_DIR), tokenizer=run)(text)
            == numpy_bert.pipeline("fill-mask", run)(text))
    assert np.asarray(numpy_bert.pipeline("feature-extraction", run)(text)).shape[2] == SIZES["hidden_size"]
