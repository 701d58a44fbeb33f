"""RoBERTa in NumPy (Liu et al. 2019, "RoBERTa: A Robustly Optimized BERT Pretraining Approach").

RoBERTa is BERT's network trained differently, and almost all that changes lies outside
the network:

* **No next-sentence prediction.** Pre-training is masked LM alone, on full sentences
  packed up to the sequence length: there is no NSP head, and no pooler under the MLM head.
* **Dynamic masking.** Each time a sequence comes round it gets a fresh mask, instead of
  one mask fixed when the data was written. numpy_bert's ``MaskingCollator`` masks this
  way by default (``masking="dynamic"``); it changes the data, not the model.
* **Byte-level BPE.** GPT-2's tokenizer replaces WordPiece: every UTF-8 byte is a base
  symbol, so no text is ever ``<unk>`` (numpy_bert/text/byte_level_bpe.py, and its trainer
  numpy_bert/text/bpe_trainer.py). The special tokens are ``<s> A </s>`` and, for a pair,
  ``<s> A </s></s> B </s>``.

and two things inside it, both in this module:

* **Positions start after the padding index** (fairseq's ``make_positions``): a token's
  position id is ``padding_idx + 1 +`` the number of non-padding tokens before it, and a
  padding token gets ``padding_idx`` itself, a row of the table that stays zero. With
  ``<pad>`` = 1, a sequence of T tokens uses rows 2..T+1, which is why roberta-base has 514
  positions for 512 tokens. Padding is recognised by its *id*, not by the attention mask.
* **The MLM head** (``RobertaLMHead``) is BERT's transform and tied decoder under flatter
  names (``lm_head.dense``, ``lm_head.layer_norm``), and its activation is always the exact
  (erf) GELU, whatever ``hidden_act`` says, as in transformers.

roberta-base also has a single token type (``type_vocab_size = 1``); the table is kept. The
encoder is BERT's own, reused unchanged from numpy_bert/modeling.py:

    RobertaForMaskedLM
    ├── roberta: RobertaModel
    │   ├── embeddings: RobertaEmbeddings   word + position (after the padding index) + token type
    │   ├── encoder: BertEncoder            BERT's layers, unchanged
    │   └── pooler: BertPooler              only with add_pooling_layer (RobertaForMaskedLM has none)
    └── lm_head: RobertaLMHead              dense, GELU, layer_norm, decoder tied to the word embeddings

Checkpoints are transformers' (``roberta.`` and ``lm_head.`` names): a ``RobertaModel`` file loads
into ``RobertaForMaskedLM`` (the head is new) and back (the head is ignored), and the
``roberta.pooler.*`` that MLM files such as roberta-base's carry is ignored and listed.
There is no fast (fused) RoBERTa and no int8 one: those are BERT's.
"""

from __future__ import annotations

import numpy as np

from .config import RobertaConfig
from .layers import GELU, Embedding, LayerNorm, Linear
from .modeling import BertEmbeddings, BertModel, masked_lm_backward, masked_lm_forward
from .modeling_utils import BertPreTrainedModel
from .nn import Module, Parameter
from .outputs import MaskedLMOutput

__all__ = ["RobertaEmbeddings", "RobertaForMaskedLM", "RobertaLMHead", "RobertaModel", "RobertaPreTrainedModel",
           "check_positions_fit", "create_position_ids_from_input_ids"]


def create_position_ids_from_input_ids(input_ids: np.ndarray, padding_idx: int) -> np.ndarray:
    """Position ids (B, T): padding_idx + 1, + 2, ... over the non-padding tokens; padding_idx on padding.

    ``[[0, 5, 7, 1, 1]]`` with padding_idx 1 gives ``[[2, 3, 4, 1, 1]]``. transformers'
    function of the same name, which counts (cumsum) rather than enumerates, so that a
    padding token in the middle of a row does not use up a position.
    """
    is_token = (input_ids != padding_idx).astype(np.int64)  # (B, T): 1 for a token, 0 for padding
    return np.cumsum(is_token, axis=1) * is_token + padding_idx


def check_positions_fit(config: RobertaConfig, sequence_length: int) -> None:
    """ValueError unless T tokens fit the position table: the last one may need row pad_token_id + T."""
    longest = config.max_position_embeddings - config.pad_token_id - 1
    if sequence_length > longest:
        raise ValueError(f"input_ids: sequence length {sequence_length} exceeds the {longest} tokens that "
                         f"max_position_embeddings ({config.max_position_embeddings}) holds after RoBERTa's "
                         f"padding index ({config.pad_token_id}): truncate the input to {longest} tokens")


