"""The CM-ARR notebook's pure functions (notebook 07): the UMC's utterance Gaussians before and
after training, the flows' latent space, a missing modality reconstructed beside its real value
and its exact conditional, and the ablation rows of a comparison run.

Equations are those of Sun et al. 2024, "Enhancing Emotion Recognition in Incomplete Data: A Novel
Cross-Modal Alignment, Reconstruction, and Refinement Framework", arXiv:2407.09029; the choices
C1-C15 are listed in `mmlab/methods/cmarr.py`. Everything here reads the method's public pieces
(``align``, ``project``, ``flows``, ``recover``, ``real_features``, ``generate``,
``feature_logits``) and never changes it. Arrays come back as numpy, in test-split order.
"""

from __future__ import annotations

import copy
import csv
import itertools
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError

ABLATION_METHODS = ("cmarr", "cmarr_baseline", "cmarr_wo_udcl", "cmarr_wo_spcl", "cmarr_wo_attention", "cmarr_point",
                    "cmarr_alpha01", "dicmor")
ORACLE = "bayes_oracle"
ABLATION_RESULTS = Path("docs") / "results" / "cmarr" / "synthetic" / "results.csv"
Gaussians = dict[str, tuple[np.ndarray, np.ndarray]]  # modality -> (mu (N, d), Sigma diagonal (N, d))


# ============================================================================ helpers
def _part(data: MMDataset, split: str, n: int | None) -> MMDataset:
    part = data.subset(split)
    return part if n is None else part.take(np.arange(min(int(n), len(part))))


def _device(method: Any) -> torch.device:
    from mmlab.methods.base import module_device

    return module_device(method)


def _batches(method: Any, part: MMDataset, batch_size: int = 512) -> Iterator[tuple[np.ndarray, Any]]:
    dev = _device(method)
    for start in range(0, len(part), batch_size):
        idx = np.arange(start, min(start + batch_size, len(part)))
        yield idx, part.batch(idx, device=dev)


def _check_target(method: Any, target: str) -> list[str]:
    if target not in method.modalities:
        raise ConfigError(f"target: expected one of {list(method.modalities)}, got {target!r}")
    if not method.completes():
        raise ConfigError(f"{method.name}: has no reconstruction (reconstruct=false), nothing to recover")
    return [m for m in method.modalities if m != target]


def _masked(method: Any, part: MMDataset, sources: Sequence[str], seed: int) -> Iterator[tuple[np.ndarray, Any, Any]]:
    """(idx, complete batch, the batch with only ``sources`` available and the method's fill)."""
    from mmlab.missing import FixedPattern, draw_masks, mask_batch, pad_masks, resolve_fill
    from mmlab.utils import torch_generator

    masks = draw_masks(FixedPattern(tuple(sources)), pad_masks(part), part.modalities, seed)
    fill, gen = resolve_fill(method.fill, part), torch_generator(seed, device=_device(method))
    for idx, batch in _batches(method, part):
        yield idx, batch, mask_batch(batch, masks.take(idx), fill, generator=gen).for_eval()


def fit_pca(points: np.ndarray, k: int = 2) -> dict[str, np.ndarray]:
    """A k-component PCA of ``points`` (N, d) by SVD: {"center" (d,), "components" (k, d), "explained" (k,)}."""
    x = np.asarray(points, np.float64)
    center = x.mean(0)
    _, s, vt = np.linalg.svd(x - center, full_matrices=False)
    return {"center": center, "components": vt[:k], "explained": (s[:k] ** 2) / max(float((s ** 2).sum()), 1e-12)}


def pca_transform(pca: dict[str, np.ndarray], points: np.ndarray) -> np.ndarray:
    """(N, k) coordinates of ``points`` (N, d) in a `fit_pca` basis."""
    return (np.asarray(points, np.float64) - pca["center"]) @ pca["components"].T


# ============================================================================ alignment (§3.1)
def untrained_copy(method: Any, data: MMDataset) -> Any:
    """The same architecture and config as ``method``, freshly initialised as `train_method` does
    it (global seed ``method.seed``, then the constructor): the model before any alignment. The
    caller's random state is left as it was."""
    from mmlab.experiments import method_input
    from mmlab.utils import seed_everything

    state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        seed_everything(method.seed)
        fresh = type(method)(copy.deepcopy(method.cfg), method_input(method.name, data))
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.random.set_rng_state(state[2])
    fresh.name, fresh.seed = method.name, method.seed
    return fresh.to(_device(method)).eval()


