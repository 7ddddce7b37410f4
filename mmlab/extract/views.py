"""What notebook 01 shows of each extraction step: pure functions returning arrays and plotly figures.

Nothing here is needed to extract; it opens one sample's media, runs the same extractors
(`mmlab.extract.audio`, `text`, `face`) and draws them, and projects a written ``.npz``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mmlab.extract.audio import AudioConfig, audio_features, read_wav, resample
from mmlab.extract.face import FaceConfig, face_features, frame_files, read_face
from mmlab.extract.layout import scan_raw
from mmlab.extract.sample import make_raw_sample
from mmlab.extract.text import TextConfig, load_tokenizer, read_transcript, text_features

SAMPLE_SIZES = {"tiny": 12, "default": 80, "paper": 80}  # samples per class of the raw sample set, by preset


def ensure_sample(folder: str | Path, n_per_class: int, seed: int = 0) -> dict:
    """The raw sample set in ``folder``: made when it has no ``labels.csv``, else reused."""
    folder = Path(folder)
    if (folder / "labels.csv").is_file():
        raw = scan_raw(folder)
        return {"path": str(folder), "samples": len(raw.samples), "classes": raw.classes, "reused": True}
    return {**make_raw_sample(folder, n_per_class=n_per_class, seed=seed), "reused": False}


def complete_sample(raw_dir: str | Path, label: str | None = None) -> Any:
    """The first sample (of class ``label``) that has speech, transcript and faces."""
    for s in scan_raw(raw_dir).samples:
        if len(s.media) == 3 and (label is None or s.label == label):
            return s
    raise LookupError(f"{raw_dir}: no sample with all three modalities" + (f" and label {label!r}" if label else ""))


def audio_view(wav: str | Path, cfg: AudioConfig | None = None) -> dict:
    """Power spectrogram (dB, frames x bins) and the MFCC + delta features of one file."""
    cfg = cfg or AudioConfig()
    y, sr = read_wav(wav)
    y = resample(y, sr, cfg.sample_rate)
    pad = np.pad(y, (cfg.n_fft // 2, cfg.n_fft // 2))
    n = 1 + (len(pad) - cfg.n_fft) // cfg.hop_length
    frames = pad[np.arange(cfg.n_fft)[None, :] + cfg.hop_length * np.arange(n)[:, None]]
    spec = np.abs(np.fft.rfft(frames * np.hanning(cfg.n_fft), axis=1)) ** 2
    db = 10 * np.log10(np.maximum(spec, 1e-10))
    return {"signal": y, "sample_rate": cfg.sample_rate, "spectrogram_db": np.maximum(db, db.max() - 80),
            "features": audio_features(wav, cfg), "hop_s": cfg.hop_length / cfg.sample_rate, "n_mfcc": cfg.n_mfcc}


def audio_figure(view: dict, title: str = "") -> go.Figure:
    t = np.arange(len(view["features"])) * view["hop_s"]
    freqs = np.linspace(0, view["sample_rate"] / 2, view["spectrogram_db"].shape[1])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=["power spectrogram (dB)",
                                                                           "MFCC (rows 0-39), deltas, delta-deltas "
                                                                           "(each row standardised)"])
    fig.add_trace(go.Heatmap(z=view["spectrogram_db"].T, x=t, y=freqs, colorscale="Viridis", showscale=False), 1, 1)
    f = view["features"]
    z = (f - f.mean(0)) / (f.std(0) + 1e-6)  # each coefficient standardised over time (c0 would swamp the rest)
    fig.add_trace(go.Heatmap(z=z.T, x=t, zmin=-3, zmax=3, colorscale="RdBu", showscale=False), 2, 1)
    fig.update_yaxes(title="Hz", row=1, col=1)
    fig.update_yaxes(title="feature", row=2, col=1)
    fig.update_xaxes(title="seconds", row=2, col=1)
    fig.update_layout(title=title or "One utterance: spectrogram and MFCC + deltas", height=560)
    return fig


def opensmile_view(wav: str | Path) -> dict | None:
    """eGeMAPSv02 LLD curves of one file, or None when the opensmile package is not installed."""
    from mmlab.errors import ConfigError
    from mmlab.extract.audio import opensmile_features

    y, sr = read_wav(wav)
    try:
        lld = opensmile_features(resample(y, sr, 16000), 16000, "opensmile_egemaps_lld")
    except ConfigError:
        return None
    return {"lld": lld, "hop_s": 0.01}


def opensmile_figure(view: dict) -> go.Figure:
    """The first two eGeMAPS LLDs (loudness, then alpha ratio in eGeMAPSv02's order) over time."""
    t = np.arange(len(view["lld"])) * view["hop_s"]
    fig = go.Figure([go.Scatter(x=t, y=view["lld"][:, i], name=f"LLD {i}") for i in range(min(3, view["lld"].shape[1]))])
    fig.update_layout(title="openSMILE eGeMAPSv02 low-level descriptors (first three)", xaxis_title="seconds", height=320)
    return fig


def text_view(txt: str | Path, cfg: TextConfig | None = None) -> dict:
    """Transcript, its word pieces and token ids, and the extractor's features for it."""
    cfg = cfg or TextConfig()
    text = read_transcript(txt)
    tok = load_tokenizer(cfg.model_dir)
    ids = tok(text, truncation=True, max_length=cfg.max_tokens)["input_ids"]
    return {"text": text, "tokens": tok.convert_ids_to_tokens(ids), "ids": list(ids),
            "features": text_features([text], cfg)[0]}


def text_figure(view: dict) -> go.Figure:
    z = np.atleast_2d(view["features"])
    top = float(np.percentile(np.abs(z), 99)) or 1.0  # a few outlier dimensions would wash out the rest
    fig = go.Figure(go.Heatmap(z=z, y=view["tokens"], zmin=-top, zmax=top, colorscale="RdBu"))
    fig.update_yaxes(autorange="reversed", title="token")
    fig.update_xaxes(title="feature dim (all-MiniLM-L6-v2)")
    fig.update_layout(title=f"Token features of: {view['text']!r}", height=160 + 22 * len(view["tokens"]))
    return fig


def faces_view(folder: str | Path, cfg: FaceConfig | None = None) -> dict:
    files = frame_files(folder)
    return {"images": np.stack([read_face(f) for f in files]), "features": face_features(folder, cfg or FaceConfig())}


def faces_figure(views: dict[str, dict]) -> go.Figure:
    """Per class label: its first face image (48x48, as the CNN sees it) above its 304-d features."""
    names = list(views)
    fig = make_subplots(rows=2, cols=len(names), subplot_titles=names, row_heights=[0.7, 0.3], vertical_spacing=0.05)
    for j, k in enumerate(names):
        fig.add_trace(go.Heatmap(z=views[k]["images"][0], colorscale="gray", showscale=False), 1, j + 1)
        fig.add_trace(go.Heatmap(z=views[k]["features"], colorscale="Viridis", showscale=False), 2, j + 1)
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=1, col=j + 1)
        fig.update_yaxes(showticklabels=False, row=2, col=j + 1)
        fig.update_xaxes(showticklabels=False, scaleanchor=f"y{j + 1}", row=1, col=j + 1)
    fig.update_layout(title="Face frames and their FER-CNN features (frames x 304)", height=420)
    return fig


