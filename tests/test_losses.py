"""mmlab.losses: 2-Wasserstein / cosine similarities, symmetric InfoNCE (CM-ARR Eqs. 1-5,
arXiv:2407.09029) and supervised contrastive loss (arXiv:2004.11362), pinned on hand-computed
numbers and on independent loop implementations."""

from __future__ import annotations

import math

import pytest
import torch

from mmlab.errors import ConfigError
from mmlab.losses import ContrastiveConfig, ContrastiveSimilarity, cosine_matrix, info_nce, supcon, w2_distance


def test_w2_by_hand():
    a = (torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    b = (torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 9.0]]))
    # ||mu||^2 = 25; stds (1, 1) vs (2, 3): 1 + 4 = 5
    assert w2_distance(a, b).item() == pytest.approx(30.0)
    # literal Eq. 1 on variances: 25 + 9 + 64 = 98
    assert w2_distance(a, b, use_variance=True).item() == pytest.approx(98.0)
    assert w2_distance(a, a).item() == pytest.approx(0.0, abs=1e-6)


def test_w2_matrix_matches_loop():
    g = torch.Generator().manual_seed(0)
    mu_a, mu_b = torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g)
    var_a, var_b = torch.rand(4, 3, generator=g) + 0.1, torch.rand(5, 3, generator=g) + 0.1
    d = w2_distance((mu_a, var_a), (mu_b, var_b))
    assert d.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            want = sum((mu_a[i, k] - mu_b[j, k]) ** 2 + (var_a[i, k].sqrt() - var_b[j, k].sqrt()) ** 2
                       for k in range(3))
            assert d[i, j].item() == pytest.approx(float(want), rel=1e-5, abs=1e-5)


def test_info_nce_by_hand():
    sim = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    e = math.e
    rows = -math.log(e**2 / (e**2 + 1)) - math.log(e**3 / (e + e**3))
    cols = -math.log(e**2 / (e**2 + e)) - math.log(e**3 / (1 + e**3))
    assert info_nce(sim, 1.0).item() == pytest.approx(rows / 2 + cols / 2, rel=1e-6)
    # temperature divides the logits
    assert info_nce(sim, 2.0).item() == pytest.approx(info_nce(sim / 2, 1.0).item(), rel=1e-6)
    with pytest.raises(ValueError, match="square"):
        info_nce(torch.zeros(2, 3), 1.0)


def _loop_info_nce(s: torch.Tensor, tau: float) -> float:
    n, total = s.shape[0], 0.0
    for i in range(n):
        total += -math.log(math.exp(s[i, i] / tau) / sum(math.exp(s[i, k] / tau) for k in range(n))) / n
        total += -math.log(math.exp(s[i, i] / tau) / sum(math.exp(s[k, i] / tau) for k in range(n))) / n
    return total


def test_w2_similarity_loss_matches_loop():
    g = torch.Generator().manual_seed(1)
    a = (torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) + 0.1)
    b = (torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) + 0.1)
    sim = ContrastiveSimilarity(ContrastiveConfig(similarity="w2", a_init=-0.5, b_init=0.3, tau_init=0.5))
    s = sim.similarity(a, b).detach()
    torch.testing.assert_close(s, -0.5 * w2_distance(a, b) + 0.3)  # Eq. 5
    assert sim(a, b).item() == pytest.approx(_loop_info_nce(s.double(), 0.5), rel=1e-5)


def test_scale_stays_negative_and_parameters_learn():
    sim = ContrastiveSimilarity()
    assert sim.scale().item() == pytest.approx(-1.0) and sim.b.item() == 0.0
    assert sim.tau.item() == pytest.approx(0.07)
    a = (torch.randn(3, 2), torch.rand(3, 2) + 0.1)
    b = (torch.randn(3, 2), torch.rand(3, 2) + 0.1)
    sim(a, b).backward()
    assert sim.a_raw.grad is not None and sim.log_tau.grad is not None and sim.a_raw.grad.abs() > 0
    with torch.no_grad():
        sim.a_raw.fill_(-30.0)  # optimiser steps that pushed a up to its bound
    assert sim.scale().item() == pytest.approx(sim.cfg.a_max) and sim.scale().item() < 0
    sim.zero_grad()
    sim(a, b).backward()
    assert sim.a_raw.grad.abs() > 0  # never frozen: a clamp would have no gradient here
    fixed = ContrastiveSimilarity(ContrastiveConfig(learn_tau=False))
    assert "log_tau" not in dict(fixed.named_parameters())


