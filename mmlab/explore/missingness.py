"""The missingness explorer's pure functions (notebook 05): predictions of a trained method and
of the Bayes oracle under seeded masks, sweeps, mask galleries and fill examples."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.metrics import accuracy, confusion_matrix, macro_recall, per_class_recall
from mmlab.missing import Masks, all_patterns, draw_masks, make_protocol, resolve_fill, pad_masks, pattern_name
from mmlab.explore.common import PROTOCOLS, RATE_PROTOCOLS, _LRU

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
    from mmlab.methods.oracle import oracle_of

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
        f = resolve_fill(fill, state.train)
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
        fill = resolve_fill(name, data)
        b = mask_batch(batch, masks, fill, generator=torch_generator(seed))
        out[name] = b.feats[modality][0, :length].numpy()
    out["observed"] = masks.obs[modality][0, :length]
    return out