def utterance_points(npz: str | Path, projection: str = "umap", seed: int = 0) -> tuple[dict, dict, list[str]]:
    """Per modality, a 2-D projection of the utterance features of the samples that have it:
    ({m: (n_m, 2)}, {m: labels (n_m,)}, classes). Frame features are averaged over real frames."""
    d = np.load(npz)
    classes = [str(c) for c in d["classes"]]
    points, labels = {}, {}
    for key in [k for k in d.files if k.startswith("X_")]:
        m, x = key[2:], d[key].astype(np.float32)
        if x.ndim == 2 and d[key].dtype.kind in "iu":
            continue  # token ids: nothing to project
        lengths = d[f"len_{m}"] if f"len_{m}" in d.files else np.ones(len(x), np.int64)
        if x.ndim == 3:
            real = np.arange(x.shape[1])[None, :] < lengths[:, None]
            x = (x * real[..., None]).sum(1) / lengths[:, None]
        keep = np.abs(x).sum(1) > 0  # missing rows hold no data
        x, y = x[keep], d["y"][keep]
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        points[m], labels[m] = _project(x, projection, seed), y
    return points, labels, classes


def _project(x: np.ndarray, projection: str, seed: int) -> np.ndarray:
    if projection == "umap":
        import warnings

        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed, n_jobs=1).fit_transform(x)
    from sklearn.decomposition import PCA

    return PCA(2, random_state=seed).fit_transform(x)


def points_figure(points: dict, labels: dict, classes: list[str], title: str = "") -> go.Figure:
    from mmlab.viz import color

    fig = make_subplots(rows=1, cols=len(points), subplot_titles=list(points))
    for j, m in enumerate(points):
        for c, name in enumerate(classes):
            xy = points[m][labels[m] == c]
            fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=name, legendgroup=name,
                                     showlegend=j == 0, marker=dict(size=5, color=color(c))), 1, j + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title=title or "Utterance features of each modality, by class", height=380)
    return fig


def pattern_accuracy(results_csv: str | Path, chance: float | None = None) -> list[dict]:
    """Rows (method, condition, accuracy) of a compare ``results.csv``, plus a chance row per condition."""
    with open(results_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("protocol", "pattern") == "pattern"]
    out: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        out.setdefault((r["method"], r["condition"]), []).append(float(r["accuracy"]))
    table = [{"method": m, "condition": c, "accuracy": float(np.mean(v))} for (m, c), v in out.items()]
    if chance is not None:
        table += [{"method": "chance", "condition": c, "accuracy": chance} for c in dict.fromkeys(c for _, c in out)]
    return table
