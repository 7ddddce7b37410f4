"""Small shared helpers: seeding, devices, run folders, atomic writes."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmlab.errors import ConfigError, DataError


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


def first_best(scores: "np.typing.ArrayLike", decimals: int = 9) -> int:
    """Index of the first highest score: a setting chosen on valid among candidates listed
    cheapest first. Scores are compared at ``decimals`` places, so means of the same accuracies
    summed in another order (they differ in the last bits) still tie and the first one wins."""
    return int(np.argmax(np.round(np.asarray(scores, dtype=np.float64), decimals)))


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename, so a crash
    never leaves a partial file. The file gets the user's umask (not mkstemp's 0600). A failed
    write (read-only folder, full disk) raises `DataError` naming the file."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise DataError(f"{path}: cannot write here ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"{path}: cannot write ({err.strerror or err}); earlier files are untouched") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def ensure_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create folder ``path`` (and parents); a clear `DataError` when it is a file or cannot be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{what} {path}: is a file; expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{what} {path}: cannot create the folder ({err.strerror or err})") from None
    return path


class FolderLock:
    """One writer per folder: ``with FolderLock(path):`` creates ``path/.mmlab.lock`` holding this
    process's id and host; a second writer fails at once with a `DataError` naming the holder.
    A lock left by a process that no longer runs (same host) is stale and taken over. Locks are
    re-entrant within one process (a compare holding its folder may train inside it)."""

    NAME = ".mmlab.lock"
    _held: dict[str, int] = {}

    def __init__(self, folder: str | os.PathLike, what: str = "run folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / self.NAME

    def __enter__(self) -> "FolderLock":
        key = str(self.path.resolve())
        if self._held.get(key):
            self._held[key] += 1
            return self
        ensure_dir(self.folder)
        me = f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_umask())
            except FileExistsError:
                if not self._stale():
                    raise DataError(f"{self.folder}: another mmlab process is writing this {self.what} "
                                    f"({self._holder()}); wait for it, or use another folder") from None
                self.path.unlink(missing_ok=True)
                continue
            except OSError as err:
                raise DataError(f"{self.folder}: cannot lock the {self.what} ({err.strerror or err})") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            self._held[key] = 1
            return self
        raise DataError(f"{self.folder}: could not take the lock {self.path}")

    def __exit__(self, *exc: object) -> None:
        key = str(self.path.resolve())
        self._held[key] -= 1
        if self._held[key] == 0:
            del self._held[key]
            self.path.unlink(missing_ok=True)

    def _holder(self) -> str:
        try:
            pid, host, since = self.path.read_text().split()[:3]
            return f"process {pid} on {host} since {since}"
        except (OSError, ValueError):
            return "lock file unreadable"

    def _stale(self) -> bool:
        try:
            pid, host = self.path.read_text().split()[:2]
            pid_n = int(pid)
        except (OSError, ValueError):
            return True  # a torn lock file: its writer died while writing it
        if host != socket.gethostname():
            return False  # another machine's process: cannot tell, so not stale
        try:
            os.kill(pid_n, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
