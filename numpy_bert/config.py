"""BertConfig: the model's hyper-parameters, with transformers' field names and defaults.

A config.json written here loads in ``transformers.BertConfig`` and back; unknown
fields that transformers writes (``architectures``, ``dtype``, ...) are kept in
``extra`` so a round trip loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

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
        """Raise ValueError naming the first inconsistent field."""
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"BertConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) is not divisible by num_attention_heads "
                f"({self.num_attention_heads}): each head needs hidden_size / num_heads dimensions"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {SUPPORTED_ACTIVATIONS}, got {self.hidden_act!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"BertConfig.{name} must be in [0, 1), got {p!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside [0, vocab_size={self.vocab_size})")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}")

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
        data["model_type"] = "bert"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k not in ("label2id", "model_type")}
        if kwargs.get("id2label") is not None:
            kwargs["id2label"] = {int(k): v for k, v in kwargs["id2label"].items()}
            kwargs.setdefault("num_labels", len(kwargs["id2label"]))
        if data.get("model_type", "bert") != "bert":
            raise ValueError(f"config.json describes a {data['model_type']!r} model, not a BERT")
        return cls(**kwargs, extra=extra)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from .checkpoint import atomic_write_bytes

        os.makedirs(directory, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(os.path.join(directory, CONFIG_NAME), text.encode("utf-8"))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> BertConfig:
        if not os.path.isdir(directory):
            raise ValueError(f"checkpoint folder {os.fspath(directory)!r} does not exist")
        path = os.path.join(directory, CONFIG_NAME)
        if not os.path.isfile(path):
            raise ValueError(f"no config.json in {os.fspath(directory)!r}")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)
