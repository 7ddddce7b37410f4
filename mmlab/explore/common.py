"""Constants, caches and run helpers the explorer views share (mmlab.explore)."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError

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
    Notebooks 03, 04 and 06 ask for the same key and so share one training."""
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
