"""The pure functions behind the explorer notebooks (05 missingness, 06 diffusion step n).

Notebooks only wire widgets; everything a slider move computes lives here, with caches so
that a move answers within ~2 s on a 2-core CPU:

- `missingness_view(state, protocol, value, fill, seed)`: predictions of a trained method and
  of the Bayes oracle under one seeded mask draw (accuracy, per-class recall, the gap to the
  oracle). Cached per (protocol, value, fill, seed).
- `diffusion_view(state, start_step, sampler, num_steps, modality, sample_index)`: ADMC's
  reverse process from step n (Eq. 3-4) generating one modality from the others: real vs
  generated features in 2-D (Fig. 3), the accuracy of the frozen unimodal ITFN head on the
  generated features (Table 4) and one sample's denoising trajectory. The encoded test
  features are computed once per state; completions are cached per (modality, n, sampler,
  steps); the projection is fitted once per modality on the REAL features and generated
  points are placed with ``transform`` (UMAP, PCA); t-SNE has no transform, so it is fitted
  jointly per completion and cached.

`MissingnessExplorer` and `DiffusionExplorer` build the ipywidgets + ``go.FigureWidget`` UI
around those functions (notebooks with ``interactive=True``); headless notebooks show the
same views as static figures (`mmlab.viz.missingness_figure`, `mmlab.viz.diffusion_figure`).

The CM-ARR notebook (07) reads `mmlab.explore.cmarr`: the UMC's utterance Gaussians before and
after training (`utterance_gaussians`, `alignment_distances`, `project_gaussians`), the flows'
latent space (`flow_latents`), a reconstructed modality beside its real value and exact
conditional (`reconstruction_view`) and the ablation rows of a comparison run (`ablation_summary`).

Layout: `common` (constants, caches, `trained_method`), `missingness`, `diffusion`, `widgets`, `cmarr`.
Import from ``mmlab.explore``.
"""

from __future__ import annotations

from mmlab.explore.common import (
    RATE_PROTOCOLS, PROTOCOLS, PROJECTIONS, SAMPLERS, data_fingerprint, override_args,
    trained_method, training_log,
)
from mmlab.explore.missingness import (
    MissingnessState, missingness_state, make_generator, condition_label, missingness_view,
    missingness_sweep, pattern_rows, mask_gallery, rate_table, fill_examples,
)
from mmlab.explore.diffusion import (
    DiffusionState, diffusion_state, diffusion_view, itfn_table, feature_stats, feature_projection,
    trajectory_distances, step_sweep,
)
from mmlab.explore.widgets import MissingnessExplorer, DiffusionExplorer
from mmlab.explore.cmarr import (
    ABLATION_METHODS, untrained_copy, utterance_gaussians, alignment_distances, sigma_stats, fit_pca, pca_transform,
    project_gaussians, flow_latents, reconstruction_view, ablation_results_path, ablation_summary,
)

__all__ = [
    "RATE_PROTOCOLS",
    "PROTOCOLS",
    "PROJECTIONS",
    "SAMPLERS",
    "data_fingerprint",
    "override_args",
    "trained_method",
    "training_log",
    "MissingnessState",
    "missingness_state",
    "make_generator",
    "condition_label",
    "missingness_view",
    "missingness_sweep",
    "pattern_rows",
    "mask_gallery",
    "rate_table",
    "fill_examples",
    "DiffusionState",
    "diffusion_state",
    "diffusion_view",
    "itfn_table",
    "feature_stats",
    "feature_projection",
    "trajectory_distances",
    "step_sweep",
    "MissingnessExplorer",
    "DiffusionExplorer",
    "ABLATION_METHODS",
    "untrained_copy",
    "utterance_gaussians",
    "alignment_distances",
    "sigma_stats",
    "fit_pca",
    "pca_transform",
    "project_gaussians",
    "flow_latents",
    "reconstruction_view",
    "ablation_results_path",
    "ablation_summary",
]
