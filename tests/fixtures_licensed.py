"""Tiny fake datasets written in exactly the released on-disk layouts of the licensed benchmarks
(the public code of MMIN, github.com/AIM3-RUC/MMIN; MIntRec, github.com/thuiar/MIntRec; MMSA,
github.com/thuiar/MMSA; each layout is described in its card in data_cards/). Random numbers
only: no licensed data.

Each ``write_*`` returns the dataset folder it created under ``root``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np

MINTREC_LABELS = [
    "Complain", "Praise", "Apologise", "Thank", "Criticize", "Agree", "Taunt", "Flaunt", "Joke", "Oppose",
    "Comfort", "Care", "Inform", "Advise", "Arrange", "Introduce", "Leave", "Prevent", "Greet", "Ask for help",
]


# ---------------------------------------------------------------------------- MMIN
def write_mmin(
    root: Path, name: str = "IEMOCAP", n: int = 12, n_folds: int = 10, iemocap_style: bool = True,
    dims: tuple[int, int, int] = (130, 342, 1024), t_v: int = 6, t_l: int = 5, seed: int = 0,
) -> Path:
    """MMIN layout: A/comparE.h5, V/denseface.h5, L/bert_large.h5, A/comparE_mean_std.h5 and
    target/{fold}/{trn,val,tst}_{label,int2name}.npy. ``iemocap_style``: one-hot (N, 4) labels
    and (N, 1) bytes names (IEMOCAP); else integer labels and str names (MSP-IMPROV)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / name
    for sub in ("A", "V", "L"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if iemocap_style:
        ids = [f"Ses0{1 + i % 5}{'FM'[i % 2]}_impro0{i % 7}_{'FM'[i % 2]}{i:03d}" for i in range(n)]
    else:
        ids = [f"MSP-IMPROV-S{i:02d}A-F0{1 + i % 6}-P-FM{i:02d}" for i in range(n)]
    labels = np.arange(n) % 4
    audio = {}
    with h5py.File(base / "A" / "comparE.h5", "w") as fa, h5py.File(base / "V" / "denseface.h5", "w") as fv, \
            h5py.File(base / "L" / "bert_large.h5", "w") as fl:
        for i, uid in enumerate(ids):
            audio[uid] = (rng.normal(size=(int(rng.integers(3, 12)), dims[0])) * 3 + 5).astype(np.float32)
            fa[uid] = audio[uid]
            v = rng.normal(size=(t_v, dims[1])).astype(np.float32)
            if i == 0:
                v = np.zeros((1, dims[1]), np.float32)  # no face found: one all-zero frame
            fv[uid] = v
            fl[uid] = rng.normal(size=(t_l, dims[2])).astype(np.float32)
    with h5py.File(base / "A" / "comparE_mean_std.h5", "w") as fm:
        for fold in range(1, n_folds + 1):
            trn, _, _ = _fold_parts(n, fold)
            frames = np.concatenate([audio[ids[i]] for i in trn])
            std = frames.std(0)
            std[std == 0] = 1.0
            g = fm.create_group(str(fold))
            g["mean"], g["std"] = frames.mean(0), std
    for fold in range(1, n_folds + 1):
        d = base / "target" / str(fold)
        d.mkdir(parents=True, exist_ok=True)
        for part, idx in zip(("trn", "val", "tst"), _fold_parts(n, fold)):
            if iemocap_style:
                np.save(d / f"{part}_label.npy", np.eye(4, dtype=np.float32)[labels[idx]])
                np.save(d / f"{part}_int2name.npy", np.array([[ids[i].encode()] for i in idx], dtype="S"))
            else:
                np.save(d / f"{part}_label.npy", labels[idx].astype(np.int64))
                np.save(d / f"{part}_int2name.npy", np.array([ids[i] for i in idx]))
    return base


def _fold_parts(n: int, fold: int) -> tuple[list[int], list[int], list[int]]:
    order = np.roll(np.arange(n), -2 * (fold - 1))
    return order[4:].tolist(), order[2:4].tolist(), order[:2].tolist()


def write_iemocap(root: Path, **kw) -> Path:
    return write_mmin(root, "IEMOCAP", n_folds=10, iemocap_style=True, **kw)


def write_msp_improv(root: Path, **kw) -> Path:
    return write_mmin(root, "MSP-IMPROV", n_folds=12, iemocap_style=False, **kw)


# ---------------------------------------------------------------------------- MIntRec
def write_mintrec(
    root: Path, n: tuple[int, int, int] = (6, 3, 3), with_text: bool = False, torch_audio: bool = False, seed: int = 0
) -> Path:
    """train/dev/test.tsv (header; season, episode, clip, text, label), video_data/video_feats.pkl
    (key -> list of (1, 256) arrays), audio_data/audio_feats.pkl (key -> (T, 768)), and with
    ``with_text`` a text_data/text_feats.pkl (key -> (T, 768))."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "MIntRec"
    for sub in ("video_data", "audio_data", "text_data"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    video, audio, text, k = {}, {}, {}, 0
    for fname, count in zip(("train.tsv", "dev.tsv", "test.tsv"), n):
        lines = ["season\tepisode\tclip\ttext\tlabel"]
        for _ in range(count):
            season, episode, clip = f"S0{4 + k % 3}", f"E0{1 + k % 5}", str(10 + k)
            key = f"{season}_{episode}_{clip}"
            lines.append(f"{season}\t{episode}\t{clip}\tyou said \"{k}\" isn't it\t{MINTREC_LABELS[(3 * k) % 20]}")
            video[key] = [rng.normal(size=(1, 256)).astype(np.float32) for _ in range(int(rng.integers(2, 6)))]
            audio[key] = rng.normal(size=(int(rng.integers(5, 12)), 768)).astype(np.float32)
            text[key] = rng.normal(size=(int(rng.integers(3, 8)), 768)).astype(np.float32)
            k += 1
        (base / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
    if torch_audio:
        import torch

        audio = {key: torch.from_numpy(a) for key, a in audio.items()}
    with open(base / "video_data" / "video_feats.pkl", "wb") as fh:
        pickle.dump(video, fh)
    with open(base / "audio_data" / "audio_feats.pkl", "wb") as fh:
        pickle.dump(audio, fh)
    if with_text:
        with open(base / "text_data" / "text_feats.pkl", "wb") as fh:
            pickle.dump(text, fh)
    return base


# ---------------------------------------------------------------------------- MMSA
MMSA_DIMS = {"MOSI": (768, 5, 20), "MOSEI": (768, 74, 35)}
MMSA_UNALIGNED_T = {"MOSI": (50, 375, 500), "MOSEI": (50, 500, 500)}


def mmsa_split(rng: np.random.Generator, n: int, dims: tuple[int, int, int], lens: tuple[int, int, int],
               prefix: str, aligned: bool) -> dict[str, np.ndarray]:
    """One split of an MMSA pickle (section 2.1 of the notes), N = ``n``."""
    d_t, d_a, d_v = dims
    t_t, t_a, t_v = lens
    text_len = rng.integers(4, t_t + 1, n)
    bert = np.zeros((n, 3, t_t), np.float32)  # ints stored as float, as MMSA does
    for i, ln in enumerate(text_len):
        bert[i, 0, :ln] = rng.integers(1000, 2000, ln)
        bert[i, 0, 0], bert[i, 0, ln - 1] = 101, 102  # [CLS] ... [SEP]
        bert[i, 1, :ln] = 1
    a_len = text_len if aligned else rng.integers(1, t_a + 1, n)
    v_len = text_len if aligned else rng.integers(1, t_v + 1, n)
    audio = np.zeros((n, t_a, d_a), np.float32)
    vision = np.zeros((n, t_v, d_v), np.float32)
    for i in range(n):
        audio[i, : a_len[i]] = rng.normal(size=(a_len[i], d_a))
        vision[i, : v_len[i]] = rng.normal(size=(v_len[i], d_v))
    audio[0, 0, 0] = -np.inf  # COVAREP -inf (loaders set it to 0)
    reg = np.round(rng.uniform(-3, 3, n), 1).astype(np.float32)
    reg[1] = 0.0  # one neutral sample
    cls = (np.sign(reg) + 1).astype(np.float32)
    return {
        "raw_text": np.array([f"clip {i} text" for i in range(n)]),
        "id": np.array([f"{prefix}vid{i // 3}$_${i % 3}" for i in range(n)]),
        "text": rng.normal(size=(n, t_t, d_t)).astype(np.float32),
        "text_bert": bert,
        "audio": audio,
        "vision": vision,
        "audio_lengths": a_len.astype(np.int64),
        "vision_lengths": v_len.astype(np.int64),
        "annotations": np.array(["Negative", "Neutral", "Positive"])[cls.astype(int)],
        "classification_labels": cls,
        "regression_labels": reg,
    }


def write_mmsa(root: Path, name: str = "MOSI", aligned: bool = False, n: int = 8, seed: int = 0,
               dims: tuple[int, int, int] | None = None, lens: tuple[int, int, int] | None = None) -> Path:
    """``{name}/Processed/{aligned,unaligned}_50.pkl``: dict train/valid/test of per-sample arrays."""
    rng = np.random.default_rng(seed)
    dims = dims or MMSA_DIMS[name]
    lens = lens or ((50, 50, 50) if aligned else MMSA_UNALIGNED_T[name])
    data = {sp: mmsa_split(rng, n, dims, lens, f"{sp[:2]}", aligned) for sp in ("train", "valid", "test")}
    base = Path(root) / name
    (base / "Processed").mkdir(parents=True, exist_ok=True)
    with open(base / "Processed" / f"{'aligned' if aligned else 'unaligned'}_50.pkl", "wb") as fh:
        pickle.dump(data, fh, protocol=4)
    return base


# ---------------------------------------------------------------------------- CIDer's OOD partitions
def write_mmsa_ood(root: Path, name: str = "MOSI", aligned: bool = False, task_dir: str = "binary",
                   n: int = 8, seed: int = 0, dims: tuple[int, int, int] | None = None,
                   lens: tuple[int, int, int] | None = None, with_text: bool = True,
                   compress: int | tuple[str, int] = 0, test_from: str = "mixed") -> Path:
    """CIDer's ``OOD_{name}/{task_dir}/{name}_{aligned,unaligned}_50.pkl`` written with
    ``joblib.dump`` (as the release is), beside the IID ``{name}/Processed`` pickle (written
    first, same seed): the same 3 n clips re-split into train / valid / test, the test taking
    clips from the IID train and test splits (``test_from="mixed"``), only from the IID train
    (``"train"``), or from nowhere in the IID file (``"foreign"``: other ids). ``with_text``:
    False drops the BERT ``text`` features, as a release without them would. Returns the file."""
    import joblib

    write_mmsa(root, name, aligned=aligned, n=n, seed=seed, dims=dims, lens=lens)
    fname = f"{'aligned' if aligned else 'unaligned'}_50.pkl"
    iid = pickle.loads((Path(root) / name / "Processed" / fname).read_bytes())
    pool = {k: np.concatenate([iid[sp][k] for sp in ("train", "valid", "test")]) for k in iid["train"]}
    tr, te = np.arange(n), np.arange(2 * n, 3 * n)  # IID train / test rows of the pool
    if test_from == "mixed":
        test = np.concatenate([tr[: n // 2], te[: n // 2]])
    else:
        test = tr
    rest = np.setdiff1d(np.arange(3 * n), test)
    rows = {"train": rest[: len(rest) - n // 2], "valid": rest[len(rest) - n // 2 :], "test": test}
    data = {sp: {k: v[idx] for k, v in pool.items() if with_text or k != "text"} for sp, idx in rows.items()}
    if test_from == "foreign":
        data["test"]["id"] = np.array([f"other{i}$_$0" for i in range(len(test))])
    for sp, d in data.items():
        d["id"] = d["id"].astype(object)  # ids as an object array: joblib nests a pickle for it
        d["audio"][-1, 0, 0] = -np.inf  # COVAREP -inf in every split
    path = Path(root) / f"OOD_{name}" / task_dir / f"{name}_{fname}"
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(data, path, compress=compress)
    return path
