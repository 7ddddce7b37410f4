"""Small shared helpers: seeding, devices, run folders, atomic writes."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmlab.errors import ConfigError


def seed_sequence(*parts: int | str) -> np.random.SeedSequence:
    """The one way to derive randomness from a seed: ``SeedSequence`` over ``parts``.

    Integers enter as they are, so ``numpy_rng(1111)`` is ``np.random.default_rng(1111)`` and
    ``numpy_rng(seed, stage, epoch)`` is ``default_rng(SeedSequence([seed, stage, epoch]))``;
    a string part (e.g. ``"predict"``) enters as the first 32 bits of its SHA-256.
    """
    words: list[int] = []
    for p in parts:
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer, str)):
            raise ConfigError(f"seed part: expected a non-negative integer or a string, got {p!r}")
        if isinstance(p, str):
            words.append(int.from_bytes(hashlib.sha256(p.encode()).digest()[:4], "little"))
        elif p < 0:
            raise ConfigError(f"seed part: expected a non-negative integer, got {p!r}")
        else:
            words.append(int(p))
    if not words:
        raise ConfigError("seed_sequence: expected at least one seed part")
    return np.random.SeedSequence(words[0] if len(words) == 1 else words)


def numpy_rng(*parts: int | str) -> np.random.Generator:
    """A numpy generator for ``parts`` (`seed_sequence`); never the global numpy state."""
    return np.random.default_rng(seed_sequence(*parts))


def derive_seed(*parts: int | str) -> int:
    """A 63-bit integer seed for ``parts`` (`seed_sequence`), e.g. for ``torch.manual_seed``."""
    return int(seed_sequence(*parts).generate_state(1, np.uint64)[0] >> np.uint64(1))


def torch_generator(*parts: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """An explicit torch generator. One integer part seeds it directly (``manual_seed(seed)``);
    several parts go through `derive_seed`."""
    g = torch.Generator(device=device)
    g.manual_seed(int(parts[0]) if len(parts) == 1 and not isinstance(parts[0], str) else derive_seed(*parts))
    return g


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA when present) -> torch.device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: expected 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} was asked for but no CUDA device is available")
    return dev


def new_run_dir(root: str | os.PathLike, prefix: str = "") -> Path:
    """Create a fresh run folder ``root/<prefix><timestamp>`` that never overwrites another."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / f"{prefix}{stamp}{'' if i == 0 else f'-{i}'}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {root}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())