@torch.no_grad()
def utterance_gaussians(method: Any, data: MMDataset, split: str = "test", n: int | None = None) -> Gaussians:
    """The UMC's utterance Gaussians (§3.1.2, pooled over valid frames, C3) of the complete
    features of the first ``n`` rows of ``split``: {m: (mu (N, d_umc), Sigma (N, d_umc))}."""
    from mmlab.nn.cmarr_modules import pool_gaussian

    if not getattr(method, "uses_umc", False):
        raise ConfigError(f"{method.name}: has no UMC (udcl=false and proj_input='features')")
    method.eval()
    out: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {m: [] for m in method.modalities}
    for _, batch in _batches(method, _part(data, split, n)):
        gauss = method.align(batch.feats, batch.pad_mask)
        for m in method.modalities:
            out[m].append(pool_gaussian(*gauss[m], batch.pad_mask[m]))
    return {m: (torch.cat([g[0] for g in v]).cpu().numpy(), torch.cat([g[1] for g in v]).cpu().numpy())
            for m, v in out.items()}


def alignment_distances(gauss: Gaussians, use_variance: bool = False, reduce: str = "mean") -> dict[str, Any]:
    """D_2W (Eq. 1, as UDCL computes it: `mmlab.losses.w2_distance`, C6) between the utterance
    Gaussians of every pair of modalities: ``within`` = the same sample's two modalities (UDCL's
    positives, Eq. 2), ``between`` = two different samples (its negatives), their ratio, and
    ``retrieval``: how often a sample's nearest Gaussian in the other modality is its own
    (both directions; chance = 1/N). Per pair in ``pairs``, averaged over pairs at the top level."""
    from mmlab.losses import w2_distance

    pairs = []
    for a, b in itertools.combinations(gauss, 2):
        ga = tuple(torch.as_tensor(t, dtype=torch.float64) for t in gauss[a])
        gb = tuple(torch.as_tensor(t, dtype=torch.float64) for t in gauss[b])
        d = w2_distance(ga, gb, use_variance=use_variance, reduce=reduce).numpy()
        d_mu = w2_distance((ga[0], 0 * ga[1]), (gb[0], 0 * gb[1]), reduce=reduce).numpy()  # the means' term alone
        n = len(d)
        eye = np.eye(n, dtype=bool)
        within, between = float(d[eye].mean()), float(d[~eye].mean()) if n > 1 else float("nan")
        hits = (d.argmin(1) == np.arange(n)).mean() / 2 + (d.argmin(0) == np.arange(n)).mean() / 2
        pairs.append({"pair": f"{a}-{b}", "within": within, "between": between, "ratio": within / between,
                      "retrieval": float(hits), "within_mu": float(d_mu[eye].mean())})
    keys = ("within", "between", "ratio", "retrieval", "within_mu")
    n = len(next(iter(gauss.values()))[0])
    return {**{k: float(np.mean([p[k] for p in pairs])) for k in keys}, "pairs": pairs, "chance": 1.0 / n}


def sigma_stats(gauss: Gaussians) -> list[dict[str, Any]]:
    """What the UMC's variances (§3.1.2) vary with, per modality: the spread over samples of a
    sample's mean log Sigma (its overall uncertainty) and the spread of log Sigma over the
    dimensions of one sample (its shape), with the mean Sigma."""
    rows = []
    for m, (_, var) in gauss.items():
        log_var = np.log(np.maximum(np.asarray(var, np.float64), 1e-12))
        rows.append({"modality": m, "mean_sigma": float(var.mean()), "sd_over_samples": float(log_var.mean(1).std()),
                     "sd_over_dims": float(log_var.std(1).mean())})
    return rows


