"""ALBERT's hand-written backward passes against float64 finite differences (tests/test_gradcheck.py's method).

Each new module alone, then the sharing: an encoder whose one layer runs three times (G = 1), and
ones whose groups are used unevenly (L = 3, G = 2: layers 0 and 1 share group 0). The sharing is
also checked exactly: a shared weight's gradient must be the sum of the gradients the same weights
get when every layer has its own copy of them. Then every model's loss w.r.t. every parameter, and
the refusals of bad configs and labels.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy_bert.albert
from numpy_bert import AlbertConfig, AlbertForMaskedLM, AlbertForPreTraining, AlbertModel, BertConfig, BertModel
from numpy_bert.albert import (
    AlbertAttention,
    AlbertEmbeddings,
    AlbertLayer,
    AlbertLayerGroup,
    AlbertMLMHead,
    AlbertSOPHead,
    AlbertTransformer,
    group_index,
    shared_copy,
)
from numpy_bert.layers import Linear
from numpy_bert.modeling_utils import additive_attention_mask
from numpy_bert.nn import Parameter

from .test_gradcheck import (
    FixedMasks,
    check_loss_gradients,
    check_model_backward,
    check_module,
    check_tied_table,
    init_random,
)


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def small_config(**overrides) -> AlbertConfig:
    """E = 6 != H = 12 throughout: the factorisation is always exercised. No dropout unless asked for (ALBERT's
    SOP head has 0.1 by default), so that the loss is a function of the weights."""
    fields = dict(vocab_size=31, embedding_size=6, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                  intermediate_size=20, max_position_embeddings=16, type_vocab_size=3, classifier_dropout_prob=0.0)
    fields.update(overrides)
    return AlbertConfig(**fields)


def padding_mask(rows: list[list[int]]) -> np.ndarray:
    return additive_attention_mask(np.array(rows), np.float64)


def last_output(module):
    """A group or an encoder returns every layer's output; the last one is the module's output."""
    return lambda *inputs: module(*inputs)[-1]


# ---- each new module ------------------------------------------------------------------------------


def test_embeddings_are_embedding_size_wide(rng):
    config = small_config()
    embeddings = init_random(AlbertEmbeddings(config).to(np.float64), rng)
    ids, types = np.array([[0, 3, 3, 30], [5, 0, 1, 2]]), np.array([[0, 1, 2, 2], [1, 1, 0, 0]])
    assert embeddings(ids, types).shape == (2, 4, config.embedding_size)
    check_module(embeddings, [ids, types], differentiable=())
    assert np.all(embeddings.word_embeddings.weight.grad[0] == 0), "the padding row gets no gradient"


def test_attention_with_padding(rng):
    attention = init_random(AlbertAttention(small_config()).to(np.float64), rng)
    mask = padding_mask([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    check_module(attention, [rng.standard_normal((3, 5, 12)), mask])


def test_attention_with_both_dropouts(rng):
    config = small_config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.25)
    attention = init_random(AlbertAttention(config).to(np.float64), rng)
    attention.dropout.mask_source = attention.output_dropout.mask_source = FixedMasks(3)
    attention.dropout.name, attention.output_dropout.name = "dropout", "output_dropout"
    check_module(attention, [rng.standard_normal((2, 4, 12)), None])


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_layer(rng, hidden_act):
    layer = init_random(AlbertLayer(small_config(hidden_act=hidden_act)).to(np.float64), rng)
    check_module(layer, [rng.standard_normal((2, 4, 12)), padding_mask([[1, 1, 1, 0], [1, 1, 1, 1]])])


def test_layer_group_of_two_layers(rng):
    group = init_random(AlbertLayerGroup(small_config(inner_group_num=2)).to(np.float64), rng, scale=0.4)
    check_module(group, [rng.standard_normal((2, 3, 12)), None], forward=last_output(group))


def test_mlm_head_narrows_to_embedding_size(rng):
    config = small_config()
    table = Parameter(rng.standard_normal((config.vocab_size, config.embedding_size)))
    head = init_random(AlbertMLMHead(config, table).to(np.float64), rng)
    assert head.decoder.weight is table and head.decoder.bias is head.bias
    check_module(head, [rng.standard_normal((2, 3, 12))])


def test_sop_head_with_dropout(rng):
    head = init_random(AlbertSOPHead(small_config(classifier_dropout_prob=0.4)).to(np.float64), rng)
    head.dropout.mask_source = FixedMasks(1)
    check_module(head, [rng.standard_normal((5, 12))])


# ---- the sharing ------------------------------------------------------------------------------------


def test_group_index_uses_every_group_in_order():
    """Layers map onto groups in order, contiguously, each group used (and so trained) at least once."""
    for layers in range(1, 49):
        for groups in range(1, layers + 1):
            used = [group_index(i, layers, groups) for i in range(layers)]
            assert used[0] == 0 and used[-1] == groups - 1, (layers, groups, used)
            assert all(b - a in (0, 1) for a, b in itertools.pairwise(used)), (layers, groups, used)


def test_shared_copy_shares_parameters_but_not_caches(rng):
    layer = init_random(AlbertLayer(small_config()).to(np.float64), rng)
    first, second = shared_copy(layer), shared_copy(layer)
    assert [id(p) for p in first.parameters()] == [id(p) for p in layer.parameters()]
    assert first.attention is not layer.attention and first.ffn is not second.ffn
    x1, x2, dy = rng.standard_normal((3, 2, 4, 12))
    first(x1, None)
    second(x2, None)  # would have overwritten first's caches, were they one object
    d_first = first.backward(dy)
    alone = shared_copy(layer)
    alone(x1, None)
    np.testing.assert_array_equal(alone.backward(dy), d_first)


@pytest.mark.parametrize(("layers", "groups", "inner"), [(3, 1, 1), (3, 2, 1), (4, 2, 2)])
def test_transformer_with_shared_layers(rng, layers, groups, inner):
    """(3, 1, 1): one layer run three times; (3, 2, 1): group 0 twice, group 1 once; (4, 2, 2): two-layer groups."""
    config = small_config(num_hidden_layers=layers, num_hidden_groups=groups, inner_group_num=inner)
    encoder = init_random(AlbertTransformer(config).to(np.float64), rng, scale=0.4)
    x = rng.standard_normal((2, 4, config.embedding_size))
    assert len(encoder(x, None)) == 1 + layers * inner
    check_module(encoder, [x, padding_mask([[1, 1, 1, 0], [1, 1, 1, 1]])], forward=last_output(encoder))


@pytest.mark.parametrize(("layers", "groups"), [(3, 1), (3, 2)])
def test_shared_gradient_is_the_sum_over_its_uses(rng, layers, groups):
    """The gradient of a shared weight equals the sum of the gradients of unshared copies of it."""
    shared = init_random(AlbertTransformer(small_config(num_hidden_layers=layers, num_hidden_groups=groups))
                         .to(np.float64), rng, scale=0.4)
    unshared = AlbertTransformer(small_config(num_hidden_layers=layers, num_hidden_groups=layers)).to(np.float64)
    for i, group in enumerate(unshared.albert_layer_groups):  # layer i's own copy of the weights it shares
        group.load_state_dict(shared.albert_layer_groups[group_index(i, layers, groups)].state_dict())
    unshared.embedding_hidden_mapping_in.load_state_dict(shared.embedding_hidden_mapping_in.state_dict())
    x, mask = rng.standard_normal((2, 4, 6)), padding_mask([[1, 1, 0, 0], [1, 1, 1, 1]])
    dy = rng.standard_normal((2, 4, 12))
    for encoder in (shared, unshared):
        encoder.zero_grad()
        encoder(x, mask)
        encoder.backward(dy)
    np.testing.assert_allclose(unshared(x, mask)[-1], shared(x, mask)[-1], rtol=0, atol=0)
    for name, grad in shared.albert_layer_groups.gradients().items():
        group, rest = int(name.split(".")[0]), name.split(".", 1)[1]
        uses = [i for i in range(layers) if group_index(i, layers, groups) == group]
        summed = sum(unshared.albert_layer_groups.gradients()[f"{i}.{rest}"] for i in uses)
        np.testing.assert_allclose(grad, summed, rtol=1e-12, atol=1e-14, err_msg=name)


# ---- the models' losses w.r.t. every parameter --------------------------------------------------------


def pretraining_batch() -> dict:
    return dict(
        input_ids=np.array([[2, 5, 7, 9, 0, 0], [2, 4, 4, 3, 8, 1]]),
        attention_mask=np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]),
        token_type_ids=np.array([[0, 0, 1, 1, 0, 0], [0, 1, 1, 2, 2, 2]]),
        labels=np.array([[-100, -100, -100, -100, -100, -100], [-100, 6, -100, 30, 1, -100]]),  # row 0 ignored
        sentence_order_label=np.array([1, 0]),
    )


def test_pretraining_model_shared_layer_with_dropout(rng):
    """One layer run three times, with every dropout on (the same mask on each call of a module)."""
    config = small_config(num_hidden_layers=3, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2,
                          classifier_dropout_prob=0.3)
    model = init_random(AlbertForPreTraining(config, seed=0, dtype=np.float64), rng, scale=0.3)
    model.set_dropout_masks(FixedMasks(5))
    check_loss_gradients(model, pretraining_batch(), seed=1, count=5)


def test_tied_word_table_gets_both_uses(rng):
    """Rows the lookup reads (5, 7, 4, 8) get the lookup's and the decoder's gradient; 30 only the decoder's."""
    model = init_random(AlbertForPreTraining(small_config(), seed=0, dtype=np.float64), rng, scale=0.3)
    check_tied_table(model, pretraining_batch(), "albert.embeddings.word_embeddings.weight",
                     [(5, 0), (7, 3), (4, 5), (8, 1), (30, 2)])


