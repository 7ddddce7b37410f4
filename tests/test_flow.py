"""Property tests of mmlab.nn.flow (zuko-style): exact inverse, log-det against autograd's
Jacobian, gradients to every parameter, checkpoints, ActNorm initialisation and padding."""

from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmlab.errors import ConfigError, DataError
from mmlab.nn.flow import ACTNORM_MIN_STD, AffineCoupling, FlowConfig, Glow, InvertibleLinear


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def data(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Off-centre, unequal-scale features, so that ActNorm has something to undo."""
    g = gen(seed)
    scale = torch.rand(shape[-1], generator=g, dtype=dtype) * 3 + 0.2
    return torch.randn(shape, generator=g, dtype=dtype) * scale + torch.randn(shape[-1], generator=g, dtype=dtype)


def make_flow(dim: int, seed: int = 0, dtype: torch.dtype = torch.float64, **cfg) -> Glow:
    torch.manual_seed(seed)
    return Glow(dim, FlowConfig(**cfg)).to(dtype)


def randomize(flow: Glow, x: torch.Tensor, seed: int = 1, scale: float = 0.3) -> Glow:
    """Initialise ActNorm on x, then perturb every parameter (the zero last layers included), so
    that no step is the identity; matrices by scale/sqrt(fan-in), so that the flow stays
    well-conditioned."""
    flow(x)
    g = gen(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale / math.sqrt(p.shape[-1] if p.dim() == 2 else 1) * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def nll(z: torch.Tensor, logdet: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood under a standard-normal base (B, T, d) or (B, d)."""
    frames = z.shape[0] * (z.shape[1] if z.dim() == 3 else 1)
    return (0.5 * z.pow(2).sum() - logdet.sum()) / frames + 0.5 * z.shape[-1] * math.log(2 * math.pi)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.0}, "steps"),
        ({"steps": True}, "steps"),
        ({"hidden": 0}, "hidden"),
        ({"hidden": "64"}, "hidden"),
        ({"clamp": 0.0}, "clamp"),
        ({"clamp": -1.0}, "clamp"),
        ({"clamp": float("inf")}, "clamp"),
        ({"clamp": float("nan")}, "clamp"),
        ({"clamp": "2"}, "clamp"),
    ],
)
def test_bad_config_raises(kwargs, name):
    with pytest.raises(ConfigError, match=f"FlowConfig.{name}"):
        FlowConfig(**kwargs)


@pytest.mark.parametrize("dim", [1, 0, 2.0, True])
def test_bad_dim_raises(dim):
    with pytest.raises(ConfigError, match="Glow.dim: expected an integer >= 2"):
        Glow(dim)


def test_bad_cfg_type_raises():
    with pytest.raises(ConfigError, match="Glow.cfg"):
        Glow(4, {"steps": 2})


