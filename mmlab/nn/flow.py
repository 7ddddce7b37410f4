"""Glow-style normalizing flow that acts on each time step of a sequence (B, T, d) on its own.

One flow step is ActNorm → invertible 1×1 linear (LU-parameterised) → affine coupling, as in
Glow (Kingma & Dhariwal 2018, "Glow: Generative Flow with Invertible 1x1 Convolutions",
arXiv:1807.03039, §3 and Table 1); the coupling is RealNVP's (Dinh et al. 2017, "Density
estimation using Real NVP", arXiv:1605.08803, Eq. 7-8). Frames are the "pixels" of a
(B, d, T, 1) image with one block, no squeeze and no split, so every frame goes through the
same bijection ℝ^d → ℝ^d. This is the flow of CM-ARR (Sun et al. 2024, "Enhancing Emotion
Recognition in Incomplete Data: A Novel Cross-Modal Alignment, Reconstruction, and Refinement
Framework", arXiv:2407.09029, §3.2, Eq. 6 and 8: Z_n = F_n(X_n), X̃_n = F_n^{-1}(Z̃_n)), which
does not state an architecture; we follow DiCMoR (Wang, Cui & Li, "Distribution-Consistent
Modal Recovering for Incomplete Multimodal Learning", ICCV 2023).

Presets. ``FlowConfig()`` (K = 4 steps, coupling width 64) is the CPU default. The paper-scale
setting (DiCMoR: K = 32 steps, width 64) is ``FlowConfig(steps=32, hidden=64)``.

Padding. ``mask`` (B, T) marks real frames (True). Padding frames are set to zero before the
flow and their outputs are zero (in ``forward`` and ``inverse``), so whatever they hold (NaN
included) never reaches real frames, the ActNorm initialisation, the log-determinant or the
gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmlab.errors import ConfigError, DataError

ACTNORM_MIN_STD = 1e-3  # floor on the initial per-channel std: a constant channel gets gain 1e3, not inf


@dataclass
class FlowConfig:
    steps: int = 4  # K flow steps (paper scale, DiCMoR: 32)
    hidden: int = 64  # width of the coupling network's hidden layers
    clamp: float = 2.0  # coupling log-scale bound: log s = clamp·tanh(raw / clamp) ∈ (−clamp, clamp)

    def __post_init__(self) -> None:
        for name in ("steps", "hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"FlowConfig.{name}: expected an integer >= 1, got {v!r}")
        v = self.clamp
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"FlowConfig.clamp: expected a finite number > 0, got {v!r}")


# ----------------------------------------------------------------------------- layers
# Each layer maps x (..., d) to (y, logdet) with logdet broadcastable to x.shape[:-1] (a scalar
# when it is the same for every frame), and has an exact ``inverse``.
class ActNorm(nn.Module):
    """y = (x − loc)·exp(log_scale) per channel (Glow §3.1). On the first ``forward`` call
    (train or eval mode), under no-grad, loc and log_scale are set from the mean and std of the real frames, so that
    the output has zero mean and unit variance per channel; std is floored at
    ``ACTNORM_MIN_STD``. ``initialized`` is a buffer: a loaded checkpoint keeps its values.
    ``inverse`` never initialises (before any forward call the layer is the identity)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))
        self._init_seen = False  # caches a True flag so that forward does not read the buffer (a CUDA sync)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(*args, **kwargs)
        self._init_seen = False

    @torch.no_grad()
    def initialize(self, x: Tensor, mask: Tensor | None = None) -> None:
        """Data-dependent init from the frames of x (..., d) where ``mask`` (x.shape[:-1]) is True;
        does nothing when there is no real frame."""
        flat = x.reshape(-1, x.shape[-1])
        w = torch.ones(flat.shape[0], 1, dtype=x.dtype, device=x.device) if mask is None \
            else mask.reshape(-1, 1).to(x.dtype)
        n = w.sum()
        if n.item() == 0:
            return
        mean = (flat * w).sum(0) / n
        var = ((flat - mean) ** 2 * w).sum(0) / n
        self.loc.copy_(mean)
        self.log_scale.copy_(-var.sqrt().clamp_min(ACTNORM_MIN_STD).log())
        self.initialized.fill_(True)
        self._init_seen = True

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if not self._init_seen:
            if bool(self.initialized):
                self._init_seen = True
            else:
                self.initialize(x, mask)
        return (x - self.loc) * self.log_scale.exp(), self.log_scale.sum()

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_scale) + self.loc


