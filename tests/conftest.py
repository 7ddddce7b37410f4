"""Shared test set-up: the tests' small models run fastest, and steadiest on a busy machine, on
one torch thread (the CLI's default too, `mmlab.cli.pin_threads`)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
