"""A restricted unpickler for the pickled feature files of the licensed benchmarks.

`pickle.load` runs whatever a file asks for: a pickle can call ``os.system`` while it loads.
`safe_load` resolves globals from a fixed allow-list instead, namely what numpy arrays, numpy
scalars and builtin containers need, and refuses everything else with `UnsafePickleError`
before anything is called.

Torch tensors (MIntRec stores its wav2vec2 audio features as tensors) are admitted with
``allow_torch=True`` (the default): a pickled tensor is ``torch._utils._rebuild_tensor_v2``
applied to a storage that torch serialises as bytes and would decode with
``torch.load(weights_only=False)``; we decode those bytes with ``torch.load(weights_only=True)``
(torch's own restricted unpickler) instead, and check the rebuild arguments. With
``allow_torch=False`` such files are refused with a message that says how to convert them.

Files written by ``joblib.dump`` (CIDer's OOD pickles) are refused here; `mmlab.data.safe_joblib`
reads them with the same allow-list (joblib's array wrapper and the raw array bytes after it,
compressed or not). Pandas objects are refused: store numpy arrays.

Memory is bounded by the file's budget (`mmlab.data.budget`; ``max_bytes`` / ``MMLAB_MAX_BYTES``,
default 4 GiB): every array, copy and container an allowed call builds while unpickling is
charged before it is built, and the result is then measured with every shared reference counted
at each use (`expanded_nbytes`), as converting it to arrays would; a few hundred bytes that nest
one list in itself a billion times are refused in a few steps, before any conversion.
"""

from __future__ import annotations

import contextvars
import io
import os
import pickle
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from mmlab.data.budget import MAX_DEPTH, Budget, expanded_nbytes, nbytes_of
from mmlab.errors import DataError, UnsafePickleError

try:  # numpy >= 2 moved the internals to numpy._core; numpy.core only warns
    from numpy._core import multiarray as _ma
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _ma  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class _NDArrayClass:
    """Stands in for ``numpy.ndarray`` inside a pickle: usable as `_reconstruct`'s argument,
    but calling it (which would allocate an arbitrary shape) is refused."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError("a pickle called numpy.ndarray(...) directly; arrays must come from _reconstruct")


_NDARRAY = _NDArrayClass()
_METER: contextvars.ContextVar[Budget] = contextvars.ContextVar("mmlab_unpickle_meter")


def _charge(nbytes: int, what: str) -> None:
    """Charge what an allowed call is about to build to the running unpickler's budget."""
    meter = _METER.get(None)
    if meter is not None:
        meter.charge(nbytes, f"unpickling {what}")


class _PickledArray(np.ndarray):
    """The arrays a pickle builds: ``__setstate__`` (the pickle's BUILD, which copies the data)
    is charged first; `_plain` turns them into plain ndarrays (views) after loading."""

    def __setstate__(self, state: Any) -> None:
        try:
            shape, dtype = (state[1], state[2]) if len(state) == 5 else (state[0], state[1])
            nbytes = nbytes_of(shape, dtype) + (8 * nbytes_of(shape, "u1") if np.dtype(dtype).hasobject else 0)
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"malformed array state in the pickle ({type(err).__name__}: {err})") from None
        _charge(nbytes, f"an array {tuple(shape) if not isinstance(shape, int) else (shape,)} {np.dtype(dtype)}")
        np.ndarray.__setstate__(self, state)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _NDARRAY and subtype is not np.ndarray:
        raise UnsafePickleError(f"_reconstruct of {subtype!r}: only numpy.ndarray is allowed")
    _charge(nbytes_of(shape, dtype), f"an array of shape {shape}")
    return _ma._reconstruct(_PickledArray, shape, dtype)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    return _numeric._frombuffer(buf, dtype, shape, order)  # a view of bytes in the file


def _scalar(dtype: Any, *args: Any) -> Any:
    _charge(np.dtype(dtype).itemsize, f"a numpy scalar {np.dtype(dtype)}")
    return _ma.scalar(dtype, *args)


