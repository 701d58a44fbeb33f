"""torch_bert: the PyTorch twin of numpy_bert, module for module and name for name.

The config and the tokenizer are pure Python and live once, in numpy_bert; they are
re-exported here so that either package reads like transformers. The pipelines' steps
live there too: ``pipeline`` only swaps in torch_bert's models.
"""

from numpy_bert.config import PRESETS, BertConfig
from numpy_bert.text.tokenization import BertTokenizer

from .heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from .modeling import BertForMaskedLM, BertForPreTraining, BertModel
from .pipelines import pipeline

__all__ = ["PRESETS", "BertConfig", "BertForMaskedLM", "BertForPreTraining", "BertForQuestionAnswering",
           "BertForSequenceClassification", "BertForTokenClassification", "BertModel", "BertTokenizer",
           "pipeline"]
