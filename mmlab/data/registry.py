"""The dataset registry: ``name -> loader``; `load_dataset` also accepts a path to a file.

A name may carry options after a colon, ``name:opt,opt`` (e.g. ``mosi:aligned,seven,ood``),
which the entry's ``options`` turns into loader keywords (entries without it take none).

Loaders for licensed datasets look for their files under a data root: the ``data_root``
argument, else the ``MMLAB_DATA_ROOT`` environment variable, else ``~/mmlab_data``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mmlab.data.dataset import MMDataset
from mmlab.errors import UnknownDatasetError

DATA_ROOT_ENV = "MMLAB_DATA_ROOT"


@dataclass
class DatasetEntry:
    """One registered dataset: how to load it, its data card, and how to tell if it is here."""

    name: str
    loader: Callable[..., MMDataset]
    description: str
    card: str  # file name in data_cards/
    bundled: bool = False  # ships with mmlab (always found)
    find: Callable[[Path], Path | None] | None = None  # where its files are under a data root
    aliases: tuple[str, ...] = field(default_factory=tuple)
    options: Callable[[list[str]], dict[str, Any]] | None = None  # "name:a,b" tokens -> loader keywords


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    for key in (entry.name, *entry.aliases):
        _REGISTRY[key.lower()] = entry
    return entry


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    if explicit is not None:
        return Path(explicit).expanduser()
    return Path(os.environ.get(DATA_ROOT_ENV, "~/mmlab_data")).expanduser()


def list_datasets(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per registered dataset: name, description, card, found, location."""
    _ensure_builtins()
    rows, seen = [], set()
    base = data_root(root)
    for entry in _REGISTRY.values():
        if entry.name in seen:
            continue
        seen.add(entry.name)
        where = None
        if entry.bundled:
            found, where = True, "bundled"
        elif entry.find is not None:
            path = entry.find(base)
            found, where = path is not None, str(path) if path else f"not under {base}"
        else:
            found = False
        rows.append(
            {"name": entry.name, "description": entry.description, "card": entry.card, "found": found, "where": where}
        )
    return rows


def get_entry(name: str) -> DatasetEntry:
    _ensure_builtins()
    entry = _REGISTRY.get(name.lower())
    if entry is None:
        known = sorted({e.name for e in _REGISTRY.values()})
        raise UnknownDatasetError(
            f"unknown dataset {name!r}: expected one of {known} or a path to an existing .npz file"
        )
    return entry


def load_dataset(name_or_path: str | os.PathLike, data_root_dir: str | os.PathLike | None = None, **kwargs: Any) -> MMDataset:
    """Load a registered dataset by name (``name:opt,opt`` passes options, see the module
    docstring), or a bring-your-own ``.npz`` file by path."""
    text = str(name_or_path)
    _ensure_builtins()
    base, colon, opts = text.partition(":")
    if colon and base.lower() in _REGISTRY and not Path(text).expanduser().exists():
        entry = _REGISTRY[base.lower()]
        if entry.options is None:
            raise UnknownDatasetError(f"dataset {entry.name!r} takes no options, got {text!r}")
        kwargs = {**entry.options([o for o in opts.split(",") if o.strip()]), **kwargs}
        return entry.loader(**kwargs) if entry.bundled or entry.find is None else \
            entry.loader(root=data_root(data_root_dir), **kwargs)
    path = Path(text).expanduser()
    if text.lower() not in _REGISTRY and (path.suffix == ".npz" or path.exists()):
        from mmlab.data.byo import load_npz

        return load_npz(path, **kwargs)
    entry = get_entry(text)
    if entry.bundled or entry.find is None:
        return entry.loader(**kwargs)
    return entry.loader(root=data_root(data_root_dir), **kwargs)


_BUILTINS_LOADED = False


def _ensure_builtins() -> None:
    """Import the modules that register the built-in datasets (once, lazily)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    import importlib

    for mod in ("mmlab.data.synthetic", "mmlab.data.synthetic_text", "mmlab.data.handwritten", "mmlab.data.licensed"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:  # a module not written yet must not break the others
            if err.name != mod:
                raise
