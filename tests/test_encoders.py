"""Encoders (ADMC §4.1-4.2): shapes, padding invariance, masking, gradient flow, the auto rule."""

import pytest
import torch

from mmlab.errors import ConfigError, DataError
from mmlab.nn.encoders import (
    EncoderConfig,
    LSTMMaxPool,
    MLPEncoder,
    MLPHead,
    MeanSkip,
    TextCNN,
    make_encoder,
    resolve_kind,
)

D_IN, D_OUT = 7, 12


def _encoders():
    torch.manual_seed(0)
    return {
        "lstm": LSTMMaxPool(D_IN, D_OUT),
        "bilstm": LSTMMaxPool(D_IN, D_OUT, layers=2, bidirectional=True),
        "textcnn": TextCNN(D_IN, D_OUT, kernels=(2, 3, 5), filters=6),
        "mlp": MLPEncoder(D_IN, D_OUT, hidden=9),
        "lstm_mean": LSTMMaxPool(D_IN, D_OUT, pool="mean"),
        "textcnn_mean": TextCNN(D_IN, D_OUT, kernels=(2, 3), filters=6, pool="mean"),
        "lstm_skip": make_encoder(EncoderConfig(kind="lstm", d_out=D_OUT, pool="mean", mean_skip=True), D_IN, 9),
        "textcnn_skip": make_encoder(EncoderConfig(kind="textcnn", d_out=D_OUT, kernels=(2, 3), filters=6,
                                                   mean_skip=True), D_IN, 9),
    }


ALL = ["lstm", "bilstm", "textcnn", "mlp", "lstm_mean", "textcnn_mean", "lstm_skip", "textcnn_skip"]
POOLED = [name for name in ALL if name not in ("bilstm", "mlp")]  # the one-directional sequence encoders


def _inputs(b=5, t=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, D_IN, generator=g)
    lengths = torch.tensor([t, 1, 4, 2, 6][:b])
    mask = torch.arange(t)[None] < lengths[:, None]
    return x, mask


@pytest.mark.parametrize("name", ALL)
def test_shapes(name):
    enc = _encoders()[name]
    x, mask = _inputs()
    assert enc(x, mask).shape == (5, D_OUT)


