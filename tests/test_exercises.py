"""The exercises' checkers: the worked solutions pass, stubs are "not written yet", plausible wrong
answers fail, and nothing a learner's function does makes a checker raise."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from numpy_bert import exercises as ex
from numpy_bert.data.masking import MaskingCollator
from numpy_bert.exercises.core import FD_TOLERANCE, Verdict, fmt

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
NOTEBOOKS = ["01_text_to_tokens", "02_embeddings_and_attention", "03_backward_by_hand", "04_pretraining_objectives",
             "05_training_a_mini_bert", "06_numpy_vs_pytorch", "07_finetuning_and_evaluation",
             "08_pretrained_model_in_numpy", "09_speed", "10_bert_on_one_page", "11_bert_family"]


def solution(name: str):
    """The worked solution of exercise ``name``, loaded from its notebook's solutions file (not a module name)."""
    return runpy.run_path(str(ROOT / ex.EXERCISES[name].solution), run_name="solution")[name]


def stub(name: str):
    namespace: dict = {}
    exec(ex.EXERCISES[name].stub, namespace)
    return namespace[name]


# ---- the registry --------------------------------------------------------------------------------


# What the learning-by-doing issue asked for at least: each must stay registered.
REQUIRED = {"layernorm_backward", "softmax_backward", "attention_backward", "bert_layer_backward",
            "embedding_backward", "wordpiece", "mask_tokens", "adamw_step", "mean_pooling", "f1_scores",
            "roberta_position_ids"}


def test_registry_covers_the_notebooks():
    assert REQUIRED <= set(ex.EXERCISES), REQUIRED - set(ex.EXERCISES)
    assert {e.notebook for e in ex.EXERCISES.values()} == set(NOTEBOOKS), "every notebook poses an exercise"
    assert [e.notebook for e in ex.EXERCISES.values()] == sorted(e.notebook for e in ex.EXERCISES.values())
    for e in ex.EXERCISES.values():
        assert all((ROOT / "notebooks" / f"{e.notebook}{suffix}").is_file() for suffix in (".ipynb", ".py")), e.notebook
        assert (ROOT / e.solution).is_file(), e.solution
        assert 2 <= len(e.hints) <= 3 and e.summary


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_the_signature_is_the_function_with_a_docstring(name):
    function = stub(name)
    assert function.__name__ == name and function.__doc__.strip().splitlines()[0] == ex.EXERCISES[name].summary


def test_list_exercises(capsys):
    ex.list_exercises("03_backward_by_hand")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["softmax_backward", "layernorm_backward", "attention_backward"]
    with pytest.raises(ValueError, match="notebooks with exercises are"):
        ex.list_exercises("03")


def test_an_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'layernorm_backward'"):
        ex.check("layernorm_backwards", print)
    with pytest.raises(ValueError, match="list_exercises"):
        ex.hint("nothing like it")


# ---- solutions and stubs -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_the_worked_solution_passes(name, capsys):
    verdict = ex.check(name, solution(name))
    printed = capsys.readouterr().out
    assert verdict.passed, verdict
    assert printed == f"{verdict}\n" and printed.startswith(f"✓ {name}: ") and printed.count("\n") == 1
    if verdict.tolerance is not None:  # the references agree with a right answer far inside the tolerance
        assert verdict.largest_error < verdict.tolerance / 100, verdict


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_a_stub_is_not_written_yet(name, capsys):
    verdict = ex.check(name, stub(name))
    assert not verdict and not verdict.written
    assert capsys.readouterr().out == (f"… {name}: not written yet (the stub raises NotImplementedError); "
                                       f"try ex.hint({name!r})\n")