@pytest.mark.parametrize("only", ["mlm_loss", "sop_loss"])
def test_pretraining_model_with_one_loss(rng, only):
    model = init_random(AlbertForPreTraining(small_config(num_hidden_groups=2), seed=0, dtype=np.float64), rng, 0.3)
    batch = pretraining_batch()
    del batch["sentence_order_label" if only == "mlm_loss" else "labels"]
    out = model(**batch)
    assert out.loss is None and getattr(out, only) is not None  # transformers' loss needs both label arrays
    check_loss_gradients(model, batch, seed=2, count=4, loss=only)


@pytest.mark.parametrize("gathered", [False, True])
def test_masked_lm_model(rng, gathered):
    model = init_random(AlbertForMaskedLM(small_config(num_hidden_layers=3, num_hidden_groups=2), seed=0,
                                          dtype=np.float64), rng, scale=0.3)
    batch = {**pretraining_batch(), "labelled_positions_only": gathered}
    del batch["sentence_order_label"]
    check_loss_gradients(model, batch, seed=3, count=4)


def test_albert_model_backward_from_both_outputs(rng):
    model = init_random(AlbertModel(small_config(num_hidden_layers=3), seed=0, dtype=np.float64), rng, 0.3)
    inputs = dict(input_ids=np.array([[3, 1, 4, 1, 5]]), attention_mask=np.array([[1, 1, 1, 1, 0]]))
    check_model_backward(model, inputs, rng, count=4)