class InvertibleLinear(nn.Module):
    """y = W x with W = P·L·(U + diag(sign·exp(log_s))) (Glow §3.2, LU decomposition): P a fixed
    permutation, L unit lower-triangular, U strictly upper-triangular, so W stays invertible
    and log|det W| = Σ log_s per frame. Initialised from a random orthogonal matrix. L and U are
    stored as full d×d parameters and masked to their triangles (the masked entries get zero
    gradients), so parameter counts include d(d + 1) unused entries per layer."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        w0 = torch.linalg.qr(torch.randn(dim, dim))[0]
        p, lower, upper = torch.linalg.lu(w0)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.lower = nn.Parameter(torch.tril(lower, -1))
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(s.abs().log())

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * self.log_s.exp())
        return lower, upper

    def weight(self) -> Tensor:
        lower, upper = self._factors()
        return self.perm @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return F.linear(x, self.weight()), self.log_s.sum()

    def inverse(self, y: Tensor) -> Tensor:
        lower, upper = self._factors()  # W⁻¹ = U⁻¹ L⁻¹ Pᵀ by two triangular solves
        w_inv = torch.linalg.solve_triangular(
            upper, torch.linalg.solve_triangular(lower, self.perm.T, upper=False, unitriangular=True), upper=True)
        return F.linear(y, w_inv)


class AffineCoupling(nn.Module):
    """x = (x_a, x_b): y_a = x_a, y_b = x_b·exp(log s) + t with (raw, t) = net(x_a) and
    log s = clamp·tanh(raw / clamp) (RealNVP Eq. 7; a soft bound instead of Glow's sigmoid).
    x_a has ⌊d/2⌋ channels, x_b the other ⌈d/2⌉ (odd d is fine); ``flip`` takes x_a from the end
    instead of the start, so two consecutive couplings transform every channel. net is Linear →
    ReLU → Linear → ReLU → Linear (DiCMoR's 1×1 convs on one frame) with a zero last layer, so
    the coupling starts as the identity."""

    def __init__(self, dim: int, hidden: int, clamp: float, flip: bool = False) -> None:
        super().__init__()
        self.n_a, self.n_b, self.flip, self.clamp = dim // 2, dim - dim // 2, flip, float(clamp)
        self.net = nn.Sequential(nn.Linear(self.n_a, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * self.n_b))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.flip:
            x_b, x_a = x.split([self.n_b, self.n_a], dim=-1)
        else:
            x_a, x_b = x.split([self.n_a, self.n_b], dim=-1)
        return x_a, x_b

    def _join(self, x_a: Tensor, x_b: Tensor) -> Tensor:
        return torch.cat([x_b, x_a] if self.flip else [x_a, x_b], dim=-1)

    def _scale_shift(self, x_a: Tensor) -> tuple[Tensor, Tensor]:
        raw, shift = self.net(x_a).chunk(2, dim=-1)
        return self.clamp * torch.tanh(raw / self.clamp), shift

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = self._split(x)
        log_s, shift = self._scale_shift(x_a)
        return self._join(x_a, x_b * log_s.exp() + shift), log_s.sum(-1)

    def inverse(self, y: Tensor) -> Tensor:
        y_a, y_b = self._split(y)
        log_s, shift = self._scale_shift(y_a)
        return self._join(y_a, (y_b - shift) * torch.exp(-log_s))


# ----------------------------------------------------------------------------- flow
class Glow(nn.Module):
    """K steps of ActNorm → InvertibleLinear → AffineCoupling over the last axis of x.

    ``forward(x, mask) -> (z, logdet)``: x (B, T, d) or (B, d) (one frame per sample); mask
    (B, T) or (B,), True = real frame, None = all real. logdet (B,) is log|det ∂z/∂x| summed
    over the real frames of each sample. ``inverse(z, mask) -> x`` undoes it exactly (up to
    rounding). Padding frames come out as zeros (module docstring). Computation runs in the dtype
    of the module's parameters (the input is cast to it); input and module share a device.
    """

    def __init__(self, dim: int, cfg: FlowConfig | None = None) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2:
            raise ConfigError(f"Glow.dim: expected an integer >= 2 (a coupling needs two halves), got {dim!r}")
        if cfg is not None and not isinstance(cfg, FlowConfig):
            raise ConfigError(f"Glow.cfg: expected a FlowConfig or None, got {type(cfg).__name__}")
        self.dim = dim
        self.cfg = cfg = cfg or FlowConfig()
        self.actnorms = nn.ModuleList(ActNorm(dim) for _ in range(cfg.steps))
        self.linears = nn.ModuleList(InvertibleLinear(dim) for _ in range(cfg.steps))
        self.couplings = nn.ModuleList(AffineCoupling(dim, cfg.hidden, cfg.clamp, flip=k % 2 == 1)
                                       for k in range(cfg.steps))

    def _prepare(self, x: Tensor, mask: Tensor | None, op: str, name: str) -> tuple[Tensor, Tensor | None, bool]:
        """(x as (B, T, d) in the parameters' dtype with padding zeroed, mask as (B, T) bool, was 2-d)."""
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() not in (2, 3) or x.shape[-1] != self.dim:
            desc = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
            raise DataError(f"Glow.{op}: {name}: expected a float tensor (B, T, {self.dim}) or (B, {self.dim}), "
                            f"got {desc}")
        ref = self.actnorms[0].loc
        if x.device != ref.device:
            raise DataError(f"Glow.{op}: {name} is on {x.device} but the flow is on {ref.device}")
        pooled = x.dim() == 2
        if pooled:
            x = x.unsqueeze(1)
        x = x.to(ref.dtype)
        if mask is None:
            return x, None, pooled
        if not isinstance(mask, Tensor):
            raise DataError(f"Glow.{op}: mask: expected a bool tensor (B, T) or None, got {type(mask).__name__}")
        if pooled and mask.dim() == 1:
            mask = mask.unsqueeze(1)
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise DataError(f"Glow.{op}: mask: expected shape {tuple(x.shape[:2])} (B, T), got {tuple(mask.shape)}")
        mask = mask.to(device=x.device, dtype=torch.bool)
        return torch.where(mask[..., None], x, 0.0), mask, pooled

    @staticmethod
    def _finish(y: Tensor, mask: Tensor | None, pooled: bool) -> Tensor:
        if mask is not None:
            y = torch.where(mask[..., None], y, 0.0)
        return y.squeeze(1) if pooled else y

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, mask, pooled = self._prepare(x, mask, "forward", "x")
        frame_ld = x.new_zeros(x.shape[:2])  # log|det| per frame (B, T)
        for norm, lin, coup in zip(self.actnorms, self.linears, self.couplings):
            x, ld_norm = norm(x, mask)
            x, ld_lin = lin(x)
            x, ld_coup = coup(x)
            frame_ld = frame_ld + ld_coup + (ld_norm + ld_lin)
        logdet = frame_ld.sum(1) if mask is None else torch.where(mask, frame_ld, 0.0).sum(1)
        return self._finish(x, mask, pooled), logdet

    def inverse(self, z: Tensor, mask: Tensor | None = None) -> Tensor:
        z, mask, pooled = self._prepare(z, mask, "inverse", "z")
        for norm, lin, coup in zip(reversed(self.actnorms), reversed(self.linears), reversed(self.couplings)):
            z = norm.inverse(lin.inverse(coup.inverse(z)))
        return self._finish(z, mask, pooled)
