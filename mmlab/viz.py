"""Plotly figure builders for the notebooks and the explorers (static ``go.Figure`` s).

Every builder takes plain arrays / dicts (the outputs of `mmlab.explore`) and returns a
``go.Figure`` whose trace count depends only on the dataset (classes, modalities), never on
the slider values, so an explorer can copy a new figure into its ``FigureWidget`` in place
(`refresh`). Only ``plotly.graph_objects`` is used (no pandas needed).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# colour-blind friendly qualitative palette (Okabe-Ito)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MASK_COLORS = ((0.0, "#f2f2f2"), (0.333, "#f2f2f2"), (0.333, "#d62728"), (0.666, "#d62728"),
               (0.666, "#2b7bba"), (1.0, "#2b7bba"))  # 0 padding, 1 missing, 2 observed
LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=30, t=80, b=40), title_font=dict(size=15))


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


# ----------------------------------------------------------------------------- masks
def mask_matrix(obs: Mapping[str, np.ndarray], pad: Mapping[str, np.ndarray], rows: int | None = None) -> tuple[np.ndarray, list[int]]:
    """(rows, sum T_m) codes 0 = padding, 1 = missing real frame, 2 = observed; and the column
    where each modality starts."""
    mods = list(obs)
    blocks, starts, at = [], [], 0
    for m in mods:
        o, p = np.asarray(obs[m], bool), np.asarray(pad[m], bool)
        if rows is not None:
            o, p = o[:rows], p[:rows]
        blocks.append(np.where(o, 2, np.where(p, 1, 0)))
        starts.append(at)
        at += o.shape[1]
    return np.concatenate(blocks, axis=1), starts


def mask_heatmap(obs: Mapping[str, np.ndarray], pad: Mapping[str, np.ndarray], rows: int = 40,
                 showscale: bool = False) -> go.Heatmap:
    """One heatmap trace of the masks of the first ``rows`` samples (frames of all modalities
    side by side): blue observed, red missing, grey padding."""
    z, starts = mask_matrix(obs, pad, rows)
    mods = list(obs)
    labels = np.concatenate([[f"{m} t={t}" for t in range(np.asarray(obs[m]).shape[1])] for m in mods])
    return go.Heatmap(
        z=z, zmin=0, zmax=2, colorscale=[list(c) for c in MASK_COLORS], showscale=showscale,
        customdata=np.broadcast_to(labels, z.shape), hovertemplate="sample %{y}, %{customdata}: %{z}<extra></extra>",
        colorbar=dict(tickvals=[0.33, 1, 1.67], ticktext=["padding", "missing", "observed"]) if showscale else None,
    )


def masks_figure(masks: Mapping[str, Any], pad: Mapping[str, np.ndarray], rows: int = 40, cols: int = 3) -> go.Figure:
    """A grid of mask pictures, one panel per protocol: ``masks`` maps a title to a `Masks`
    (or to its ``obs`` dict)."""
    names = list(masks)
    n_rows = max(1, -(-len(names) // cols))
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=names, horizontal_spacing=0.04, vertical_spacing=0.08)
    for i, name in enumerate(names):
        obs = getattr(masks[name], "obs", masks[name])
        fig.add_trace(mask_heatmap(obs, pad, rows, showscale=(i == 0)), row=i // cols + 1, col=i % cols + 1)
        _, starts = mask_matrix(obs, pad, 1)
        ends = starts[1:] + [sum(np.asarray(o).shape[1] for o in obs.values())]
        for s in starts[1:]:
            fig.add_vline(x=s - 0.5, line=dict(color="black", width=1), row=i // cols + 1, col=i % cols + 1)
        fig.update_xaxes(tickvals=[(a + b - 1) / 2 for a, b in zip(starts, ends)], ticktext=list(obs),
                         row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_layout(**LAYOUT, height=260 * n_rows + 60,
                      title=f"Missingness masks of the first {rows} test samples (blue observed, red missing, grey padding)")
    return fig


# ----------------------------------------------------------------------------- accuracy
def recall_bars(classes: Sequence[str], series: Mapping[str, Sequence[float]], title: str = "Per-class recall") -> go.Figure:
    """Grouped bars of per-class recall, one group per class, one colour per series."""
    fig = go.Figure([go.Bar(x=list(classes), y=list(map(float, v)), name=k, marker_color=color(i))
                     for i, (k, v) in enumerate(series.items())])
    fig.update_layout(**LAYOUT, barmode="group", title=title, yaxis=dict(range=[0, 1], title="recall"))
    return fig


def missingness_figure(view: Mapping[str, Any], rows: int = 30) -> go.Figure:
    """Explorer figure: the masks of the first test samples (left) and per-class recall of the
    method vs the Bayes oracle under those masks (right). Three traces, always."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55],
                        subplot_titles=("masks (blue observed, red missing)", "per-class recall"))
    fig.add_trace(mask_heatmap(view["obs"], view["pad"], rows), row=1, col=1)
    classes = list(view["classes"])
    fig.add_trace(go.Bar(x=classes, y=view["recall"], name=view.get("method", "method"), marker_color=color(0)), row=1, col=2)
    oracle = view.get("oracle_recall")
    fig.add_trace(go.Bar(x=classes, y=oracle if oracle is not None else [0.0] * len(classes), name="Bayes oracle",
                         marker_color=color(1), visible=oracle is not None), row=1, col=2)
    _, starts = mask_matrix(view["obs"], view["pad"], 1)
    width = sum(np.asarray(o).shape[1] for o in view["obs"].values())
    ends = starts[1:] + [width]
    for s in starts[1:]:
        fig.add_vline(x=s - 0.5, line=dict(color="black", width=1.5), row=1, col=1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, title="test samples", row=1, col=1)
    fig.update_xaxes(tickvals=[(a + b - 1) / 2 for a, b in zip(starts, ends)], ticktext=list(view["obs"]),
                     title="frames per modality", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    title = f"{view['label']}: accuracy {view['accuracy']:.3f}"
    if view.get("oracle_accuracy") is not None:
        title += f" vs Bayes oracle {view['oracle_accuracy']:.3f}"
    fig.update_layout(**LAYOUT, title=title, barmode="group", height=440, width=950,
                      legend=dict(orientation="h", y=-0.15))
    return fig


def accuracy_vs_rate(rates: Sequence[float], series: Mapping[str, Sequence[float]], metric: str = "accuracy",
                     title: str | None = None, xlabel: str = "missing rate") -> go.Figure:
    """Lines of a metric against the missing rate (ADMC Table 3), one per series."""
    fig = go.Figure([go.Scatter(x=list(rates), y=list(map(float, v)), mode="lines+markers", name=k,
                                line=dict(color=color(i), dash="dash" if "oracle" in k.lower() else "solid"))
                     for i, (k, v) in enumerate(series.items())])
    fig.update_layout(**LAYOUT, title=title or f"{metric} vs {xlabel}", xaxis_title=xlabel, yaxis_title=metric)
    return fig


def condition_bars(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy", group: str = "method",
                   x: str = "condition", title: str | None = None) -> go.Figure:
    """Grouped bars of ``metric`` per condition, one colour per ``group`` value (e.g. method)."""
    groups = list(dict.fromkeys(r[group] for r in rows))
    xs = list(dict.fromkeys(r[x] for r in rows))
    fig = go.Figure()
    for i, g in enumerate(groups):
        val = {r[x]: r[metric] for r in rows if r[group] == g}
        fig.add_trace(go.Bar(x=xs, y=[val.get(c) for c in xs], name=str(g), marker_color=color(i)))
    fig.update_layout(**LAYOUT, barmode="group", title=title or f"{metric} per {x}", yaxis_title=metric)
    return fig


def table_figure(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3,
                 title: str = "") -> go.Figure:
    """A plotly table of row dicts (numbers rounded)."""
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v)  # noqa: E731
    fig = go.Figure(go.Table(header=dict(values=columns, fill_color="#eeeeee", align="left"),
                             cells=dict(values=[[fmt(r.get(c, "")) for r in rows] for c in columns], align="left")))
    fig.update_layout(margin=dict(l=10, r=10, t=40 if title else 10, b=10), title=title,
                      height=min(80 + 26 * len(rows), 900))
    return fig