class RobertaEmbeddings(BertEmbeddings):
    """x = LayerNorm(word[ids] + token_type[types] + position[positions after the padding index]), then dropout.

    BertEmbeddings with two changes: the position ids come from
    :func:`create_position_ids_from_input_ids`, and the position table has a padding row
    (``padding_idx = pad_token_id``), which padding tokens look up and which gets no gradient.
    """

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size,
                                             padding_idx=config.pad_token_id)

    def forward(self, input_ids: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        position_ids = create_position_ids_from_input_ids(input_ids, self.padding_idx)  # (B, T)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))

    def backward(self, dy: np.ndarray) -> None:
        """BertEmbeddings' backward, unchanged: the position ids are integers computed from the input ids,
        so no gradient flows through them, and the position table's scatter-add leaves out its padding row
        (Embedding's padding_idx), as torch does. Adds the three tables' gradients; returns None."""
        super().backward(dy)


class RobertaPreTrainedModel(BertPreTrainedModel):
    """Base of the RoBERTa models: RobertaConfig, and checkpoints with the ``roberta.`` prefix.

    checkpoint.align_to_model adds or drops the prefix (RobertaModel's tensors have none,
    RobertaForMaskedLM's have it), and lets the head (``lm_head.``) and the pooler be missing
    (initialised, listed) or left over (ignored, listed), as transformers does.
    """

    config_class = RobertaConfig
    base_model_prefix, head_prefixes = "roberta", ("lm_head.",)
    runs_int8 = False  # numpy_bert/quantization.py finds the tied table under bert.embeddings, not roberta.


class RobertaModel(RobertaPreTrainedModel, BertModel):
    """The encoder: ids in, contextual vectors out (last_hidden_state, and pooler_output with the pooler).

    BertModel with RobertaEmbeddings; forward and backward are BertModel's. Only the
    input check adds a rule: T tokens need T position rows after the padding index.
    """

    def __init__(self, config: RobertaConfig, seed: int | None = 0, dtype=np.float32,
                 add_pooling_layer: bool = True):
        BertModel.__init__(self, config, seed=None, add_pooling_layer=add_pooling_layer)
        self.embeddings = RobertaEmbeddings(config)  # in BertEmbeddings' place (and parameter order)
        self.post_init(seed, dtype)

    def check_inputs(self, input_ids, attention_mask=None, token_type_ids=None):
        checked = super().check_inputs(input_ids, attention_mask, token_type_ids)
        check_positions_fit(self.config, checked[0].shape[1])
        return checked


class RobertaLMHead(Module):
    """Masked-LM logits: decoder(layer_norm(GELU(dense(h)))), the decoder tied to the word embeddings.

    The same maths as BertLMPredictionHead (transform, then E^T + bias), with transformers'
    RoBERTa names. The GELU is always the exact one. Backward, in reverse order: the decoder
    adds its dE into the tied embedding's gradient, then LayerNorm, GELU and dense.
    """

    def __init__(self, config: RobertaConfig, word_embeddings: Parameter):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.bias = Parameter(np.zeros(config.vocab_size))
        self.decoder = Linear.tied(word_embeddings, self.bias)  # weight E (V, C), bias: self.bias
        self.activation = GELU("gelu")  # transformers calls its gelu() here, not config.hidden_act

    def forward(self, features: np.ndarray) -> np.ndarray:
        x = self.dense(features)  # (..., C)
        x = self.activation(x)
        x = self.layer_norm(x)
        return self.decoder(x)  # (..., V)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d_norm = self.decoder.backward(dy)  # (..., C); adds dE into the word embeddings' gradient
        d_activation = self.layer_norm.backward(d_norm)
        d_dense = self.activation.backward(d_activation)
        return self.dense.backward(d_dense)  # (..., C)


class RobertaForMaskedLM(RobertaPreTrainedModel):
    """RoBERTa with its masked-LM head: what RoBERTa pre-trains (there is no NSP head to train).

    loss = CE(logits, labels; ignoring -100). Backward: the MLM head's, then the encoder's.
    """

    tied_weights = {
        "lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
        "lm_head.decoder.bias": "lm_head.bias",
    }
    loss_arguments = "labels"

    def __init__(self, config: RobertaConfig, seed: int = 0, dtype=np.float32):
        super().__init__(config)
        self.roberta = RobertaModel(config, seed=None, add_pooling_layer=False)
        self.lm_head = RobertaLMHead(config, self.roberta.embeddings.word_embeddings.weight)
        self.post_init(seed, dtype)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
                token_type_ids: np.ndarray | None = None, labels: np.ndarray | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                labelled_positions_only: bool = False) -> MaskedLMOutput:
        """``labelled_positions_only``: logits only where labels != -100, (N, V), as in BertForMaskedLM."""
        encoded = self.roberta(input_ids, attention_mask, token_type_ids,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return masked_lm_forward(self, encoded, labels, labelled_positions_only, head=self.lm_head)

    def backward(self) -> None:
        """Adds d(loss)/d(parameter) into every parameter's .grad, for the last forward call."""
        (d_logits,) = self.stored_loss_grads()  # (B, T, V) or (N, V)
        self.roberta.backward(masked_lm_backward(self, self.lm_head.backward, d_logits))  # (B, T, C)

