"""`MissingnessExplorer` and `DiffusionExplorer`: ipywidgets + ``go.FigureWidget`` around the
explorer views (notebooks with ``interactive=True``)."""

from __future__ import annotations

from typing import Any

from mmlab import viz
from mmlab.explore.common import PROJECTIONS, PROTOCOLS, RATE_PROTOCOLS, SAMPLERS
from mmlab.explore.diffusion import diffusion_view, DiffusionState
from mmlab.explore.missingness import missingness_view, MissingnessState

# ============================================================================ widgets
class MissingnessExplorer:
    """Protocol / pattern / rate / fill / seed controls over `missingness_view` and a
    ``FigureWidget`` (masks + per-class recall vs the Bayes oracle)."""

    def __init__(self, state: MissingnessState, protocol: str = "fixed", value: Any = None, fill: str | None = None,
                 seed: int = 1111):
        import ipywidgets as W
        import plotly.graph_objects as go

        self.state = state
        pats = state.patterns
        self.protocol = W.Dropdown(options=list(PROTOCOLS), value=protocol, description="protocol")
        self.pattern = W.Dropdown(options=pats, value=value if protocol == "fixed" and value in pats else pats[-1],
                                  description="available")
        self.rate = W.FloatSlider(value=float(value) if protocol in RATE_PROTOCOLS and value is not None else 0.3,
                                  min=0.0, max=1.0, step=0.05, description="rate", continuous_update=False)
        self.fill = W.Dropdown(options=["zero", "mean", "noise"], value=fill or getattr(state.method, "fill", "zero"),
                               description="fill")
        self.seed = W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed")
        self.summary = W.HTML()
        self.view = self._compute()
        self.figure = go.FigureWidget(viz.missingness_figure(self.view))
        self._show_summary()
        for w in (self.protocol, self.pattern, self.rate, self.fill, self.seed):
            w.observe(self._on_change, names="value")
        self._sync_visibility()
        self.widget = W.VBox([W.HBox([self.protocol, self.pattern, self.rate]), W.HBox([self.fill, self.seed]),
                              self.summary, self.figure])

    def _value(self) -> Any:
        p = self.protocol.value
        return self.pattern.value if p == "fixed" else None if p == "full" else self.rate.value

    def _compute(self) -> dict[str, Any]:
        return missingness_view(self.state, self.protocol.value, self._value(), self.fill.value, int(self.seed.value))

    def _sync_visibility(self) -> None:
        p = self.protocol.value
        self.pattern.layout.display = None if p == "fixed" else "none"
        self.rate.layout.display = None if p in RATE_PROTOCOLS else "none"

    def _show_summary(self) -> None:
        v = self.view
        gap = "" if v["oracle_accuracy"] is None else f" &middot; Bayes oracle <b>{v['oracle_accuracy']:.3f}</b> (gap {v['gap']:+.3f})"
        self.summary.value = (f"{v['label']}, fill={v['fill']}: accuracy <b>{v['accuracy']:.3f}</b>, "
                              f"UA {v['macro_recall']:.3f}{gap} &middot; missing frames {v['missing_rate']:.1%} "
                              f"&middot; {v['seconds'] * 1000:.0f} ms")

    def update(self) -> dict[str, Any]:
        """Recompute the view from the controls and refresh the figure in place."""
        self._sync_visibility()
        self.view = self._compute()
        viz.refresh(self.figure, viz.missingness_figure(self.view))
        self._show_summary()
        return self.view

    def _on_change(self, change: dict) -> None:
        self.update()


class DiffusionExplorer:
    """Start step n / sampler / steps / modality / sample / projection controls over
    `diffusion_view` and a ``FigureWidget`` (Fig. 3 scatter + one trajectory)."""

    def __init__(self, state: DiffusionState, start_step: int = 50, sampler: str = "ddpm", num_steps: int | None = None,
                 modality: str | None = None, sample_index: int = 0):
        import ipywidgets as W
        import plotly.graph_objects as go

        self.state = state
        style = {"description_width": "initial"}
        self.n = W.IntSlider(value=int(start_step), min=0, max=state.max_step, step=1, description="start step n",
                             continuous_update=False, style=style)
        self.sampler = W.ToggleButtons(options=list(SAMPLERS), value=sampler, description="sampler", style=style)
        self.steps = W.IntSlider(value=int(num_steps or start_step), min=1, max=state.max_step, description="steps",
                                 continuous_update=False, style=style)
        self.modality = W.Dropdown(options=list(state.modalities), value=modality or state.modalities[-1],
                                   description="generate")
        self.sample = W.IntSlider(value=int(sample_index), min=0, max=state.n_track - 1, description="sample",
                                  continuous_update=False)
        self.projection = W.Dropdown(options=list(PROJECTIONS), value=state.projection, description="projection")
        self.summary = W.HTML()
        self.view = self._compute()
        self.figure = go.FigureWidget(viz.diffusion_figure(self.view))
        self._show_summary()
        for w in (self.n, self.sampler, self.steps, self.modality, self.sample, self.projection):
            w.observe(self._on_change, names="value")
        self.widget = W.VBox([W.HBox([self.n, self.steps, self.sampler]),
                              W.HBox([self.modality, self.sample, self.projection]), self.summary, self.figure])

    def _compute(self) -> dict[str, Any]:
        return diffusion_view(self.state, self.n.value, self.sampler.value, self.steps.value, self.modality.value,
                              self.sample.value, self.projection.value)

    def _show_summary(self) -> None:
        v = self.view
        self.summary.value = (f"{v['direction']} from n={v['start_step']} ({v['sampler']}, {v['num_steps']} steps): "
                              f"ITFN-head accuracy on generated features <b>{v['generated_accuracy']:.3f}</b> "
                              f"(real {v['real_accuracy']:.3f}); mean distance to the real feature {v['distance']:.2f} "
                              f"(real spread {v['real_spread']:.2f}) &middot; {v['seconds'] * 1000:.0f} ms")

    def update(self) -> dict[str, Any]:
        """Recompute the view from the controls and refresh the figure in place."""
        self.view = self._compute()
        viz.refresh(self.figure, viz.diffusion_figure(self.view))
        self._show_summary()
        return self.view

    def _on_change(self, change: dict) -> None:
        self.update()
