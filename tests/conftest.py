"""Fixtures of the tests that train: a toy corpus and a config smaller than the tiny preset."""

import pytest

from tests.test_training import write_micro_config, write_tiny_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    return str(write_tiny_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt"))


@pytest.fixture(scope="module")
def micro_config(tmp_path_factory) -> str:
    return write_micro_config(tmp_path_factory.mktemp("config"))
