"""Fixtures of the tests that train: a toy corpus, a config smaller than the tiny preset, and a
run trained with both (two steps, MLM + NSP)."""

from pathlib import Path

import pytest

from numpy_bert.cli.main import main
from tests.test_training import write_micro_config, write_tiny_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    return str(write_tiny_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt"))


@pytest.fixture(scope="module")
def micro_config(tmp_path_factory) -> str:
    return write_micro_config(tmp_path_factory.mktemp("config"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, corpus, micro_config) -> Path:
    from tests.test_faults import train_args

    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(train_args(run, corpus, micro_config)) == 0
    return run