def project_gaussians(gauss: Gaussians, pca: dict[str, np.ndarray], samples: Sequence[int]) -> dict[str, Any]:
    """2-D ellipses of the utterance Gaussians of ``samples``: centers P (mu - c) (S, M, 2) and
    covariances P diag(Sigma) P^T (S, M, 2, 2) in a `fit_pca` basis P; ``explained``: the
    share of these means' total variance (all samples, all modalities) that the 2-D basis keeps."""
    mods = list(gauss)
    p = pca["components"][:2]
    idx = np.asarray(samples, int)
    centers = np.stack([pca_transform(pca, gauss[m][0][idx]) for m in mods], 1)
    covs = np.stack([np.einsum("kd,sd,ld->skl", p, gauss[m][1][idx].astype(np.float64), p) for m in mods], 1)
    means = np.concatenate([gauss[m][0] for m in mods]).astype(np.float64)
    kept = pca_transform(pca, means).var(0).sum() / max(float(means.var(0).sum()), 1e-12)
    return {"modalities": mods, "samples": idx, "centers": centers, "covs": covs, "explained": float(kept)}


# ============================================================================ reconstruction (§3.2)
@torch.no_grad()
def flow_latents(method: Any, data: MMDataset, target: str = "T", split: str = "test", n: int | None = None,
                 seed: int = 1111) -> dict[str, Any]:
    """The flows' latent space on the first ``n`` rows of ``split``: Z_m = F_m(X_m) of every
    complete modality (Eq. 6), and for ``target`` made missing, Eq. 7's mean latent Z~ of the
    other modalities, X~ = F^-1(Z~) (Eq. 8) and X^ = Rec(X~), beside the real X (the Eq. 9
    target). Sequences are time means, (N, d); ``xy``: every Z and Z~ in one 2-D PCA of the
    Z_m. ``x_tilde_mse`` / ``x_hat_mse``: Eq. 9's mean squared error per element (over frames)
    of X~ and X^; ``zero_mse``: that of predicting 0.
    ``latent_pairs``: mean Euclidean distance between the target's Z and each source's Z (and
    Z~) of the same sample vs of other samples: is one utterance one point of a shared space?"""
    sources = _check_target(method, target)
    method.eval()
    part, j = _part(data, split, n), method.modalities.index(target)
    acc: dict[str, list[torch.Tensor]] = {}

    def add(key: str, t: torch.Tensor) -> None:
        acc.setdefault(key, []).append(t.float().cpu())

    for _, full, masked in _masked(method, part, sources, seed):
        rep = method.represent(full.for_eval())
        for m in method.modalities:
            add(f"z_{m}", rep["z"][m].mean(1))
        x_real = rep["x"][target]
        rep = method.represent(masked)
        rows = torch.arange(len(x_real), device=x_real.device)
        w = masked.avail.to(x_real.dtype)
        w[:, j] = 0
        z_tilde = sum(w[:, method.modalities.index(k), None, None] * rep["z"][k] for k in sources)
        z_tilde = z_tilde / w.sum(1).clamp_min(1.0)[:, None, None]  # Eq. 7
        x_tilde = method.flows[target].inverse(z_tilde)  # Eq. 8
        x_hat = method.recover(target, rep["z"], masked.avail, rows)  # Eqs. 7-8 and Rec (the method's own path)
        for key, t in (("z_tilde", z_tilde), ("x_real", x_real), ("x_tilde", x_tilde), ("x_hat", x_hat)):
            add(key + "_seq", t)
            add(key, t.mean(1))
    cat = {k: torch.cat(v) for k, v in acc.items()}
    mse = lambda a: float((cat[a] - cat["x_real_seq"]).pow(2).mean())  # noqa: E731
    z_t, z_own = cat["z_tilde"], cat[f"z_{target}"]
    dist = torch.cdist(z_t, z_own)
    z = {m: cat[f"z_{m}"].numpy() for m in method.modalities}
    pca = fit_pca(np.concatenate(list(z.values())))  # one 2-D basis for every latent
    off = ~torch.eye(len(dist), dtype=torch.bool)
    pairs = []
    for a, b in [(k, target) for k in sources] + [("z_tilde", target)]:
        d_ab = torch.cdist(cat[a if a == "z_tilde" else f"z_{a}"], cat[f"z_{b}"])
        pairs.append({"pair": f"{'Z~_' + target if a == 'z_tilde' else 'Z_' + a} vs Z_{b}",
                      "same_sample": float(d_ab.diagonal().mean()),
                      "other_samples": float(d_ab[off].mean()) if len(d_ab) > 1 else float("nan")})
    return {
        "target": target, "sources": sources, "modalities": list(method.modalities), "y": part.y,
        "classes": list(part.classes), "z": z,
        "xy": {**{m: pca_transform(pca, v) for m, v in z.items()}, "z_tilde": pca_transform(pca, z_t.numpy())},
        **{k: cat[k].numpy() for k in ("z_tilde", "x_real", "x_tilde", "x_hat")},
        "x_tilde_mse": mse("x_tilde_seq"), "x_hat_mse": mse("x_hat_seq"),
        "zero_mse": float(cat["x_real_seq"].pow(2).mean()),
        "z_tilde_own_distance": float(dist.diagonal().mean()),
        "z_tilde_other_distance": float(dist[off].mean()) if len(dist) > 1 else float("nan"), "latent_pairs": pairs,
        "latent_stats": [{"latent": f"Z_{m}", "mean_norm": float(cat[f"z_{m}"].mean(0).norm()),
                          "std": float(cat[f"z_{m}"].std(0).mean())} for m in method.modalities]
        + [{"latent": f"Z~_{target} (Eq. 7)", "mean_norm": float(z_t.mean(0).norm()), "std": float(z_t.std(0).mean())}],
    }