@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("[0-9]*.py")), ids=lambda p: p.stem)
def test_each_solutions_file_runs_as_a_script(path):
    run = subprocess.run([sys.executable, str(path.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("✓") == sum(e.notebook == path.stem for e in ex.EXERCISES.values()) > 0


def test_the_solutions_files_are_the_exercises_notebooks():
    assert sorted(p.stem for p in SOLUTIONS.glob("[0-9]*.py")) == sorted({e.notebook for e in ex.EXERCISES.values()})


# ---- wrong answers fail ----------------------------------------------------------------------------


def wordpiece_shortest_first(word, vocab, unk_token="[UNK]", max_chars=100):
    if len(word) > max_chars:
        return [unk_token]
    pieces, start = [], 0
    while start < len(word):
        ends = [end for end in range(start + 1, len(word) + 1) if ("##" if start else "") + word[start:end] in vocab]
        if not ends:
            return [unk_token]
        pieces.append(("##" if start else "") + word[start:ends[0]])
        start = ends[0]
    return pieces


def wordpiece_hard_coded(word, vocab, unk_token="[UNK]", max_chars=100):
    return solution("wordpiece")(word, vocab)  # ignores unk_token and max_chars


def embedding_backward_overwriting(ids, d_out, vocab_size):
    dW = np.zeros((vocab_size, d_out.shape[-1]))
    dW[ids] += d_out
    return dW


def attention_without_mask(q, k, v, mask):
    return solution("attention_forward")(q, k, v, np.zeros_like(mask))


def attention_without_max(q, k, v, mask):
    weights = np.exp(q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1]) + mask)
    return weights / weights.sum(axis=-1, keepdims=True) @ v


def attention_over_queries(q, k, v, mask):
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1]) + mask
    weights = np.exp(scores - scores.max(axis=-2, keepdims=True))
    return weights / weights.sum(axis=-2, keepdims=True) @ v


def softmax_backward_without_sum(y, dy):
    return y * dy


def layernorm_backward_without_variance(dy, xhat, rstd, gamma):
    _, dgamma, dbeta = solution("layernorm_backward")(dy, xhat, rstd, gamma)
    g = dy * gamma
    return rstd * (g - g.mean(axis=-1, keepdims=True)), dgamma, dbeta


def layernorm_backward_first_axis_only(dy, xhat, rstd, gamma):
    dx, _, _ = solution("layernorm_backward")(dy, xhat, rstd, gamma)
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def attention_backward_unscaled(d_out, q, k, v, probs, scaling):
    return solution("attention_backward")(d_out, q, k, v, probs, 1.0)


def mask_tokens_90_10_0(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability=0.15):
    masked, labels = solution("mask_tokens")(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability)
    chosen = labels != -100
    kept = chosen & (masked == input_ids)
    masked[kept] = mask_token_id  # the 10% "unchanged" become [MASK]: 90/10/0
    return masked, labels


def mask_tokens_with_specials(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability=0.15):
    return solution("mask_tokens")(input_ids, np.array([], dtype=np.int64), mask_token_id, vocab_size, rng,
                                   mlm_probability)


def mask_tokens_ten_percent(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability=0.15):
    return solution("mask_tokens")(input_ids, special_ids, mask_token_id, vocab_size, rng, 0.1)


def mask_tokens_ignoring_the_probability(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability=0.15):
    return solution("mask_tokens")(input_ids, special_ids, mask_token_id, vocab_size, rng, 0.15)


def mask_tokens_global_random(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability=0.15):
    return solution("mask_tokens")(input_ids, special_ids, mask_token_id, vocab_size, np.random.default_rng(),
                                   mlm_probability)


