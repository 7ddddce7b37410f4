"""Gaussian diffusion over feature tokens: schedule, forward noising, ε-loss, and a masked
(RePaint-style) DDPM / DDIM sampler that starts from an intermediate step ``start_step``.

Papers: DDPM (Ho et al. 2020, arXiv:2006.11239), DDIM (Song et al. 2021, arXiv:2010.02502),
RePaint (Lugmayr et al. 2022, arXiv:2201.09865), improved DDPM (Nichol & Dhariwal 2021,
arXiv:2102.09672) and ADMC (Zhang, Chen et al. 2025, "ADMC: Attention-based Diffusion Model for
Missing Modalities Feature Completion", §3.2-3.3, Eq. 1, 3, 4; its choices A1-A18 are listed in
mmlab/methods/admc.py). Implemented from the papers.

Indexing. Steps are n = 1..N; step 0 is the clean data. Every schedule buffer has N + 1
entries and is indexed by the step itself:

    betas[n] = β_n,  alphas[n] = α_n = 1 − β_n,  alphas_cumprod[n] = ᾱ_n = ∏_{k≤n} α_k,
    betas[0] = 0,    alphas[0] = 1,              alphas_cumprod[0] = ᾱ_0 = 1,

so ``q_sample(x0, 0)`` is x0 and ``alphas_cumprod[50]`` is the ADMC paper's ᾱ_50 (≈ 0.9155 on
the default linear schedule).

How accurate is replacement (ADMC Eq. 4, RePaint without resampling)? Measured with the exact
ε of a Gaussian toy (4-d, unit variances, correlations 0.6–0.8, coordinates 0–1 known, 2–3
unknown; conditional variance 0.51; 20 000 samples, tests/test_diffusion.py pins it), DDPM
σ² = β, full chain (start_step = N = 1000):

    resample (U)       1      3      10     20
    |mean error|     0.28   0.11   0.04   0.02    (conditional mean pulled to the prior)
    variance error   +25%    +9%    +2%    −1%

Plain replacement only sees the known entries through independently re-noised copies, so it
under-uses them: exact enough for unconditional sampling, only a rough conditional sampler when
known and unknown entries are strongly correlated. RePaint's harmonisation (U ≈ 10–20) makes it
accurate. σ² = β̃ gives the same means but under-disperses with large U (−8% at U = 20). A short
chain from pure noise (start_step = 50, the ADMC setting) is not a conditional sampler at all:
its missing entries start off-distribution (x_50 should still be ~92% signal) and the toy's
conditional mean comes out 1.3 off; treat it as the paper's heuristic, not as exact inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from mmlab.errors import ConfigError, DataError

Denoiser = Callable[[Tensor, Tensor], Tensor]  # ε_θ(x_t: (B, ...), t: (B,) long) -> (B, ...)


@dataclass
class DiffusionConfig:
    n_steps: int = 1000  # N
    beta_start: float = 3e-4  # β_1 (ADMC β_s); ignored by "cosine"
    beta_end: float = 0.06  # β_N (ADMC β_e); ignored by "cosine"
    schedule: Literal["linear", "scaled_linear", "cosine"] = "linear"
    sigma: Literal["beta", "beta_tilde"] = "beta"  # σ_n² = β_n or β̃_n (DDPM §3.2; ADMC choice A5)
    start_step: int = 50  # reverse process starts at step n (ADMC: 50)
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    ddim_steps: int = 10  # number of DDIM transitions from start_step down to 0
    ddim_eta: float = 0.0  # η of DDIM Eq. 16; 0 = deterministic
    resample: int = 1  # RePaint U: repeats per reverse step (1 = ADMC Eq. 4 as printed)
    init: Literal["noise", "noised"] = "noise"  # unknown entries at start: N(0,I) or q(x_n | x_obs) (ADMC choice A6)
    # what the network predicts: ε (DDPM, ADMC Eq. 2), v = sqrt(ᾱ)ε − sqrt(1 − ᾱ)x0 (Salimans & Ho
    # 2022, arXiv:2202.00512, §4) or x0; the sampler turns any of them into (x̂0, ε̂) once per step
    prediction: Literal["eps", "v", "x0"] = "eps"
    clip_x0: float | None = None  # clamp x̂0 to [−c, c] before each step (None: off)

    def __post_init__(self) -> None:
        def check_int(name: str, low: int, high: int | None = None) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low or (high is not None and v > high):
                rng = f">= {low}" if high is None else f"in [{low}, {high}]"
                raise ConfigError(f"DiffusionConfig.{name}: expected an integer {rng}, got {v!r}")

        def check_choice(name: str, choices: tuple[str, ...]) -> None:
            v = getattr(self, name)
            if v not in choices:
                raise ConfigError(f"DiffusionConfig.{name}: expected one of {list(choices)}, got {v!r}")

        check_int("n_steps", 1)
        check_int("start_step", 0, self.n_steps)
        check_int("ddim_steps", 1)
        check_int("resample", 1)
        check_choice("schedule", ("linear", "scaled_linear", "cosine"))
        check_choice("prediction", ("eps", "v", "x0"))
        if self.clip_x0 is not None and (isinstance(self.clip_x0, bool) or not isinstance(self.clip_x0, (int, float))
                                         or not self.clip_x0 > 0):
            raise ConfigError(f"DiffusionConfig.clip_x0: expected None or a positive number, got {self.clip_x0!r}")
        check_choice("sigma", ("beta", "beta_tilde"))
        check_choice("sampler", ("ddpm", "ddim"))
        check_choice("init", ("noise", "noised"))
        for name in ("beta_start", "beta_end", "ddim_eta"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ConfigError(f"DiffusionConfig.{name}: expected a finite number, got {v!r}")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ConfigError(
                f"DiffusionConfig.beta_start/beta_end: expected 0 < beta_start <= beta_end < 1, "
                f"got beta_start={self.beta_start!r}, beta_end={self.beta_end!r}"
            )
        if not 0.0 <= self.ddim_eta <= 1.0:
            raise ConfigError(f"DiffusionConfig.ddim_eta: expected a number in [0, 1], got {self.ddim_eta!r}")


# ----------------------------------------------------------------------------- schedules
def beta_schedule(cfg: DiffusionConfig) -> Tensor:
    """β_1..β_N in float64: linear (DDPM §4), scaled-linear (√β linear), or cosine (iDDPM Eq. 17)."""
    n = cfg.n_steps
    if cfg.schedule == "linear":
        return torch.linspace(cfg.beta_start, cfg.beta_end, n, dtype=torch.float64)
    if cfg.schedule == "scaled_linear":
        return torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, n, dtype=torch.float64) ** 2
    s = 0.008  # iDDPM: ᾱ(t) = f(t)/f(0), f(t) = cos²((t/N + s)/(1 + s)·π/2), β clipped at 0.999
    f = torch.cos((torch.arange(n + 1, dtype=torch.float64) / n + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


def _extract(a: Tensor, t: Tensor | int, x: Tensor) -> Tensor:
    """a[t] reshaped to (B, 1, ..., 1) (or a scalar for int t) in x's dtype and device."""
    if isinstance(t, int):
        return a[t].to(device=x.device, dtype=x.dtype)
    t = t.to(device=a.device, dtype=torch.long)
    return a[t].to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


