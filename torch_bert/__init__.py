"""torch_bert: the PyTorch twin of numpy_bert, module for module and name for name."""

from numpy_bert.config import PRESETS, BertConfig

from .heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from .modeling import BertForPreTraining, BertModel

__all__ = ["PRESETS", "BertConfig", "BertForPreTraining", "BertForQuestionAnswering", "BertForSequenceClassification",
           "BertForTokenClassification", "BertModel"]