def training_curves(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("loss", "macro_recall"),
                    title: str = "Training curves") -> go.Figure:
    """Curves from a Trainer ``metrics.csv`` (rows with stage, epoch, split, metric, value)."""
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics))
    keys = list(dict.fromkeys((r["stage"], r["split"]) for r in rows))
    for j, metric in enumerate(metrics):
        for i, (stage, split) in enumerate(keys):
            pts = [(int(r["epoch"]), float(r["value"])) for r in rows
                   if r["stage"] == stage and r["split"] == split and r["metric"] == metric]
            if pts:
                fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                         name=f"{stage} {split}", line=dict(color=color(i)), legendgroup=f"{stage}{split}",
                                         showlegend=j == 0), row=1, col=j + 1)
    fig.update_xaxes(title="epoch")
    fig.update_layout(**LAYOUT, title=title, height=380)
    return fig


# ----------------------------------------------------------------------------- embeddings
def embedding_traces(xy: np.ndarray, labels: np.ndarray, classes: Sequence[str], kind: str, symbol: str,
                     opacity: float = 0.55, size: int = 6, group: str = "") -> list[go.Scatter]:
    """One scatter trace per class (same count whatever the points)."""
    xy, labels = np.asarray(xy, float).reshape(-1, 2), np.asarray(labels)
    return [
        go.Scatter(x=xy[labels == c, 0], y=xy[labels == c, 1], mode="markers", name=f"{kind} {name}",
                   legendgroup=group or kind, marker=dict(color=color(c), symbol=symbol, size=size, opacity=opacity,
                                                          line=dict(width=0.5, color="white") if symbol == "circle" else None))
        for c, name in enumerate(classes)
    ]