def adamw_without_bias_correction(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    p = p * (1 - lr * weight_decay)
    m = betas[0] * m + (1 - betas[0]) * g
    v = betas[1] * v + (1 - betas[1]) * g * g
    return p - lr * m / (np.sqrt(v) + eps), m, v


def adamw_decay_last(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    p, m, v = solution("adamw_step")(p, g, m, v, t, lr, betas, eps, weight_decay=0.0)
    return p * (1 - lr * weight_decay), m, v


def adam_with_l2(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    return solution("adamw_step")(p, g + weight_decay * p, m, v, t, lr, betas, eps, weight_decay=0.0)


def cross_entropy_over_all_rows(logits, labels):
    d = solution("cross_entropy_backward")(logits, labels)
    return d * np.count_nonzero(labels != -100) / len(labels)


def cross_entropy_without_max(logits, labels):  # fine for logits of ordinary size
    e = np.exp(logits)
    d = e / e.sum(axis=-1, keepdims=True)
    rows = np.flatnonzero(labels != -100)
    d[rows, labels[rows]] -= 1
    d[labels == -100] = 0
    return d / len(rows)


def f1_macro_over_all_classes(gold, predicted, num_classes):
    f1, _ = solution("f1_scores")(gold, predicted, num_classes)
    return f1, float(f1.mean())


def mean_pooling_with_padding(hidden, attention_mask):
    return hidden.mean(axis=1)


def mean_pooling_of_the_first_tokens(hidden, attention_mask):
    return np.stack([h[: n].mean(axis=0) for h, n in zip(hidden, attention_mask.sum(axis=1))])


def quantize_rows_per_tensor(w):
    scale = np.abs(w).max() / 127
    return np.rint(w / scale).astype(np.int8), np.full(len(w), scale, np.float32)


def quantize_rows_truncating(w):
    scale = np.maximum(np.abs(w).max(axis=1) / 127, 1e-30).astype(np.float32)
    return (w / scale[:, None]).astype(np.int8), scale


def quantize_rows_without_abs(w):
    scale = np.maximum(w.max(axis=1) / 127, 1e-30).astype(np.float32)
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale


def quantize_rows_as_floats(w):
    q, scale = solution("quantize_rows")(w)
    return q.astype(np.float32), scale


def layer_flops_in_multiply_adds(hidden_size, intermediate_size, seq_len):
    return solution("layer_flops")(hidden_size, intermediate_size, seq_len) // 2


def layer_flops_without_attention(hidden_size, intermediate_size, seq_len):
    C, I, T = hidden_size, intermediate_size, seq_len
    return 2 * T * (4 * C * C + 2 * C * I)


def layer_flops_with_4c(hidden_size, intermediate_size, seq_len):
    return solution("layer_flops")(hidden_size, 4 * hidden_size, seq_len)


def roberta_position_ids_as_bert(input_ids, padding_idx):
    return np.broadcast_to(np.arange(input_ids.shape[1]) + padding_idx + 1, input_ids.shape)


def roberta_position_ids_counting_padding(input_ids, padding_idx):
    is_token = input_ids != padding_idx
    return np.where(is_token, np.arange(input_ids.shape[1]) + padding_idx + 1, padding_idx)


def roberta_position_ids_from_zero(input_ids, padding_idx):
    is_token = (input_ids != padding_idx).astype(np.int64)
    return np.cumsum(is_token, axis=1) * is_token


def bert_layer_backward_without_residual(layer, dy):
    d_h, _ = layer.output.backward(dy)
    return layer.attention.backward(layer.intermediate.backward(d_h))


def bert_layer_backward_without_intermediate(layer, dy):
    _, d_a = layer.output.backward(dy)
    return layer.attention.backward(d_a)


WRONG = [
    ("wordpiece", wordpiece_shortest_first, "words are split differently"),
    ("wordpiece", wordpiece_hard_coded, "max_chars=8"),
    ("embedding_backward", embedding_backward_overwriting, "counts each repeated id once"),
    ("attention_forward", attention_without_mask, "out is wrong"),
    ("attention_forward", attention_without_max, "with scores of about 1e4"),
    ("attention_forward", attention_over_queries, "out is wrong"),
    ("softmax_backward", softmax_backward_without_sum, "dx is wrong"),
    ("layernorm_backward", layernorm_backward_without_variance, "dx is wrong"),
    ("layernorm_backward", layernorm_backward_first_axis_only, "dgamma has shape (3, 5), expected (5,)"),
    ("attention_backward", attention_backward_unscaled, "wrong"),
    ("mask_tokens", mask_tokens_90_10_0, "of the chosen tokens became [MASK], expected 80%"),
    ("mask_tokens", mask_tokens_with_specials, "was chosen"),
    ("mask_tokens", mask_tokens_ten_percent, "of the non-special tokens were chosen"),
    ("mask_tokens", mask_tokens_ignoring_the_probability, "with mlm_probability=0.3"),
    ("mask_tokens", mask_tokens_global_random, "seeded alike gave different results"),
    ("adamw_step", adamw_without_bias_correction, "after step 1"),
    ("adamw_step", adamw_decay_last, "p is wrong"),
    ("adamw_step", adam_with_l2, "after step 1"),
    ("cross_entropy_backward", cross_entropy_over_all_rows, "dlogits is wrong"),
    ("f1_scores", f1_macro_over_all_classes, "macro_f1 is wrong"),
    ("mean_pooling", mean_pooling_with_padding, "pooled is wrong"),
    ("mean_pooling", mean_pooling_of_the_first_tokens, "pooled is wrong"),
    ("quantize_rows", quantize_rows_per_tensor, "is wrong"),
    ("quantize_rows", quantize_rows_truncating, "is wrong"),
    ("quantize_rows", quantize_rows_without_abs, "is wrong"),
    ("quantize_rows", quantize_rows_as_floats, "expected int8"),
    ("layer_flops", layer_flops_in_multiply_adds, "is 931,135,488, expected 1,862,270,976"),
    ("layer_flops", layer_flops_without_attention, "expected"),
    ("layer_flops", layer_flops_with_4c, "layer_flops(64, 100, 300)"),
    ("roberta_position_ids", roberta_position_ids_as_bert, "is [[2, 3, 4, 5, 6]"),
    ("roberta_position_ids", roberta_position_ids_counting_padding, "roberta_position_ids([[1, 1, 0, 5, 2]"),
    ("roberta_position_ids", roberta_position_ids_from_zero, "is [[1, 2, 3, 0, 0]"),
    ("bert_layer_backward", bert_layer_backward_without_residual, "wrong"),
    ("bert_layer_backward", bert_layer_backward_without_intermediate, "got no gradient"),
]


@pytest.mark.parametrize(("name", "function", "says"), WRONG, ids=[f.__name__ for _, f, _ in WRONG])
def test_a_wrong_answer_fails(name, function, says, capsys):
    verdict = ex.check(name, function)
    printed = capsys.readouterr().out
    assert not verdict and verdict.written, verdict
    assert says in verdict.detail, verdict
    assert printed.startswith(f"✗ {name}: ") and f"try ex.hint({name!r})" in printed.splitlines()[0]


def test_a_wrong_answer_is_explained():
    verdict = ex.check("layernorm_backward", layernorm_backward_without_variance)
    assert verdict.tolerance == FD_TOLERANCE and verdict.largest_error > 1e-3
    assert f"tolerance {fmt(FD_TOLERANCE)}" in verdict.detail and "at index (" in verdict.detail
    assert "should be" in verdict.note and "got" in verdict.note
    assert "the first: " in ex.check("wordpiece", wordpiece_shortest_first).note
    assert "a multiply-add is 2 FLOPs" in ex.check("layer_flops", layer_flops_in_multiply_adds).note
    assert "not 4 × hidden_size" in ex.check("layer_flops", layer_flops_with_4c).note


def test_a_softmax_without_the_max_is_fine_where_nothing_overflows():
    assert ex.check("cross_entropy_backward", cross_entropy_without_max)


def test_other_right_answers_pass():
    """What the hints accept: a Bernoulli draw per token (transformers' masking), and numpy_bert's own code."""

    def mask_tokens_bernoulli(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability=0.15):
        candidates = ~np.isin(input_ids, special_ids)
        chosen = candidates & (rng.random(input_ids.shape) < mlm_probability)
        labels = np.where(chosen, input_ids, -100)
        u = rng.random(input_ids.shape)
        masked = np.where(chosen & (u < 0.8), mask_token_id, input_ids)
        random = chosen & (u >= 0.8) & (u < 0.9)
        masked[random] = rng.integers(0, vocab_size, random.sum())
        return masked, labels

    assert ex.check("mask_tokens", mask_tokens_bernoulli)

    class Tokenizer:  # what MaskingCollator reads of a tokenizer
        mask_token_id, pad_token_id, all_special_ids = 103, 0, [0, 100, 101, 102, 103]
        vocab = {f"t{i}": i for i in range(30522)}

        def __len__(self):
            return 30522

    def library_mask(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability=0.15):
        return MaskingCollator(Tokenizer(), mlm_probability=mlm_probability).mask(input_ids, rng)

    assert ex.check("mask_tokens", library_mask)

    def adamw_in_place(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        new_p, new_m, new_v = solution("adamw_step")(p, g, m, v, t, lr, betas, eps, weight_decay)
        p[...], m[...], v[...] = new_p, new_m, new_v
        return p, m, v

    assert ex.check("adamw_step", adamw_in_place)

    def bert_layer_by_the_library(layer, dy):
        return layer.backward(dy)

    assert ex.check("bert_layer_backward", bert_layer_by_the_library)


# ---- a checker never raises ---------------------------------------------------------------------------


def raises_value_error(*args, **kwargs):
    raise ValueError("shapes do not line up")


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_an_exception_in_the_function_is_a_verdict(name):
    verdict = ex.check(name, raises_value_error)
    assert not verdict and verdict.written
    assert "raised ValueError: shapes do not line up" in verdict.detail and "raises_value_error" in verdict.note


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_none_and_a_non_function_are_verdicts(name):
    verdict = ex.check(name, lambda *args, **kwargs: None)
    assert not verdict and "None" in verdict.detail, verdict
    verdict = ex.check(name, np.zeros(3))
    assert not verdict and "expected your function" in verdict.detail


def test_a_wrong_shape_and_a_wrong_arity_are_named():
    assert "dx has shape (4,), expected (4, 6)" in ex.check(
        "layernorm_backward", lambda dy, xhat, rstd, gamma: (dy[:, 0], gamma, gamma)).detail
    assert "expected a tuple of 3 (dx, dgamma, dbeta), got a tuple of 2 items" in ex.check(
        "layernorm_backward", lambda dy, xhat, rstd, gamma: (dy, gamma)).detail
    assert "dW has dtype float32, expected float64" in ex.check(
        "embedding_backward", lambda ids, d_out, V: np.zeros((V, d_out.shape[-1]), np.float32)).detail
    assert "expected integers" in ex.check(
        "mask_tokens", lambda ids, *args, **kwargs: (ids.astype(float), ids)).detail


results = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4), st.complex_numbers(),
    hnp.arrays(st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.complex128, np.uint8]),
               hnp.array_shapes(min_dims=0, max_dims=4, max_side=6)),
    st.lists(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)), max_size=4).map(tuple),
    st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3),
)