def test_variance_flag_changes_the_similarity():
    a = (torch.zeros(2, 2), torch.tensor([[1.0, 4.0], [9.0, 1.0]]))
    lit = ContrastiveSimilarity(ContrastiveConfig(w2_use_variance=True)).similarity(a, a)
    true = ContrastiveSimilarity(ContrastiveConfig()).similarity(a, a)
    assert lit[0, 1].item() == pytest.approx(-(64 + 9))  # (1-9)^2 + (4-1)^2
    assert true[0, 1].item() == pytest.approx(-(4 + 1))  # (1-3)^2 + (2-1)^2


def test_cosine_uses_means_only():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    var_a, var_b = torch.ones(2, 2), torch.full((2, 2), 5.0)
    sim = ContrastiveSimilarity(ContrastiveConfig(similarity="cosine", tau_init=1.0))
    s = sim.similarity((mu, var_a), (mu * 3, var_b))
    torch.testing.assert_close(s, torch.eye(2))
    torch.testing.assert_close(cosine_matrix(mu, mu), torch.eye(2))
    assert sim((mu, var_a), (mu, var_b)).item() == pytest.approx(2 * math.log(1 + math.exp(-1)), rel=1e-6)


def test_aligned_pairs_score_lower_than_shuffled():
    g = torch.Generator().manual_seed(2)
    mu, var = torch.randn(8, 4, generator=g), torch.rand(8, 4, generator=g) + 0.1
    sim = ContrastiveSimilarity()
    aligned = sim((mu, var), (mu + 0.01, var)).item()
    shuffled = sim((mu, var), (mu.roll(1, 0), var.roll(1, 0))).item()
    assert aligned < 0.1 < shuffled


def test_supcon_by_hand():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    # anchors 0 and 1: one positive each, log p = 1 - log(e + 1); anchor 2 has none (left out)
    assert supcon(z, y, temperature=1.0).item() == pytest.approx(math.log(1 + math.e) - 1, rel=1e-6)
    # no anchor with a positive: 0, still differentiable
    z2 = torch.randn(3, 2, requires_grad=True)
    out = supcon(z2, torch.tensor([0, 1, 2]))
    out.backward()
    assert out.item() == 0.0


def test_supcon_matches_loop():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(7, 3, generator=g)
    y = torch.tensor([0, 1, 0, 2, 1, 0, 3])
    t = 0.3
    z = f / f.norm(dim=1, keepdim=True)
    terms = []
    for i in range(7):
        pos = [p for p in range(7) if p != i and y[p] == y[i]]
        if not pos:
            continue
        den = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(7) if a != i)
        terms.append(-sum(math.log(math.exp(float(z[i] @ z[p]) / t) / den) for p in pos) / len(pos))
    assert supcon(f, y, temperature=t).item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    # self-pairs excluded: a duplicate of an anchor is a positive, the anchor itself is not
    assert torch.isfinite(supcon(f, y, temperature=0.01))


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="similarity"):
        ContrastiveConfig(similarity="dot")
    with pytest.raises(ConfigError, match="a_init"):
        ContrastiveConfig(a_init=1.0)
    with pytest.raises(ConfigError, match="tau_init"):
        ContrastiveConfig(tau_init=0.0)
    with pytest.raises(ValueError, match="mean, variance"):
        ContrastiveSimilarity().similarity(torch.zeros(2, 2), torch.zeros(2, 2))


def test_w2_mean_reduction_divides_by_dimension():
    a = (torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    b = (torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 9.0]]))
    assert w2_distance(a, b, reduce="mean").item() == pytest.approx(15.0)
    sim = ContrastiveSimilarity(ContrastiveConfig(w2_reduce="mean"))
    assert sim.similarity(a, b).item() == pytest.approx(-15.0)
    with pytest.raises(ConfigError, match="w2_reduce"):
        ContrastiveConfig(w2_reduce="max")