@pytest.mark.parametrize("name", ALL)
def test_padding_invariance(name):
    """Appending padding frames (with garbage values) or changing padded values changes nothing."""
    enc = _encoders()[name].eval()
    x, mask = _inputs()
    ref = enc(x, mask)
    junk = torch.randn(5, 6, D_IN) * 100
    x2 = torch.cat([x.masked_fill(~mask[..., None], 55.0), junk], 1)
    mask2 = torch.cat([mask, torch.zeros(5, 6, dtype=torch.bool)], 1)
    torch.testing.assert_close(enc(x2, mask2), ref, rtol=1e-5, atol=1e-6)
    # each row alone, cut to its own length, gives the same output as inside the batch
    for i in range(5):
        n = int(mask[i].sum())
        torch.testing.assert_close(enc(x[i : i + 1, :n], mask[i : i + 1, :n]), ref[i : i + 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_empty_rows_give_zeros(name):
    enc = _encoders()[name]
    x, mask = _inputs()
    mask[2] = False
    out = enc(x, mask)
    assert torch.all(out[2] == 0) and torch.isfinite(out).all()
    assert torch.all(enc(x, torch.zeros_like(mask)) == 0)


@pytest.mark.parametrize("name", POOLED)
def test_unobserved_frames_left_out_of_pool(name):
    """An unobserved frame (here one that holds the maximum) is left out of the pool, max or mean."""
    enc = _encoders()[name].eval()
    x, mask = _inputs()
    x[0, 3] = 50.0 * x[0, 3].sign()
    obs = mask.clone()
    obs[0, 3] = False
    assert not torch.equal(enc(x, obs)[0], enc(x, mask)[0])
    assert torch.equal(enc(x, obs)[1:], enc(x, mask)[1:])


@pytest.mark.parametrize("name", ALL)
def test_gradient_flow(name):
    enc = _encoders()[name]
    x, mask = _inputs()
    x.requires_grad_(True)
    enc(x, mask).pow(2).sum().backward()
    for pname, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert x.grad[mask].abs().sum() > 0
    assert torch.all(x.grad[~mask] == 0)  # padding never leaks into the output


def test_textcnn_shorter_than_kernel():
    enc = TextCNN(D_IN, D_OUT, kernels=(3, 4, 5), filters=4)
    x = torch.randn(2, 2, D_IN)
    mask = torch.tensor([[True, True], [True, False]])
    out = enc(x, mask)
    assert out.shape == (2, D_OUT) and torch.isfinite(out).all()


def test_mlp_head():
    head = MLPHead(D_OUT, 4, hidden=8, dropout=0.3)
    assert head(torch.randn(3, D_OUT)).shape == (3, 4)


def test_make_encoder_auto_rule():
    cfg = EncoderConfig(d_out=8)
    assert resolve_kind(cfg, 1, "A") == "mlp"
    assert resolve_kind(cfg, 10, "A") == "lstm"
    assert resolve_kind(cfg, 10, "T") == "textcnn"
    assert resolve_kind(cfg, 10) == "lstm"
    assert isinstance(make_encoder(cfg, 5, 10, "T"), TextCNN)
    assert isinstance(make_encoder(cfg, 5, 1, "T"), MLPEncoder)
    assert isinstance(make_encoder(EncoderConfig(kind="lstm", d_out=8), 5, 1), LSTMMaxPool)
    enc = make_encoder(EncoderConfig(kind="textcnn", d_out=8, kernels=[2, 3], filters=3), 5, 10)
    assert enc(torch.randn(2, 4, 5), torch.ones(2, 4, dtype=torch.bool)).shape == (2, 8)


def test_bad_inputs_and_config():
    with pytest.raises(ConfigError, match="kind"):
        EncoderConfig(kind="gru")
    with pytest.raises(ConfigError, match="d_out"):
        EncoderConfig(d_out=0)
    with pytest.raises(ConfigError, match="even"):
        LSTMMaxPool(4, 5, bidirectional=True)
    enc = LSTMMaxPool(D_IN, D_OUT)
    with pytest.raises(DataError, match="x expected"):
        enc(torch.randn(2, 3, D_IN + 1), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(DataError, match="mask expected"):
        enc(torch.randn(2, 3, D_IN), torch.ones(2, 3))


def test_mean_pool_averages_the_hidden_states():
    """pool="mean": the mean of the LSTM's outputs over the valid frames (max: their maximum)."""
    enc = _encoders()["lstm_mean"].eval()
    x, mask = _inputs()
    h, _ = enc.lstm(x[:1, :4])
    torch.testing.assert_close(enc(x[:1, :4], mask[:1, :4]), h.mean(1))
    assert make_encoder(EncoderConfig(kind="lstm", pool="mean"), D_IN, 9).pool is enc.pool
    with pytest.raises(ConfigError, match="EncoderConfig.pool"):
        EncoderConfig(pool="median")


def test_mean_skip_adds_a_linear_map_of_the_frame_mean():
    """mean_skip: the sequence encoder's output plus W * (mean of the raw valid frames) + b."""
    enc = _encoders()["lstm_skip"].eval()
    assert isinstance(enc, MeanSkip)
    x, mask = _inputs()
    want = enc.encoder(x, mask) + enc.skip(x[2:3, :4].mean(1))
    torch.testing.assert_close(enc(x, mask)[2:3], want[2:3])
    assert isinstance(make_encoder(EncoderConfig(kind="mlp", mean_skip=True), D_IN, 9), MLPEncoder)
    with pytest.raises(ConfigError, match="EncoderConfig.mean_skip"):
        EncoderConfig(mean_skip="yes")


def test_skip_count_gate_scales_the_skip_by_the_frame_count():
    """skip_count_gate: the skip times 1 + g * frames / max_len; g starts at 0 (the plain skip)."""
    cfg = EncoderConfig(kind="lstm", d_out=D_OUT, pool="mean", mean_skip=True, skip_count_gate=True)
    enc = make_encoder(cfg, D_IN, 9).eval()
    x, mask = _inputs()
    plain = enc.skip(x[2:3, :4].mean(1))
    torch.testing.assert_close(enc(x, mask)[2:3], enc.encoder(x, mask)[2:3] + plain)
    with torch.no_grad():
        enc.gate.fill_(0.9)
    torch.testing.assert_close(enc(x, mask)[2:3], enc.encoder(x, mask)[2:3] + plain * (1 + 0.9 * 4 / 9))
    assert make_encoder(EncoderConfig(kind="lstm", mean_skip=True), D_IN, 9).gate is None
    with pytest.raises(ConfigError, match="EncoderConfig.skip_count_gate"):
        EncoderConfig(skip_count_gate=1)
