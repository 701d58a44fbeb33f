"""Feature extraction: the encoder's last hidden state, one vector per token, as transformers gives it."""

from __future__ import annotations

from .base import Pipeline, as_list


class FeatureExtractionPipeline(Pipeline):
    """transformers' ``pipeline("feature-extraction")``: a text's token vectors as nested lists (1, T, C).

    Every token counts, [CLS] and [SEP] too; a list of texts gives one such list per text
    (each text runs alone, so there is no padding). ``return_tensors=True`` gives the
    (1, T, C) NumPy array instead, in both backends (transformers gives a torch tensor).
    For one vector per sentence, see :mod:`numpy_bert.pipelines.sentence_embeddings`.
    """

    task = "feature-extraction"
    model_class = "BertModel"
    load_options = {"add_pooling_layer": False}  # the pooler's output is not a feature here

    def run(self, inputs: str | list[str], *, truncation: bool = False, return_tensors: bool = False):
        texts, single = as_list(inputs)
        results = []
        for text in texts:
            hidden = self.forward(**self.encode(text, truncation=truncation))["last_hidden_state"]  # (1, T, C)
            results.append(hidden if return_tensors else hidden.tolist())
        return results[0] if single else results