def test_bad_input_raises():
    flow = make_flow(4)
    with pytest.raises(DataError, match=r"forward: x: expected a float tensor \(B, T, 4\)"):
        flow(torch.zeros(2, 3, 5, dtype=torch.float64))
    with pytest.raises(DataError, match="forward: x"):
        flow(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(DataError, match=r"inverse: mask: expected shape \(2, 3\)"):
        flow.inverse(torch.zeros(2, 3, 4, dtype=torch.float64), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(DataError, match="forward: mask: expected a bool tensor"):
        flow(torch.zeros(2, 3, 4, dtype=torch.float64), [[True] * 3] * 2)


def test_paper_preset_builds():
    flow = Glow(128, FlowConfig(steps=32, hidden=64))
    assert len(flow.couplings) == 32
    assert [c.flip for c in flow.couplings[:4]] == [False, True, False, True]


# ----------------------------------------------------------------------------- invertibility
@pytest.mark.parametrize("dim", [2, 7, 16])
def test_inverse_exact_float64(dim):
    x = data((3, 5, dim), seed=dim)
    flow = randomize(make_flow(dim, steps=6), x)
    z, _ = flow(x)
    assert (z - x).abs().max() > 0.1  # not the identity
    assert (flow.inverse(z) - x).abs().max() < 1e-10
    z2 = flow(data((3, 5, dim), seed=dim + 1))[0]  # z → x → z on latents the flow actually produces
    assert (flow(flow.inverse(z2))[0] - z2).abs().max() < 1e-10


@pytest.mark.parametrize("dim", [16, 128])
def test_inverse_float32_after_training(dim):
    x = data((64, 10, dim), seed=2, dtype=torch.float32)
    flow = make_flow(dim, dtype=torch.float32)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    z0 = flow(x)[0].detach()
    for _ in range(5):
        opt.zero_grad()
        nll(*flow(x)).backward()
        opt.step()
    with torch.no_grad():
        z, _ = flow(x)
        assert (z - z0).abs().max() > 0.1  # training moved it
        # relative to max|x|: float32 rounding of one 128-term dot product alone is ~1e-6 of |x|
        assert (flow.inverse(z) - x).abs().max() / x.abs().max() < 1e-5


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(2, 9), steps=st.integers(1, 3), b=st.integers(1, 3), t=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_inverse_and_logdet_any_shape(dim, steps, b, t, seed):
    x = data((b, t, dim), seed=seed)
    mask = torch.rand(b, t, generator=gen(seed)) < 0.7
    flow = randomize(make_flow(dim, seed=seed, steps=steps, hidden=8), x, seed=seed)
    z, logdet = flow(x, mask)
    assert torch.isfinite(z).all() and logdet.shape == (b,)
    assert (flow.inverse(z, mask) - torch.where(mask[..., None], x, 0.0)).abs().max() < 1e-10
    z1, ld1 = flow(x.reshape(b * t, dim))
    assert torch.allclose(z[mask], z1[mask.reshape(-1)], atol=1e-12, rtol=0)
    assert torch.allclose(logdet, (ld1.reshape(b, t) * mask).sum(1), atol=1e-10, rtol=0)


def test_couplings_start_as_identity():
    coup = AffineCoupling(7, hidden=16, clamp=2.0, flip=True).double()
    x = data((4, 7), seed=3)
    y, ld = coup(x)
    assert torch.equal(y, x)
    assert torch.equal(ld, torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize("flip", [False, True])
def test_coupling_leaves_its_condition_half_alone(flip):
    coup = AffineCoupling(7, hidden=16, clamp=2.0, flip=flip).double()
    with torch.no_grad():
        coup.net[-1].weight.normal_(generator=gen(0))
    x = data((4, 7), seed=3)
    changed = (coup(x)[0] != x).all(0)
    expected = torch.tensor([True] * 4 + [False] * 3) if flip else torch.tensor([False] * 3 + [True] * 4)
    assert torch.equal(changed, expected)


def test_coupling_log_scale_is_bounded():
    coup = AffineCoupling(4, hidden=8, clamp=0.5).double()  # transforms n_b = 2 channels
    x = data((3, 4), seed=0)
    with torch.no_grad():
        coup.net[-1].bias.fill_(1.0)
    assert torch.allclose(coup(x)[1], torch.full((3,), 2 * 0.5 * math.tanh(1.0 / 0.5), dtype=torch.float64))
    with torch.no_grad():
        coup.net[-1].bias.fill_(1e6)
    y, ld = coup(x)
    assert torch.all(ld <= 2 * 0.5) and torch.isfinite(y).all()


# ----------------------------------------------------------------------------- log-determinant
@pytest.mark.parametrize("dim", [6, 7])
def test_logdet_matches_autograd_jacobian(dim):
    x = data((1, dim), seed=dim)  # a (B, d) input: one frame
    flow = randomize(make_flow(dim, steps=5), data((50, dim), seed=9))
    _, logdet = flow(x)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[0])
    assert jac.shape == (dim, dim)
    assert abs(logdet.item() - torch.linalg.slogdet(jac)[1].item()) < 1e-10


def test_lu_linear_logdet_and_inverse():
    torch.manual_seed(0)
    lin = InvertibleLinear(9).double()
    with torch.no_grad():
        for p in lin.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen(1), dtype=p.dtype))
    w = lin.weight()
    assert abs(lin(torch.zeros(1, 9, dtype=torch.float64))[1].item() - torch.linalg.slogdet(w)[1].item()) < 1e-12
    y = data((5, 9), seed=2)
    assert (lin.inverse(y) - torch.linalg.solve(w, y.T).T).abs().max() < 1e-12