def _codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # protocol-2 pickles store bytes as _codecs.encode(str, "latin1")
    if not isinstance(obj, str) or str(encoding).lower().replace("-", "").replace("_", "") not in ("latin1", "utf8"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    _charge(4 * len(obj), "bytes")
    return obj.encode(encoding, errors)


def _copying(kind: type, per_item: int) -> Callable[..., Any]:
    """``kind(x)`` copies ``x``: charge ``per_item`` bytes per item first. ``bytes(10**12)`` /
    ``bytearray(10**12)`` (a size, not data) are refused outright."""

    def make(*args: Any) -> Any:
        if args and isinstance(args[0], int) and kind in (bytes, bytearray):
            raise UnsafePickleError(f"{kind.__name__}(int) is not allowed in a pickle")
        if args:
            try:
                n = len(args[0])
            except TypeError:
                raise UnsafePickleError(f"{kind.__name__}() of a {type(args[0]).__name__} is not allowed in a pickle") from None
            _charge(per_item * n, f"a {kind.__name__} of {n} items")
        return kind(*args)

    return make


def _scalar_only(kind: type) -> Callable[..., Any]:
    """``str(x)``, ``int(x)``, ``float(x)``, ``complex(x)`` of numbers and strings only (``str``
    of a shared nested list would write out all of it)."""

    def make(*args: Any) -> Any:
        if any(not isinstance(a, (str, bytes, int, float, complex)) for a in args):
            raise UnsafePickleError(f"{kind.__name__}() of {[type(a).__name__ for a in args]} is not allowed in a pickle")
        if args and isinstance(args[0], (str, bytes)):
            _charge(4 * len(args[0]), f"a {kind.__name__}")
        return kind(*args)

    return make


_BUILTINS = {
    "list": _copying(list, 8), "dict": _copying(dict, 64), "set": _copying(set, 32),
    "frozenset": _copying(frozenset, 32), "tuple": _copying(tuple, 8), "bytes": _copying(bytes, 1),
    "bytearray": _copying(bytearray, 1), "str": _scalar_only(str), "int": _scalar_only(int),
    "float": _scalar_only(float), "complex": _scalar_only(complex), "bool": bool, "slice": slice,
}

_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _copying(__import__("collections").OrderedDict, 64),
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _reconstruct
    _ALLOWED[(_mod, "scalar")] = _scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _frombuffer
for _mod in ("builtins", "__builtin__"):
    for _name, _obj in _BUILTINS.items():
        _ALLOWED[(_mod, _name)] = _obj

_TORCH_GLOBALS = {("torch._utils", "_rebuild_tensor_v2"), ("torch.storage", "_load_from_bytes")}

CONVERT_HINT = (
    "convert it once, in a trusted environment, to a dict of numpy arrays, e.g. "
    "`pickle.dump({k: v.numpy() for k, v in pickle.load(f).items()}, out)`"
)


def _torch_globals(where: str) -> dict[tuple[str, str], Any]:
    import torch

    def load_storage(b: bytes) -> Any:
        if not isinstance(b, (bytes, bytearray)):
            raise UnsafePickleError(f"{where}: torch storage payload must be bytes")
        _charge(len(b), "a torch storage")
        try:
            return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")
        except Exception as err:  # torch's own restricted unpickler refused or failed
            raise DataError(f"{where}: a torch storage inside the pickle could not be read safely ({err})") from None

    def rebuild(storage: Any, offset: int, size: Any, stride: Any, requires_grad: bool = False,
                backward_hooks: Any = None, metadata: Any = None) -> Any:
        if not isinstance(storage, (torch.storage.TypedStorage, torch.storage.UntypedStorage)):
            raise UnsafePickleError(f"{where}: _rebuild_tensor_v2 got {type(storage).__name__}, not a torch storage")
        if backward_hooks:
            raise UnsafePickleError(f"{where}: a pickled tensor carries backward hooks; refused")
        return torch._utils._rebuild_tensor_v2(storage, int(offset), tuple(size), tuple(stride), False, None)

    return {("torch._utils", "_rebuild_tensor_v2"): rebuild, ("torch.storage", "_load_from_bytes"): load_storage}


class _Restricted:
    """The allow-list: `find_class` and `persistent_load` of every unpickler here (the C one
    below, the pure-Python one of `mmlab.data.safe_joblib`)."""

    where: str
    allow_torch: bool
    _torch: dict[tuple[str, str], Any] | None

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if key in _TORCH_GLOBALS:
            if not self.allow_torch:
                raise UnsafePickleError(
                    f"{self.where}: holds torch tensors ({module}.{name}) and allow_torch=False; {CONVERT_HINT}"
                )
            if self._torch is None:
                self._torch = _torch_globals(self.where)
            return self._torch[key]
        hint = ""
        if module.startswith("joblib"):
            hint = " (a joblib file: read it with mmlab.data.safe_joblib.safe_load_joblib)"
        elif module.startswith("pandas"):
            hint = " (pandas objects are not supported: store numpy arrays)"
        raise UnsafePickleError(
            f"{self.where}: refused global {module}.{name}: the safe unpickler only admits numpy arrays, "
            f"numpy scalars, builtin containers and torch tensors{hint}. Nothing from the file was executed."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.where}: persistent ids ({repr(pid)[:40]}) are not allowed (is this a torch.save file?)")


class _RestrictedUnpickler(_Restricted, pickle.Unpickler):
    def __init__(self, file: IO[bytes], where: str, allow_torch: bool) -> None:
        super().__init__(file, encoding="latin1")  # latin1: py2 numpy pickles keep their bytes
        self.where, self.allow_torch = where, allow_torch
        self._torch = None


def safe_load(path_or_file: str | os.PathLike | IO[bytes], *, allow_torch: bool = True,
              budget: Budget | None = None, max_bytes: int | str | None = None) -> Any:
    """Unpickle with an allow-list; raise `UnsafePickleError` on any other global.

    What the pickle builds, and what it holds once shared references are expanded, is charged
    to ``budget`` (default: a fresh per-file `Budget` of ``max_bytes``, else ``MMLAB_MAX_BYTES``,
    else 4 GiB); a loader passes its file's budget and charges what it builds next to it too.
    Every other failure (missing, truncated or corrupt file) becomes a `DataError` naming the
    file; no exception type other than `DataError` leaves this function.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        where = str(path_or_file)
        path = Path(path_or_file)
        if not path.is_file():
            raise DataError(f"{where}: pickle file not found")
        budget = budget or Budget(where, max_bytes)
        size = path.stat().st_size
        if size > budget.left:  # everything a pickle holds is read into memory
            raise DataError(budget.message(size, "the pickle itself"))
        try:
            with open(path, "rb") as fh:
                if fh.read(4) == b"PK\x03\x04":
                    raise DataError(
                        f"{where}: not a readable pickle: it is a zip archive (a torch.save or .npz file?). "
                        "Load it where you trust it and re-save a dict of numpy arrays with pickle"
                    )
                fh.seek(0)
                return _load(fh, where, allow_torch, budget)
        except OSError as err:
            raise DataError(f"{where}: cannot read pickle ({err})") from None
    where = str(getattr(path_or_file, "name", "<pickle stream>"))
    return _load(path_or_file, where, allow_torch, budget or Budget(where, max_bytes))


def _load(fh: IO[bytes], where: str, allow_torch: bool, budget: Budget,
          unpickler: Callable[[IO[bytes], str, bool], Any] = _RestrictedUnpickler) -> Any:
    meter = Budget(where, budget.left)  # what unpickling itself may build
    token = _METER.set(meter)
    try:
        obj = unpickler(fh, where, allow_torch).load()
        _METER.reset(token)
        token = None
        obj = _plain(obj, where)
        budget.charge(expanded_nbytes(obj, budget), "contents (shared references expanded)")
        return obj
    except DataError as err:  # UnsafePickleError included
        msg = str(err)
        raise type(err)(msg if msg.startswith(where) else f"{where}: {msg}") from None
    except MemoryError:
        raise DataError(f"{where}: pickle asks for more memory than is available (corrupt or hostile file)") from None
    except RecursionError:
        raise DataError(f"{where}: pickle is nested too deeply") from None
    except Exception as err:  # truncated / corrupt streams raise many types
        raise DataError(f"{where}: not a readable pickle ({type(err).__name__}: {err})") from None
    finally:
        if token is not None:
            _METER.reset(token)


def _plain(obj: Any, where: str) -> Any:
    """``obj`` with every `_PickledArray` replaced by a plain ndarray view (no copy); containers
    are updated in place (tuples rebuilt), shared ones once."""
    done: dict[int, Any] = {}

    def conv(x: Any, depth: int) -> Any:
        if not isinstance(x, (np.ndarray, list, tuple, dict)):
            return x
        key = id(x)
        if key in done:
            return done[key]
        if depth > MAX_DEPTH:
            raise DataError(f"{where}: containers nested more than {MAX_DEPTH} levels deep; refused")
        if isinstance(x, np.ndarray):
            out = x.view(np.ndarray) if isinstance(x, _PickledArray) else x
            done[key] = out
            if out.dtype.hasobject:
                for i, item in enumerate(out.flat):
                    new = conv(item, depth + 1)
                    if new is not item:
                        out.flat[i] = new
            return out
        if isinstance(x, tuple):
            done[key] = x  # a tuple that holds itself keeps its old items (refused as cyclic later)
            items = [conv(item, depth + 1) for item in x]
            out = x if all(a is b for a, b in zip(items, x)) else tuple(items)
            done[key] = out
            return out
        done[key] = x
        pairs = x.items() if isinstance(x, dict) else enumerate(x)
        for k, item in list(pairs):
            new = conv(item, depth + 1)
            if new is not item:
                x[k] = new
        return x

    return conv(obj, 0)


def safe_load_npy(path: str | os.PathLike, max_bytes: int | str | None = None, budget: Budget | None = None) -> np.ndarray:
    """Read a ``.npy`` file; object arrays (pickled payload) go through the restricted unpickler.

    Shapes and dtypes are checked from the header against the file's budget before any data is
    read; structured (void) dtypes are refused.
    """
    where = str(path)
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{where}: file not found")
    budget = budget or Budget(where, max_bytes)
    try:
        with open(p, "rb") as fh:
            shape, fortran, dtype = read_npy_header(fh, where)
            if dtype.kind == "V" or dtype.fields is not None or dtype.subdtype is not None:
                raise DataError(f"{where}: structured or void dtype {dtype} is not allowed; store plain numbers or strings")
            budget.charge(nbytes_of(shape, dtype), f"array {shape} {dtype}")
            if dtype.hasobject:
                arr = _load(fh, where, False, budget)
                if not isinstance(arr, np.ndarray):
                    raise DataError(f"{where}: object .npy did not hold an array")
                return arr
            data_start = fh.tell()
            n = nbytes_of(shape, "u1")
            if p.stat().st_size - data_start < n * dtype.itemsize:
                raise DataError(f"{where}: truncated .npy (header says {shape} {dtype}, file too short)")
            arr = np.fromfile(fh, dtype=dtype, count=n)
            return arr.reshape(shape, order="F" if fortran else "C")
    except DataError:
        raise
    except (OSError, ValueError, MemoryError) as err:
        raise DataError(f"{where}: not a readable .npy file ({err})") from None


def read_npy_header(fh: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the ``.npy`` stream at ``fh``; leaves ``fh`` at the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        elif version == (3, 0):  # utf-8 header; no public reader
            impl = getattr(fmt, "_read_array_header", None)
            if impl is None:
                from numpy.lib import _format_impl

                impl = _format_impl._read_array_header
            shape, fortran, dtype = impl(fh, version)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as err:
        raise DataError(f"{where}: not a valid .npy array header ({err})") from None
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype)
