"""Memory budgets: what loading one file may take, checked before anything is allocated.

Every loader (bring-your-own ``.npz``, the MMIN HDF5 files, the MIntRec and MMSA pickles) and
`mmlab data validate` add up the bytes a file would take in memory (arrays as declared, after
decompression; the float32 copies and the zero-padded (N, T_max, D) arrays the loader builds
from them; pickled containers with every shared reference counted each time it is used, as
converting them to arrays would) and refuse the file with a `DataError` naming the file, the
array and the size when the sum passes the budget.

The budget is per file: ``max_bytes`` where a loader takes it, else the ``MMLAB_MAX_BYTES``
environment variable (bytes, or a size such as ``512MiB``, ``8GiB``, ``2e9``), else 4 GiB.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np

from mmlab.errors import DataError

DEFAULT_MAX_BYTES = 4 * 2**30
MAX_BYTES_ENV = "MMLAB_MAX_BYTES"
MAX_DEPTH = 32  # nesting of pickled containers (real files: dict -> dict -> list -> array)
OVERRIDE = f"pass max_bytes=... or set {MAX_BYTES_ENV}, e.g. {MAX_BYTES_ENV}=16GiB"
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*$")


def parse_bytes(value: int | float | str, where: str = "max_bytes") -> int:
    """``4294967296``, ``2e9``, ``"512MiB"``, ``"8GiB"``, ``"3GB"`` -> bytes (a positive int)."""
    if isinstance(value, bool):
        raise DataError(f"{where}: expected a size in bytes, got {value!r}")
    if isinstance(value, (int, np.integer)):
        n = int(value)
    elif isinstance(value, float):
        n = int(value) if math.isfinite(value) else -1
    else:
        m = _SIZE_RE.match(str(value).lower())
        if not m or m.group(2) not in _UNITS:
            raise DataError(f"{where}: expected a size in bytes such as 4294967296, 2e9, 512MiB or 8GiB, got {value!r}")
        n = int(float(m.group(1)) * _UNITS[m.group(2)])
    if n <= 0:
        raise DataError(f"{where}: expected a positive size in bytes, got {value!r}")
    return n


def max_bytes(explicit: int | float | str | None = None) -> int:
    """The per-file budget: ``explicit``, else ``$MMLAB_MAX_BYTES``, else 4 GiB."""
    if explicit is not None:
        return parse_bytes(explicit)
    env = os.environ.get(MAX_BYTES_ENV)
    if env is not None and env.strip():
        return parse_bytes(env, f"environment variable {MAX_BYTES_ENV}")
    return DEFAULT_MAX_BYTES


def fmt_bytes(n: int | float) -> str:
    """``2684354560`` -> ``"2.5 GiB"``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"  # pragma: no cover


