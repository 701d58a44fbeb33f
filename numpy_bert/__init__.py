"""numpy_bert: BERT in pure NumPy, forward and backward written by hand.

The modules at this level are the book, in reading order: nn (the Module system),
erf, layers, config, outputs, modeling_utils, modeling (BERT itself), heads
(fine-tuning), optim (AdamW), checkpoint (the files), quantization (int8), and the
family built from BERT's layers: roberta, albert, electra, distilbert. The subpackages
are the machinery around it: text/, data/, fast/, pipelines/, training/, cli/, exercises/.
"""

from .albert import AlbertForMaskedLM, AlbertForPreTraining, AlbertModel
from .config import PRESETS, AlbertConfig, BertConfig, DistilBertConfig, ElectraConfig, RobertaConfig
from .distilbert import DistilBertForMaskedLM, DistilBertModel
from .electra import ElectraForMaskedLM, ElectraForPreTraining, ElectraModel
from .heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from .layers import GeneratorMasks, KeyedMasks
from .modeling import BertForMaskedLM, BertForPreTraining, BertModel
from .pipelines.pipeline import pipeline
from .roberta import RobertaForMaskedLM, RobertaModel
from .text.byte_level_bpe import RobertaTokenizer
from .text.tokenization import BertTokenizer

__all__ = ["PRESETS", "AlbertConfig", "AlbertForMaskedLM", "AlbertForPreTraining", "AlbertModel",
           "BertConfig", "BertForMaskedLM", "BertForPreTraining", "BertForQuestionAnswering",
           "BertForSequenceClassification", "BertForTokenClassification", "BertModel", "BertTokenizer",
           "DistilBertConfig", "DistilBertForMaskedLM", "DistilBertModel", "ElectraConfig", "ElectraForMaskedLM",
           "ElectraForPreTraining", "ElectraModel", "GeneratorMasks", "KeyedMasks", "RobertaConfig",
           "RobertaForMaskedLM", "RobertaModel", "RobertaTokenizer", "pipeline"]