@st.composite
def albert_configs(draw):
    heads = draw(st.sampled_from([1, 2]))
    layers = draw(st.integers(1, 3))
    return small_config(vocab_size=draw(st.integers(9, 40)), embedding_size=draw(st.integers(2, 8)),
                        hidden_size=heads * draw(st.sampled_from([2, 4])), num_attention_heads=heads,
                        num_hidden_layers=layers, num_hidden_groups=draw(st.integers(1, layers)),
                        inner_group_num=draw(st.integers(1, 2)), intermediate_size=draw(st.integers(2, 10)),
                        hidden_act=draw(st.sampled_from(["gelu", "gelu_new"])))


@settings(max_examples=8, deadline=None)
@given(config=albert_configs(), batch=st.integers(1, 3), length=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_whole_model_random_configs_and_masks(config, batch, length, seed):
    """Hypothesis hunts for sizes, sharing patterns and padding that break backward (every row keeps one
    real key: see tests/test_gradcheck.py's docstring for fully padded rows, left to the parity tests)."""
    rng = np.random.default_rng(seed)
    model = init_random(AlbertForPreTraining(config, seed=0, dtype=np.float64), rng, scale=0.3)
    labels = np.where(rng.random((batch, length)) < 0.5, rng.integers(0, config.vocab_size, (batch, length)), -100)
    labels[0, 0] = 7  # at least one counted label, else the MLM loss is 0/0
    inputs = dict(
        input_ids=rng.integers(0, config.vocab_size, (batch, length)),
        attention_mask=np.concatenate([np.ones((batch, 1), np.int64),  # a real key in every row
                                       (rng.random((batch, length - 1)) < 0.7).astype(np.int64)], axis=1),
        token_type_ids=rng.integers(0, config.type_vocab_size, (batch, length)),
        labels=labels,
        sentence_order_label=rng.integers(0, 2, batch),
    )
    check_loss_gradients(model, inputs, seed, count=2)


# ---- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    (dict(num_hidden_layers=2, num_hidden_groups=3), "num_hidden_groups (3) exceeds num_hidden_layers (2)"),
    (dict(embedding_size=0), "embedding_size must be a positive integer"),
    (dict(inner_group_num=1.5), "inner_group_num must be a positive integer"),
    (dict(classifier_dropout_prob=1.0), "classifier_dropout_prob must be a number in [0, 1)"),
    (dict(eos_token_id="[SEP]"), "eos_token_id must be null, an integer or a list of integers"),
    (dict(extra={"tie_word_embeddings": False}), "tie_word_embeddings is false"),
    (dict(hidden_size=10, num_attention_heads=4), "hidden_size (10) is not divisible"),  # BertConfig's own checks
])
def test_config_refuses_in_one_line(fields, message):
    with pytest.raises(ValueError, match=r"^[^\n]*$") as error:
        small_config(**fields)
    assert message in str(error.value)


