"""numpy_bert: BERT in pure NumPy, forward and backward written by hand."""

from .config import PRESETS, BertConfig
from .layers import GeneratorMasks, KeyedMasks
from .modeling import BertForPreTraining, BertModel

__all__ = ["PRESETS", "BertConfig", "BertForPreTraining", "BertModel", "GeneratorMasks", "KeyedMasks"]