@pytest.mark.parametrize("name", list(ex.EXERCISES))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(result=results, error=st.sampled_from([None, TypeError, IndexError, ZeroDivisionError, KeyError]))
def test_a_checker_never_raises(name, result, error, capsys):
    def learner(*args, **kwargs):
        if error is not None:
            raise error("from the\nlearner")
        return result

    verdict = ex.check(name, learner)
    assert isinstance(verdict, Verdict) and not verdict.passed, verdict
    assert len(capsys.readouterr().out.splitlines()) <= 2


# ---- hints ----------------------------------------------------------------------------------------------


def test_hints_are_progressive_and_end_at_the_solution(capsys):
    ex.reset_hints()
    exercise = ex.EXERCISES["layernorm_backward"]
    for number, text in enumerate(exercise.hints, start=1):
        ex.hint("layernorm_backward")
        out = capsys.readouterr().out
        assert " ".join(out.split()) == f"Hint {number} of {len(exercise.hints)} for layernorm_backward: {text}"
        assert max(len(line) for line in out.splitlines()) <= 100
    for _ in range(2):
        ex.hint("layernorm_backward")
        assert "No more hints" in (out := capsys.readouterr().out)
        assert "notebooks/solutions/03_backward_by_hand.py" in out
    ex.hint("softmax_backward")  # each exercise counts its own hints
    assert capsys.readouterr().out.startswith("Hint 1 of")
    ex.reset_hints()
    ex.hint("layernorm_backward")
    assert capsys.readouterr().out.startswith("Hint 1 of")
    ex.reset_hints()


