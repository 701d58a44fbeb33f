"""What every numpy_bert model shares: weight initialisation, dropout wiring, input checks,
and from_pretrained / save_pretrained in transformers' checkpoint layout.

The input checks are written against ``.shape``, ``.min()``, ``.max()`` and the dtype's
name, so torch_bert uses the very same functions on tensors.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .checkpoint import HEAD_PREFIXES, LoadingInfo, align_to_model, load_weights, named_model_dir, save_model_files
from .config import IGNORE_INDEX, BertConfig
from .layers import Dropout, Embedding, GeneratorMasks, KeyedMasks, LayerNorm, Linear
from .nn import Module
from .quantization import is_quantized, quantize_model


def _is_integer(array) -> bool:
    return "int" in str(array.dtype)  # int8..int64, uint8, torch.int64, ...


def _is_bool(array) -> bool:
    return str(array.dtype).endswith("bool")  # numpy's bool, torch.bool


def _is_real(array) -> bool:
    return _is_integer(array) or "float" in str(array.dtype)  # float16..64, torch.bfloat16, ...


def _first_bad(array, bad) -> str:
    """Describe the first offending element of ``array`` where the boolean ``bad`` holds."""
    bad = bad.cpu() if hasattr(bad, "cpu") else bad  # a torch tensor, maybe on a GPU
    index = tuple(int(i) for i in np.argwhere(np.asarray(bad))[0])
    return f"{array[index].item()} at position {index}"


def _check_shape(name: str, array, shape: tuple[int, ...], whose: str = ", expected") -> None:
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(array.shape)}{whose} {tuple(shape)}")


def check_inputs(config: BertConfig, input_ids, attention_mask=None, token_type_ids=None) -> None:
    """Raise ValueError naming the problem with a batch of model inputs.

    ``attention_mask`` holds 1 (attend) and 0 (padding), as bool or any integer dtype.
    transformers also takes float masks, but a float mask is ambiguous: some code adds
    masks to the scores (0 and -inf, as transformers' own 4-D masks), some multiplies
    (1.0 and 0.0), and a 0.5 would here silently count as "attend". So floats are refused.
    """
    B, T = _check_input_ids(config, input_ids)
    if attention_mask is not None:
        _check_shape("attention_mask", attention_mask, (B, T), " but input_ids has")
        _check_attention_mask(attention_mask)
    if token_type_ids is not None:
        _check_shape("token_type_ids", token_type_ids, (B, T), " but input_ids has")
        if not _is_integer(token_type_ids):
            raise ValueError(f"token_type_ids must hold integers, got dtype {token_type_ids.dtype}")
        bad = (token_type_ids < 0) | (token_type_ids >= config.type_vocab_size)
        if bool(bad.any()):
            raise ValueError(f"token_type_ids values must lie in [0, {config.type_vocab_size}); "
                             f"found {_first_bad(token_type_ids, bad)}")


def _check_input_ids(config: BertConfig, input_ids) -> tuple[int, int]:
    if not _is_integer(input_ids):
        raise ValueError(f"input_ids must hold integers, got dtype {input_ids.dtype}")
    if len(input_ids.shape) != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must have shape (batch, sequence) with sequence >= 1, "
                         f"got {tuple(input_ids.shape)}")
    B, T = input_ids.shape
    if T > config.max_position_embeddings:
        raise ValueError(f"input_ids: sequence length {T} exceeds max_position_embeddings "
                         f"({config.max_position_embeddings}): truncate the input")
    bad = (input_ids < 0) | (input_ids >= config.vocab_size)
    if bool(bad.any()):
        raise ValueError(f"input_ids must lie in [0, vocab_size={config.vocab_size}); "
                         f"found {_first_bad(input_ids, bad)}")
    return B, T


def _check_attention_mask(attention_mask) -> None:
    if not (_is_bool(attention_mask) or _is_integer(attention_mask)):
        raise ValueError(f"attention_mask must hold 0 and 1 as bool or integers, got dtype {attention_mask.dtype} "
                         f"(a float mask is ambiguous: added to the scores, or multiplied?)")
    bad = (attention_mask != 0) & (attention_mask != 1)
    if bool(bad.any()):
        raise ValueError(f"attention_mask values must be 0 (padding) or 1 (attend); "
                         f"found {_first_bad(attention_mask, bad)}")


def check_labels(labels, shape: tuple[int, ...], num_classes: int, name: str, require_labelled: bool = False) -> None:
    """Labels are class indices in [0, num_classes) or IGNORE_INDEX (-100), in the given shape.

    ``require_labelled`` (models pass their training flag): some label must not be -100.
    A mean loss over no label is 0/0, NaN in torch and transformers, and would stop a run
    with a misleading "diverged". Evaluation loops may meet such a batch (a tagging batch
    whose words were all truncated) and skip its loss, so there the NaN stays.
    """
    _check_shape(name, labels, shape)
    if not _is_integer(labels):
        raise ValueError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    labelled = labels != IGNORE_INDEX
    bad = ((labels < 0) | (labels >= num_classes)) & labelled
    if bool(bad.any()):
        raise ValueError(f"{name} must lie in [0, {num_classes}) or be {IGNORE_INDEX} (ignored); "
                         f"found {_first_bad(labels, bad)}")
    if require_labelled and not bool(labelled.any()):
        raise ValueError(f"{name}: no position is labelled (all are {IGNORE_INDEX}), so the mean loss "
                         f"is 0/0; give a training batch at least one label")


def check_regression_targets(labels, batch: int, name: str = "labels") -> None:
    """Regression targets (num_labels == 1): one finite number per example."""
    _check_shape(name, labels, (batch,))
    if not _is_real(labels):
        raise ValueError(f"{name} must hold numbers (regression, num_labels == 1), got dtype {labels.dtype}")
    bad = ~(abs(labels) < math.inf)  # nan and +-inf
    if bool(bad.any()):
        raise ValueError(f"{name} must be finite; found {_first_bad(labels, bad)}")


def check_answer_positions(start_positions, end_positions, batch: int) -> bool:
    """Whether a span loss is asked for: both positions given, one integer per example (any value:
    the span loss clamps them). Only one of them is a ValueError, not a silently missing loss."""
    given = {name: positions for name, positions in (("start_positions", start_positions),
                                                     ("end_positions", end_positions)) if positions is not None}
    if len(given) == 1:
        raise ValueError(f"the span loss needs both start_positions and end_positions; got only {next(iter(given))}")
    for name, positions in given.items():
        _check_shape(name, positions, (batch,))
        if not _is_integer(positions):
            raise ValueError(f"{name} must hold integer token positions, got dtype {positions.dtype}")
    return bool(given)


def has_padding(attention_mask) -> bool:
    """True when some key is masked out. A mask of all ones would add zeros to the scores, so every
    implementation leaves it out, as transformers does (torch's fused attention then may use its
    fastest kernel, which takes no mask). Works on NumPy arrays and torch tensors alike."""
    return attention_mask is not None and not bool((attention_mask != 0).all())


def additive_attention_mask(attention_mask: np.ndarray, dtype) -> np.ndarray:
    """(B, T) of 1 = attend, 0 = padding  ->  (B, 1, 1, T) of 0 and the dtype's most negative number.

    That is transformers' eager mask. Adding it to the scores makes padded keys' exp()
    vanish; a row with no real key at all becomes uniform, identically in both libraries.
    """
    return np.where(attention_mask[:, None, None, :] != 0, 0, np.finfo(dtype).min).astype(dtype)


class BertPreTrainedModel(Module):
    """Base of every model class: owns config and dtype, initialises weights, loads and saves."""

    config_class = BertConfig  # the family members (RobertaForMaskedLM, ...) name their own
    base_model_prefix = "bert"  # the encoder's name inside a model with heads, as in transformers
    head_prefixes = HEAD_PREFIXES  # names of the heads around it: a checkpoint may lack them, or have others
    tied_weights: dict[str, str] = {}  # alias name -> canonical name, both in transformers' names
    loss_arguments = "labels"  # what forward needs to compute a loss, named when backward() has none
    loss_grads: tuple | None = None  # the last forward's loss gradients, where backward() starts
    runs_int8 = True  # its layers may be swapped for int8 ones (numpy_bert/quantization.py)

    def __init__(self, config: BertConfig):
        super().__init__()
        config.validate()
        self.config = config

    @property
    def dtype(self) -> np.dtype:
        """The floating parameters' dtype, set once for the whole tree by ``post_init`` (or ``to``); the
        int8 tables of a quantized model (numpy_bert/quantization.py) compute in it too."""
        # A generator: it stops at the first floating parameter (the word embeddings, or the next table in
        # int8), not after listing all of them; the fused path asks for every buffer it allocates.
        return next(p.data.dtype for _, p in self.named_parameters() if p.data.dtype.kind == "f")

    def post_init(self, seed: int | None, dtype) -> None:
        """Cast the whole tree to ``dtype``, initialise weights as transformers does (drawn in that
        dtype from NumPy's generator seeded with ``seed``) and name the dropout layers.

        ``seed=None`` leaves everything alone: the model is a part of a larger one that
        initialises everything itself.
        """
        if seed is None:
            return
        self.to(dtype)
        self.init_weights(np.random.default_rng(seed))
        for name, module in self.named_modules():
            if isinstance(module, Dropout):
                module.name = name
        self.set_dropout_masks(GeneratorMasks(seed + 1))

    def init_weights(self, rng: np.random.Generator) -> None:
        """N(0, initializer_range) for Linear and Embedding weights, zero biases, LayerNorm (1, 0),
        and a zero vector for the padding token; tied weights are drawn once."""
        std = self.config.initializer_range
        drawn: set[int] = set()
        for _, module in self.named_modules():
            if isinstance(module, (Linear, Embedding)) and id(module.weight) not in drawn:
                drawn.add(id(module.weight))
                w = module.weight.data
                w[...] = rng.standard_normal(w.shape, dtype=w.dtype) * w.dtype.type(std)
                if isinstance(module, Embedding) and module.padding_idx is not None:
                    w[module.padding_idx] = 0
            if isinstance(module, (Linear, LayerNorm)):
                module.bias.data[...] = 0
            if isinstance(module, LayerNorm):
                module.weight.data[...] = 1
        for name, param in self.named_parameters():
            if name.endswith("predictions.bias"):
                param.data[...] = 0

    def set_dropout_masks(self, source: GeneratorMasks | KeyedMasks) -> None:
        """Choose where dropout masks come from (KeyedMasks to share them with torch_bert)."""
        for _, module in self.named_modules():
            if isinstance(module, Dropout):
                module.mask_source = source

    def stored_loss_grads(self) -> tuple:
        """The loss gradients the last forward kept for backward(); a ValueError if it computed no loss."""
        if self.loss_grads is None:
            raise ValueError(f"backward() needs a forward call with {self.loss_arguments} (a loss)")
        return self.loss_grads

    def check_inputs(self, input_ids, attention_mask=None, token_type_ids=None):
        input_ids = np.asarray(input_ids)
        attention_mask = None if attention_mask is None else np.asarray(attention_mask)
        token_type_ids = (np.zeros_like(input_ids) if token_type_ids is None else np.asarray(token_type_ids))
        check_inputs(self.config, input_ids, attention_mask, token_type_ids)
        return input_ids, attention_mask, token_type_ids

    # ---- checkpoints -------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, dtype=np.float32, output_loading_info: bool = False,
                        **kwargs):
        """Load config.json + model.safetensors written by numpy_bert, torch_bert or transformers.

        Tensors the file lacks but the model has (a new task head) are initialised and
        listed; tensors of heads the model lacks are ignored and listed; anything else
        missing, unexpected or mis-shaped is a ValueError. ``directory`` may also be a name that
        :func:`~numpy_bert.checkpoint.named_model_dir` knows: "python-docs" or "minilm".
        """
        directory = named_model_dir(directory)
        config = cls.config_class.from_pretrained(directory)
        model = cls(config, dtype=dtype, **kwargs)
        if is_quantized(config):  # an int8 checkpoint (numpy_bert/quantization.py): int8 layers to load it into
            if not cls.runs_int8:
                raise ValueError(f"{directory} holds int8 weights, which {cls.__name__} cannot compute with; "
                                 "load it into the readable model (without --fast)")
            if np.dtype(dtype) != np.float32:
                raise ValueError(f"{directory} holds int8 weights, which compute in float32; load it with "
                                 f"dtype float32, not {np.dtype(dtype)}")
            quantize_model(model)
        info = model.load_pretrained_weights(directory)
        return (model, info) if output_loading_info else model

    def load_pretrained_weights(self, directory: str | os.PathLike) -> LoadingInfo:
        """Copy a checkpoint's tensors into this model by name (see ``from_pretrained`` for the rules)."""
        tensors = load_weights(named_model_dir(directory))
        params = dict(self.named_parameters())
        aligned, info = align_to_model(tensors, {n: p.shape for n, p in params.items()}, self.tied_weights,
                                       self.base_model_prefix, self.head_prefixes)
        for name, array in aligned.items():  # into the model's dtype; the int8 tables of a quantized model stay int8
            dtype = self.dtype if params[name].data.dtype.kind == "f" else params[name].data.dtype
            params[name].data = np.array(array, dtype=dtype, copy=True)
        return info

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write config.json and model.safetensors as one unit (tied aliases omitted, as transformers does)."""
        extra = {**self.config.extra, "architectures": [type(self).__name__]}
        save_model_files(directory, self.config.replace(extra=extra).to_dict(), self.state_dict())