def test_logdet_sums_frames():
    x = data((3, 4, 5), seed=4)
    flow = randomize(make_flow(5), x)
    z, logdet = flow(x)
    z1, ld1 = flow(x.reshape(12, 5))  # every frame on its own, as a (B, d) batch
    assert torch.allclose(z1.reshape(3, 4, 5), z, atol=1e-13, rtol=0)
    assert torch.allclose(ld1.reshape(3, 4).sum(1), logdet, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- gradients
def test_gradients_reach_every_parameter():
    x = data((4, 6, 7), seed=5)
    flow = randomize(make_flow(7, steps=3), x)
    nll(*flow(x)).backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_gradients_through_inverse():
    x = data((4, 6, 7), seed=5)
    flow = randomize(make_flow(7, steps=3), x)
    flow.inverse(x).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in flow.parameters())


# ----------------------------------------------------------------------------- ActNorm and checkpoints
def test_actnorm_initialises_once_on_real_frames():
    x = data((8, 20, 6), seed=6)
    flow = make_flow(6)
    z, _ = flow(x)
    norm = flow.actnorms[0]
    assert bool(norm.initialized)
    flat = x.reshape(-1, 6)
    assert torch.allclose(norm.loc, flat.mean(0), atol=1e-12)
    assert torch.allclose(norm.log_scale, -flat.std(0, unbiased=False).log(), atol=1e-12)
    loc = norm.loc.detach().clone()
    flow(data((8, 20, 6), seed=7) * 10)
    assert torch.equal(norm.loc, loc)  # second call: no re-initialisation


def test_state_dict_roundtrip_reproduces_and_keeps_actnorm():
    x = data((4, 5, 7), seed=8)
    flow = randomize(make_flow(7, seed=0), x)
    z, logdet = flow(x)
    assert "actnorms.0.initialized" in flow.state_dict()
    buf = io.BytesIO()
    torch.save(flow.state_dict(), buf)
    buf.seek(0)
    other = make_flow(7, seed=123)
    other.load_state_dict(torch.load(buf, weights_only=True))
    z2, logdet2 = other(data((4, 5, 7), seed=9) * 5 + 3)  # different data first: must not re-initialise
    z2, logdet2 = other(x)
    assert torch.equal(z2, z) and torch.equal(logdet2, logdet)
    assert torch.equal(other.inverse(z), flow.inverse(z))


def test_loading_uninitialised_checkpoint_reinitialises_later():
    x = data((4, 5, 7), seed=8)
    fresh = make_flow(7, seed=0)
    used = make_flow(7, seed=0)
    used(x)
    used.load_state_dict(fresh.state_dict())
    assert not bool(used.actnorms[0].initialized)
    used(x * 2)
    assert torch.allclose(used.actnorms[0].loc, (x * 2).reshape(-1, 7).mean(0), atol=1e-12)


def test_inverse_does_not_initialise():
    flow = make_flow(4)
    z = data((2, 3, 4), seed=0)
    x = flow.inverse(z)
    assert not any(bool(n.initialized) for n in flow.actnorms)
    assert torch.isfinite(x).all()


def test_constant_channel_stays_finite():
    x = data((6, 10, 5), seed=10)
    x[..., 2] = 4.0
    flow = make_flow(5)
    z, logdet = flow(x)
    assert torch.isfinite(z).all() and torch.isfinite(logdet).all()
    assert flow.actnorms[0].log_scale[2].item() == pytest.approx(-math.log(ACTNORM_MIN_STD))
    assert (flow.inverse(z) - x).abs().max() < 1e-8


def test_single_frame_init_stays_finite():
    flow = make_flow(5)
    z, logdet = flow(data((1, 5), seed=0))  # variance 0 in every channel
    assert torch.isfinite(z).all() and torch.isfinite(logdet).all()


# ----------------------------------------------------------------------------- padding
def padded(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = data((4, 6, 5), seed=seed)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, 3:] = False
    mask[2, 1:] = False
    mask[3, :] = False  # a sample with no real frame
    return x, mask


def test_padding_changes_nothing_real():
    x, mask = padded(11)
    flow = randomize(make_flow(5), x[mask])
    z, logdet = flow(x, mask)
    junk = x.clone()
    junk[~mask] = torch.tensor([float("nan"), float("inf"), -1e30, 7.0, 0.0], dtype=torch.float64)
    z2, logdet2 = flow(junk, mask)
    assert torch.equal(z2, z) and torch.equal(logdet2, logdet)
    assert torch.equal(z[~mask], torch.zeros_like(z[~mask]))
    assert logdet[3].item() == 0.0
    # logdet sums only the real frames: the same as the real frames alone
    z_real, ld_real = flow(x[mask])
    assert torch.allclose(z[mask], z_real, atol=1e-13, rtol=0)
    assert torch.allclose(logdet[:3], torch.stack([ld_real[:3].sum(), ld_real[3:9].sum(), ld_real[9:].sum()]),
                          atol=1e-12, rtol=0)
    x_back = flow.inverse(z2, mask)
    assert torch.isfinite(x_back).all() and torch.equal(x_back[~mask], torch.zeros_like(x_back[~mask]))
    assert (x_back[mask] - x[mask]).abs().max() < 1e-10


