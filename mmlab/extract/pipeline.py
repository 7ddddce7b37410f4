"""`extract`: a raw folder (`mmlab.extract.layout`) -> one bring-your-own ``.npz`` file.

Speech (A), transcripts (T) and face folders (V) go through the extractor chosen for each
(`AudioConfig`, `TextConfig`, `FaceConfig`); audio and faces run in parallel over files with
``workers`` processes, text in batches in this process. Per-file features are cached
(`mmlab.extract.cache`), so a re-run with the same settings only reads them back.

A sample without a modality's file has that modality *missing*: ``avail_<m>`` = False says so
in the file, and its row is filler that is never read as data (zeros of length 1, or [CLS]
[SEP] for token ids). Frame level keeps (N, T, D) with ``len_<m>``; utterance
level pools each sample to one vector: mean and standard deviation over frames for audio, the
mean for faces and text features (token ids stay ids). The file is checked with
`mmlab.data.byo.validate_npz` before it replaces ``out`` (temp file + rename).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mmlab.errors import ConfigError, DataError
from mmlab.extract.audio import AudioConfig, audio_features
from mmlab.extract.cache import FeatureCache, cache_key, content_hash, default_cache_dir
from mmlab.extract.face import FaceConfig, face_features, frame_files
from mmlab.extract.layout import MEDIA, MODALITY_OF, RawSet, scan_raw
from mmlab.extract.text import TextConfig, read_transcript, text_features
from mmlab.progress import progress

CLS, SEP = 101, 102


@dataclass
class ExtractConfig:
    """Everything `extract` needs besides the folders."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    media: tuple[str, ...] | None = None  # some of audio, text, face; None: each one found
    level: str = "frame"  # frame: (N, T, D) + len_<m>; utterance: (N, D)
    workers: int = 1
    skip_bad: bool = False  # report bad files and samples, write the rest
    classes: list[str] | None = None  # the allowed labels in order (else classes.txt, else the sorted labels)
    cache_dir: str | None = None  # None: $MMLAB_CACHE/extract, else ~/.cache/mmlab/extract
    use_cache: bool = True
    device: str = "cpu"
    show_progress: bool = True

    def check(self) -> None:
        for c in (self.audio, self.text, self.face):
            c.check()
        if self.level not in ("frame", "utterance"):
            raise ConfigError(f"level: expected 'frame' or 'utterance', got {self.level!r}")
        if self.media is not None and (not self.media or any(m not in MEDIA for m in self.media)):
            raise ConfigError(f"media: expected some of {list(MEDIA)}, got {self.media!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers: expected an integer >= 1, got {self.workers!r}")


@dataclass
class ExtractResult:
    """What `extract` wrote and what it skipped."""

    path: Path
    ids: list[str]
    classes: list[str]
    shapes: dict[str, tuple[int, ...]]  # modality -> array shape in the file
    available: dict[str, int]  # modality -> samples that have it
    problems: list[str]  # every bad file or sample (empty unless skip_bad)
    seconds: dict[str, float]  # extractor -> wall seconds
    cache_hits: int = 0

    def summary(self) -> str:
        mods = ", ".join(f"{m} {s} ({self.available[m]}/{len(self.ids)} available)" for m, s in self.shapes.items())
        times = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        return (f"{self.path}: N={len(self.ids)}, {len(self.classes)} classes; {mods}; {times}; "
                f"{self.cache_hits} cached; {len(self.problems)} problem(s) skipped")


# ------------------------------------------------------------------------------------ per-file work
def _settings(kind: str, cfg) -> dict:
    s = {k: v for k, v in asdict(cfg).items() if k not in ("batch_size",)}
    if kind == "text":
        from mmlab.methods.text import model_identity, resolve_model_dir

        s["model"] = model_identity(resolve_model_dir(cfg.model_dir))
    if kind == "face":
        from importlib.metadata import PackageNotFoundError, version

        try:
            s["model"] = "what-the-face-classification " + version("what-the-face-classification")
        except PackageNotFoundError:
            s["model"] = None
    return {"kind": kind, **s}


def _files_of(kind: str, path: Path) -> list[Path]:
    return frame_files(path) if kind == "face" else [path]


def _key(kind: str, path: Path, settings: dict) -> tuple[str | None, str | None]:
    """(cache key, None) or (None, problem) for one file or face folder."""
    try:
        files = _files_of(kind, path)
        return (cache_key(content_hash(files), settings) if files else "", None)
    except OSError as err:
        return None, f"{path}: cannot read ({err.strerror or err})"


