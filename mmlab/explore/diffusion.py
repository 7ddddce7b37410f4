"""The diffusion explorer's pure functions (notebook 06): ADMC's reverse process from step n,
real vs generated features in 2-D, the unimodal head on generated features, trajectories.
ADMC's choices A8 (standardised features) and A14 (Table 4 protocol) are listed in
mmlab/methods/admc.py."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.missing import draw_masks, pad_masks, pattern_name
from mmlab.explore.common import PROJECTIONS, SAMPLERS, _LRU
from mmlab.explore.missingness import make_generator

# ============================================================================ diffusion
@dataclass
class DiffusionState:
    """ADMC, the encoded test features (computed once) and the caches of `diffusion_view`."""

    method: Any
    part: MMDataset
    feats: torch.Tensor  # (N, M, D) standardised ITFN features
    projection: str = "umap"
    seed: int = 0
    n_track: int = 16  # samples whose trajectories are kept (sample_index < n_track)
    max_step: int = 200
    completions: _LRU = field(default_factory=lambda: _LRU(48))
    reducers: dict = field(default_factory=dict)
    projections: _LRU = field(default_factory=lambda: _LRU(256))
    real_scores: dict = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.part.modalities)


def diffusion_state(method: Any, data: MMDataset, split: str = "test", n_samples: int = 400,
                    projection: str = "umap", seed: int = 0, n_track: int = 16, max_step: int | None = None,
                    warm: bool = True) -> DiffusionState:
    """Encode ``n_samples`` rows of ``split`` once (ADMC's frozen ITFN, standardised, A8); with
    ``warm`` also fit the projection of every modality now (UMAP's first fit compiles)."""
    if not hasattr(method, "complete") or not hasattr(method, "encode"):
        raise ConfigError(f"diffusion_state: method {getattr(method, 'name', method)!r} has no ADN "
                          "(expected ADMC with encode() and complete())")
    if projection not in PROJECTIONS:
        raise ConfigError(f"projection: expected one of {list(PROJECTIONS)}, got {projection!r}")
    part = data.subset(split)
    part = part.take(np.arange(min(int(n_samples), len(part))))
    method.eval()
    dev = next(method.parameters()).device
    with torch.no_grad():
        feats = torch.cat([method.encode(b) for b in part.iter_batches(512, device=dev)])
    state = DiffusionState(method=method, part=part, feats=feats, projection=projection, seed=seed,
                           n_track=min(n_track, len(part)),
                           max_step=method.diffusion.n_steps if max_step is None else min(max_step, method.diffusion.n_steps))
    if warm:  # fit (and compile) the projections now, not on the first slider move
        for m in state.modalities:
            red, _ = _reducer(state, m, projection)
            if red is not None:
                _transform(red, _real(state, m)[:4])
    return state


def _index(state: DiffusionState, modality: str) -> int:
    if modality not in state.modalities:
        raise ConfigError(f"modality: expected one of {list(state.modalities)}, got {modality!r}")
    return state.modalities.index(modality)


def _norm_steps(state: DiffusionState, start_step: int, sampler: str, num_steps: int | None) -> tuple[int, str, int]:
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler: expected one of {list(SAMPLERS)}, got {sampler!r}")
    n = int(start_step)
    if not 0 <= n <= state.method.diffusion.n_steps:
        raise ConfigError(f"start_step: expected an integer in [0, {state.method.diffusion.n_steps}], got {start_step!r}")
    k = n if num_steps is None else max(1, min(int(num_steps), n)) if n else 0
    return n, sampler, k


def _completion(state: DiffusionState, modality: str, start_step: int, sampler: str, num_steps: int) -> dict:
    """Generated features of ``modality`` from all the others (standardised space), cached."""
    j = _index(state, modality)
    key = (modality, start_step, sampler, num_steps)

    def run() -> dict:
        from mmlab.utils import torch_generator

        feats = state.feats
        known = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        known[:, j] = False
        gen = torch_generator(state.seed, "completion", *map(str, key), device=feats.device)
        with torch.no_grad():
            x0, traj = state.method.complete(feats, known, start_step=start_step, sampler=sampler,
                                             num_steps=num_steps or None, generator=gen, return_trajectory=True)
        steps = [int(s) for s, _ in traj]
        path = torch.stack([x[: state.n_track, j] for _, x in traj], 1)  # (n_track, S+1, D)
        gen_j = x0[:, j]
        return {"gen": gen_j.cpu().numpy(), "steps": steps, "paths": path.cpu().numpy(),
                "score": _head_scores(state, modality, gen_j)}

    return state.completions.get_or(key, run)


def _head_scores(state: DiffusionState, modality: str, z: torch.Tensor) -> dict[str, float]:
    """Table 4 (A14): the frozen unimodal ITFN head (``feature_logits``) on the de-standardised
    features of ``modality``, scored by `mmlab.evaluate.classifier_scores`."""
    from mmlab.evaluate import classifier_scores

    m, j = state.method, _index(state, modality)
    full = torch.zeros(len(z), len(state.modalities), z.shape[-1], dtype=z.dtype, device=z.device)
    full[:, j] = z
    with torch.no_grad():
        logits = m.feature_logits(modality, m.standardizer.inverse(full)[:, j]).float().cpu()
    scores = classifier_scores(logits, state.part.y, state.part.n_classes)
    return {"accuracy": scores["accuracy"], "macro_recall": scores["macro_recall"], "pred": logits.argmax(1).numpy()}


def _exact(state: DiffusionState, modality: str) -> np.ndarray | None:
    """Standardised features of ``modality`` whose frames are drawn from the generator's exact
    conditional law given all the other modalities (`synthetic` only; None elsewhere), encoded
    by the same frozen ITFN encoder: what a perfect generator would give (cached)."""
    model = state.part.info.get("oracle")
    if not hasattr(model, "sample_conditional_frames"):
        return None

    def run() -> np.ndarray:
        from dataclasses import replace

        from mmlab.utils import numpy_rng

        part, j = state.part, _index(state, modality)
        pad = pad_masks(part)
        obs = {m: pad[m] & (m != modality) for m in part.modalities}
        frames = model.sample_conditional_frames(part.feats, obs, modality, part.lengths[modality],
                                                 numpy_rng(state.seed, "exact", modality))
        dev = state.feats.device
        out = []
        with torch.no_grad():
            for start in range(0, len(part), 512):
                idx = np.arange(start, min(start + 512, len(part)))
                batch = part.batch(idx, device=dev)
                x = torch.from_numpy(frames[idx, : batch.feats[modality].shape[1]]).to(dev)
                out.append(state.method.encode(replace(batch, feats={**batch.feats, modality: x}))[:, j])
        return torch.cat(out).cpu().numpy()

    return state.completions.get_or(("exact", modality), run)


def _exact_scores(state: DiffusionState, modality: str, exact: np.ndarray) -> dict[str, float]:
    key = ("exact", modality)
    if key not in state.real_scores:
        state.real_scores[key] = _head_scores(state, modality, torch.from_numpy(exact).to(state.feats.device))
    return state.real_scores[key]


def _real(state: DiffusionState, modality: str) -> np.ndarray:
    return state.feats[:, _index(state, modality)].cpu().numpy()


def _reducer(state: DiffusionState, modality: str, projection: str) -> tuple[Any, np.ndarray]:
    """(fitted reducer or None for t-SNE, 2-D real points) for one modality, fitted once."""
    key = (modality, projection)
    if key not in state.reducers:
        real = _real(state, modality)
        if projection == "umap":
            import warnings

            import umap

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" (umap #1001)
                red = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=state.seed, n_jobs=1)
                xy = red.fit_transform(real)
        elif projection == "pca":
            from sklearn.decomposition import PCA

            red = PCA(n_components=2, random_state=state.seed)
            xy = red.fit_transform(real)
        else:
            red, xy = None, _tsne(real, state.seed)
        state.reducers[key] = (red, np.asarray(xy, float))
    return state.reducers[key]


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(5, (len(x) - 1) // 4)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500).fit_transform(x)


def _transform(red: Any, x: np.ndarray) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(red.transform(x), float)


def _projected(state: DiffusionState, modality: str, key: tuple, comp: dict, projection: str) -> dict[str, np.ndarray]:
    """2-D real, generated (and, on `synthetic`, exact-conditional) points of one completion
    (cached). UMAP / PCA place them with the reducer fitted on the real ones; t-SNE is fitted
    jointly."""

    def run() -> dict[str, np.ndarray]:
        red, real_xy = _reducer(state, modality, projection)
        exact = _exact(state, modality)
        if red is not None:
            out = {"real": real_xy, "gen": _transform(red, comp["gen"])}
            if exact is not None:
                out["exact"] = _transform(red, exact)
            return out
        parts = [_real(state, modality), comp["gen"]] + ([exact] if exact is not None else [])
        joint = _tsne(np.concatenate(parts), state.seed)
        n = len(real_xy)
        out = {"real": joint[:n], "gen": joint[n:2 * n]}
        if exact is not None:
            out["exact"] = joint[2 * n:]
        return out

    return state.projections.get_or(("points", projection) + key, run)


def _knn_place(anchors: np.ndarray, anchors_xy: np.ndarray, x: np.ndarray, k: int = 5) -> np.ndarray:
    """2-D positions of ``x`` as the inverse-distance mean of its k nearest anchors' positions
    (for t-SNE, which cannot transform new points)."""
    d = np.linalg.norm(x[:, None, :] - anchors[None, :, :], axis=-1)
    idx = np.argsort(d, axis=1)[:, :k]
    w = 1.0 / (np.take_along_axis(d, idx, 1) + 1e-6)
    return (anchors_xy[idx] * w[..., None]).sum(1) / w.sum(1, keepdims=True)


def _path_xy(state: DiffusionState, modality: str, key: tuple, comp: dict, pts: dict, projection: str,
             sample_index: int) -> np.ndarray:
    """2-D positions of one tracked sample's trajectory (cached)."""
    red, _ = _reducer(state, modality, projection)

    def run() -> np.ndarray:
        path = comp["paths"][sample_index]
        if red is not None:
            return _transform(red, path)
        anchors = np.concatenate([_real(state, modality), comp["gen"]])
        return _knn_place(anchors, np.concatenate([pts["real"], pts["gen"]]), path)

    return state.projections.get_or(("path", projection, sample_index) + key, run)


def diffusion_view(state: DiffusionState, start_step: int = 50, sampler: str = "ddpm", num_steps: int | None = None,
                   modality: str | None = None, sample_index: int = 0, projection: str | None = None) -> dict[str, Any]:
    """Generate ``modality`` from all the other modalities with ADMC's ADN, starting the reverse
    process at step ``start_step`` (Eq. 3, 4), and describe the result.

    ``num_steps``: reverse transitions (None = every step for "ddpm", clamped to n). Returns the
    2-D projections of real and generated features with their labels (Fig. 3), the Table 4
    accuracy / macro recall of the unimodal ITFN head on the generated and on the real
    features, the mean distance generated-to-real, and the trajectory of test sample
    ``sample_index`` (< ``state.n_track``) through the visited steps with its distance to the
    sample's real feature per step.
    """
    t0 = time.perf_counter()
    modality = modality or state.modalities[-1]
    projection = projection or state.projection
    if projection not in PROJECTIONS:
        raise ConfigError(f"projection: expected one of {list(PROJECTIONS)}, got {projection!r}")
    if not 0 <= int(sample_index) < state.n_track:
        raise ConfigError(f"sample_index: expected an integer in [0, {state.n_track}), got {sample_index!r}")
    n, sampler, k = _norm_steps(state, start_step, sampler, num_steps)
    key = (modality, n, sampler, k)
    comp = _completion(state, modality, n, sampler, k)
    pts = _projected(state, modality, key, comp, projection)
    path_xy = _path_xy(state, modality, key, comp, pts, projection, int(sample_index))
    real = _real(state, modality)
    if modality not in state.real_scores:
        state.real_scores[modality] = _head_scores(state, modality, state.feats[:, _index(state, modality)])
    real_score = state.real_scores[modality]
    path = comp["paths"][sample_index]
    others = "".join(m for m in state.modalities if m != modality) if all(len(m) == 1 for m in state.modalities) \
        else ",".join(m for m in state.modalities if m != modality)
    exact = _exact(state, modality)
    exact_view = {} if exact is None else {
        "exact_xy": pts["exact"], "exact_y": state.part.y,
        "exact_accuracy": _exact_scores(state, modality, exact)["accuracy"],
    }
    return {
        **exact_view,
        "modality": modality, "direction": f"{others}->{modality}", "start_step": n, "sampler": sampler, "num_steps": k,
        "projection": projection, "sample_index": int(sample_index), "classes": list(state.part.classes),
        "real_xy": pts["real"], "real_y": state.part.y, "gen_xy": pts["gen"], "gen_y": state.part.y,
        "generated_accuracy": comp["score"]["accuracy"], "generated_macro_recall": comp["score"]["macro_recall"],
        "real_accuracy": real_score["accuracy"], "real_macro_recall": real_score["macro_recall"],
        "distance": float(np.linalg.norm(comp["gen"] - real, axis=1).mean()),
        "real_spread": float(np.linalg.norm(real - real.mean(0), axis=1).mean()),
        "trajectory_steps": comp["steps"], "trajectory_xy": path_xy,
        "trajectory_distance": np.linalg.norm(path - real[sample_index], axis=1),
        "target_xy": pts["real"][sample_index : sample_index + 1], "label": state.part.classes[state.part.y[sample_index]],
        "seconds": time.perf_counter() - t0,
    }


def itfn_table(state: "DiffusionState", oracle: Any | None = None) -> list[dict[str, Any]]:
    """ADMC stage (a): each frozen unimodal ITFN head on its own real test features, beside the
    Bayes accuracy of that single modality when the oracle is given."""
    rows = []
    for m in state.modalities:
        s = _head_scores(state, m, state.feats[:, _index(state, m)])
        row = {"modality": m, "itfn_accuracy": s["accuracy"], "itfn_macro_recall": s["macro_recall"]}
        if oracle is not None:
            from mmlab.evaluate import predict

            masks = draw_masks(make_generator("fixed", pattern_name([m])), pad_masks(state.part), state.modalities, 0)
            from mmlab.evaluate import classifier_scores

            logits = predict(oracle, state.part, masks)
            row["oracle_accuracy"] = classifier_scores(logits, state.part.y, state.part.n_classes)["accuracy"]
        rows.append(row)
    return rows


def feature_stats(state: "DiffusionState") -> list[dict[str, Any]]:
    """Per modality: mean / std of the raw ITFN features and of the standardised ones fed to the
    ADN (ADMC choice A8: per-dimension z-scoring with train statistics)."""
    m = state.method
    with torch.no_grad():
        raw = m.standardizer.inverse(state.feats)
    rows = []
    for j, name in enumerate(state.modalities):
        r, z = raw[:, j], state.feats[:, j]
        rows.append({"modality": name, "raw_mean": float(r.mean()), "raw_std": float(r.std()),
                     "standardised_mean": float(z.mean()), "standardised_std": float(z.std())})
    return rows


def feature_projection(state: "DiffusionState", modality: str, projection: str | None = None) -> np.ndarray:
    """2-D projection of the real test features of one modality (cached)."""
    return _reducer(state, modality, projection or state.projection)[1]


def trajectory_distances(state: "DiffusionState", start_step: int = 50, sampler: str = "ddpm",
                         num_steps: int | None = None, modality: str | None = None) -> dict[str, Any]:
    """Distance of each tracked sample's generated token to its real feature at every visited
    step of the reverse process (Eq. 3-4): {"steps": [n..0], "distances": (n_track, S+1)}."""
    modality = modality or state.modalities[-1]
    n, sampler, k = _norm_steps(state, start_step, sampler, num_steps)
    comp = _completion(state, modality, n, sampler, k)
    real = _real(state, modality)[: state.n_track]
    return {"steps": comp["steps"], "distances": np.linalg.norm(comp["paths"] - real[:, None, :], axis=-1),
            "real_spread": float(np.linalg.norm(_real(state, modality) - _real(state, modality).mean(0), axis=1).mean())}


def step_sweep(state: DiffusionState, start_steps: Sequence[int] = (0, 10, 30, 50, 80, 150), modality: str | None = None,
               sampler: str = "ddpm", num_steps: int | None = None) -> list[dict[str, Any]]:
    """Generated-feature accuracy and distance to the real features against the start step n,
    for one target modality (the Table 4 columns, as a curve)."""
    rows = []
    for n in start_steps:
        v = diffusion_view(state, int(n), sampler, num_steps, modality, 0, projection="pca")
        rows.append({"direction": v["direction"], "start_step": v["start_step"], "num_steps": v["num_steps"],
                     "generated_accuracy": v["generated_accuracy"], "generated_macro_recall": v["generated_macro_recall"],
                     "real_accuracy": v["real_accuracy"], "distance": v["distance"]})
    return rows