def embedding_scatter(real_xy: np.ndarray, real_y: np.ndarray, gen_xy: np.ndarray, gen_y: np.ndarray,
                      classes: Sequence[str], title: str = "Real vs generated features") -> go.Figure:
    """ADMC Fig. 3: 2-D projection of real (circles) and generated (crosses) features, by class."""
    fig = go.Figure(embedding_traces(real_xy, real_y, classes, "real", "circle")
                    + embedding_traces(gen_xy, gen_y, classes, "generated", "x", opacity=0.8))
    fig.update_layout(**LAYOUT, title=title, xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False))
    return fig


def trajectory_traces(steps: Sequence[int], xy: np.ndarray, target_xy: np.ndarray | None = None) -> list[go.Scatter]:
    """A denoising path in 2-D: the path coloured by step, its start and its end (and the
    sample's real feature as a star when given). Always four traces."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    steps = list(map(int, steps))
    target = np.asarray(target_xy, float).reshape(-1, 2) if target_xy is not None else np.zeros((0, 2))
    return [
        go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines+markers", name="trajectory", text=[f"n={s}" for s in steps],
                   hovertemplate="%{text}<extra></extra>", line=dict(color="#555", width=1.5),
                   marker=dict(size=5, color=steps, colorscale="Viridis", showscale=False)),
        go.Scatter(x=xy[:1, 0], y=xy[:1, 1], mode="markers", name=f"start n={steps[0] if steps else ''}",
                   marker=dict(size=12, symbol="diamond", color="#440154")),
        go.Scatter(x=xy[-1:, 0], y=xy[-1:, 1], mode="markers", name="generated (n=0)",
                   marker=dict(size=12, symbol="x", color="#D55E00")),
        go.Scatter(x=target[:, 0], y=target[:, 1], mode="markers", name="real feature",
                   marker=dict(size=14, symbol="star", color="#009E73", line=dict(width=1, color="black"))),
    ]


def trajectory_plot(steps: Sequence[int], xy: np.ndarray, background_xy: np.ndarray | None = None,
                    target_xy: np.ndarray | None = None, title: str = "Denoising trajectory of one sample") -> go.Figure:
    """One sample's reverse-process path (ADMC Eq. 3-4) over the real features' projection."""
    bg = np.asarray(background_xy if background_xy is not None else np.zeros((0, 2)), float).reshape(-1, 2)
    fig = go.Figure([go.Scatter(x=bg[:, 0], y=bg[:, 1], mode="markers", name="real features",
                                marker=dict(size=4, color="#bbbbbb"), hoverinfo="skip")]
                    + trajectory_traces(steps, xy, target_xy))
    fig.update_layout(**LAYOUT, title=title)
    return fig


def step_curves(steps: Sequence[int], series: Mapping[str, Sequence[float]], title: str = "", ylabel: str = "") -> go.Figure:
    """Lines over the reverse-process step n (x axis reversed: n decreases to 0)."""
    fig = go.Figure([go.Scatter(x=list(steps), y=list(map(float, v)), mode="lines+markers", name=k,
                                line=dict(color=color(i))) for i, (k, v) in enumerate(series.items())])
    fig.update_layout(**LAYOUT, title=title, xaxis=dict(title="step n", autorange="reversed"), yaxis_title=ylabel)
    return fig


def diffusion_figure(view: Mapping[str, Any]) -> go.Figure:
    """Explorer figure: real vs generated features (left, ADMC Fig. 3; on `synthetic` also the
    exact conditional as diamonds) and one sample's trajectory (right). Trace count: 2·C + 5
    (3·C + 5 with the exact cloud), whatever the slider values."""
    classes = list(view["classes"])
    exact = "exact_xy" in view
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45],
                        subplot_titles=(f"{view['projection']} of real (o) vs generated (x)"
                                        + (" vs exact conditional (◇)" if exact else "") + f" {view['modality']}",
                                        f"trajectory of test sample {view['sample_index']}"))
    for tr in embedding_traces(view["real_xy"], view["real_y"], classes, "real", "circle"):
        fig.add_trace(tr, row=1, col=1)
    for tr in embedding_traces(view["gen_xy"], view["gen_y"], classes, "generated", "x", opacity=0.85):
        fig.add_trace(tr, row=1, col=1)
    if exact:
        for tr in embedding_traces(view["exact_xy"], view["exact_y"], classes, "exact conditional", "diamond-open",
                                   opacity=0.7):
            fig.add_trace(tr, row=1, col=1)
    real = np.asarray(view["real_xy"], float)
    fig.add_trace(go.Scatter(x=real[:, 0], y=real[:, 1], mode="markers", name="real (all)", showlegend=False,
                             marker=dict(size=4, color="#cccccc"), hoverinfo="skip"), row=1, col=2)
    for tr in trajectory_traces(view["trajectory_steps"], view["trajectory_xy"], view.get("target_xy")):
        fig.add_trace(tr, row=1, col=2)
    acc = view.get("generated_accuracy")
    title = (f"{view['direction']}, n={view['start_step']}, {view['sampler']} x {view['num_steps']}"
             + (f": generated acc {acc:.2f} (real {view['real_accuracy']:.2f}" if acc is not None else "")
             + (f", exact conditional {view['exact_accuracy']:.2f})" if acc is not None and exact else
                (")" if acc is not None else "")))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(**LAYOUT, title=title, height=500, width=1000, legend=dict(font=dict(size=10)))
    return fig


def feature_heatmaps(panels: Mapping[str, np.ndarray], title: str = "One sample under each fill policy") -> go.Figure:
    """Side-by-side (frames x dims) heatmaps, e.g. `mmlab.explore.fill_examples` (the boolean
    ``observed`` entry, when present, labels the frame axis)."""
    observed = panels.get("observed")
    names = [k for k in panels if k != "observed"]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.03)
    zmax = float(max(np.abs(np.asarray(panels[k])).max() for k in names)) or 1.0
    for i, k in enumerate(names):
        z = np.asarray(panels[k], float)
        ylab = [f"t={t}{'' if observed is None or observed[t] else ' (missing)'}" for t in range(len(z))]
        fig.add_trace(go.Heatmap(z=z, y=ylab, zmin=-zmax, zmax=zmax, colorscale="RdBu", showscale=i == len(names) - 1),
                      row=1, col=i + 1)
        fig.update_yaxes(showticklabels=i == 0, autorange="reversed", row=1, col=i + 1)
    fig.update_xaxes(title="feature dim")
    fig.update_layout(**LAYOUT, title=title, height=360)
    return fig


def feature_maps(points: Mapping[str, np.ndarray], y: np.ndarray, classes: Sequence[str],
                 title: str = "2-D projection of the ITFN features, by class") -> go.Figure:
    """One scatter panel per modality (``points``: modality -> (N, 2)), coloured by class."""
    names = list(points)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    for i, m in enumerate(names):
        for tr in embedding_traces(points[m], y, classes, "class", "circle"):
            tr.showlegend = i == 0
            tr.name = tr.name.replace("class ", "")
            fig.add_trace(tr, row=1, col=i + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(**LAYOUT, title=title, height=380)
    return fig


def schedule_figure(alphas_cumprod: Sequence[float], marks: Sequence[int] = (30, 50, 80), max_step: int | None = None,
                    title: str = "Forward process (ADMC Eq. 1): signal and noise scale at step n") -> go.Figure:
    """sqrt(ᾱ_n) (signal) and sqrt(1 - ᾱ_n) (noise) against n, with the paper's start steps marked."""
    abar = np.asarray(alphas_cumprod, float)
    n = np.arange(len(abar)) if max_step is None else np.arange(min(len(abar), max_step + 1))
    fig = go.Figure([
        go.Scatter(x=n, y=np.sqrt(abar[n]), name="sqrt(ᾱ_n): signal kept", line=dict(color=color(0))),
        go.Scatter(x=n, y=np.sqrt(1 - abar[n]), name="sqrt(1-ᾱ_n): noise added", line=dict(color=color(1))),
    ])
    for k in marks:
        if k < len(abar):
            fig.add_vline(x=k, line=dict(dash="dot", color="#888"), annotation_text=f"n={k}: ᾱ={abar[k]:.3f}")
    fig.update_layout(**LAYOUT, title=title, xaxis_title="step n", yaxis=dict(range=[0, 1.02]))
    return fig


