"""Fixtures shared by tests/ and parity_tests/."""

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one torch thread is faster than several that wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
