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
        for name, rule in FIELD_RULES.items():
            value = getattr(self, name)
            if not rule.accepts(value):
                raise ValueError(f"{name} {rule.requirement}, got {_described(value)}")
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