def test_padding_does_not_touch_actnorm_init_or_gradients():
    x, mask = padded(12)
    junk = x.clone()
    junk[~mask] = float("nan")
    flow_a, flow_b = make_flow(5, seed=3), make_flow(5, seed=3)
    z_a, ld_a = flow_a(junk, mask)
    z_b, ld_b = flow_b(x[mask][None])  # the 13 real frames as one sequence
    for na, nb in zip(flow_a.actnorms, flow_b.actnorms):
        assert torch.allclose(na.loc, nb.loc, atol=1e-12) and torch.allclose(na.log_scale, nb.log_scale, atol=1e-12)
    assert torch.allclose(ld_a.sum(), ld_b.sum(), atol=1e-10)
    nll(z_a, ld_a).backward()
    assert all(torch.isfinite(p.grad).all() for p in flow_a.parameters())


def test_mask_none_equals_all_true():
    x = data((3, 4, 5), seed=13)
    flow = randomize(make_flow(5), x)
    z, ld = flow(x)
    z2, ld2 = flow(x, torch.ones(3, 4, dtype=torch.bool))
    assert torch.equal(z, z2) and torch.equal(ld, ld2)


def test_pooled_input_with_mask():
    x = data((4, 5), seed=14)
    flow = randomize(make_flow(5), x)
    mask = torch.tensor([True, False, True, True])
    z, ld = flow(x, mask)
    assert z.shape == (4, 5) and ld.shape == (4,)
    assert torch.equal(z[1], torch.zeros(5, dtype=torch.float64)) and ld[1].item() == 0.0
    assert (flow.inverse(z, mask)[mask] - x[mask]).abs().max() < 1e-10


def test_input_follows_parameter_dtype():
    flow = make_flow(5)
    z, ld = flow(data((2, 3, 5), seed=0, dtype=torch.float32))
    assert z.dtype == ld.dtype == torch.float64


# ----------------------------------------------------------------------------- devices
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_cuda_matches_cpu(dtype, tol):
    x, mask = padded(15)
    x = x.to(dtype)
    flow = randomize(make_flow(5, dtype=dtype), x[mask])
    z, ld = flow(x, mask)
    flow_gpu = flow.to("cuda")
    z_gpu, ld_gpu = flow_gpu(x.cuda(), mask.cuda())
    assert torch.allclose(z_gpu.cpu(), z, atol=tol * 10) and torch.allclose(ld_gpu.cpu(), ld, atol=tol * 100)
    assert (flow_gpu.inverse(z_gpu, mask.cuda()).cpu()[mask] - x[mask]).abs().max() < tol
    with pytest.raises(DataError, match="is on cpu but the flow is on cuda"):
        flow_gpu(x)


# ----------------------------------------------------------------------------- cross-check
def test_lu_linear_matches_zuko():
    zuko = pytest.importorskip("zuko")
    torch.manual_seed(0)
    lin = InvertibleLinear(6).double()
    with torch.no_grad():
        lin.log_s.add_(0.5 * torch.randn(6, generator=gen(0), dtype=torch.float64))
    lower, upper = lin._factors()
    d = torch.diagonal(upper)
    # zuko's f(x) = L'U'x has L' lower with the diagonal and U' unit-upper: L' = L·D, U' = D⁻¹·U
    packed = torch.tril(lower * d) + torch.triu(upper / d[:, None], 1)
    t = zuko.transforms.LULinearTransform(packed)
    x = data((5, 6), seed=1)
    y_zuko, ladj = t.call_and_ladj(x)
    y, ld = lin(x)
    assert torch.allclose(y, y_zuko @ lin.perm.T, atol=1e-12)
    assert torch.allclose(ld.expand(5), ladj, atol=1e-12)
    assert torch.allclose(lin.inverse(y), t.inv(y_zuko), atol=1e-12)
