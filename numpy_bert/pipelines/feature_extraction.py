"""Feature extraction: the encoder's last hidden state, one vector per token, as transformers gives it,
for BERT and each family member (RobertaModel, AlbertModel, ElectraModel: the discriminator's encoder,
DistilBertModel), by config.json's model_type (:mod:`numpy_bert.pipelines.auto`)."""

from __future__ import annotations

from .auto import NO_POOLER, TaskModel
from .base import Pipeline, as_list


class FeatureExtractionPipeline(Pipeline):
    """transformers' ``pipeline("feature-extraction")``: a text's token vectors as nested lists (1, T, C).

    Every token counts, [CLS] and [SEP] (or <s> and </s>) too; a list of texts gives one such
    list per text (each text runs alone, so there is no padding). ``return_tensors=True`` gives
    the (1, T, C) NumPy array instead, in both backends (transformers gives a torch tensor).
    The model is the encoder of the folder's model_type, as transformers' AutoModel, read from
    any checkpoint of it (a masked LM's, a pre-training model's: its heads are left out; an
    ELECTRA run folder's discriminator). For one vector per sentence, see
    :mod:`numpy_bert.pipelines.sentence_embeddings`.
    """

    task = "feature-extraction"
    models = {  # the pooler's output is not a feature here: the encoders that have one are built without it
        "bert": TaskModel("BertModel", options=NO_POOLER),
        "roberta": TaskModel("RobertaModel", options=NO_POOLER),
        "albert": TaskModel("AlbertModel", options=NO_POOLER),
        "electra": TaskModel("ElectraModel"),
        "distilbert": TaskModel("DistilBertModel"),
    }

    def run(self, inputs: str | list[str], *, truncation: bool = False, return_tensors: bool = False):
        texts, single = as_list(inputs)
        results = []
        for text in texts:
            hidden = self.forward(**self.encode(text, truncation=truncation))["last_hidden_state"]  # (1, T, C)
            results.append(hidden if return_tensors else hidden.tolist())
        return results[0] if single else results
