"""`synthetic`: a linear-Gaussian multimodal sequence dataset with exact Bayes oracles.

Generative model (one utterance):

    y            ~ Categorical(priors)                         class
    z = [z_c; z_s] ~ N([mu_y; 0], I)                           shared latent: class-dependent part
                                                               z_c, class-independent part z_s
    u_m          ~ N(nu_{m,y}, I)           for each modality   private class-dependent latent
    x_{m,t}      = A_m z + B_m u_m + sigma_m * eps_{m,t},  t = 1..T_m,  eps ~ N(0, I)

Every modality sees the shared latent (so a missing modality is partly predictable from the
others) and has class information of its own (so losing it costs accuracy). Stacking the
latents as h = [z; u_1; ...; u_M] ~ N(m_y, I), modality m observes W_m h with
W_m = [A_m, 0, .., B_m, .., 0]. Given the frames, the per-modality mean of the *observed*
frames xbar_m and their count n_m are sufficient statistics:
xbar_m | h ~ N(W_m h, sigma_m^2 / n_m I). Hence, in information form (r = dim h):

    P    = I + sum_m (n_m / sigma_m^2) W_m^T W_m          (posterior precision of h, any y)
    J    = sum_m (n_m / sigma_m^2) W_m^T xbar_m
    log p(y | frames) = log pi_y - 1/2 m_y^T m_y + 1/2 (m_y + J)^T P^-1 (m_y + J) + const

which is exact for every availability pattern and every frame mask (an absent modality has
n_m = 0). The utterance-level signal of a missing modality, s_m = W_m h, is given the observed
frames a Gaussian mixture: sum_y p(y|x) N(W_m P^-1 (m_y + J), W_m P^-1 W_m^T).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mmlab.data.dataset import MMDataset
from mmlab.data.registry import DatasetEntry, register_dataset
from mmlab.errors import ConfigError, DataError

IEMOCAP_CLASS_COUNTS = (1103, 1636, 1708, 1084)  # ang, hap+exc, neu, sad


@dataclass
class SyntheticConfig:
    """Sizes and difficulty of the `synthetic` dataset (defaults: a few minutes on 2 CPU cores)."""

    modalities: tuple[str, ...] = ("A", "V", "T")
    dims: tuple[int, ...] = (24, 32, 40)  # feature size D_m per modality
    min_len: tuple[int, ...] = (6, 6, 4)  # frames per utterance, uniform in [min_len, max_len]
    max_len: tuple[int, ...] = (16, 16, 12)
    noise: tuple[float, ...] = (2.0, 2.0, 2.0)  # sigma_m, frame noise std
    private_sep: tuple[float, ...] = (0.65, 0.55, 0.7)  # spread of private class means nu_{m,y}
    shared_sep: float = 0.35  # spread of shared class means mu_y
    d_shared_class: int = 3  # dims of z_c
    d_shared_free: int = 4  # dims of z_s (class-independent, shared across modalities)
    d_private: int = 3  # dims of each u_m
    class_counts: tuple[int, ...] = IEMOCAP_CLASS_COUNTS  # relative class priors
    n_train: int = 3000
    n_valid: int = 500
    n_test: int = 1000
    seed: int = 0  # seeds the model parameters and the samples

    def __post_init__(self) -> None:
        m = len(self.modalities)
        if m < 1 or len(set(self.modalities)) != m:
            raise ConfigError(f"synthetic.modalities: expected distinct names, got {self.modalities}")
        for key in ("dims", "min_len", "max_len", "noise", "private_sep"):
            if len(getattr(self, key)) != m:
                raise ConfigError(f"synthetic.{key}: expected {m} values (one per modality), got {getattr(self, key)}")
        if any(d < 1 for d in self.dims):
            raise ConfigError(f"synthetic.dims: expected positive sizes, got {self.dims}")
        if any(lo < 1 or hi < lo for lo, hi in zip(self.min_len, self.max_len)):
            raise ConfigError(f"synthetic.min_len/max_len: expected 1 <= min <= max, got {self.min_len}, {self.max_len}")
        if any(s <= 0 for s in self.noise):
            raise ConfigError(f"synthetic.noise: expected positive stds, got {self.noise}")
        if len(self.class_counts) < 2 or any(c <= 0 for c in self.class_counts):
            raise ConfigError(f"synthetic.class_counts: expected >= 2 positive counts, got {self.class_counts}")
        if min(self.n_train, self.n_valid, self.n_test) < 1:
            raise ConfigError("synthetic.n_train/n_valid/n_test: expected positive sizes")

    @property
    def priors(self) -> np.ndarray:
        c = np.asarray(self.class_counts, float)
        return c / c.sum()


PRESETS: dict[str, SyntheticConfig] = {
    "default": SyntheticConfig(),
    # IEMOCAP feature sizes (A 130 ComParE, V 342 Denseface, T 1024 BERT-large): for a GPU.
    "paper": SyntheticConfig(
        dims=(130, 342, 1024), min_len=(20, 20, 10), max_len=(60, 60, 30), n_train=4000, n_valid=500, n_test=1031
    ),
    # tiny: for tests and smoke runs.
    "tiny": SyntheticConfig(dims=(6, 8, 10), min_len=(3, 3, 2), max_len=(6, 6, 5), n_train=300, n_valid=100, n_test=200),
}


@dataclass
class LinearGaussianModel:
    """The parameters of the generative model and its exact oracles."""

    cfg: SyntheticConfig
    W: list[np.ndarray]  # per modality (D_m, r): maps h to the modality's frame mean
    means: np.ndarray  # (C, r): m_y, the class-conditional mean of h
    priors: np.ndarray  # (C,)
    sigma: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.sigma = np.asarray(self.cfg.noise, float)

    @classmethod
    def from_config(cls, cfg: SyntheticConfig) -> "LinearGaussianModel":
        rng = np.random.default_rng([cfg.seed, 0])
        m, dz, du = len(cfg.modalities), cfg.d_shared_class + cfg.d_shared_free, cfg.d_private
        r = dz + m * du
        c = len(cfg.class_counts)
        means = np.zeros((c, r))
        means[:, : cfg.d_shared_class] = cfg.shared_sep * rng.standard_normal((c, cfg.d_shared_class))
        W = []
        for j, d in enumerate(cfg.dims):
            lo = dz + j * du
            means[:, lo : lo + du] = cfg.private_sep[j] * rng.standard_normal((c, du))
            w = np.zeros((d, r))
            w[:, :dz] = rng.standard_normal((d, dz)) / np.sqrt(dz)
            w[:, lo : lo + du] = rng.standard_normal((d, du)) / np.sqrt(du)
            W.append(w)
        return cls(cfg, W, means, cfg.priors)

    @property
    def r(self) -> int:
        return self.means.shape[1]

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw ``n`` utterances: labels, latents h, padded frames and lengths."""
        cfg = self.cfg
        y = rng.choice(len(self.priors), size=n, p=self.priors)
        h = self.means[y] + rng.standard_normal((n, self.r))
        out: dict[str, np.ndarray] = {"y": y, "h": h}
        for j, m in enumerate(cfg.modalities):
            lengths = rng.integers(cfg.min_len[j], cfg.max_len[j] + 1, size=n)
            t = cfg.max_len[j]
            signal = h @ self.W[j].T  # (n, D)
            x = signal[:, None, :] + self.sigma[j] * rng.standard_normal((n, t, cfg.dims[j]))
            x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
            out[f"x_{m}"] = x.astype(np.float32)
            out[f"len_{m}"] = lengths
        return out

    # ------------------------------------------------------------------ oracles
    def _information(self, feats: dict[str, np.ndarray], obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Posterior precision P (N, r, r) and information vector J (N, r) of h given observed frames."""
        mods = self.cfg.modalities
        n = len(next(iter(obs.values())))
        P = np.broadcast_to(np.eye(self.r), (n, self.r, self.r)).copy()
        J = np.zeros((n, self.r))
        for j, m in enumerate(mods):
            if m not in feats:
                continue
            x, o = np.asarray(feats[m], float), np.asarray(obs[m], bool)
            if x.ndim != 3 or o.shape != x.shape[:2] or x.shape[2] != self.W[j].shape[0]:
                raise DataError(
                    f"oracle: modality {m!r} expects features (N, T, {self.W[j].shape[0]}) with an (N, T) mask, "
                    f"got {x.shape} and {o.shape}"
                )
            count = o.sum(1)  # n_m
            total = (x * o[:, :, None]).sum(1)  # n_m * xbar_m
            prec = count / self.sigma[j] ** 2
            G = self.W[j].T @ self.W[j]
            P += prec[:, None, None] * G[None]
            J += (total / self.sigma[j] ** 2) @ self.W[j]
        return P, J

    def log_posterior(self, feats: dict[str, np.ndarray], obs: dict[str, np.ndarray]) -> np.ndarray:
        """Exact log p(y | observed frames), (N, C), for any availability pattern and frame mask."""
        P, J = self._information(feats, obs)
        a = self.means[None, :, :] + J[:, None, :]  # (N, C, r): m_y + J
        sol = np.linalg.solve(P[:, None], a[..., None])[..., 0]  # P^-1 (m_y + J)
        score = np.log(self.priors)[None] - 0.5 * (self.means**2).sum(1)[None] + 0.5 * (a * sol).sum(-1)
        return score - np.logaddexp.reduce(score, axis=1, keepdims=True)

    def conditional(
        self, feats: dict[str, np.ndarray], obs: dict[str, np.ndarray], target: str
    ) -> dict[str, np.ndarray]:
        """Exact law of the utterance-level signal s = W_target h given the observed frames.

        A mixture over classes: ``weights`` (N, C), component ``means`` (N, C, D) and shared
        component covariance ``cov`` (N, D, D); plus the mixture's ``mean`` (N, D) and ``covariance``
        (N, D, D). Pass ``obs[target]`` all False (or omit the target) to condition on the others.
        """
        if target not in self.cfg.modalities:
            raise DataError(f"oracle: unknown target modality {target!r}; have {self.cfg.modalities}")
        W = self.W[self.cfg.modalities.index(target)]
        P, J = self._information(feats, obs)
        logw = self.log_posterior(feats, obs)
        a = self.means[None] + J[:, None, :]
        h_mean = np.linalg.solve(P[:, None], a[..., None])[..., 0]  # (N, C, r)
        comp_means = h_mean @ W.T  # (N, C, D)
        comp_cov = W[None] @ np.linalg.solve(P, np.broadcast_to(W.T, (len(P),) + W.T.shape))  # (N, D, D)
        w = np.exp(logw)
        mean = np.einsum("nc,ncd->nd", w, comp_means)
        dev = comp_means - mean[:, None]
        cov = comp_cov + np.einsum("nc,ncd,nce->nde", w, dev, dev)
        return {"weights": w, "means": comp_means, "cov": comp_cov, "mean": mean, "covariance": cov}

    def sample_conditional_frames(self, feats: dict[str, np.ndarray], obs: dict[str, np.ndarray], target: str,
                                  lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Frames of ``target`` drawn from their exact law given the observed frames: a class
        from the posterior, the signal s = W_target h from that component, then
        x_t = s + sigma_target·ε_t for t < ``lengths`` (zero padding after). (N, max(lengths), D)."""
        law = self.conditional(feats, obs, target)
        n, _, d = law["means"].shape
        cum = np.cumsum(law["weights"], 1)
        comp = np.minimum((rng.random((n, 1)) > cum).sum(1), cum.shape[1] - 1)
        chol = np.linalg.cholesky(law["cov"] + 1e-9 * np.eye(d))
        signal = law["means"][np.arange(n), comp] + (chol @ rng.standard_normal((n, d, 1)))[..., 0]
        t = int(np.max(lengths))
        j = self.cfg.modalities.index(target)
        x = signal[:, None, :] + self.sigma[j] * rng.standard_normal((n, t, d))
        x[np.arange(t)[None, :] >= np.asarray(lengths)[:, None]] = 0.0
        return x.astype(np.float32)


def make_synthetic(cfg: SyntheticConfig | None = None, preset: str | None = None, **overrides) -> MMDataset:
    """Generate the `synthetic` dataset; ``info["oracle"]`` holds its `LinearGaussianModel`."""
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"synthetic preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        cfg = PRESETS[preset]
    cfg = replace(cfg or SyntheticConfig(), **overrides) if overrides else (cfg or SyntheticConfig())
    model = LinearGaussianModel.from_config(cfg)
    rng = np.random.default_rng([cfg.seed, 1])
    n = cfg.n_train + cfg.n_valid + cfg.n_test
    s = model.sample(n, rng)
    split = np.array(["train"] * cfg.n_train + ["valid"] * cfg.n_valid + ["test"] * cfg.n_test)
    names = ["ang", "hap", "neu", "sad"] if len(cfg.class_counts) == 4 else [f"c{k}" for k in range(len(cfg.class_counts))]
    return MMDataset(
        name="synthetic",
        modalities=cfg.modalities,
        feats={m: s[f"x_{m}"] for m in cfg.modalities},
        lengths={m: s[f"len_{m}"].astype(np.int64) for m in cfg.modalities},
        y=s["y"].astype(np.int64),
        split=split,
        ids=np.array([f"syn-{i:05d}" for i in range(n)]),
        classes=names,
        info={"oracle": model, "config": cfg, "latents": s["h"]},
    )


register_dataset(
    DatasetEntry(
        name="synthetic",
        loader=make_synthetic,
        description="linear-Gaussian A/V/T frame sequences with exact Bayes oracles (default dataset)",
        card="synthetic.md",
        bundled=True,
    )
)
