"""Sentence-pair examples for BERT pretraining, built the way the original BERT builds them.

An example is ``[CLS] A [SEP] B [SEP]``: two segments of whole sentences from the
corpus, with token type 0 for ``[CLS] A [SEP]`` and 1 for ``B [SEP]``. The pair
carries a label for a sentence-level task:

* ``"nsp"``, next-sentence prediction (BERT): half the time B is the text that
  follows A in the same document (label 0), otherwise B is taken from another
  document (label 1). These are transformers' ``next_sentence_label`` values.
* ``"sop"``, sentence-order prediction (ALBERT): A and B are always consecutive
  text of one document; label 1 when they have been swapped.

:class:`ExampleBuilder` follows ``create_instances_from_document`` of
google-research/bert: it gathers sentences into a chunk until the chunk reaches a
target length (the maximum, or with probability ``short_seq_prob`` a random shorter
one, so the model also sees short inputs as in fine-tuning), splits the chunk into
A and B at a random sentence boundary, and truncates the longer segment a token
at a time from a random end. Because segments end at sentence boundaries,
next-sentence prediction cannot be solved by spotting a sentence cut in half.

:class:`ExampleStream` draws fresh pairs every epoch, masks them with a
:class:`~numpy_bert.data.masking.MaskingCollator`, and can save and restore its
position so that a resumed training run sees exactly the same batches.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .corpus import Corpus
from .masking import MaskingCollator

PAIR_TASKS = ("nsp", "sop")  # sentence pairs with a label (ExampleBuilder)
TASKS = (*PAIR_TASKS, "mlm")  # mlm: masked-LM only, on packed sequences (PackedExampleBuilder)
# Keys of np.random.SeedSequence spawn_key: separate streams for drawing the
# pairs of each epoch and for masking, both derived from one seed.
_PAIRS_STREAM, _MASKING_STREAM = 0, 1


def _generator(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream for each ``key``, all determined by ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass(frozen=True)
class PretrainingExample:
    """One unmasked sentence pair, ``[CLS] A [SEP] B [SEP]``, as int64 arrays."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    next_sentence_label: int | None  # nsp: 0 = B follows A, 1 = B random; sop: 0 = in order, 1 = swapped; mlm: None


def tokenize_documents(corpus: Corpus | Iterable[Sequence[str]], tokenizer) -> list[list[np.ndarray]]:
    """Each document as a list of sentences, each sentence an int32 array of token ids.

    Every distinct sentence is tokenized once. Sentences that tokenize to nothing
    and documents left empty are dropped.
    """
    cache: dict[str, np.ndarray] = {}
    documents = []
    for document in corpus:
        sentences = document.sentences if hasattr(document, "sentences") else document
        ids = []
        for sentence in sentences:
            if sentence not in cache:
                cache[sentence] = np.array(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(sentence)),
                                           dtype=np.int32)
            if len(cache[sentence]):
                ids.append(cache[sentence])
        if ids:
            documents.append(ids)
    return documents


