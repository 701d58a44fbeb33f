"""torch_bert: the PyTorch twin of numpy_bert, module for module and name for name.

The config and the tokenizer are pure Python and live once, in numpy_bert; they are
re-exported here so that either package reads like transformers. The pipelines' steps
live there too: ``pipeline`` only swaps in torch_bert's models.
"""

from numpy_bert.config import PRESETS, AlbertConfig, BertConfig, DistilBertConfig, ElectraConfig, RobertaConfig
from numpy_bert.text.byte_level_bpe import RobertaTokenizer
from numpy_bert.text.tokenization import BertTokenizer

from .albert import AlbertForMaskedLM, AlbertForPreTraining, AlbertModel
from .distilbert import DistilBertForMaskedLM, DistilBertModel
from .electra import ElectraForMaskedLM, ElectraForPreTraining, ElectraModel
from .heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from .modeling import BertForMaskedLM, BertForPreTraining, BertModel
from .pipelines import pipeline
from .roberta import RobertaForMaskedLM, RobertaModel

__all__ = ["PRESETS", "AlbertConfig", "AlbertForMaskedLM", "AlbertForPreTraining", "AlbertModel",
           "BertConfig", "BertForMaskedLM", "BertForPreTraining", "BertForQuestionAnswering",
           "BertForSequenceClassification", "BertForTokenClassification", "BertModel", "BertTokenizer",
           "DistilBertConfig", "DistilBertForMaskedLM", "DistilBertModel", "ElectraConfig", "ElectraForMaskedLM",
           "ElectraForPreTraining", "ElectraModel", "RobertaConfig", "RobertaForMaskedLM", "RobertaModel",
           "RobertaTokenizer", "pipeline"]