def _compute(kind: str, path: Path, cfg, key: str, cache: FeatureCache) -> tuple[np.ndarray | None, str | None]:
    """(features, None) or (None, problem); the features are cached under ``key``."""
    try:
        x = audio_features(path, cfg) if kind == "audio" else face_features(path, cfg)
    except DataError as err:
        return None, str(err)
    except OSError as err:
        return None, f"{path}: cannot read ({err.strerror or err})"
    if key:
        cache.put(key, x)
    return x, None


def _chunk(kind: str, cfg, jobs: list[tuple[str, str]], cache_dir: str | None) -> list:
    """Worker entry point: features or problems for ``jobs`` (path, cache key)."""
    cache = FeatureCache(cache_dir)
    return [_compute(kind, Path(p), cfg, key, cache) for p, key in jobs]


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _run_media(kind: str, paths: list[Path], cfg, settings: dict, cache_dir: str | None, workers: int,
               show: bool) -> tuple[list, int]:
    """Cached features are read here; the rest is computed inline or by ``workers`` processes."""
    cache = FeatureCache(cache_dir)
    out: list = [None] * len(paths)
    todo: list[tuple[int, str]] = []
    bar = progress(total=len(paths), desc=f"extract {kind}", disable=not show)
    for i, p in enumerate(paths):
        key, err = _key(kind, p, settings)
        hit = cache.get(key) if key else None
        if err or hit is not None:
            out[i] = (hit, err)
            bar.update(1)
        else:
            todo.append((i, key or ""))
    if workers == 1 or len(todo) < 2:
        for i, key in todo:
            out[i] = _compute(kind, paths[i], cfg, key, cache)
            bar.update(1)
    else:
        size = max(1, min(32, math.ceil(len(todo) / (workers * 4))))
        chunks = [todo[k : k + size] for k in range(0, len(todo), size)]
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx, initializer=_init_worker) as pool:
            futures = [pool.submit(_chunk, kind, cfg, [(str(paths[i]), key) for i, key in c], cache_dir) for c in chunks]
            for f, c in zip(futures, chunks):
                for (i, _), res in zip(c, f.result()):
                    out[i] = res
                bar.update(len(c))
    bar.close()
    return out, cache.hits


def _run_text(paths: list[Path], cfg: TextConfig, settings: dict, cache_dir: str | None, device: str,
              show: bool) -> tuple[list, int]:
    cache = FeatureCache(cache_dir)
    out: list = [None] * len(paths)
    todo: list[tuple[int, str, str]] = []
    for i, p in enumerate(progress(paths, desc="extract text", disable=not show)):
        try:
            text = read_transcript(p)
        except DataError as err:
            out[i] = (None, str(err))
            continue
        key = cache_key(content_hash([p]), settings)
        hit = cache.get(key)
        if hit is not None:
            out[i] = (hit, None)
        else:
            todo.append((i, text, key))
    if todo:
        feats = text_features([t for _, t, _ in todo], cfg, device)
        for (i, _, key), x in zip(todo, feats):
            cache.put(key, x)
            out[i] = (x, None)
    return out, cache.hits


# ------------------------------------------------------------------------------------ assembly
def _pool(kind: str, x: np.ndarray, tokens: bool) -> np.ndarray:
    if tokens:
        return x
    if kind == "audio":
        return np.concatenate([x.mean(0), x.std(0)])[None]
    return x.mean(0, keepdims=True)