def embedding_panels(views: Sequence[Mapping[str, Any]], title: str = "Real (o) vs generated (x) features at several start steps n (ADMC Fig. 3)") -> go.Figure:
    """One real-vs-generated scatter panel per `mmlab.explore.diffusion_view` result."""
    fig = make_subplots(rows=1, cols=len(views), subplot_titles=[
        f"{v['direction']}, n={v['start_step']}: acc {v['generated_accuracy']:.2f}" for v in views])
    for i, v in enumerate(views):
        exact = (embedding_traces(v["exact_xy"], v["exact_y"], v["classes"], "exact conditional", "diamond-open",
                                  opacity=0.7) if "exact_xy" in v else [])
        for tr in (embedding_traces(v["real_xy"], v["real_y"], v["classes"], "real", "circle")
                   + embedding_traces(v["gen_xy"], v["gen_y"], v["classes"], "generated", "x", opacity=0.85) + exact):
            tr.showlegend = i == 0
            fig.add_trace(tr, row=1, col=i + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(**LAYOUT, title=title, height=420)
    return fig


# ----------------------------------------------------------------------------- widgets
def refresh(target: Any, fig: go.Figure) -> None:
    """Copy ``fig`` into ``target`` (a ``go.FigureWidget``): in place when the trace counts
    and types match (one message to the browser), else by replacing the traces."""
    same = len(target.data) == len(fig.data) and all(a.type == b.type for a, b in zip(target.data, fig.data))
    with target.batch_update():
        if same:
            for old, new in zip(target.data, fig.data):
                old.update(new.to_plotly_json(), overwrite=True)
        else:
            target.data = []
            target.add_traces(list(fig.data))
        target.layout.update(fig.layout.to_plotly_json(), overwrite=True)


# ----------------------------------------------------------------------------- CM-ARR (notebook 07)
def ellipse_xy(center: Sequence[float], cov: np.ndarray, n_sigma: float = 1.0, points: int = 48) -> np.ndarray:
    """(points, 2) outline of the ``n_sigma`` contour of a 2-D Gaussian (center, 2x2 covariance)."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, float))
    t = np.linspace(0, 2 * np.pi, points)
    circle = np.stack([np.cos(t), np.sin(t)], 1) * np.sqrt(np.clip(vals, 0, None)) * n_sigma
    return np.asarray(center, float) + circle @ vecs.T


def gaussian_ellipses(panels: Mapping[str, Mapping[str, Any]], n_sigma: float = 1.0,
                      title: str = "Utterance Gaussians of the UMC (CM-ARR §3.1.2), one ellipse per sample and modality") -> go.Figure:
    """One panel per `mmlab.explore.project_gaussians` result (e.g. before / after training):
    each utterance Gaussian as its ``n_sigma`` ellipse (colour = modality), its mean as a marker
    labelled with the sample's number, and a grey line joining the means of one sample's
    modalities. 2·M + 1 traces per panel."""
    names = list(panels)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[
        f"{k}<br><sup>the 2-D basis keeps {panels[k]['explained']:.0%} of these means' variance</sup>" for k in names])
    for i, name in enumerate(names):
        v = panels[name]
        centers, covs, samples = np.asarray(v["centers"], float), np.asarray(v["covs"], float), list(v["samples"])
        link_x: list[Any] = []
        link_y: list[Any] = []
        for s in range(len(samples)):
            link_x += list(centers[s, :, 0]) + [None]
            link_y += list(centers[s, :, 1]) + [None]
        fig.add_trace(go.Scatter(x=link_x, y=link_y, mode="lines", name="same sample", showlegend=i == 0,
                                 legendgroup="link", line=dict(color="#999", width=1, dash="dot"), hoverinfo="skip"),
                      row=1, col=i + 1)
        for j, m in enumerate(v["modalities"]):
            xs: list[Any] = []
            ys: list[Any] = []
            for s in range(len(samples)):
                e = ellipse_xy(centers[s, j], covs[s, j], n_sigma)
                xs += list(e[:, 0]) + [None]
                ys += list(e[:, 1]) + [None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{m}: {n_sigma:g}σ ellipse", legendgroup=m,
                                     showlegend=i == 0, line=dict(color=color(j), width=1.5), hoverinfo="skip"),
                          row=1, col=i + 1)
            fig.add_trace(go.Scatter(x=centers[:, j, 0], y=centers[:, j, 1], mode="markers+text", name=f"{m}: mean μ",
                                     legendgroup=m, showlegend=i == 0, text=[str(s) for s in samples],
                                     textposition="top center", textfont=dict(size=10, color=color(j)),
                                     marker=dict(color=color(j), size=8, line=dict(width=1, color="white")),
                                     hovertemplate=f"{m}, sample %{{text}}<extra></extra>"), row=1, col=i + 1)
        fig.update_xaxes(scaleanchor=f"y{i + 1 if i else ''}", row=1, col=i + 1)
    fig.update_layout(**LAYOUT, title=title, height=480, width=1000)
    return fig


def latent_figure(view: Mapping[str, Any], title: str | None = None, max_points: int | None = 400) -> go.Figure:
    """`mmlab.explore.flow_latents` in its 2-D PCA: left, every Z_m = F_m(X_m) coloured by
    modality with Eq. 7's mean latent Z~ of the target (crosses); right, the same points by
    class. The first ``max_points`` samples are drawn (None: all)."""
    mods, target = list(view["modalities"]), view["target"]
    cut = slice(None, max_points)
    xy = {k: np.asarray(v, float)[cut] for k, v in view["xy"].items()}
    y, classes = np.asarray(view["y"])[cut], list(view["classes"])
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"by modality, with Z~_{target} = mean of {', '.join('Z_' + m for m in view['sources'])} (Eq. 7)", "by class"))
    for j, m in enumerate(mods):
        p = np.asarray(xy[m], float)
        fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name=f"Z_{m}", legendgroup="mod",
                                 marker=dict(color=color(j), size=4, opacity=0.45)), row=1, col=1)
    p = np.asarray(xy["z_tilde"], float)
    fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name=f"Z~_{target} (Eq. 7)", legendgroup="mod",
                             marker=dict(color="#000", size=5, symbol="x", opacity=0.6)), row=1, col=1)
    allxy = np.concatenate([np.asarray(xy[m], float) for m in mods])
    ally = np.concatenate([y for _ in mods])
    for tr in embedding_traces(allxy, ally, classes, "class", "circle", opacity=0.4, size=4):
        tr.name = tr.name.replace("class ", "")
        fig.add_trace(tr, row=1, col=2)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(**LAYOUT, title=title or "The flows' latent space Z = F(X) (CM-ARR Eq. 6), time means, one PCA",
                      height=450, width=1000)
    return fig


def reconstruction_figure(view: Mapping[str, Any], title: str | None = None, max_points: int | None = 300) -> go.Figure:
    """`mmlab.explore.reconstruction_view`: real (o), reconstructed (x) and, on `synthetic`,
    exact-conditional (◇, one draw) features of the target in one PCA fitted on the real ones,
    by class; the first ``max_points`` samples (None: all)."""
    cut = slice(None, max_points)
    classes, y, acc = list(view["classes"]), np.asarray(view["y"])[cut], view["accuracy"]
    xy = {k: np.asarray(v, float)[cut] for k, v in view["xy"].items()}
    traces = (embedding_traces(xy["real"], y, classes, "real", "circle")
              + embedding_traces(xy["generated"], y, classes, "reconstructed", "x", opacity=0.8))
    if "exact" in xy:
        traces += embedding_traces(xy["exact"], y, classes, "exact conditional", "diamond-open", opacity=0.6)
    fig = go.Figure(traces)
    default = (f"{view['direction']}: probe accuracy real {acc['real']:.2f}, reconstructed {acc['generated']:.2f}"
               + (f", one exact draw {acc['exact']:.2f}" if "exact" in acc else ""))
    fig.update_layout(**LAYOUT, title=title or default, xaxis=dict(showticklabels=False),
                      yaxis=dict(showticklabels=False), height=480, width=900, legend=dict(font=dict(size=10)))
    return fig


def ablation_figure(summary: Mapping[str, Any], title: str | None = None) -> go.Figure:
    """`mmlab.explore.ablation_summary` as bars (the six-pattern average per method, CM-ARR
    Table 3 layout), with ±1 standard deviation over seeds when there are several and the Bayes
    oracle as a dashed line."""
    rows, oracle = list(summary["rows"]), summary.get("oracle")
    names = [r["method"] for r in rows]
    vals = [r["average"] for r in rows]
    sds = [r["std"] for r in rows]
    many = any(r["n_seeds"] > 1 for r in rows)
    colors = [color(0) if m == "cmarr" else "#9aa5b1" if m.startswith("cmarr") else color(1) for m in names]
    fig = go.Figure(go.Bar(x=names, y=vals, marker_color=colors, name=summary.get("metric", "accuracy"),
                           error_y=dict(type="data", array=sds, visible=True) if many else None,
                           text=[f"{v:.3f}" for v in vals], textposition="outside",
                           customdata=[r["n_seeds"] for r in rows],
                           hovertemplate="%{x}: %{y:.4f} (%{customdata} seed(s))<extra></extra>"))
    tops = [v + s for v, s in zip(vals, sds)] + ([oracle["average"]] if oracle else [])
    lows = [v - s for v, s in zip(vals, sds)]
    if oracle:
        fig.add_hline(y=oracle["average"], line=dict(dash="dash", color="#333"),
                      annotation_text=f"Bayes oracle {oracle['average']:.3f}", annotation_position="top left")
    seeds = sorted({r["n_seeds"] for r in rows})
    default = (f"Six-pattern average {summary.get('metric', 'accuracy')} per method "
               f"({'mean ± sd over ' if many else ''}{'/'.join(map(str, seeds))} seed(s))")
    fig.update_layout(**LAYOUT, title=title or default, showlegend=False, height=440,
                      yaxis=dict(title=summary.get("metric", "accuracy"),
                                 range=[max(0.0, min(lows or [0]) - 0.05), min(1.0, max(tops or [1]) + 0.03)]))
    return fig


# ----------------------------------------------------------------------------- CIDer (notebook 08)
MASK_IMAGE_COLORS = ((0.0, "#f2f2f2"), (0.25, "#f2f2f2"), (0.25, "#d62728"), (0.5, "#d62728"), (0.5, "#2b7bba"),
                     (0.75, "#2b7bba"), (0.75, "#08306b"), (1.0, "#08306b"))  # padding, missing, observed, [CLS]/[SEP]


def mask_image_figure(images: Mapping[str, Any], title: str | None = None) -> go.Figure:
    """`mmlab.explore.mask_images` as pictures: one panel per (protocol, rate), rows = protocols,
    columns = rates; in each, samples down and the positions of every modality across (grey
    padding, red missing, blue observed, dark blue the [CLS]/[SEP] that are never dropped)."""
    panels = list(images["panels"])
    protocols = list(dict.fromkeys(p["protocol"] for p in panels))
    rates = sorted({p["rate"] for p in panels})
    titles = []
    by = {(p["protocol"], p["rate"]): p for p in panels}
    for pr in protocols:
        for r in rates:
            p = by.get((pr, r))
            titles.append(f"{pr}, rate {r:g} (realised {p['missing_rate']:.2f})" if p else "")
    fig = make_subplots(rows=len(protocols), cols=len(rates), subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.12)
    mods, widths = list(images["modalities"]), images["widths"]
    starts = np.cumsum([0] + [widths[m] for m in mods])
    labels = np.concatenate([[f"{m} position {t}" for t in range(widths[m])] for m in mods])
    for i, pr in enumerate(protocols):
        for j, r in enumerate(rates):
            p = by.get((pr, r))
            if p is None:
                continue
            z = np.asarray(p["image"])
            fig.add_trace(go.Heatmap(z=z, zmin=0, zmax=3, colorscale=[list(c) for c in MASK_IMAGE_COLORS],
                                     showscale=(i == 0 and j == 0), customdata=np.broadcast_to(labels, z.shape),
                                     colorbar=dict(tickvals=[0.375, 1.125, 1.875, 2.625],
                                                   ticktext=["padding", "missing", "observed", "[CLS]/[SEP]"]),
                                     hovertemplate="sample %{y}, %{customdata}: %{z}<extra></extra>"),
                          row=i + 1, col=j + 1)
            for s in starts[1:-1]:
                fig.add_vline(x=s - 0.5, line=dict(color="black", width=1), row=i + 1, col=j + 1)
            fig.update_xaxes(tickvals=[(a + b - 1) / 2 for a, b in zip(starts[:-1], starts[1:])], ticktext=mods,
                             row=i + 1, col=j + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    n = len(panels[0]["image"]) if panels else 0
    fig.update_layout(**LAYOUT, height=230 * len(protocols) + 90, width=330 * len(rates) + 120,
                      title=title or f"Masks of the first {n} {images.get('split', 'test')} samples (CIDer §III-A)")
    return fig


def block_masks_figure(panels: Sequence[Mapping[str, Any]], lengths: Sequence[int], names: Sequence[str],
                       title: str | None = None, cols: int = 4) -> go.Figure:
    """`mmlab.explore.block_mask_panels`: one picture per MCT branch, rows (queries) down and
    columns (keys) across the concatenation T | A | V; blue where a row may attend to a column."""
    n_rows = -(-len(panels) // cols)
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=[p["branch"] for p in panels],
                        horizontal_spacing=0.04, vertical_spacing=0.1)
    starts = np.cumsum([0] + [int(t) for t in lengths])
    mid = [(a + b - 1) / 2 for a, b in zip(starts[:-1], starts[1:])]
    for k, p in enumerate(panels):
        r, c = k // cols + 1, k % cols + 1
        fig.add_trace(go.Heatmap(z=np.asarray(p["mask"], int), zmin=0, zmax=1, showscale=False,
                                 colorscale=[[0, "#f7f7f7"], [1, "#2b7bba"]],
                                 hovertemplate="row %{y}, column %{x}: %{z}<extra></extra>"), row=r, col=c)
        for s in starts[1:-1]:
            fig.add_vline(x=s - 0.5, line=dict(color="#555", width=0.8), row=r, col=c)
            fig.add_hline(y=s - 0.5, line=dict(color="#555", width=0.8), row=r, col=c)
        fig.update_xaxes(tickvals=mid, ticktext=list(names), row=r, col=c)
        fig.update_yaxes(tickvals=mid, ticktext=list(names), autorange="reversed", row=r, col=c)
    dims = " | ".join(f"T_{n.lower()}={t}" for n, t in zip(names, lengths))
    fig.update_layout(**LAYOUT, height=270 * n_rows + 80, width=260 * cols + 80,
                      title=title or f"The MCT's branch masks (CIDer Eqs. 7-12) for {dims}: row attends to column")
    return fig


def distillation_figure(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> go.Figure:
    """`mmlab.explore.distillation_log` over epochs: the task losses and Eq. 30's total (left),
    the three distillation losses L_recon, L_attn, L_joint (middle), the valid accuracy (right)."""
    epochs = [r["epoch"] for r in rows]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("task losses (Eqs. 28, 30)",
                                                        "distillation losses (Eqs. 17-19)", "valid accuracy"))
    groups = ((("teacher_task", "student_task", "loss"), 1), (("recon", "attn", "joint"), 2), (("valid_accuracy",), 3))
    i = 0
    for keys, col in groups:
        for k in keys:
            fig.add_trace(go.Scatter(x=epochs, y=[r.get(k) for r in rows], mode="lines+markers", name=k,
                                     line=dict(color=color(i))), row=1, col=col)
            i += 1
    fig.update_xaxes(title="epoch", dtick=1)
    fig.update_layout(**LAYOUT, title=title or "CIDer's losses per epoch (train-epoch means; valid accuracy over "
                      "the seven conditions)", height=380, width=1050)
    return fig


def rate_curves_figure(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy", title: str | None = None) -> go.Figure:
    """`mmlab.explore.rate_curves`: one panel per missing type, ``metric`` against the rate, one
    colour per split, the method solid and the Bayes oracle dashed; the legend carries each AUILC."""
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig = make_subplots(rows=1, cols=len(protocols), subplot_titles=protocols, shared_yaxes=True)
    for c, pr in enumerate(protocols):
        for i, s in enumerate(splits):
            for m in methods:
                pts = sorted((float(r["condition"].split("=")[1]), float(r[metric])) for r in rows
                             if r["protocol"] == pr and r["split"] == s and r["method"] == m
                             and r["condition"].startswith("rate="))
                area = [float(r[metric]) for r in rows if r["protocol"] == pr and r["split"] == s and r["method"] == m
                        and r["condition"] == "AUILC"]
                if not pts:
                    continue
                oracle = m == "bayes_oracle"
                fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                         name=f"{m} {s}" + (f" (AUILC {area[0]:.3f})" if area else ""),
                                         line=dict(color=color(i), dash="dash" if oracle else "solid"),
                                         marker=dict(symbol="circle-open" if oracle else "circle")),
                              row=1, col=c + 1)
    fig.update_xaxes(title="missing rate")
    fig.update_yaxes(title=metric, row=1, col=1)
    fig.update_layout(**LAYOUT, title=title or f"{metric} vs missing rate per missing type (AUILC: CIDer Eq. 31)",
                      height=420, width=380 * len(protocols) + 120, legend=dict(font=dict(size=10)))
    return fig


def tau_figure(sweep: Mapping[str, Any], tau: float | None = None, title: str | None = None) -> go.Figure:
    """`mmlab.explore.tau_sweep`: accuracy against Eq. 25's tau per split (solid; dotted: the
    Bayes oracle on the same conditions), the tau chosen on valid (dashed line), the tau that
    would be best on test_ood (a star: an upper bound, never a choice) and ``tau`` (the slider,
    grey line). One trace per split and per oracle line, whatever ``tau`` is."""
    grid = list(sweep["grid"])
    fig = go.Figure()
    for i, (s, c) in enumerate(sweep["curves"].items()):
        fig.add_trace(go.Scatter(x=grid, y=c["accuracy"], mode="lines+markers", name=f"{s} (n={sweep['n'][s]})",
                                 line=dict(color=color(i))))
        if s in sweep.get("oracle", {}):
            fig.add_trace(go.Scatter(x=[grid[0], grid[-1]], y=[sweep["oracle"][s]] * 2, mode="lines",
                                     name=f"Bayes oracle {s}", line=dict(color=color(i), dash="dot", width=1)))
    ood = sweep["curves"].get("test_ood")
    if ood is not None:
        b = grid.index(sweep["best"]["test_ood"])
        fig.add_trace(go.Scatter(x=[grid[b]], y=[ood["accuracy"][b]], mode="markers", name="best on test_ood "
                                 "(upper bound, not a choice)", marker=dict(symbol="star", size=14, color="#000")))
    fig.add_vline(x=sweep["chosen"], line=dict(dash="dash", color="#333"), annotation_text=f"chosen on valid: "
                  f"tau={sweep['chosen']:g}", annotation_position="top right")
    if tau is not None:
        fig.add_vline(x=float(tau), line=dict(color="#999", width=3), opacity=0.5)
    fig.update_layout(**LAYOUT, title=title or f"Accuracy vs tau of Eq. 25 (mean over the '{sweep['patterns']}' "
                      "conditions tau is chosen on)", xaxis_title="tau", yaxis_title="accuracy", height=440, width=900)
    return fig