def truncate_pair(a: np.ndarray, b: np.ndarray, max_num_tokens: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shorten the pair to ``max_num_tokens`` as the original BERT does.

    The original removes one token at a time from the longer segment (B on a tie),
    from its front or its back with a coin flip, "to add more randomness and avoid
    biases". Which segment loses how many tokens depends only on the lengths, and
    the number taken from the front is then binomial; drawing that number directly
    gives the same distribution with one random draw instead of one per token.
    """
    len_a, len_b = len(a), len(b)
    while len_a + len_b > max_num_tokens:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return _trim(a, len_a, rng), _trim(b, len_b, rng)


def _trim(segment: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    cut = len(segment) - length
    front = int(rng.binomial(cut, 0.5)) if cut else 0
    return segment[front : front + length]


class ExampleBuilder:
    """Makes sentence-pair examples from tokenized documents, one epoch at a time."""

    def __init__(
        self,
        documents: list[list[np.ndarray]],
        cls_token_id: int,
        sep_token_id: int,
        max_seq_length: int = 128,
        short_seq_prob: float = 0.1,
        task: str = "nsp",
    ):
        if task not in PAIR_TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {PAIR_TASKS}")
        if max_seq_length < 5:
            raise ValueError(f"max_seq_length must leave room for [CLS] A [SEP] B [SEP] (5 tokens), "
                             f"got {max_seq_length}")
        if not 0.0 <= short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be a probability, got {short_seq_prob}")
        if task == "nsp" and len(documents) < 2:
            raise ValueError("next-sentence prediction needs at least two non-empty documents "
                             f"(random B segments come from another document), got {len(documents)}")
        self.documents = documents
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id
        self.max_seq_length = max_seq_length
        self.short_seq_prob = short_seq_prob
        self.task = task

    @classmethod
    def from_corpus(cls, corpus: Corpus | Iterable[Sequence[str]], tokenizer, **options) -> ExampleBuilder:
        """Tokenize a corpus (each sentence once) and build examples from it with ``options``."""
        return cls(tokenize_documents(corpus, tokenizer), tokenizer.cls_token_id, tokenizer.sep_token_id,
                   **options)

    def epoch(self, rng: np.random.Generator) -> list[PretrainingExample]:
        """One pass over every document, in a random order of examples."""
        examples = [e for index in range(len(self.documents)) for e in self.from_document(index, rng)]
        return [examples[i] for i in rng.permutation(len(examples))]

    def from_document(self, index: int, rng: np.random.Generator) -> list[PretrainingExample]:
        """The examples of one document (``create_instances_from_document`` of the original).

        Sentences are gathered into a chunk until it reaches the target length or the
        document ends; the chunk becomes one example. As in the original, the target
        length is drawn once per document, and a chunk of a single sentence always
        gets a random B, so a little over half of the NSP labels are 1 (about 54% on
        the default corpus). With sentence-order prediction a chunk needs two
        sentences to make a pair, and a lone last sentence is left out.
        """
        document = self.documents[index]
        max_num_tokens = self.max_seq_length - 3  # room for [CLS], [SEP], [SEP]
        target_length = max_num_tokens
        if rng.random() < self.short_seq_prob:
            target_length = int(rng.integers(2, max_num_tokens, endpoint=True))
        examples: list[PretrainingExample] = []
        chunk: list[np.ndarray] = []
        i = 0
        while i < len(document):
            chunk.append(document[i])
            full = sum(map(len, chunk)) >= target_length and (self.task == "nsp" or len(chunk) >= 2)
            if full or i == len(document) - 1:
                if self.task == "nsp" or len(chunk) >= 2:
                    example, unused = self._pair(chunk, index, target_length, rng)
                    examples.append(example)
                    i -= unused  # sentences not used by a random-next example go back to the document
                chunk = []
            i += 1
        return examples

    def _pair(self, chunk: list[np.ndarray], index: int, target_length: int,
              rng: np.random.Generator) -> tuple[PretrainingExample, int]:
        """The example made of one chunk, and how many of its sentences it left unused."""
        a_end = int(rng.integers(1, len(chunk) - 1, endpoint=True)) if len(chunk) >= 2 else 1
        a = np.concatenate(chunk[:a_end])
        label, unused = 0, 0
        if self.task == "nsp" and (len(chunk) == 1 or rng.random() < 0.5):
            b = self._random_segment(index, target_length - len(a), rng)
            label, unused = 1, len(chunk) - a_end
        else:
            b = np.concatenate(chunk[a_end:])
            if self.task == "sop" and rng.random() < 0.5:
                a, b, label = b, a, 1
        a, b = truncate_pair(a, b, self.max_seq_length - 3, rng)
        return self._pack(a, b, label), unused

    def _random_segment(self, index: int, target_length: int, rng: np.random.Generator) -> np.ndarray:
        """Sentences from a random place in another document, until ``target_length`` tokens.

        The original retries up to ten times to avoid the current document; drawing
        among the other documents directly makes sure of it.
        """
        other = int(rng.integers(len(self.documents) - 1))
        other += other >= index
        document = self.documents[other]
        segment: list[np.ndarray] = []
        for sentence in document[int(rng.integers(len(document))):]:
            segment.append(sentence)
            if sum(map(len, segment)) >= target_length:
                break
        return np.concatenate(segment)

    def _pack(self, a: np.ndarray, b: np.ndarray, label: int) -> PretrainingExample:
        input_ids = np.concatenate([[self.cls_token_id], a, [self.sep_token_id], b, [self.sep_token_id]])
        token_type_ids = np.repeat(np.array([0, 1]), [len(a) + 2, len(b) + 1])
        return PretrainingExample(input_ids.astype(np.int64), token_type_ids.astype(np.int64), label)


class PackedExampleBuilder:
    """MLM-only examples packed to full length: ``[CLS] text [SEP]``, no sentence pairs, no padding.

    RoBERTa's FULL-SENTENCES format (and transformers' run_mlm.py ``group_texts``): each
    epoch puts the documents in a random order, joins their sentences into one stream
    with ``[SEP]`` between documents, and cuts it into blocks of ``max_seq_length - 2``
    tokens. A block may start mid-sentence and run across a document boundary; every
    position is a real token, so no compute goes to padding (pairs of short documents
    would leave much of a 128-token row empty). The last, partial block is dropped.
    """

    task = "mlm"

    def __init__(self, documents: list[list[np.ndarray]], cls_token_id: int, sep_token_id: int,
                 max_seq_length: int = 128):
        if max_seq_length < 3:
            raise ValueError(f"max_seq_length must leave room for [CLS] text [SEP] (3 tokens), got {max_seq_length}")
        self.documents = documents
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id
        self.max_seq_length = max_seq_length

    @classmethod
    def from_corpus(cls, corpus: Corpus | Iterable[Sequence[str]], tokenizer, max_seq_length: int = 128
                    ) -> PackedExampleBuilder:
        return cls(tokenize_documents(corpus, tokenizer), tokenizer.cls_token_id, tokenizer.sep_token_id,
                   max_seq_length)

    def epoch(self, rng: np.random.Generator) -> list[PretrainingExample]:
        """Every full block of this epoch's document order, in a random order."""
        separator = np.array([self.sep_token_id], dtype=np.int32)
        order = rng.permutation(len(self.documents))
        stream = np.concatenate([piece for i in order for piece in (*self.documents[i], separator)])  # (L,)
        width = self.max_seq_length - 2
        blocks = stream[: len(stream) // width * width].reshape(-1, width)  # (blocks, width)
        return [self._pack(blocks[i]) for i in rng.permutation(len(blocks))]

    def _pack(self, block: np.ndarray) -> PretrainingExample:
        input_ids = np.concatenate([[self.cls_token_id], block, [self.sep_token_id]]).astype(np.int64)
        return PretrainingExample(input_ids, np.zeros(len(input_ids), dtype=np.int64), None)


def example_builder(corpus: Corpus | Iterable[Sequence[str]], tokenizer, max_seq_length: int, task: str
                    ) -> ExampleBuilder | PackedExampleBuilder:
    """The builder for a pre-training task: sentence pairs (nsp, sop) or packed sequences (mlm)."""
    if task == "mlm":
        return PackedExampleBuilder.from_corpus(corpus, tokenizer, max_seq_length)
    return ExampleBuilder.from_corpus(corpus, tokenizer, max_seq_length=max_seq_length, task=task)


class ExampleStream:
    """Masked batches forever, epoch after epoch of freshly drawn pairs; resumable exactly.

    The pairs of epoch ``e`` come from a generator seeded by ``(seed, e)``, so they
    can be rebuilt from the epoch number alone. Masking uses one more generator,
    which advances with every batch; its state is part of :meth:`state_dict`. Every
    batch is full: the last one of an epoch is completed with the next epoch's
    first examples.
    """

    def __init__(self, builder: ExampleBuilder | PackedExampleBuilder, collator: MaskingCollator, batch_size: int,
                 seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.builder = builder
        self.collator = collator
        self.batch_size = batch_size
        self.seed = seed
        self.rng = _generator(seed, _MASKING_STREAM)
        self._start_epoch(0)
        if not self.examples:
            raise ValueError("the corpus yields no examples (with sentence-order prediction, documents need at "
                             "least two sentences; packed MLM sequences need more text than one sequence)")

    def _start_epoch(self, epoch: int) -> None:
        self.examples = self.builder.epoch(_generator(self.seed, _PAIRS_STREAM, epoch))
        self.epoch, self.index = epoch, 0

    @property
    def examples_per_epoch(self) -> int:
        """Examples in the current epoch (it varies a little from epoch to epoch)."""
        return len(self.examples)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch: list[PretrainingExample] = []
        while len(batch) < self.batch_size:
            if self.index == len(self.examples):
                self._start_epoch(self.epoch + 1)
            take = min(self.batch_size - len(batch), len(self.examples) - self.index)
            batch += self.examples[self.index : self.index + take]
            self.index += take
        return self.collator(batch, self.rng)

    def state_dict(self) -> dict:
        """Where the stream is: seed, epoch, index in the epoch, masking RNG state (JSON-serialisable)."""
        return {"seed": self.seed, "epoch": self.epoch, "index": self.index,
                "rng_state": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where :meth:`state_dict` was taken: the same batches follow."""
        self.seed = state["seed"]
        self._start_epoch(state["epoch"])
        if not 0 <= state["index"] <= len(self.examples):
            raise ValueError(f"index {state['index']} is outside epoch {state['epoch']}, which has "
                             f"{len(self.examples)} examples: the state belongs to another corpus")
        self.index = state["index"]
        self.rng.bit_generator.state = copy.deepcopy(state["rng_state"])


def fixed_batches(builder: ExampleBuilder | PackedExampleBuilder, collator: MaskingCollator, batch_size: int,
                  seed: int = 0) -> list[dict[str, np.ndarray]]:
    """One epoch of pairs and masks that depend only on ``seed``: for evaluation.

    Evaluating on the same batches every time makes validation losses comparable
    from one evaluation to the next. The last batch may be smaller.
    """
    examples = builder.epoch(_generator(seed, _PAIRS_STREAM, 0))
    rng = _generator(seed, _MASKING_STREAM)
    return [collator(examples[i : i + batch_size], rng) for i in range(0, len(examples), batch_size)]