@torch.no_grad()
def reconstruction_view(method: Any, data: MMDataset, target: str = "T", split: str = "test", n: int | None = None,
                        seed: int = 1111, k: int = 4) -> dict[str, Any]:
    """``target`` reconstructed from all the other modalities (``generate``, Eqs. 7-9, C15)
    beside its real value (``real_features``) and, on `synthetic`, ``k`` draws of target frames
    from their exact conditional law given the observed frames, encoded the same way (as
    `mmlab.evaluate.generation_table` does): "exact" is the first draw, "exact_mean" the mean of
    the ``k`` (close to the conditional mean, the best point estimate). Returns the features
    (N, d), their 2-D PCA fitted on the real ones, the frozen probe's accuracy on each, and RMS
    distances (over samples and dimensions). ``conditional_sd``: the RMS distance that the exact
    conditional mean itself would have from the real feature, estimated from the spread of the
    ``k`` draws (k >= 2): the floor for any deterministic reconstruction. ``spread``: each
    cloud's RMS distance to its own mean."""
    from mmlab.metrics import classification_report
    from mmlab.utils import numpy_rng

    sources = _check_target(method, target)
    method.eval()
    part = _part(data, split, n)
    model = part.info.get("oracle")
    frames = None
    if hasattr(model, "sample_conditional_frames"):
        from mmlab.missing import FixedPattern, draw_masks, pad_masks

        obs = draw_masks(FixedPattern(tuple(sources)), pad_masks(part), part.modalities, seed).obs
        rng = numpy_rng(seed, "exact", target)
        frames = [model.sample_conditional_frames(part.feats, obs, target, part.lengths[target], rng)
                  for _ in range(max(1, int(k)))]
    feats: dict[str, list[torch.Tensor]] = {"real": [], "generated": [], "exact": [], "exact_mean": []}
    exact_draws: list[list[torch.Tensor]] = []  # per batch, the k draws
    for idx, full, masked in _masked(method, part, sources, seed):
        feats["real"].append(method.real_features(full.for_eval(), target))
        feats["generated"].append(method.generate(masked, target))
        draws = []
        for f in frames or []:
            x = torch.from_numpy(f[idx, : full.feats[target].shape[1]]).to(full.feats[target])
            draws.append(method.real_features(replace(full, feats={**full.feats, target: x}).for_eval(), target))
        if draws:
            exact_draws.append(draws)
            feats["exact"].append(draws[0])
            feats["exact_mean"].append(torch.stack(draws).mean(0))
    out = {key: torch.cat(v) for key, v in feats.items() if v}
    acc = {key: classification_report(part.y, method.feature_logits(target, v).argmax(1).cpu().numpy(),
                                      part.n_classes)["accuracy"] for key, v in out.items()}
    arr = {key: v.float().cpu().numpy() for key, v in out.items()}
    rms = lambda a, b: float(np.sqrt(((arr[a] - arr[b]) ** 2).mean()))  # noqa: E731
    cond_sd = float("nan")
    if frames is not None and len(frames) > 1:
        draws_all = torch.stack([torch.cat(d) for d in zip(*exact_draws)]).float().cpu()  # (k, N, d)
        cond_sd = float(draws_all.var(0, unbiased=True).mean().sqrt())
    pca = fit_pca(arr["real"])
    sep = "" if all(len(m) == 1 for m in method.modalities) else ","
    return {
        "target": target, "direction": f"{sep.join(sources)}->{target}", "y": part.y, "classes": list(part.classes),
        "features": arr, "xy": {key: pca_transform(pca, v) for key, v in arr.items()},
        "accuracy": acc, "generated_to_real": rms("generated", "real"),
        **{f"{a}_to_{b}": rms(a, b) if a in arr else float("nan")
           for a, b in (("exact", "real"), ("exact_mean", "real"), ("generated", "exact_mean"))},
        "conditional_sd": cond_sd,
        "spread": {key: float(np.sqrt(((v - v.mean(0)) ** 2).mean())) for key, v in arr.items()},
    }


