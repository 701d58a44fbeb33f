"""numpy_bert: BERT in pure NumPy, forward and backward written by hand."""

from .config import PRESETS, BertConfig
from .heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from .layers import GeneratorMasks, KeyedMasks
from .modeling import BertForPreTraining, BertModel

__all__ = ["PRESETS", "BertConfig", "BertForPreTraining", "BertForQuestionAnswering", "BertForSequenceClassification",
           "BertForTokenClassification", "BertModel", "GeneratorMasks", "KeyedMasks"]
