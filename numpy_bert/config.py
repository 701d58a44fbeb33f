"""BertConfig: the model's hyper-parameters, with transformers' field names and defaults.

A config.json written here loads in ``transformers.BertConfig`` and back; unknown
fields that transformers writes (``architectures``, ``dtype``, ...) are kept in
``extra`` so a round trip loses nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

CONFIG_NAME = "config.json"
IGNORE_INDEX = -100  # label value that contributes no loss, as in torch and transformers

# The BERT miniatures of Turc et al. 2019 ("Well-Read Students Learn Better"):
# name -> (num_hidden_layers L, hidden_size H, num_attention_heads A). The
# feed-forward size is always 4H, as in the original release.
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base": (12, 768, 12),
}

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new")


@dataclass
class BertConfig:
    # config.json's "model_type", which transformers' AutoConfig dispatches on; each family member's config
    # (RobertaConfig, AlbertConfig, ...) subclasses this one and names its own.
    model_type: ClassVar[str] = "bert"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"  # "gelu": exact erf form; "gelu_new": tanh approximation
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # Task heads (fine-tuning): number of labels and their names, as in transformers.
    num_labels: int = 2
    classifier_dropout: float | None = None
    id2label: dict[int, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field of the wrong type or range, then the first inconsistency."""
        check_field_rules(self, FIELD_RULES)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) is not divisible by num_attention_heads "
                f"({self.num_attention_heads}): each head needs hidden_size / num_heads dimensions"
            )
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside [0, vocab_size={self.vocab_size})")
        if self.id2label is not None:
            _check_id2label(self.id2label, self.num_labels)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> BertConfig:
        """A BERT miniature by name: tiny, mini, small, medium or base."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        layers, hidden, heads = PRESETS[name]
        fields = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                      intermediate_size=4 * hidden)
        fields.update(overrides)
        return cls(**fields)

    def replace(self, **changes: Any) -> BertConfig:
        return dataclasses.replace(self, **changes)

    # ---- config.json --------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.extra)
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        if data["id2label"] is None:
            del data["id2label"]
        else:  # JSON keys are strings, as transformers writes them
            data["id2label"] = {str(k): v for k, v in data["id2label"].items()}
            data["label2id"] = {v: int(k) for k, v in data["id2label"].items()}
        data["model_type"] = self.model_type
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        """A config from config.json's fields; those it does not know are kept in ``extra``."""
        if data.get("model_type", cls.model_type) != cls.model_type:
            raise ValueError(f"model_type is {data['model_type']!r}, not {cls.model_type!r}: this is not a "
                             f"{cls.__name__}; load it with the classes for {data['model_type']!r}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k not in ("label2id", "model_type")}
        if kwargs.get("id2label") is not None:
            kwargs["id2label"] = read_id2label(kwargs["id2label"])
            kwargs.setdefault("num_labels", len(kwargs["id2label"]))  # transformers writes only id2label
        return cls(**kwargs, extra=extra)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from .checkpoint import atomic_write_bytes, json_bytes  # checkpoint.py imports this module

        os.makedirs(directory, exist_ok=True)
        atomic_write_bytes(os.path.join(directory, CONFIG_NAME), json_bytes(self.to_dict()))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> BertConfig:
        """The config.json of a checkpoint folder (or of a named model: "python-docs", "minilm")."""
        from .checkpoint import named_model_dir, read_json_object  # checkpoint.py imports this module

        directory = named_model_dir(directory)
        if not os.path.isdir(directory):
            raise ValueError(f"checkpoint folder {os.fspath(directory)!r} does not exist")
        path = os.path.join(directory, CONFIG_NAME)
        if not os.path.isfile(path):
            raise ValueError(f"no config.json in {os.fspath(directory)!r}")
        data = read_json_object(path)
        try:
            return cls.from_dict(data)
        except ValueError as err:  # name the file: a run folder may hold several config.json
            raise ValueError(f"{path}: {err}") from None


# ---- what each field must be -------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What a field must be: a test, and the words that refuse a value failing it."""

    accepts: Callable[[Any], bool]
    requirement: str  # follows the field's name: "hidden_size must be a positive integer"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not here


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # JSON may write 1e-12 as 1


POSITIVE_INT = Rule(lambda v: _is_int(v) and v > 0, "must be a positive integer")
PROBABILITY = Rule(lambda v: _is_real(v) and 0 <= v < 1, "must be a number in [0, 1)")  # nan fails
POSITIVE_FINITE = Rule(lambda v: _is_real(v) and 0 < v < math.inf, "must be a positive finite number")

FIELD_RULES: dict[str, Rule] = {
    **dict.fromkeys(("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels"),
                    POSITIVE_INT),
    "hidden_act": Rule(lambda v: isinstance(v, str) and v in SUPPORTED_ACTIVATIONS,
                       f"must be one of {SUPPORTED_ACTIVATIONS}"),
    "hidden_dropout_prob": PROBABILITY,
    "attention_probs_dropout_prob": PROBABILITY,
    "classifier_dropout": Rule(lambda v: v is None or PROBABILITY.accepts(v),
                               "must be null (use hidden_dropout_prob) or a number in [0, 1)"),
    "initializer_range": POSITIVE_FINITE,
    "layer_norm_eps": POSITIVE_FINITE,
    "pad_token_id": Rule(_is_int, "must be an integer"),
    "id2label": Rule(lambda v: v is None or isinstance(v, dict), "must be a mapping of label ids to names"),
}


def check_field_rules(config: Any, rules: dict[str, Rule]) -> None:
    """Raise ValueError naming the first field of ``config`` that its rule refuses (every config's first check)."""
    for name, rule in rules.items():
        value = getattr(config, name)
        if not rule.accepts(value):
            raise ValueError(f"{name} {rule.requirement}, got {_described(value)}")


def _described(value: Any) -> str:
    """A value and its type, as a refusal shows it: '384' (a str), 3.0 (a float)."""
    kind = type(value).__name__
    return f"{reprlib.repr(value)} ({'an' if kind[0] in 'aeiou' else 'a'} {kind})"  # reprlib: short, even when deep


def _check_id2label(id2label: dict, num_labels: int) -> None:
    ids = list(id2label)
    if not all(map(_is_int, ids)) or sorted(ids) != list(range(len(ids))):
        raise ValueError(f"id2label must map 0..n-1 to names, got keys {ids}")
    for index, name in id2label.items():
        if not isinstance(name, str):
            raise ValueError(f"id2label[{index}] must be a name (a string), got {_described(name)}")
    if len(id2label) != num_labels:
        raise ValueError(f"id2label has {len(id2label)} names but num_labels is {num_labels}")


def read_id2label(id2label: Any) -> dict:
    """config.json's id2label, whose keys JSON writes as strings ("0"), with integer keys."""
    if not isinstance(id2label, dict):
        raise ValueError(f"id2label must be a mapping of label ids to names, got {_described(id2label)}")
    return {_label_id(key): name for key, name in id2label.items()}


def _label_id(key: Any) -> Any:
    if isinstance(key, str) and key.strip().isdecimal():
        return int(key)
    if _is_int(key):
        return key
    raise ValueError(f"id2label keys must be the integers 0..n-1, got {_described(key)}")


# ---- ALBERT (numpy_bert/albert.py) ----------------------------------------------------------------


@dataclass
class AlbertConfig(BertConfig):
    """transformers' AlbertConfig: BertConfig's fields with ALBERT's defaults (albert-xxlarge's sizes, as
    transformers has them), plus the embedding width and the layer sharing that numpy_bert/albert.py explains."""

    model_type: ClassVar[str] = "albert"

    vocab_size: int = 30000
    hidden_size: int = 4096
    num_attention_heads: int = 64
    intermediate_size: int = 16384
    hidden_act: str = "gelu_new"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    embedding_size: int = 128  # E: the embedding tables' width, projected to hidden_size inside the encoder
    num_hidden_groups: int = 1  # G: sets of layer parameters; layer i runs group int(i / (L / G))
    inner_group_num: int = 1  # AlbertLayers in each group, run one after the other
    classifier_dropout_prob: float = 0.1  # dropout before the sentence-order head
    bos_token_id: int | None = 2  # [CLS] in ALBERT's SentencePiece vocabulary; kept for transformers
    eos_token_id: int | list[int] | None = 3  # [SEP]

    def validate(self) -> None:
        """BertConfig's checks, then ALBERT's fields, then: every group is used by some layer."""
        super().validate()
        for name, rule in ALBERT_FIELD_RULES.items():
            value = getattr(self, name)
            if not rule.accepts(value):
                raise ValueError(f"{name} {rule.requirement}, got {_described(value)}")
        if self.num_hidden_groups > self.num_hidden_layers:
            raise ValueError(f"num_hidden_groups ({self.num_hidden_groups}) exceeds num_hidden_layers "
                             f"({self.num_hidden_layers}): some group would be used by no layer; use at most "
                             f"{self.num_hidden_layers} groups")
        if self.extra.get("tie_word_embeddings", True) is not True:
            raise ValueError("tie_word_embeddings is false, but numpy_bert's ALBERT always ties the MLM decoder "
                             "to the word embeddings; remove it from config.json")


def _is_token_id(value: Any) -> bool:
    return value is None or _is_int(value) or (isinstance(value, list) and all(map(_is_int, value)))


ALBERT_FIELD_RULES: dict[str, Rule] = {
    **dict.fromkeys(("embedding_size", "num_hidden_groups", "inner_group_num"), POSITIVE_INT),
    "classifier_dropout_prob": PROBABILITY,
    **dict.fromkeys(("bos_token_id", "eos_token_id"),
                    Rule(_is_token_id, "must be null, an integer or a list of integers")),
}


# ---- ELECTRA (numpy_bert/electra.py) --------------------------------------------------------------


@dataclass
class ElectraConfig(BertConfig):
    """transformers' ElectraConfig: BertConfig's fields with ELECTRA's defaults (ELECTRA-small's sizes, as
    transformers has them), plus the embedding width and the sequence-summary fields transformers writes."""

    model_type: ClassVar[str] = "electra"

    hidden_size: int = 256
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    embedding_size: int = 128  # E: the embedding tables' width; a Linear E -> hidden_size follows when they differ
    # How ElectraForSequenceClassification-style heads summarise a sequence (transformers' fields, kept for it).
    summary_type: str = "first"
    summary_use_proj: bool = True
    summary_activation: str | None = "gelu"
    summary_last_dropout: float = 0.1

    def validate(self) -> None:
        """BertConfig's checks, then ELECTRA's fields; the generator's head is always tied to the word table."""
        super().validate()
        for name, rule in ELECTRA_FIELD_RULES.items():
            value = getattr(self, name)
            if not rule.accepts(value):
                raise ValueError(f"{name} {rule.requirement}, got {_described(value)}")
        if self.extra.get("tie_word_embeddings", True) is not True:
            raise ValueError("tie_word_embeddings is false, but numpy_bert's ElectraForMaskedLM always ties "
                             "generator_lm_head to the word embeddings; remove it from config.json")


SUMMARY_TYPES = ("last", "first", "mean", "cls_index", "attn")

ELECTRA_FIELD_RULES: dict[str, Rule] = {
    "embedding_size": POSITIVE_INT,
    "summary_type": Rule(lambda v: v in SUMMARY_TYPES, f"must be one of {SUMMARY_TYPES}"),
    "summary_use_proj": Rule(lambda v: isinstance(v, bool), "must be true or false"),
    "summary_activation": Rule(lambda v: v is None or isinstance(v, str), "must be null or an activation's name"),
    "summary_last_dropout": PROBABILITY,
}


# ---- DistilBERT (numpy_bert/distilbert.py) --------------------------------------------------------------


@dataclass
class DistilBertConfig:
    """transformers' DistilBertConfig: DistilBERT's own field names (XLM's: dim, n_layers, n_heads, hidden_dim,
    activation, dropout, ...) and defaults (distilbert-base-uncased's sizes).

    Not a BertConfig, since it has none of BERT's fields, but written, read and checked the same way:
    __post_init__, replace, to_dict, from_dict, save_pretrained and from_pretrained are BertConfig's own
    methods, and validate applies rules of the same kind. transformers' attribute_map lives on as
    read-only properties: hidden_size is dim, num_attention_heads n_heads, num_hidden_layers n_layers.
    """

    model_type: ClassVar[str] = "distilbert"

    vocab_size: int = 30522
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False  # fixed sine/cosine positions instead of a learned table: refused
    n_layers: int = 6
    n_heads: int = 12
    dim: int = 768
    hidden_dim: int = 3072  # the feed-forward width (4 * dim)
    dropout: float = 0.1  # after the embeddings and after each feed-forward block
    attention_dropout: float = 0.1  # on the attention probabilities
    activation: str = "gelu"  # "gelu": exact erf form; "gelu_new": tanh approximation
    initializer_range: float = 0.02
    qa_dropout: float = 0.1  # transformers' question-answering head (not built here); kept for its config.json
    seq_classif_dropout: float = 0.2  # transformers' classification heads (not built here)
    pad_token_id: int = 0
    tie_word_embeddings: bool = True  # the MLM vocab_projector's weight is the word-embedding matrix
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    __post_init__ = BertConfig.__post_init__  # validate()
    replace = BertConfig.replace
    to_dict = BertConfig.to_dict
    save_pretrained = BertConfig.save_pretrained
    from_dict = vars(BertConfig)["from_dict"]  # the classmethods themselves, so that cls is DistilBertConfig
    from_pretrained = vars(BertConfig)["from_pretrained"]

    def validate(self) -> None:
        """Raise ValueError naming the first field of the wrong type or range, then the first inconsistency."""
        check_field_rules(self, DISTILBERT_FIELD_RULES)
        if self.sinusoidal_pos_embds:
            raise ValueError("sinusoidal_pos_embds is true, but numpy_bert's DistilBERT learns its position "
                             "embeddings (as distilbert-base-uncased does); set it to false")
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) is not divisible by n_heads ({self.n_heads}): each head needs "
                             "dim / n_heads dimensions")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside [0, vocab_size={self.vocab_size})")
        if self.id2label is not None:
            _check_id2label(self.id2label, self.num_labels)

    @property
    def hidden_size(self) -> int:
        return self.dim

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads


