"""Shared test set-up: the tests' small models run fastest, and steadiest on a busy machine, on
one torch thread (the CLI's default too, `mmlab.cli.pin_threads`)."""

import contextlib

import pytest
import torch

from mmlab.data.dataset import MMDataset


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@contextlib.contextmanager
def splits_read():
    """Within the block, collect into the yielded set the split of every dataset row that
    ``MMDataset.take`` hands out (what a method read while training)."""
    touched: set[str] = set()
    real_take = MMDataset.take

    def spy_take(self, idx):
        out = real_take(self, idx)
        touched.update(out.split.tolist())
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MMDataset, "take", spy_take)
        yield touched
