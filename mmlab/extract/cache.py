"""An on-disk cache of per-file features, keyed by file content and extractor settings.

The key is the SHA-256 of a version string, the extractor's settings (a sorted JSON dict) and
the bytes of the media (for a face folder: each image's name and bytes, in order). Renaming or
moving a file keeps its entry; changing a byte or a setting makes a new one. Entries are
``.npy`` files written atomically, so workers can share the folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from mmlab.utils import atomic_write_bytes

CACHE_VERSION = "mmlab-extract-v1"


def default_cache_dir() -> Path:
    """``$MMLAB_CACHE/extract``, else ``~/.cache/mmlab/extract``."""
    root = os.environ.get("MMLAB_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "mmlab") / "extract"


def content_hash(paths: list[Path]) -> str:
    """SHA-256 over the names (for several files) and the bytes of ``paths``, in order."""
    h = hashlib.sha256()
    for p in paths:
        if len(paths) > 1:
            h.update(p.name.encode() + b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\1")
    return h.hexdigest()


def cache_key(content: str, settings: dict) -> str:
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(f"{CACHE_VERSION}\0{blob}\0{content}".encode()).hexdigest()


class FeatureCache:
    """Get and put arrays by key under ``folder`` (``None``: no caching)."""

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder).expanduser() if folder is not None else None
        self.hits = 0

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        if self.folder is None or not self._path(key).is_file():
            return None
        try:
            a = np.load(self._path(key), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # unreadable entry: recompute and overwrite
        self.hits += 1
        return a

    def put(self, key: str, value: np.ndarray) -> None:
        if self.folder is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