def test_config_json_names_its_model_type(tmp_path):
    config = small_config(num_hidden_groups=2, inner_group_num=2)
    config.save_pretrained(tmp_path)
    assert AlbertConfig.from_pretrained(tmp_path) == config
    with pytest.raises(ValueError, match="model_type is 'albert', not 'bert'"):
        BertConfig.from_pretrained(tmp_path)


def test_bad_labels_are_refused(rng):
    model = AlbertForPreTraining(small_config(), seed=0, dtype=np.float64)
    batch = pretraining_batch()
    with pytest.raises(ValueError, match=r"sentence_order_label must lie in \[0, 2\)"):
        model(**{**batch, "sentence_order_label": np.array([1, 2])})
    with pytest.raises(ValueError, match=r"sentence_order_label has shape \(3,\), expected \(2,\)"):
        model(**{**batch, "sentence_order_label": np.array([1, 0, 1])})
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 31\)"):
        model(**{**batch, "labels": np.full((2, 6), 31)})
    with pytest.raises(ValueError, match="input_ids must lie in"):
        AlbertForMaskedLM(small_config(), seed=0)(np.array([[1, 40]]))
    with pytest.raises(ValueError, match="backward\\(\\) needs a forward call with labels and sentence_order_label"):
        model(batch["input_ids"])
        model.backward()
    with pytest.raises(ValueError, match="sentence-order head has 2 classes, but num_labels is 3"):
        AlbertForPreTraining(small_config(num_labels=3))


def test_every_parameter_is_trained_once_per_name(rng):
    """The tied decoder is no second parameter, and the untouched Linear class stays BERT's (no copy)."""
    model = AlbertForPreTraining(small_config(num_hidden_layers=4, num_hidden_groups=2), seed=0)
    names = [name for name, _ in model.named_parameters()]
    assert "predictions.decoder.weight" not in names and "albert.embeddings.word_embeddings.weight" in names
    assert sum(name.startswith("albert.encoder.albert_layer_groups.") for name in names) == 2 * 16
    assert type(model.albert.encoder.embedding_hidden_mapping_in) is Linear


def test_parameter_counts_in_the_chapter_are_right():
    """The module docstring's table: BertModel and AlbertModel at BERT-base's sizes (built without
    initialising: np.zeros leaves the pages untouched, so this costs little memory)."""
    sizes = dict(vocab_size=30000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072)
    bert = BertModel(BertConfig(**sizes), seed=None)
    albert = AlbertModel(AlbertConfig(**sizes, embedding_size=128), seed=None)
    unshared = AlbertModel(AlbertConfig(**sizes, embedding_size=128, num_hidden_groups=12), seed=None)

    def count(model, prefix=""):
        return sum(p.data.size for name, p in model.named_parameters() if name.startswith(prefix))

    counts = [count(bert), count(bert, "embeddings."), count(bert, "encoder."), count(bert, "pooler."),
              count(albert), count(albert, "embeddings."), count(albert, "encoder.embedding_hidden_mapping_in."),
              count(albert, "encoder.albert_layer_groups."), count(unshared)]
    missing = [f"{n:,}" for n in counts if f"{n:,}" not in numpy_bert.albert.__doc__]
    assert not missing, f"numpy_bert/albert.py's docstring lacks the counts {missing}"
