"""Reading files written by ``joblib.dump`` without ``joblib.load`` (CIDer's OOD pickles).

joblib's format is a pickle stream in which every numpy array (exact type ``ndarray``) is replaced
by a ``joblib.numpy_pickle.NumpyArrayWrapper`` object, built (pickle BUILD) from a state dict
``{subclass, shape, order, dtype, allow_mmap[, numpy_array_alignment_bytes]}``, and followed in
the stream, outside any pickle frame, by the array itself:

* numbers and fixed-width strings: with joblib >= 1.2 one byte giving a padding length p and p
  padding bytes (16-byte alignment), then the raw bytes in ``order`` ('C' or 'F');
* object arrays: a nested, complete pickle (protocol 5) of the array.

`safe_load_joblib` reads that with a pure-Python unpickler (`pickle._Unpickler`, as joblib does)
that shares the allow-list of `mmlab.data.safe_pickle`: the wrapper class is a stand-in that
holds nothing, its state must name ``numpy.ndarray`` and a plain dtype, the array's bytes are
charged to the file's memory budget before they are allocated, and a nested pickle goes
through the same restricted unpickler. A plain pickle (no wrappers) reads the same way.

Compressed joblib files (``compress=``: zlib, gzip, bz2, xz, lzma) are decompressed as a
stream, refused once the decompressed bytes pass the budget; lz4 and the pre-0.10 formats
(arrays in companion files, ``ZF`` files) are refused with a message naming the file.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import pickle
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from mmlab.data.budget import Budget, fmt_bytes, nbytes_of
from mmlab.data.safe_pickle import _NDARRAY, CONVERT_HINT, _charge, _load, _Restricted
from mmlab.errors import DataError, UnsafePickleError

WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_OLD_WRAPPERS = {("joblib.numpy_pickle", "NDArrayWrapper"), ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
                 ("joblib.numpy_pickle", "ZNDArrayWrapper"), ("joblib.numpy_pickle_compat", "ZNDArrayWrapper")}
_PREFIXES = (  # joblib.compressor: the first bytes of each compressed format
    (b"ZF", "compat"), (b"\x04\x22\x4d\x18", "lz4"), (b"\x78", "zlib"), (b"\x1f\x8b", "gzip"),
    (b"BZ", "bz2"), (b"\xfd\x37\x7a\x58\x5a", "xz"), (b"\x5d\x00", "lzma"),
)
_CHUNK = 1 << 24  # bytes per read of an array's data


class _WrapperStub:
    """Stands in for ``NumpyArrayWrapper``: created empty, replaced by the array at its BUILD."""


class _Decompressed(io.RawIOBase):
    """A decompressing stream over ``fh`` that refuses to produce more than ``cap`` bytes."""

    def __init__(self, fh: IO[bytes], kind: str, cap: int, where: str) -> None:
        self.kind, self.cap, self.where, self.total = kind, cap, where, 0
        if kind in ("zlib", "gzip"):
            self._z, self._fh, self._inner = zlib.decompressobj(47), fh, None  # 47: zlib or gzip header
        else:
            self._inner = bz2.BZ2File(fh) if kind == "bz2" else lzma.LZMAFile(fh)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            n = self._inner.readinto(b) if self._inner is not None else self._zlib_into(b)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as err:
            raise DataError(f"{self.where}: corrupt {self.kind}-compressed joblib file ({err})") from None
        self.total += n
        if self.total > self.cap:
            raise DataError(f"{self.where}: decompresses to more than {fmt_bytes(self.cap)}, the memory budget left "
                            "for this file; refused (pass max_bytes=... or set MMLAB_MAX_BYTES to allow it)")
        return n

    def _zlib_into(self, b: Any) -> int:
        while not self._z.eof:
            data = self._z.unconsumed_tail or self._fh.read(1 << 16)
            if not data:
                raise DataError(f"{self.where}: truncated {self.kind}-compressed joblib file")
            out = self._z.decompress(data, len(b))
            if out:
                b[: len(out)] = out
                return len(out)
        return 0


class _JoblibUnpickler(_Restricted, pickle._Unpickler):  # type: ignore[name-defined]
    """The restricted unpickler, pure Python so that BUILD of a joblib array wrapper can read
    the array's bytes that follow it in the file."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: IO[bytes], where: str, allow_torch: bool) -> None:
        super().__init__(file, encoding="latin1")
        self.where, self.allow_torch, self._torch, self._fh = where, allow_torch, None, file

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == WRAPPER:
            return _WrapperStub
        if (module, name) in _OLD_WRAPPERS:
            raise UnsafePickleError(f"{self.where}: written by joblib < 0.10 ({module}.{name}: arrays in companion "
                                    f"files); not supported: {CONVERT_HINT}")
        return super().find_class(module, name)

    def load_build(self) -> None:
        if len(self.stack) >= 2 and isinstance(self.stack[-2], _WrapperStub):
            state = self.stack.pop()
            self.stack[-1] = self._read_array(state)
        else:
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    dispatch[pickle.BUILD[0]] = load_build

    def _read_array(self, state: Any) -> np.ndarray:
        """The array a wrapper's ``state`` describes, read from the bytes after it."""
        shape, dtype, order = _wrapper_meta(state, self.where)
        if not dtype.hasobject:
            _charge(nbytes_of(shape, dtype), f"an array {shape} {dtype}")
        frame = self._unframer.current_frame
        if frame is not None and frame.read(1):
            raise DataError(f"{self.where}: array data inside a pickle frame; not a joblib file")
        if dtype.hasobject:
            arr = _JoblibUnpickler(self._fh, self.where, self.allow_torch).load()
            if not isinstance(arr, np.ndarray) or not arr.dtype.hasobject or arr.shape != shape:
                raise DataError(f"{self.where}: the nested pickle of an object array {shape} did not hold one")
            return arr
        nbytes = nbytes_of(shape, dtype)
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = self._fh.read(1)
            if len(pad) != 1 or len(self._fh.read(pad[0])) != pad[0]:
                raise DataError(f"{self.where}: truncated joblib file (array padding of {shape} {dtype})")
        buf = np.empty(nbytes, np.uint8)
        view, done = memoryview(buf), 0
        while done < nbytes:
            got = self._fh.readinto(view[done : done + min(_CHUNK, nbytes - done)])
            if not got:
                raise DataError(f"{self.where}: truncated joblib file: array {shape} {dtype} needs {nbytes} bytes, "
                                f"{done} were left")
            done += got
        arr = buf.view(dtype)
        arr = arr.reshape(shape[::-1]).T if order == "F" else arr.reshape(shape)
        if not arr.dtype.isnative:
            arr = arr.byteswap(inplace=True).view(arr.dtype.newbyteorder("="))
        return arr