def test_the_masking_hint_says_which_draws_pass():
    assert "both pass" in ex.EXERCISES["mask_tokens"].hints[0]
    assert "only the classes that occur" in ex.EXERCISES["f1_scores"].hints[-1]


# ---- the FLOP formula is benchmarks' -------------------------------------------------------------------


@pytest.mark.parametrize(("C", "I", "T"), [(768, 3072, 128), (128, 512, 1), (64, 100, 300)])
def test_layer_flops_is_what_benchmarks_count(C, I, T):
    from benchmarks.flops import Shape, forward_flops
    from numpy_bert.exercises.forward import layer_flops

    def model(layers):
        return forward_flops(Shape(layers=layers, hidden=C, intermediate=I, vocab=100), batch=1, seq_len=T,
                             predicted_positions=0)

    assert layer_flops(C, I, T) == model(2) - model(1)


def test_wordpiece_without_bert_vocabulary_or_tokenizers(monkeypatch):
    """Without the MiniLM package the check uses the shipped model's vocabulary, without ``tokenizers`` only
    numpy_bert's WordPiece; the verdict says which."""
    from numpy_bert.exercises import tokens

    def no_minilm(name):
        raise ValueError("'minilm' needs the package")

    monkeypatch.setattr(tokens, "named_model_dir", no_minilm)
    monkeypatch.setitem(sys.modules, "tokenizers.models", None)  # importing it raises ImportError
    tokens.bert_vocabulary.cache_clear()
    tokens.wordpiece_cases.cache_clear()
    try:
        verdict = ex.check("wordpiece", solution("wordpiece"))
        assert verdict, verdict
        assert "python-docs model's vocabulary" in verdict.detail and "tokenizers is not installed" in verdict.detail
        assert not ex.check("wordpiece", wordpiece_shortest_first)
    finally:  # what was cached under the patches goes
        tokens.bert_vocabulary.cache_clear()
        tokens.wordpiece_cases.cache_clear()
