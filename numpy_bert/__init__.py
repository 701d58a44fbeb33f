"""numpy_bert: BERT in pure NumPy, forward and backward written by hand.

The modules at this level are the book, in reading order: nn (the Module system),
erf, layers, config, outputs, modeling_utils, modeling (BERT itself), heads
(fine-tuning), optim (AdamW), checkpoint (the files). The subpackages are the
machinery around it: text/, data/, fast/, pipelines/, training/, cli/.
"""

from .config import PRESETS, BertConfig
from .heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from .layers import GeneratorMasks, KeyedMasks
from .modeling import BertForMaskedLM, BertForPreTraining, BertModel
from .pipelines.pipeline import pipeline
from .text.tokenization import BertTokenizer

__all__ = ["PRESETS", "BertConfig", "BertForMaskedLM", "BertForPreTraining", "BertForQuestionAnswering",
           "BertForSequenceClassification", "BertForTokenClassification", "BertModel", "BertTokenizer",
           "GeneratorMasks", "KeyedMasks", "pipeline"]
