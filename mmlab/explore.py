"""The pure functions behind the explorer notebooks (04 missingness, 05 diffusion step n).

Notebooks only wire widgets; everything a slider move computes lives here, with caches so
that a move answers within ~2 s on a 2-core CPU:

- `missingness_view(state, protocol, value, fill, seed)`: predictions of a trained method and
  of the Bayes oracle under one seeded mask draw (accuracy, per-class recall, the gap to the
  oracle). Cached per (protocol, value, fill, seed).
- `diffusion_view(state, start_step, sampler, num_steps, modality, sample_index)`: ADMC's
  reverse process from step n (Eq. 3-4) generating one modality from the others: real vs
  generated features in 2-D (Fig. 3), the accuracy of the frozen unimodal ITFN head on the
  generated features (Table 4) and one sample's denoising trajectory. The encoded test
  features are computed once per state; completions are cached per (modality, n, sampler,
  steps); the projection is fitted once per modality on the REAL features and generated
  points are placed with ``transform`` (UMAP, PCA); t-SNE has no transform, so it is fitted
  jointly per completion and cached.

`MissingnessExplorer` and `DiffusionExplorer` build the ipywidgets + ``go.FigureWidget`` UI
around those functions (notebooks with ``interactive=True``); headless notebooks show the
same views as static figures (`mmlab.viz.missingness_figure`, `mmlab.viz.diffusion_figure`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from mmlab import viz
from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.metrics import accuracy, confusion_matrix, macro_recall, per_class_recall
from mmlab.missing import Masks, all_patterns, draw_masks, make_fill, make_protocol, pad_masks, pattern_name

RATE_PROTOCOLS = ("rate_drop", "rmm", "rmfm", "traditional_rmfm", "cpm")
PROTOCOLS = ("full", "fixed") + RATE_PROTOCOLS
PROJECTIONS = ("umap", "pca", "tsne")
SAMPLERS = ("ddpm", "ddim")


class _LRU(OrderedDict):
    """A tiny LRU dict: ``get_or(key, fn)`` computes a missing value once."""

    def __init__(self, size: int = 64):
        super().__init__()
        self.size = size

    def get_or(self, key: Any, fn: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = fn()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


# ============================================================================ trained models
def data_fingerprint(data: MMDataset) -> str:
    """A short hash of a dataset's identity (config for synthetic, else train ids/labels/dims)."""
    h = hashlib.sha1()
    h.update(repr((data.name, data.modalities, data.dims, data.info.get("config"))).encode())
    tr = data.split_indices("train")
    h.update("\n".join(data.ids[tr].tolist()).encode() + data.y[tr].tobytes())
    return h.hexdigest()[:12]