def _stack(rows: list[np.ndarray | None], tokens: bool, utterance: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, T, D) / (N, D) floats or (N, T) token ids, and lengths; missing rows hold no data."""
    real = [r for r in rows if r is not None]
    t = max(len(r) for r in real)
    if tokens:
        x = np.zeros((len(rows), max(t, 2)), np.int64)
        lengths = np.full(len(rows), 2, np.int64)
        x[:, 0], x[:, 1] = CLS, SEP
        for i, r in enumerate(rows):
            if r is not None:
                x[i, : len(r)], lengths[i] = r, len(r)
        return x, lengths
    d = real[0].shape[1]
    x = np.zeros((len(rows), t, d), np.float32)
    lengths = np.ones(len(rows), np.int64)
    for i, r in enumerate(rows):
        if r is not None:
            x[i, : len(r)], lengths[i] = r, len(r)
    return (x[:, 0] if utterance else x), lengths


def _write(arrays: dict[str, np.ndarray], out: Path) -> None:
    """Write, validate, then rename into place; a file the validator refuses is never written."""
    from mmlab.data.byo import validate_npz

    if out.is_dir():
        raise DataError(f"{out}: is a folder (expected the path of a .npz file to write)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".npz", dir=out.parent)
    except OSError as err:
        raise DataError(f"{out}: cannot write here ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        problems, _ = validate_npz(tmp)
        if problems:
            raise DataError(f"{out}: the extracted features do not form a valid bring-your-own file:\n  - "
                            + "\n  - ".join(problems))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, out)
    except OSError as err:
        raise DataError(f"{out}: cannot write ({err.strerror or err}); an earlier file there is untouched") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def extract(raw_dir: str | os.PathLike, out: str | os.PathLike, config: ExtractConfig | None = None) -> ExtractResult:
    """Extract every sample of ``raw_dir`` into the bring-your-own ``.npz`` ``out``.

    Without ``skip_bad`` any problem (layout or file) raises one `DataError` listing them all and
    nothing is written; with it, a bad file counts as a missing modality, a sample left with
    none is dropped, and the problems are returned in `ExtractResult.problems`.
    """
    cfg = config or ExtractConfig()
    cfg.check()
    out = Path(out)
    raw: RawSet = scan_raw(raw_dir, cfg.classes)
    if raw.problems and not cfg.skip_bad:
        raise DataError(_listing(raw.root, raw.problems))
    cache_dir = None if not cfg.use_cache else str(Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir())
    kinds = [k for k in MEDIA if (cfg.media is None or k in cfg.media) and any(k in s.media for s in raw.samples)]
    problems, seconds, hits = list(raw.problems), {}, 0
    feats: dict[str, list] = {}
    for kind in kinds:
        sub = getattr(cfg, kind)
        idx = [i for i, s in enumerate(raw.samples) if kind in s.media]
        paths = [raw.samples[i].media[kind] for i in idx]
        t0 = time.perf_counter()
        settings = _settings(kind, sub)
        if kind == "text":
            res, h = _run_text(paths, sub, settings, cache_dir, cfg.device, cfg.show_progress)
        else:
            res, h = _run_media(kind, paths, sub, settings, cache_dir, cfg.workers, cfg.show_progress)
        seconds[f"{kind}:{sub.extractor}"] = time.perf_counter() - t0
        hits += h
        rows: list = [None] * len(raw.samples)
        for i, (x, err) in zip(idx, res):
            if err:
                problems.append(err)
            rows[i] = x
        feats[kind] = rows
    if len(problems) > len(raw.problems) and not cfg.skip_bad:
        raise DataError(_listing(raw.root, problems))
    keep = [i for i in range(len(raw.samples)) if any(feats[k][i] is not None for k in kinds)]
    for i in set(range(len(raw.samples))) - set(keep):
        problems.append(f"{raw.samples[i].id}: no usable media left; sample skipped")
    kinds = [k for k in kinds if any(feats[k][i] is not None for i in keep)]
    if not keep or len(kinds) < 2:
        raise DataError(_listing(raw.root, problems) + f"\n{raw.root}: found usable media for {len(keep)} sample(s) in "
                        f"modalities {kinds}; expected at least two modalities ({', '.join(MEDIA)})")
    samples = [raw.samples[i] for i in keep]
    arrays: dict[str, np.ndarray] = {}
    shapes, available = {}, {}
    for kind in kinds:
        m, tokens = MODALITY_OF[kind], kind == "text" and cfg.text.extractor == "token_ids"
        utter = cfg.level == "utterance"
        rows = [feats[kind][i] for i in keep]
        rows = [None if r is None else (_pool(kind, r, tokens) if utter else r) for r in rows]
        x, lengths = _stack(rows, tokens, utter)
        arrays[f"X_{m}"] = x
        if x.ndim == 3 or tokens:
            arrays[f"len_{m}"] = lengths
        arrays[f"avail_{m}"] = np.array([r is not None for r in rows])
        shapes[m], available[m] = tuple(x.shape), sum(r is not None for r in rows)
    index = {c: k for k, c in enumerate(raw.classes)}
    arrays["y"] = np.array([index[s.label] for s in samples], np.int64)
    if all(s.y_reg is not None for s in samples):
        arrays["y_reg"] = np.array([s.y_reg for s in samples], np.float32)
    if all(s.split for s in samples):
        arrays["split"] = np.array([s.split for s in samples])
    arrays["ids"] = np.array([s.id for s in samples])
    arrays["classes"] = np.array(raw.classes)
    _write(arrays, out)
    return ExtractResult(out, [s.id for s in samples], list(raw.classes), shapes, available, problems, seconds, hits)


def _listing(root: Path, problems: list[str]) -> str:
    head = f"{root}: {len(problems)} problem(s) in the raw folder (--skip-bad writes the rest):\n  - "
    return head + "\n  - ".join(problems)
