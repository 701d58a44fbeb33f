"""Which class and which tokenizer read a model folder, chosen as transformers' Auto classes choose them.

``transformers.AutoModelForMaskedLM.from_pretrained(folder)`` reads config.json's ``model_type`` and
builds that family member's masked-LM class; ``AutoModel`` its encoder. Each pipeline holds such a
table, from model_type to a :class:`TaskModel` (the class, the head its checkpoint must hold)::

    model_type   fill-mask               feature-extraction   the other tasks
    bert         BertForMaskedLM         BertModel            BertFor{SequenceClassification,...}
    roberta      RobertaForMaskedLM      RobertaModel         -
    albert       AlbertForMaskedLM       AlbertModel          -
    electra      ElectraForMaskedLM      ElectraModel         -
    distilbert   DistilBertForMaskedLM   DistilBertModel      -

A checkpoint of another class of the same model_type loads by parameter name (an
AlbertForPreTraining's into AlbertForMaskedLM, its sentence-order head left out); a head the
checkpoint lacks is refused (:func:`~numpy_bert.pipelines.base.check_head`). config.json's
``architectures`` only says, in that refusal, what the folder holds. An ELECTRA run folder
(``train --objective electra``) holds the discriminator, which has no masked-LM head, and the
generator in generator/: fill-mask reads the generator (FillMaskPipeline.weights_folder).

The tokenizer comes from the folder's files (:func:`tokenizer_from_folder`): vocab.json + merges.txt
is RoBERTa's byte-level BPE (mask ``<mask>``), vocab.txt BERT's WordPiece (mask ``[MASK]``), which is
also what ``train`` gives a RoBERTa, an ALBERT or an ELECTRA. A pipeline's mask is its tokenizer's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..checkpoint import model_type, named_model_dir, read_json_object
from ..config import CONFIG_NAME
from ..text.byte_level_bpe import MERGES_NAME, TOKENIZER_NAME, RobertaTokenizer
from ..text.byte_level_bpe import VOCAB_NAME as BPE_VOCAB_NAME
from ..text.tokenization import VOCAB_NAME, BertTokenizer, TokenizerBase

# Model types whose models take no token_type_ids (DistilBERT has no token-type table): a WordPiece
# tokenizer writes them all the same, so the pipelines leave them out (transformers' DistilBertTokenizer
# does not write them).
WITHOUT_TOKEN_TYPES = frozenset({"distilbert"})
NO_POOLER = {"add_pooling_layer": False}  # the encoders that have a pooler: their features do not use it


@dataclass(frozen=True)
class TaskModel:
    """The class that runs a task for one model_type: its name (the same in numpy_bert and torch_bert),
    the name prefixes of its head's tensors (which the checkpoint must hold), the keyword arguments it
    is built with, and how to get a checkpoint with that head (None: the pipeline's ``advice``)."""

    class_name: str
    heads: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    advice: str | None = None


def folder_model_type(folder: str | os.PathLike) -> str:
    """config.json's model_type; "bert" without one (numpy_bert's configs before model_type was written;
    without a config.json at all, the model's from_pretrained says so)."""
    return model_type(folder) or "bert"


def task_model(models: dict[str, TaskModel], folder: str | os.PathLike, task: str) -> TaskModel:
    """The row of ``models`` for the folder's model_type; one that the task has no class for is refused."""
    kind = folder_model_type(folder)
    if kind not in models:
        raise ValueError(f"{os.fspath(folder)} holds a {kind!r} model (config.json's model_type), which the {task} "
                         f"pipeline does not read: it reads {', '.join(models)} models")
    return models[kind]


def what_it_holds(folder: str | os.PathLike) -> str:
    """The folder's weights by class, as config.json's ``architectures`` names them ("ElectraForPreTraining
    weights"), else by model_type: what an error says the folder holds."""
    path = os.path.join(folder, CONFIG_NAME)
    architectures = read_json_object(path).get("architectures") if os.path.isfile(path) else None
    if isinstance(architectures, list) and architectures and all(isinstance(a, str) for a in architectures):
        return f"{' and '.join(architectures)} weights"
    return f"{folder_model_type(folder)} weights"


def tokenizer_from_folder(folder: str | os.PathLike) -> TokenizerBase:
    """The tokenizer a folder's files make, as transformers' AutoTokenizer reads them: vocab.json + merges.txt
    (or transformers 5's tokenizer.json alone) a RobertaTokenizer, vocab.txt a BertTokenizer."""
    folder = named_model_dir(folder)  # "minilm" and "python-docs" too
    has = {name: os.path.isfile(os.path.join(folder, name))
           for name in (BPE_VOCAB_NAME, MERGES_NAME, VOCAB_NAME, TOKENIZER_NAME)}
    if has[BPE_VOCAB_NAME] and has[MERGES_NAME]:
        return RobertaTokenizer.from_pretrained(folder)
    if has[VOCAB_NAME] or not os.path.isdir(folder):  # not a folder: BertTokenizer says so
        return BertTokenizer.from_pretrained(folder)
    if has[TOKENIZER_NAME]:
        return RobertaTokenizer.from_pretrained(folder)  # refused there unless it is a byte-level BPE
    raise ValueError(f"{folder} holds no tokenizer: neither {VOCAB_NAME} (WordPiece) nor {BPE_VOCAB_NAME} and "
                     f"{MERGES_NAME} (byte-level BPE); save the tokenizer there (tokenizer.save_pretrained), or give "
                     "the pipeline tokenizer= a folder that has one")