def _wrapper_meta(state: Any, where: str) -> tuple[tuple[int, ...], np.dtype, str]:
    """(shape, dtype, order) of a wrapper's state, checked."""
    if not isinstance(state, dict):
        raise DataError(f"{where}: a joblib array wrapper has state {type(state).__name__}, expected a dict")
    sub, shape, dtype, order = (state.get(k) for k in ("subclass", "shape", "dtype", "order"))
    if sub is not _NDARRAY and sub is not np.ndarray:
        raise UnsafePickleError(f"{where}: a joblib array wrapper of subclass {sub!r}; only numpy.ndarray is allowed")
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufcUSO" or dtype.fields is not None:
        raise DataError(f"{where}: a joblib array wrapper with dtype {dtype!r}; expected numbers, strings or objects")
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise DataError(f"{where}: a joblib array wrapper with shape {shape!r}; expected a tuple of sizes")
    if order not in ("C", "F"):
        raise DataError(f"{where}: a joblib array wrapper with order {order!r}; expected 'C' or 'F'")
    return shape, dtype, order


def compression_of(head: bytes) -> str | None:
    """joblib's compression of a file starting with ``head`` (None: not compressed)."""
    return next((kind for prefix, kind in _PREFIXES if head.startswith(prefix)), None)


def safe_load_joblib(path: str | os.PathLike, *, allow_torch: bool = False, budget: Budget | None = None,
                     max_bytes: int | str | None = None) -> Any:
    """Read a ``joblib.dump`` file (or a plain pickle) with the restricted unpickler.

    Arrays are rebuilt from joblib's wrappers without running anything from the file; any global
    outside the allow-list of `mmlab.data.safe_pickle` raises `UnsafePickleError`. What the file
    holds is charged to ``budget`` (default: a fresh `Budget` of ``max_bytes``); every failure is
    a `DataError` naming the file.
    """
    where, p = str(path), Path(path)
    if not p.is_file():
        raise DataError(f"{where}: joblib file not found")
    budget = budget or Budget(where, max_bytes)
    size = p.stat().st_size
    if size > budget.left:
        raise DataError(budget.message(size, "the file itself"))
    try:
        with open(p, "rb") as raw:
            head = raw.read(8)
            raw.seek(0)
            kind = compression_of(head)
            if head.startswith(b"PK\x03\x04"):
                raise DataError(f"{where}: a zip archive (a torch.save or .npz file?), expected a joblib.dump file")
            if kind in ("lz4", "compat"):
                what = "lz4-compressed (needs the lz4 package)" if kind == "lz4" else "in joblib's pre-0.10 'ZF' format"
                raise DataError(f"{where}: a joblib file {what}; not supported: expected an uncompressed joblib.dump "
                                f"file or one compressed with zlib, gzip, bz2, xz or lzma; {CONVERT_HINT}")
            fh = raw if kind is None else io.BufferedReader(_Decompressed(raw, kind, budget.left, where))
            return _load(fh, where, allow_torch, budget, unpickler=_JoblibUnpickler)
    except OSError as err:
        raise DataError(f"{where}: cannot read joblib file ({err})") from None