def override_args(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    """``{"adn.train.epochs": 40, "mmer": False}`` -> ``["--adn.train.epochs=40", "--mmer=false"]``
    (a list of such strings passes through). Notebook parameter cells use the dict form because
    papermill cannot parse a line holding more than one ``=``."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        fmt = lambda v: str(v).lower() if isinstance(v, bool) else "null" if v is None else str(v)  # noqa: E731
        return [f"--{k}={fmt(v)}" for k, v in overrides.items()]
    if isinstance(overrides, str):
        raise ConfigError(f"overrides: expected a dict or a list of --key=value strings, got the string {overrides!r}")
    return [str(o) for o in overrides]


def trained_method(name: str, data: MMDataset, out_dir: str | Path | None = None,
                   overrides: Mapping[str, Any] | Sequence[str] | None = (),
                   preset: str | None = None, device: str = "cpu", seed: int = 1111, progress: bool = False):
    """Train method ``name`` (or reload it: the Trainer resumes finished stages) into a cache
    folder keyed by (name, resolved config, data, seed, version): ``<out_dir>/models/...``
    inside a run, else ``$MMLAB_CACHE`` / ``~/.cache/mmlab`` (`mmlab.workspace.cache_dir`).
    Notebooks 02, 03 and 05 ask for the same key and so share one training."""
    import mmlab
    from mmlab.experiments import train_method
    from mmlab.workspace import cache_dir

    from mmlab.methods import make_method

    overrides = override_args(overrides)
    # the key holds the RESOLVED config, so a changed default of the method is a new folder
    resolved = make_method(name, data, overrides, preset=preset).config_dict()
    key = json.dumps([name, resolved, data_fingerprint(data), seed, device, mmlab.__version__], sort_keys=True,
                     default=str)
    folder = cache_dir(out_dir) / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    method = train_method(name, data, folder, overrides=list(overrides), device=device, seed=seed, preset=preset,
                          progress=progress)
    method.run_dir = folder
    return method


def training_log(method: Any) -> list[dict]:
    """Rows of the ``metrics.csv`` the Trainer wrote for a method from `trained_method`."""
    import csv

    path = Path(getattr(method, "run_dir", "")) / "metrics.csv"
    if not path.exists():
        return []
    with open(path) as fh:
        return [dict(r) for r in csv.DictReader(fh)]


# ============================================================================ missingness
@dataclass
class MissingnessState:
    """One evaluated split, a trained method and (on synthetic) the Bayes oracle, plus caches."""

    part: MMDataset
    method: Any
    oracle: Any | None = None
    train: MMDataset | None = None
    batch_size: int = 512
    cache: _LRU = field(default_factory=lambda: _LRU(96))

    @property
    def pad(self) -> dict[str, np.ndarray]:
        return self.cache.get_or(("pad",), lambda: pad_masks(self.part))

    @property
    def patterns(self) -> list[str]:
        """Names of the availability patterns, "{A}" .. "{VT}"."""
        return [p.name for p in all_patterns(self.part.modalities)]


def missingness_state(data: MMDataset, method: Any, split: str = "test", max_samples: int | None = None,
                      oracle: bool = True) -> MissingnessState:
    """A `MissingnessState` over ``split`` (its first ``max_samples`` rows when given)."""
    from mmlab.data.synthetic import oracle_of

    part = data.subset(split)
    if max_samples is not None:
        part = part.take(np.arange(min(int(max_samples), len(part))))
    orc = None
    if oracle:
        try:
            orc = oracle_of(data)
        except DataError:
            orc = None
    return MissingnessState(part=part, method=method, oracle=orc, train=data)


def make_generator(protocol: str, value: Any = None) -> Callable[..., Masks]:
    """The mask generator of an explorer setting: "full"; "fixed" with a pattern ("{AV}");
    or a rate protocol (`RATE_PROTOCOLS`) with a rate in [0, 1]."""
    if protocol == "full":
        return make_protocol("full")
    if protocol == "fixed":
        if value is None or isinstance(value, (int, float)):
            raise ConfigError(f"protocol 'fixed': expected an availability pattern such as '{{AV}}', got {value!r}")
        return make_protocol("fixed", available=value)
    if protocol in RATE_PROTOCOLS:
        try:
            rate = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"protocol {protocol!r}: expected a rate in [0, 1], got {value!r}") from None
        return make_protocol(protocol, rate=rate)
    raise ConfigError(f"protocol: expected one of {list(PROTOCOLS)}, got {protocol!r}")


def condition_label(protocol: str, value: Any = None) -> str:
    if protocol == "full":
        return "full input"
    if protocol == "fixed":
        return f"available {value}"
    return f"{protocol} rate={float(value):.2f}"


def _masks(state: MissingnessState, protocol: str, value: Any, seed: int) -> Masks:
    key = ("masks", protocol, value if protocol != "full" else None, seed)
    return state.cache.get_or(key, lambda: draw_masks(make_generator(protocol, value), state.pad,
                                                      state.part.modalities, seed))


def _logits(state: MissingnessState, who: str, masks: Masks, key: tuple, fill: str, seed: int) -> np.ndarray:
    from mmlab.evaluate import predict

    model = state.method if who == "method" else state.oracle

    def run() -> np.ndarray:
        f = make_fill(fill, state.train) if fill == "mean" else make_fill(fill)
        return predict(model, state.part, masks, batch_size=state.batch_size, seed=seed, fill=f)

    return state.cache.get_or(("logits", who) + key, run)


def missingness_view(state: MissingnessState, protocol: str = "fixed", value: Any = "{AV}", fill: str | None = None,
                     seed: int = 1111, rows: int = 30) -> dict[str, Any]:
    """Predictions of ``state.method`` and of the Bayes oracle under one seeded mask draw.

    ``fill``: the fill policy for the method ("zero", "mean", "noise"; None = the method's own).
    The oracle reads the observed frames only, so the fill does not change it. Returns labels,
    predictions, accuracy / macro recall / per-class recall / confusion of both, the gap to the
    oracle, missing rates, pattern counts and the masks of the first ``rows`` samples.
    """
    t0 = time.perf_counter()
    fill = fill or getattr(state.method, "fill", "zero")
    if protocol == "full":
        value = None
    masks = _masks(state, protocol, value, seed)
    key = (protocol, value, seed)
    logits = _logits(state, "method", masks, key + (fill,), fill, seed)
    y, C = state.part.y, state.part.n_classes
    pred = logits.argmax(1)
    out: dict[str, Any] = {
        "label": condition_label(protocol, value), "protocol": protocol, "value": value, "fill": fill, "seed": seed,
        "method": getattr(state.method, "name", "method"), "classes": list(state.part.classes), "y": y, "pred": pred,
        "accuracy": accuracy(y, pred), "macro_recall": macro_recall(y, pred, n_classes=C),
        "recall": per_class_recall(y, pred, n_classes=C), "confusion": confusion_matrix(y, pred, C),
        "oracle_pred": None, "oracle_accuracy": None, "oracle_macro_recall": None, "oracle_recall": None, "gap": None,
    }
    if state.oracle is not None:
        opred = _logits(state, "oracle", masks, key, "zero", seed).argmax(1)
        out.update(oracle_pred=opred, oracle_accuracy=accuracy(y, opred),
                   oracle_macro_recall=macro_recall(y, opred, n_classes=C),
                   oracle_recall=per_class_recall(y, opred, n_classes=C))
        out["gap"] = out["oracle_accuracy"] - out["accuracy"]
    names = [pattern_name([m for m, a in zip(state.part.modalities, row) if a]) if row.any() else "{}"
             for row in masks.avail]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    out.update(
        missing_rate=masks.missing_rate(state.pad), modality_missing_rate=masks.modality_missing_rate(),
        pattern_counts=dict(sorted(counts.items(), key=lambda kv: (len(kv[0]), kv[0]))),
        obs={m: o[:rows] for m, o in masks.obs.items()}, pad={m: p[:rows] for m, p in state.pad.items()},
        seconds=time.perf_counter() - t0,
    )
    return out


def missingness_sweep(state: MissingnessState, protocol: str = "rate_drop",
                      values: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), fill: str | None = None,
                      seed: int = 1111) -> dict[str, list[float]]:
    """Accuracy and macro recall of the method and the oracle along a rate sweep (ADMC Table 3)."""
    views = [missingness_view(state, protocol, v, fill, seed) for v in values]
    out = {"values": [float(v) for v in values]}
    for k in ("accuracy", "macro_recall", "oracle_accuracy", "oracle_macro_recall"):
        out[k] = [v[k] for v in views]
    return out


def pattern_rows(state: MissingnessState, fill: str | None = None, seed: int = 1111) -> list[dict[str, Any]]:
    """Method vs oracle on full input and every fixed pattern (ADMC Tables 1-2 layout)."""
    rows = []
    for protocol, value in [("full", None)] + [("fixed", p) for p in state.patterns]:
        v = missingness_view(state, protocol, value, fill, seed)
        rows.append({"condition": "full" if protocol == "full" else value, "accuracy": v["accuracy"],
                     "macro_recall": v["macro_recall"], "oracle_accuracy": v["oracle_accuracy"], "gap": v["gap"]})
    return rows


def mask_gallery(data: MMDataset, settings: dict[str, tuple[str, Any]] | None = None, split: str = "test",
                 seed: int = 1111) -> tuple[dict[str, Masks], dict[str, np.ndarray]]:
    """Masks of several protocols on the same rows, for `mmlab.viz.masks_figure`.

    ``settings``: title -> (protocol, value); the default shows one of each family.
    """
    part = data.subset(split)
    pad = pad_masks(part)
    mods = part.modalities
    if settings is None:
        settings = {
            "full": ("full", None),
            f"fixed {pattern_name(mods[:2])}": ("fixed", pattern_name(mods[:2])),
            "rate_drop 0.5 (ADMC Tab. 3)": ("rate_drop", 0.5),
            "RMM 0.3 (CIDer)": ("rmm", 0.3),
            "RMFM 0.3 (CIDer)": ("rmfm", 0.3),
            "CPM eta 0.3": ("cpm", 0.3),
        }
    return {title: draw_masks(make_generator(p, v), pad, mods, seed) for title, (p, v) in settings.items()}, pad


def rate_table(data: MMDataset, protocols: Sequence[str] = ("rate_drop", "rmm", "rmfm", "cpm"),
               rates: Sequence[float] = (0.1, 0.3, 0.5), split: str = "test", seed: int = 1111) -> list[dict[str, Any]]:
    """Nominal vs realised missingness of the rate protocols: the fraction of missing frames and
    of missing (sample, modality) entries, and how many samples keep no modality at all."""
    part = data.subset(split)
    pad = pad_masks(part)
    rows = []
    for protocol in protocols:
        for r in rates:
            masks = draw_masks(make_generator(protocol, r), pad, part.modalities, seed)
            rows.append({"protocol": protocol, "rate": float(r), "missing_frames": masks.missing_rate(pad),
                         "missing_modalities": masks.modality_missing_rate(),
                         "no_modality_left": float((~masks.avail.any(1)).mean())})
    return rows


def fill_examples(data: MMDataset, modality: str | None = None, protocol: str = "rmfm", value: Any = 0.5,
                  index: int = 0, split: str = "test", seed: int = 1111) -> dict[str, np.ndarray]:
    """One sample's (T, D) features of ``modality`` as stored and after each fill policy under
    one mask draw: {"complete", "zero", "mean", "noise"} (padding frames cut off)."""
    from mmlab.missing import mask_batch
    from mmlab.utils import torch_generator

    part = data.subset(split)
    modality = modality or part.modalities[0]
    pad = pad_masks(part)
    masks = draw_masks(make_generator(protocol, value), pad, part.modalities, seed).take([index])
    batch = part.batch([index])
    length = int(part.lengths[modality][index])
    out = {"complete": batch.feats[modality][0, :length].numpy()}
    for name in ("zero", "mean", "noise"):
        fill = make_fill(name, data) if name == "mean" else make_fill(name)
        b = mask_batch(batch, masks, fill, generator=torch_generator(seed))
        out[name] = b.feats[modality][0, :length].numpy()
    out["observed"] = masks.obs[modality][0, :length]
    return out


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
                    projection: str = "umap", seed: int = 0, n_track: int = 16, max_step: int = 200,
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
                           max_step=min(max_step, method.diffusion.n_steps))
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
        seed = int(hashlib.sha1(repr((state.seed,) + key).encode()).hexdigest()[:8], 16)
        gen = torch_generator(seed, feats.device)
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
    """Table 4 (A14): the frozen unimodal ITFN head on (de-standardised) features of ``modality``."""
    m, j = state.method, _index(state, modality)
    full = torch.zeros(len(z), len(state.modalities), z.shape[-1], dtype=z.dtype, device=z.device)
    full[:, j] = z
    with torch.no_grad():
        raw = m.standardizer.inverse(full)[:, j]
        pred = m.itfn_heads[modality](raw).argmax(1).cpu().numpy()
    y = state.part.y
    return {"accuracy": accuracy(y, pred), "macro_recall": macro_recall(y, pred, n_classes=state.part.n_classes),
            "pred": pred}


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
    """2-D real and generated points of one completion (cached). UMAP / PCA place the
    generated points with the reducer fitted on the real ones; t-SNE is fitted jointly."""

    def run() -> dict[str, np.ndarray]:
        red, real_xy = _reducer(state, modality, projection)
        if red is not None:
            return {"real": real_xy, "gen": _transform(red, comp["gen"])}
        joint = _tsne(np.concatenate([_real(state, modality), comp["gen"]]), state.seed)
        return {"real": joint[: len(real_xy)], "gen": joint[len(real_xy):]}

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
    return {
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
            pred = predict(oracle, state.part, masks).argmax(1)
            row["oracle_accuracy"] = accuracy(state.part.y, pred)
        rows.append(row)
    return rows


def feature_stats(state: "DiffusionState") -> list[dict[str, Any]]:
    """Per modality: mean / std of the raw ITFN features and of the standardised ones fed to the
    ADN (spec A8: per-dimension z-scoring with train statistics)."""
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


# ============================================================================ widgets
class MissingnessExplorer:
    """Protocol / pattern / rate / fill / seed controls over `missingness_view` and a
    ``FigureWidget`` (masks + per-class recall vs the Bayes oracle)."""

    def __init__(self, state: MissingnessState, protocol: str = "fixed", value: Any = None, fill: str | None = None,
                 seed: int = 1111):
        import ipywidgets as W
        import plotly.graph_objects as go

        self.state = state
        pats = state.patterns
        self.protocol = W.Dropdown(options=list(PROTOCOLS), value=protocol, description="protocol")
        self.pattern = W.Dropdown(options=pats, value=value if protocol == "fixed" and value in pats else pats[-1],
                                  description="available")
        self.rate = W.FloatSlider(value=float(value) if protocol in RATE_PROTOCOLS and value is not None else 0.3,
                                  min=0.0, max=1.0, step=0.05, description="rate", continuous_update=False)
        self.fill = W.Dropdown(options=["zero", "mean", "noise"], value=fill or getattr(state.method, "fill", "zero"),
                               description="fill")
        self.seed = W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed")
        self.summary = W.HTML()
        self.view = self._compute()
        self.figure = go.FigureWidget(viz.missingness_figure(self.view))
        self._show_summary()
        for w in (self.protocol, self.pattern, self.rate, self.fill, self.seed):
            w.observe(self._on_change, names="value")
        self._sync_visibility()
        self.widget = W.VBox([W.HBox([self.protocol, self.pattern, self.rate]), W.HBox([self.fill, self.seed]),
                              self.summary, self.figure])

    def _value(self) -> Any:
        p = self.protocol.value
        return self.pattern.value if p == "fixed" else None if p == "full" else self.rate.value

    def _compute(self) -> dict[str, Any]:
        return missingness_view(self.state, self.protocol.value, self._value(), self.fill.value, int(self.seed.value))

    def _sync_visibility(self) -> None:
        p = self.protocol.value
        self.pattern.layout.display = None if p == "fixed" else "none"
        self.rate.layout.display = None if p in RATE_PROTOCOLS else "none"

    def _show_summary(self) -> None:
        v = self.view
        gap = "" if v["oracle_accuracy"] is None else f" &middot; Bayes oracle <b>{v['oracle_accuracy']:.3f}</b> (gap {v['gap']:+.3f})"
        self.summary.value = (f"{v['label']}, fill={v['fill']}: accuracy <b>{v['accuracy']:.3f}</b>, "
                              f"UA {v['macro_recall']:.3f}{gap} &middot; missing frames {v['missing_rate']:.1%} "
                              f"&middot; {v['seconds'] * 1000:.0f} ms")

    def update(self) -> dict[str, Any]:
        """Recompute the view from the controls and refresh the figure in place."""
        self._sync_visibility()
        self.view = self._compute()
        viz.refresh(self.figure, viz.missingness_figure(self.view))
        self._show_summary()
        return self.view

    def _on_change(self, change: dict) -> None:
        self.update()


class DiffusionExplorer:
    """Start step n / sampler / steps / modality / sample / projection controls over
    `diffusion_view` and a ``FigureWidget`` (Fig. 3 scatter + one trajectory)."""

    def __init__(self, state: DiffusionState, start_step: int = 50, sampler: str = "ddpm", num_steps: int | None = None,
                 modality: str | None = None, sample_index: int = 0):
        import ipywidgets as W
        import plotly.graph_objects as go

        self.state = state
        style = {"description_width": "initial"}
        self.n = W.IntSlider(value=int(start_step), min=0, max=state.max_step, step=1, description="start step n",
                             continuous_update=False, style=style)
        self.sampler = W.ToggleButtons(options=list(SAMPLERS), value=sampler, description="sampler", style=style)
        self.steps = W.IntSlider(value=int(num_steps or start_step), min=1, max=state.max_step, description="steps",
                                 continuous_update=False, style=style)
        self.modality = W.Dropdown(options=list(state.modalities), value=modality or state.modalities[-1],
                                   description="generate")
        self.sample = W.IntSlider(value=int(sample_index), min=0, max=state.n_track - 1, description="sample",
                                  continuous_update=False)
        self.projection = W.Dropdown(options=list(PROJECTIONS), value=state.projection, description="projection")
        self.summary = W.HTML()
        self.view = self._compute()
        self.figure = go.FigureWidget(viz.diffusion_figure(self.view))
        self._show_summary()
        for w in (self.n, self.sampler, self.steps, self.modality, self.sample, self.projection):
            w.observe(self._on_change, names="value")
        self.widget = W.VBox([W.HBox([self.n, self.steps, self.sampler]),
                              W.HBox([self.modality, self.sample, self.projection]), self.summary, self.figure])

    def _compute(self) -> dict[str, Any]:
        return diffusion_view(self.state, self.n.value, self.sampler.value, self.steps.value, self.modality.value,
                              self.sample.value, self.projection.value)

    def _show_summary(self) -> None:
        v = self.view
        self.summary.value = (f"{v['direction']} from n={v['start_step']} ({v['sampler']}, {v['num_steps']} steps): "
                              f"ITFN-head accuracy on generated features <b>{v['generated_accuracy']:.3f}</b> "
                              f"(real {v['real_accuracy']:.3f}); mean distance to the real feature {v['distance']:.2f} "
                              f"(real spread {v['real_spread']:.2f}) &middot; {v['seconds'] * 1000:.0f} ms")

    def update(self) -> dict[str, Any]:
        """Recompute the view from the controls and refresh the figure in place."""
        self.view = self._compute()
        viz.refresh(self.figure, viz.diffusion_figure(self.view))
        self._show_summary()
        return self.view

    def _on_change(self, change: dict) -> None:
        self.update()
