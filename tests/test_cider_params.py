"""CIDer's parameter count (its Table VI, 247,946 parameters without BERT) rebuilt component by
component at the CMU-MOSI unaligned configuration of the public code: d = 32, text 768-d
(BERT features) x 50 tokens, audio 5-d x 375 frames, vision 20-d x 500 frames."""

from __future__ import annotations

import pytest

from mmlab.bench import cider_table_vi_parameters, mosi_unaligned_standin
from mmlab.data.dataset import MMDataset
from mmlab.methods import make_method


def mosi_unaligned(n_classes: int) -> MMDataset:
    """A 4-row stand-in with MOSI's unaligned shapes (text as precomputed 768-d features, so the
    text encoder is excluded as in Table VI)."""
    return mosi_unaligned_standin(n_classes)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(n_classes: int, layers: int):
    return make_method("cider", mosi_unaligned(n_classes), [f"--mct.layers={layers}", "--mct.heads=8"])


# spec of the public code at d = 32 (per component)
COMPONENTS = {
    "conv": 25_376,  # Conv1d 768/5/20 -> 32, no bias (Eq. 3)
    "wsam": 8_448,  # 2 x WSAM (Eq. 4)
    "gru": 19_008,  # 3 x GRU (Eq. 5)
    "pool": 3_267,  # 3 x naive attention (Eq. 14)
    "recon": 70_794,  # Eq. 16 heads incl. time-axis Linear 50 -> 375 and 50 -> 500
    "joint": 18_624,  # Eq. 15
}


@pytest.mark.parametrize("name,want", sorted(COMPONENTS.items()))
def test_component_counts(name, want):
    assert count(getattr(build(3, 1), name)) == want


def test_mct_counts():
    m = build(3, 2)
    assert [count(layer) for layer in m.mct.layers] == [32_480, 32_480]
    assert count(m.mct.ln) == 64
    assert count(m.mct) == 2 * 32_480 + 64


def test_mcm_counts():
    binary, seven = build(3, 1).head, build(7, 1).head
    assert count(binary.mlps) == count(seven.mlps) == 31_808
    assert count(binary.classifiers) == 1_737 and count(seven.classifiers) == 9_457
    # MACI = 37,405 in Table VI: the mean of the binary (3-class) and seven-class sizes
    assert (count(binary) + count(seven)) / 2 == 37_405


@pytest.mark.parametrize("layers_binary,layers_seven", [(1, 3), (2, 2), (3, 1)])
def test_table_vi_total(layers_binary, layers_seven):
    """247,946 = the mean of the binary and seven-class models when their MCT depths sum to 4."""
    total = (count(build(3, layers_binary)) + count(build(7, layers_seven))) / 2
    assert total == 247_946


def test_total_differs_for_other_depths():
    assert (count(build(3, 2)) + count(build(7, 3))) / 2 != 247_946


def test_bench_prints_table_vi():
    assert cider_table_vi_parameters()["mean"] == 247_946