def nbytes_of(shape: Any, dtype: Any) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` (Python ints: no overflow)."""
    n = 1
    for s in (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape):
        if int(s) < 0:
            raise DataError(f"negative array dimension {s} in shape {shape}")
        n *= int(s)
    return n * np.dtype(dtype).itemsize


class Budget:
    """The bytes one file's load may still take; `charge` before each planned allocation."""

    def __init__(self, where: str, limit: int | float | str | None = None) -> None:
        self.where, self.limit, self.used = str(where), max_bytes(limit), 0

    @property
    def left(self) -> int:
        return self.limit - self.used

    def charge(self, nbytes: int, what: str, hint: str = "") -> None:
        """Add ``nbytes`` for ``what`` (``"[key] (12, 1000000, 768) float32"`` or words); raise
        a `DataError` naming the file, ``what`` and the sizes when the total passes the limit."""
        if self.used + nbytes > self.limit:
            raise DataError(self.message(nbytes, what, hint))
        self.used += int(nbytes)

    def message(self, nbytes: int, what: str, hint: str = "") -> str:
        total = self.used + nbytes
        before = f" ({fmt_bytes(total)} with what this file already needs)" if self.used else ""
        return (f"{self.where}{' ' if what.startswith('[') else ': '}{what} would take {fmt_bytes(nbytes)} in memory"
                f"{before}, over the memory budget of {fmt_bytes(self.limit)} per file; refused before allocating"
                f"{'; ' + hint if hint else ''} ({OVERRIDE} to allow it)")


def _key(k: Any) -> str:
    return f"[{k!r}]" if not isinstance(k, str) else f"[{k}]"


def _at(where: str, path: str) -> str:
    return f"{where} {path}" if path else where


def _dict_items(d: dict) -> Any:
    for k, v in d.items():
        yield f"{k!r} (a key)", k
        yield k, v


def expanded_nbytes(obj: Any, budget: Budget) -> int:
    """Bytes ``obj`` takes once converted to arrays, each shared reference counted at every use.

    Arrays count ``nbytes`` (object arrays also their elements), tensors ``numel *
    element_size``, numbers 8, strings 4 per character; containers the sum of their items.
    Sub-results are memoised by identity, so a pickle that nests one list in itself a billion
    times is measured in a few steps and refused as soon as the sum passes what is left of
    ``budget`` (nothing is charged here); a container that holds itself, or nesting deeper than
    `MAX_DEPTH`, is refused too.
    """
    where, limit = budget.where, budget.left
    memo: dict[int, int] = {}
    active: set[int] = set()

    def size(x: Any, path: str, depth: int) -> int:
        if x is None or isinstance(x, (bool, int, float, complex, np.generic)):
            return 8 if not isinstance(x, np.generic) else max(8, x.itemsize)
        if isinstance(x, (str, bytes, bytearray)):
            return 4 * len(x) if isinstance(x, str) else len(x)
        key = id(x)
        if key in memo:
            return memo[key]
        if key in active:
            raise DataError(f"{_at(where, path)}: a container holds itself (a cyclic pickle); refused")
        if depth > MAX_DEPTH:
            raise DataError(f"{_at(where, path)}: containers nested more than {MAX_DEPTH} levels deep; refused")
        active.add(key)
        total, items = 64, ()
        if isinstance(x, np.ndarray):
            total, items = int(x.nbytes), (enumerate(x.flat) if x.dtype.hasobject else ())
        elif isinstance(x, dict):
            total, items = 0, _dict_items(x)
        elif isinstance(x, (list, tuple, set, frozenset)):
            total, items = 0, enumerate(x)
        elif callable(getattr(x, "numel", None)) and callable(getattr(x, "element_size", None)):  # torch.Tensor
            total = int(x.numel()) * int(x.element_size())
        for k, item in items:
            sub = size(item, path + _key(k), depth + 1)
            total += sub
            if total > limit:
                active.discard(key)
                raise DataError(
                    f"{_at(where, path)}: holds {fmt_bytes(total)} or more once shared references are expanded "
                    f"(as converting it to arrays would; {path + _key(k)} alone is {fmt_bytes(sub)}), over the "
                    f"memory budget of {fmt_bytes(budget.limit)} per file; refused before converting "
                    f"({OVERRIDE} to allow it)"
                )
        active.discard(key)
        memo[key] = total
        return total

    try:
        return size(obj, "", 0)
    except RecursionError:
        raise DataError(f"{where}: containers nested too deeply; refused") from None


def _extent(v: Any, where: str) -> tuple[int, int]:
    """(elements, widest item in bytes) that ``np.asarray(v)`` would produce for a nested list."""
    memo: dict[int, tuple[int, int]] = {}

    def ext(x: Any, depth: int) -> tuple[int, int]:
        if isinstance(x, np.ndarray):
            return x.size, x.dtype.itemsize
        if type(x).__module__.startswith("torch") and callable(getattr(x, "numel", None)):
            return int(x.numel()), int(x.element_size())
        if isinstance(x, str):
            return 1, 4 * len(x)
        if isinstance(x, bytes):
            return 1, len(x)
        if not isinstance(x, (list, tuple)):
            return 1, 8
        if id(x) in memo:
            return memo[id(x)]
        if depth > MAX_DEPTH:
            raise DataError(f"{where}: lists nested more than {MAX_DEPTH} levels deep; refused")
        n, width = 0, 1
        for item in x:
            k, w = ext(item, depth + 1)
            n, width = n + k, max(width, w)
        memo[id(x)] = (n, width)
        return n, width

    return ext(v, 0)


def checked_asarray(v: Any, budget: Budget, key: str) -> np.ndarray:
    """``np.asarray(v)`` for an array, a tensor or a (nested) list found at ``key`` of the
    budget's file, after charging the bytes a list becomes (shared references and string
    padding included). Arrays and tensors are returned without a copy."""
    where = f"{budget.where} {key}"
    if type(v).__module__.startswith("torch"):
        v = v.detach().cpu().numpy()  # shares the tensor's memory
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, (list, tuple)):
        n, width = _extent(v, where)
        budget.charge(n * width, f"{key}: a list of {n} values (widest {width} bytes) as an array")
        v = [x.detach().cpu().numpy() if type(x).__module__.startswith("torch") else x for x in v]
    try:
        return np.asarray(v)
    except (ValueError, TypeError) as err:
        raise DataError(f"{where}: cannot be read as an array ({err})") from None