# ============================================================================ ablations (Table 3)
def ablation_results_path(path: str | Path | None = None) -> Path:
    """``path``, else the committed comparison rows of this repository
    (``docs/results/cmarr/synthetic/results.csv`` beside the ``mmlab`` package)."""
    if path is not None:
        return Path(path).expanduser()
    return Path(__file__).resolve().parents[2] / ABLATION_RESULTS


def ablation_summary(path: str | Path | None = None, metric: str = "accuracy",
                     methods: Sequence[str] = ABLATION_METHODS) -> dict[str, Any]:
    """The six-pattern average of ``metric`` per method (ADMC Tables 1-2 "Average", the CM-ARR
    Table 3 layout) from a `mmlab compare` results.csv: per seed the mean over the pattern
    conditions ("{A}", ..., "{VT}"; the file's "Average" row when a seed has none), then mean and
    sample standard deviation over seeds. ``methods`` come first in that order, then any other
    method of the file; the Bayes oracle is returned apart. A missing or empty file gives
    ``found`` False and a ``message``, never an exception."""
    p = ablation_results_path(path)
    empty = {"path": str(p), "found": False, "rows": [], "oracle": None, "metric": metric}
    if not p.is_file():
        return {**empty, "message": f"no comparison results at {p} (run `mmlab compare` and pass its results.csv)"}
    with open(p, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("protocol", "pattern") == "pattern"]
    per: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in rows:
        try:
            v = float(r[metric])
        except (KeyError, TypeError, ValueError):
            continue
        slot = per.setdefault((r.get("method", ""), r.get("seed", "")), {"patterns": [], "average": []})
        cond = r.get("condition", "")
        if cond.startswith("{"):
            slot["patterns"].append(v)
        elif cond == "Average":
            slot["average"].append(v)
    by_method: dict[str, list[float]] = {}
    for (m, _), slot in per.items():
        vals = slot["patterns"] or slot["average"]
        if vals:
            by_method.setdefault(m, []).append(float(np.mean(vals)))
    if not by_method:
        return {**empty, "found": True, "message": f"{p} holds no pattern rows with a {metric!r} column"}

    def summary(m: str) -> dict[str, Any]:
        v = np.asarray(by_method[m])
        return {"method": m, "average": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                "n_seeds": len(v)}

    order = [m for m in methods if m in by_method] + [m for m in by_method if m not in methods and m != ORACLE]
    oracle = summary(ORACLE) if ORACLE in by_method else None
    out = [summary(m) for m in order]
    if oracle is not None:
        for r in out:
            r["gap_to_oracle"] = r["average"] - oracle["average"]
    seeds = sorted({r["n_seeds"] for r in out})
    return {"path": str(p), "found": True, "rows": out, "oracle": oracle, "metric": metric,
            "message": f"{len(out)} methods, {'/'.join(map(str, seeds))} seed(s) each, from {p}"}
