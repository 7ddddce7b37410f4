"""The raw-data layout `mmlab extract` reads, and its checks.

::

    RAW_DIR/
      labels.csv      id,label[,split][,y_reg]   (a header row; one row per sample)
      classes.txt     optional: the allowed labels, one per line, in class-index order
      <id>.wav        speech (modality A)
      <id>.txt        UTF-8 transcript (modality T)
      <id>/           face images, one per frame, sorted by name (.png/.jpg; modality V)

Any of the three may be missing for a sample: that modality is missing for it. Every problem
found (an id with no media, media with no label, a duplicate id, an unknown label, a bad split
or y_reg) is reported with the file and line it comes from.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from mmlab.data.dataset import SPLIT_RULE, is_split_name
from mmlab.errors import DataError

MODALITY_OF = {"audio": "A", "text": "T", "face": "V"}  # the modality names in the .npz
MEDIA = ("audio", "text", "face")


@dataclass
class RawSample:
    id: str
    label: str
    split: str | None = None
    y_reg: float | None = None
    media: dict[str, Path] = field(default_factory=dict)  # "audio" / "text" / "face" -> path


@dataclass
class RawSet:
    """The samples of a raw folder and every problem found while reading it."""

    root: Path
    samples: list[RawSample]
    classes: list[str]
    problems: list[str] = field(default_factory=list)


def _media_of(root: Path, sid: str) -> dict[str, Path]:
    found = {}
    if (root / f"{sid}.wav").is_file():
        found["audio"] = root / f"{sid}.wav"
    if (root / f"{sid}.txt").is_file():
        found["text"] = root / f"{sid}.txt"
    if (root / sid).is_dir():
        found["face"] = root / sid
    return found


def _read_classes(path: Path) -> list[str]:
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the class list ({err})") from None
    dup = sorted({n for n in names if names.count(n) > 1})
    if not names or dup:
        raise DataError(f"{path}: expected distinct class names, one per line" + (f"; repeated {dup}" if dup else ""))
    return names


def scan_raw(root: str | Path, classes: list[str] | None = None) -> RawSet:
    """Read ``labels.csv`` and find each sample's media; ``classes`` (or ``classes.txt``) fixes the
    allowed labels and their order, else the sorted labels found. Problems are collected, not raised;
    only an unreadable folder or ``labels.csv`` raises `DataError`."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected a raw folder with labels.csv, <id>.wav, <id>.txt, <id>/)")
    table = root / "labels.csv"
    if not table.is_file():
        raise DataError(f"{table}: not found (expected a CSV with a header row id,label[,split][,y_reg])")
    if classes is None and (root / "classes.txt").is_file():
        classes = _read_classes(root / "classes.txt")
    try:
        rows = list(csv.reader(table.read_text(encoding="utf-8-sig").splitlines()))
    except UnicodeDecodeError as err:
        raise DataError(f"{table}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    except (OSError, csv.Error) as err:
        raise DataError(f"{table}: cannot read ({err})") from None
    if not rows:
        raise DataError(f"{table}: empty (expected a header row id,label[,split][,y_reg])")
    header = [h.strip() for h in rows[0]]
    if header[:2] != ["id", "label"] or any(h not in ("split", "y_reg") for h in header[2:]) or len(set(header)) < len(header):
        raise DataError(f"{table}: header {header}; expected id,label then optionally split and/or y_reg")
    problems: list[str] = []
    samples: dict[str, RawSample] = {}
    lines: dict[str, list[int]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        where = f"{table.name} line {n}"
        if len(row) != len(header):
            problems.append(f"{where}: {len(row)} fields, expected {len(header)} ({','.join(header)})")
            continue
        rec = {h: c.strip() for h, c in zip(header, row)}
        sid, label = rec["id"], rec["label"]
        if not sid or "/" in sid or "\\" in sid or sid in (".", ".."):
            problems.append(f"{where}: id {sid!r} is empty or not a plain file name")
            continue
        lines.setdefault(sid, []).append(n)
        if not label:
            problems.append(f"{where}: id {sid!r} has an empty label")
            continue
        if classes is not None and label not in classes:
            problems.append(f"{where}: id {sid!r} has unknown label {label!r}; expected one of {classes}")
            continue
        s = RawSample(sid, label)
        if "split" in rec and rec["split"]:
            if not is_split_name(rec["split"]):
                problems.append(f"{where}: id {sid!r} has split {rec['split']!r}; expected {SPLIT_RULE}")
                continue
            s.split = rec["split"]
        if "y_reg" in rec:
            try:
                s.y_reg = float(rec["y_reg"])
                assert math.isfinite(s.y_reg)
            except (ValueError, AssertionError):
                problems.append(f"{where}: id {sid!r} has y_reg {rec['y_reg']!r}; expected a finite number")
                continue
        s.media = _media_of(root, sid)
        if not s.media:
            problems.append(f"{where}: id {sid!r} has no media (expected any of {sid}.wav, {sid}.txt, {sid}/)")
            continue
        samples.setdefault(sid, s)
    for sid, ns in lines.items():
        if len(ns) > 1:
            problems.append(f"{table.name}: duplicate id {sid!r} on lines {ns} (every id once; all its rows are skipped)")
            samples.pop(sid, None)
    if samples and any(s.split for s in samples.values()) and not all(s.split for s in samples.values()):
        problems.append(f"{table.name}: the split column is filled for some ids and empty for others (fill all or none)")
    known = set(lines)
    for p in sorted(root.iterdir()):
        stem = p.stem if p.is_file() else p.name
        if p.name in ("labels.csv", "classes.txt") or p.name.startswith("."):
            continue
        if (p.is_dir() or p.suffix in (".wav", ".txt")) and stem not in known:
            problems.append(f"{p}: media with no label (id {stem!r} is not in labels.csv)")
    found = list(samples.values())
    names = classes if classes is not None else sorted({s.label for s in found})
    return RawSet(root, found, list(names), problems)