SWITCH = Rule(lambda v: isinstance(v, bool), "must be true or false")

DISTILBERT_FIELD_RULES: dict[str, Rule] = {
    **dict.fromkeys(("vocab_size", "max_position_embeddings", "n_layers", "n_heads", "dim", "hidden_dim",
                     "num_labels"), POSITIVE_INT),
    **dict.fromkeys(("sinusoidal_pos_embds", "tie_word_embeddings"), SWITCH),
    **dict.fromkeys(("dropout", "attention_dropout", "qa_dropout", "seq_classif_dropout"), PROBABILITY),
    "activation": FIELD_RULES["hidden_act"],
    "initializer_range": POSITIVE_FINITE,
    "pad_token_id": FIELD_RULES["pad_token_id"],
    "id2label": FIELD_RULES["id2label"],
}


# ---- RoBERTa (numpy_bert/roberta.py) --------------------------------------------------------------


@dataclass
class RobertaConfig(BertConfig):
    """transformers' RobertaConfig: BertConfig's fields with RoBERTa's token ids (<s> 0, <pad> 1, </s> 2) and
    vocabulary size, and the other defaults of transformers' class (roberta-base's config.json says 514, 1, 1e-5)."""

    model_type: ClassVar[str] = "roberta"

    vocab_size: int = 50265  # roberta-base's byte-level BPE vocabulary
    pad_token_id: int = 1  # also the padding index of the position table: real positions start at 2
    bos_token_id: int | None = 0  # <s>, which also plays [CLS]'s part
    eos_token_id: int | None = 2  # </s>, which also plays [SEP]'s part

    def validate(self) -> None:
        """BertConfig's checks, then RoBERTa's: room for a position after the padding index, and none of the
        transformers options that would make another network of the same weights (a decoder, untied weights)."""
        super().validate()
        check_field_rules(self, ROBERTA_FIELD_RULES)
        if self.max_position_embeddings < self.pad_token_id + 2:
            raise ValueError(f"max_position_embeddings ({self.max_position_embeddings}) leaves no position for a "
                             f"token: RoBERTa's positions start after the padding index ({self.pad_token_id}), so it "
                             f"must be at least pad_token_id + 2")
        for name, required in ROBERTA_FIXED_OPTIONS.items():
            if self.extra.get(name, required) != required:
                raise ValueError(f"{name} is {self.extra[name]!r}, but numpy_bert's RoBERTa is the bidirectional "
                                 f"encoder with absolute positions and a tied MLM decoder ({name} = {required!r}); "
                                 "remove it from config.json")


ROBERTA_FIELD_RULES: dict[str, Rule] = dict.fromkeys(("bos_token_id", "eos_token_id"),
                                                     ALBERT_FIELD_RULES["bos_token_id"])  # null, an id or ids
# config.json fields (kept in ``extra``) that transformers reads and numpy_bert's RoBERTa fixes.
ROBERTA_FIXED_OPTIONS = {"tie_word_embeddings": True, "is_decoder": False, "add_cross_attention": False,
                         "position_embedding_type": "absolute"}


def max_sequence_length(config: BertConfig | DistilBertConfig) -> int:
    """The longest input the position table holds: RoBERTa's positions start after its padding index."""
    if isinstance(config, RobertaConfig):
        return config.max_position_embeddings - config.pad_token_id - 1
    return config.max_position_embeddings