# ----------------------------------------------------------------------------- diffusion
class GaussianDiffusion(nn.Module):
    """Schedule buffers (index = step, 0 = clean; see module docstring) plus forward process,
    ε-prediction loss and the masked reverse sampler. Holds no parameters; its buffers are
    non-persistent (derived from the config), so checkpoints of a parent model don't carry them."""

    def __init__(self, config: DiffusionConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DiffusionConfig()
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), beta_schedule(config)])
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        post_var = torch.zeros_like(betas)  # β̃_n = (1 − ᾱ_{n−1})/(1 − ᾱ_n)·β_n (DDPM Eq. 7), β̃_0 = 0
        post_var[1:] = (1 - abar_prev[1:]) / (1 - abar[1:]) * betas[1:]
        self._abar64 = abar  # float64 CPU copy, and as Python floats for the sampler's coefficients
        self._abar_list: list[float] = abar.tolist()
        for name, value in [("betas", betas), ("alphas", alphas), ("alphas_cumprod", abar),
                            ("alphas_cumprod_prev", abar_prev), ("posterior_variance", post_var)]:
            self.register_buffer(name, value.float(), persistent=False)

    @property
    def n_steps(self) -> int:
        return self.config.n_steps

    # ------------------------------------------------------------------ forward process
    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε (DDPM Eq. 4, ADMC Eq. 1); t: int or (B,) steps."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        abar = _extract(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def predict_x0(self, x_t: Tensor, t: Tensor | int, eps: Tensor) -> Tensor:
        """x̂0 = (x_t − sqrt(1 − ᾱ_t)·ε̂)/sqrt(ᾱ_t) (DDPM Eq. 15)."""
        abar = _extract(self.alphas_cumprod, t, x_t)
        return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()

    def target(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """What the network regresses onto at step t: ε, v = sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·x0, or x0."""
        kind = self.config.prediction
        if kind == "eps":
            return noise
        if kind == "x0":
            return x0
        abar = _extract(self.alphas_cumprod, t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def split_output(self, x_t: Tensor, t: Tensor | int, out: Tensor) -> tuple[Tensor, Tensor]:
        """(x̂0, ε̂) from the network output under ``config.prediction`` (x̂0 clamped when
        ``config.clip_x0``; ε̂ then recomputed from the clamped x̂0):
        ε: x̂0 = (x_t − sqrt(1 − ᾱ)ε̂)/sqrt(ᾱ); v: x̂0 = sqrt(ᾱ)x_t − sqrt(1 − ᾱ)v̂,
        ε̂ = sqrt(1 − ᾱ)x_t + sqrt(ᾱ)v̂; x0: ε̂ = (x_t − sqrt(ᾱ)x̂0)/sqrt(1 − ᾱ)."""
        abar = _extract(self.alphas_cumprod, t, x_t)
        a, b = abar.sqrt(), (1 - abar).sqrt()
        return self._split(x_t, out, a, b)

    def _split(self, x_t: Tensor, out: Tensor, a: Tensor | float, b: Tensor | float) -> tuple[Tensor, Tensor]:
        kind, clip = self.config.prediction, self.config.clip_x0
        if kind == "eps":
            eps, x0 = out, (x_t - b * out) / a
        elif kind == "v":
            eps, x0 = b * x_t + a * out, a * x_t - b * out
        else:
            x0, eps = out, (x_t - a * out) / b
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x_t - a * x0) / b
        return x0, eps

    def loss(self, model: Denoiser, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """L_simple = E_{t~U{1..N}, ε} ||target − f_θ(x_t, t)||² (DDPM Eq. 14 for ε; ADMC L_ADN), as a
        mean; the target follows ``config.prediction`` (`target`)."""
        t = torch.randint(1, self.n_steps + 1, (x0.shape[0],), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return torch.mean((self.target(x0, t, noise) - model(self.q_sample(x0, t, noise), t)) ** 2)

    # ------------------------------------------------------------------ reverse process
    def timesteps(self, start_step: int, num_steps: int | None = None) -> list[int]:
        """Visited steps, start_step first and 0 last: every step, or ``num_steps`` transitions
        evenly spaced (DDIM §4.2 sub-sequence τ; clamped to start_step)."""
        k = start_step if num_steps is None else min(num_steps, start_step)
        if k == start_step:
            return list(range(start_step, -1, -1))
        # spacing >= 1 so the rounded sequence is strictly decreasing
        return [round(start_step * (1 - i / k)) for i in range(k + 1)]

    def _coefficients(self, steps: list[int], sampler: str, eta: float) -> list[tuple[float, ...]]:
        """Per transition t -> s: (c_x, c_eps, σ, sqrt(ᾱ_s), sqrt(1 − ᾱ_s), sqrt(ᾱ_t/ᾱ_s),
        sqrt(1 − ᾱ_t/ᾱ_s)) as Python floats, so that the loop does no host-device syncs."""
        a = self._abar_list
        out = []
        for t, s in zip(steps[:-1], steps[1:]):
            at, as_ = a[t], a[s]
            alpha = at / as_  # α'_t of the (possibly respaced) transition; = α_t when s = t − 1
            beta = 1 - alpha
            beta_tilde = (1 - as_) / (1 - at) * beta
            if sampler == "ddpm":
                # x_s = (x_t − β/sqrt(1 − ᾱ_t)·ε̂)/sqrt(α) + σ z   (DDPM Eq. 11, Alg. 2; iDDPM respacing)
                c_x, c_eps = 1 / math.sqrt(alpha), -beta / (math.sqrt(1 - at) * math.sqrt(alpha))
                var = beta if self.config.sigma == "beta" else beta_tilde
                sigma = 0.0 if s == 0 else math.sqrt(var)  # no noise at the last step (Alg. 2, z = 0 at t = 1)
            else:
                # x_s = sqrt(ᾱ_s)·x̂0 + sqrt(1 − ᾱ_s − σ²)·ε̂ + σ z   (DDIM Eq. 12), σ = η·sqrt(β̃) (Eq. 16)
                sigma = eta * math.sqrt(beta_tilde)
                c_x = math.sqrt(as_ / at)
                c_eps = math.sqrt(max(1 - as_ - sigma**2, 0.0)) - math.sqrt(as_) * math.sqrt(1 - at) / math.sqrt(at)
            out.append((c_x, c_eps, sigma, math.sqrt(as_), math.sqrt(1 - as_), math.sqrt(alpha), math.sqrt(beta)))
        return out

    @torch.no_grad()
    def sample(
        self,
        model: Denoiser,
        x_obs: Tensor,
        known_mask: Tensor | None = None,
        start_step: int | None = None,
        sampler: Literal["ddpm", "ddim"] | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        eta: float | None = None,
        resample: int | None = None,
        init: Literal["noise", "noised"] | None = None,
        conditioning: Literal["replace", "clean"] = "replace",
    ) -> Tensor | tuple[Tensor, list[tuple[int, Tensor]]]:
        """Complete the unknown entries of ``x_obs`` by the reverse process from ``start_step``.

        known_mask: bool, broadcastable to x_obs (e.g. (B, M, 1)), True = observed; None or all
        False = unconditional sampling. Known entries are forward-noised to the current step after
        every reverse step (ADMC Eq. 4, RePaint Eq. 8–10) and equal ``x_obs`` bitwise at step 0.
        Unknown entries start as N(0, I) (``init="noise"``, ADMC §3.3: "replace the missing features
        with Gaussian noise") or as q(x_n | x_obs) (``init="noised"``, choice A6 in
        mmlab/methods/admc.py: noise a prior fill such as zeros or a reconstruction).
        start_step = 0 runs no reverse step: x_obs where known, the step-0 init where unknown
        (N(0, I) for "noise", x_obs itself for "noised").

        sampler "ddpm": ancestral steps, σ² from config.sigma; ``num_steps`` defaults to every
        step, fewer steps use iDDPM respacing. "ddim": ``num_steps`` (default config.ddim_steps)
        strided transitions, ``eta`` (default config.ddim_eta). ``num_steps`` is clamped to
        start_step. ``resample`` (RePaint U, default config.resample) repeats each transition,
        re-noising x_s back to x_t in between. The model is called U × num_steps times.

        ``conditioning="clean"`` is for a *conditional* denoiser (trained with the available tokens
        clean at step 0, each token with its own step): the known entries stay ``x_obs`` at every
        call and the model gets per-token steps ``t`` of shape ``known_mask.shape[:-1]`` (0 where
        known); no replacement, no resampling needed. ``known_mask`` must then be per token,
        shape (B, M, 1).

        Returns x0 (same shape as x_obs), or (x0, [(step, x_step), ...]) for every visited step
        from start_step down to 0 when ``return_trajectory``. Random draws use ``generator``
        (on x_obs.device), so the same seed gives the same output.
        """
        cfg = self.config
        start_step = cfg.start_step if start_step is None else start_step
        sampler = sampler or cfg.sampler
        eta = cfg.ddim_eta if eta is None else eta
        resample = cfg.resample if resample is None else resample
        init = init or cfg.init
        if not isinstance(start_step, int) or isinstance(start_step, bool) or not 0 <= start_step <= cfg.n_steps:
            raise ConfigError(f"sample: start_step: expected an integer in [0, {cfg.n_steps}], got {start_step!r}")
        if sampler not in ("ddpm", "ddim"):
            raise ConfigError(f"sample: sampler: expected 'ddpm' or 'ddim', got {sampler!r}")
        if init not in ("noise", "noised"):
            raise ConfigError(f"sample: init: expected 'noise' or 'noised', got {init!r}")
        if num_steps is None and sampler == "ddim":
            num_steps = cfg.ddim_steps
        if num_steps is not None and (not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1):
            raise ConfigError(f"sample: num_steps: expected an integer >= 1, got {num_steps!r}")
        if not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            raise ConfigError(f"sample: eta: expected a number in [0, 1], got {eta!r}")
        if not isinstance(resample, int) or isinstance(resample, bool) or resample < 1:
            raise ConfigError(f"sample: resample: expected an integer >= 1, got {resample!r}")
        if not x_obs.is_floating_point():
            raise DataError(f"sample: x_obs: expected a floating-point tensor, got {x_obs.dtype}")

        x_obs = torch.nan_to_num(x_obs)  # missing entries may hold NaN; they are never read
        dev, B = x_obs.device, x_obs.shape[0]
        if known_mask is None:
            known = None
        else:
            try:
                shape = torch.broadcast_shapes(known_mask.shape, x_obs.shape)
            except RuntimeError:
                shape = None
            if shape != x_obs.shape:
                raise DataError(f"sample: known_mask: shape {tuple(known_mask.shape)} does not broadcast to x_obs {tuple(x_obs.shape)}")
            known = known_mask.to(device=dev, dtype=torch.bool)
            if not bool(known.any()):  # one sync per call: all-unknown = unconditional sampling
                known = None

        if conditioning not in ("replace", "clean"):
            raise ConfigError(f"sample: conditioning: expected 'replace' or 'clean', got {conditioning!r}")
        clean = conditioning == "clean" and known is not None
        if clean:
            if known_mask.dim() != x_obs.dim() or known_mask.shape[-1] != 1:
                raise DataError(f"sample: conditioning='clean' needs a per-token known_mask (B, M, 1), "
                                f"got {tuple(known_mask.shape)}")
            known_tok = known.expand(x_obs.shape)[..., 0]  # (B, M)
        steps = self.timesteps(start_step, num_steps)
        coefs = self._coefficients(steps, sampler, float(eta))
        convert = cfg.prediction != "eps" or cfg.clip_x0 is not None
        sq_abar = [math.sqrt(a) for a in self._abar_list] if convert else []
        sq_1m_abar = [math.sqrt(1 - a) for a in self._abar_list] if convert else []
        t_all = torch.tensor(steps, device=dev, dtype=torch.long)
        randn = lambda: torch.randn(x_obs.shape, generator=generator, device=dev, dtype=x_obs.dtype)  # noqa: E731

        # 1. initial state at step n (ADMC §3.2-3.3, MMCR): known = q(x_n | x_obs) (Eq. 1);
        #    unknown = ε or q(x_n | x_obs). One draw serves both: the two sets of entries are disjoint.
        a_n = self._abar_list[start_step]
        eps = randn()
        if clean:  # known entries are the clean observation throughout
            init = "noise"
        if init == "noise" and known is None:
            x = eps
        else:
            noised = torch.add(x_obs * math.sqrt(a_n), eps, alpha=math.sqrt(1 - a_n))
            x = noised if init == "noised" else torch.where(known, noised, eps)
        if clean:
            x = torch.where(known, x_obs, x)
        trajectory = [(start_step, x.clone())] if return_trajectory else None

        for i, (c_x, c_eps, sigma, sq_as, sq_1m_as, sq_alpha, sq_beta) in enumerate(coefs):
            s = steps[i + 1]
            t_batch = t_all[i].expand(B)
            t = steps[i]
            t_in = torch.where(known_tok, 0, t_all[i]) if clean else t_batch
            for u in range(resample):
                # 2. predict ε̂ = ε_θ(x_t, t) (ADMC Eq. 2), or v̂ / x̂0 turned into ε̂ (`split_output`)
                eps_hat = model(x, t_in)
                if u == 0 and i == 0 and eps_hat.shape != x.shape:
                    raise DataError(f"sample: model output shape {tuple(eps_hat.shape)} != input shape {tuple(x.shape)}")
                if convert:
                    eps_hat = self._split(x, eps_hat, sq_abar[t], sq_1m_abar[t])[1]
                # 3. unknown part: x_s = c_x·x_t + c_eps·ε̂ + σ·z (DDPM Eq. 11 / ADMC Eq. 3, or DDIM Eq. 12)
                x = torch.mul(x, c_x).add_(eps_hat, alpha=c_eps)
                need_known = known is not None and s > 0 and not clean
                if sigma > 0 or need_known:
                    z = randn()
                    if sigma > 0:
                        x.add_(z, alpha=sigma)
                # 4. known part forward-noised to step s, then blended (ADMC Eq. 4, RePaint Eq. 8–10);
                #    z is reused: it fills known entries here and unknown ones above. ᾱ_0 = 1 -> exact x_obs.
                #    A conditional denoiser keeps them clean instead.
                if clean:
                    x = torch.where(known, x_obs, x)
                elif known is not None:
                    x_known = z.mul_(sq_1m_as).add_(x_obs, alpha=sq_as) if s > 0 else x_obs
                    x = torch.where(known, x_known, x)
                # 5. RePaint harmonisation (Alg. 1): x_t ~ q(x_t | x_s) = N(sqrt(ᾱ_t/ᾱ_s)·x_s, (1 − ᾱ_t/ᾱ_s)·I),
                #    i.e. β_t for a one-step transition (Alg. 1 prints β_{t−1}, an index slip)
                if u < resample - 1:
                    x = torch.mul(x, sq_alpha).add_(randn(), alpha=sq_beta)
                    if clean:
                        x = torch.where(known, x_obs, x)
            if trajectory is not None:
                trajectory.append((s, x.clone()))
        return (x, trajectory) if trajectory is not None else x
