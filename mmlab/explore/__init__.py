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

The CIDer notebook (08) reads `mmlab.explore.cider`: RMFM / traditional RMFM / RMM masks as
images (`mask_images`), the MCT's branch masks (`block_mask_panels`), the distillation losses per
epoch (`distillation_log`), accuracy-vs-rate curves and AUILC beside the oracle (`rate_curves`,
`auilc_summary`), Eq. 27's kept words and counterfactual texts (`bias_word_table`,
`counterfactual_examples`) and accuracy as tau moves (`tau_sweep`, `TauExplorer`).

Layout: `common` (constants, caches, `trained_method`), `missingness`, `diffusion`, `widgets`, `cmarr`.
`cider` holds notebook 08's functions and its tau widget.
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
from mmlab.explore.cider import (
    CIDER_PROTOCOLS, MASK_CODES, with_train_rows, frame_conditions, mask_images, mask_rate_rows, mct_inputs,
    branch_label, block_mask_panels, distillation_log, rate_curves, auilc_summary, vocabulary, decode, word_kinds,
    class_counts, fitted_bias_words, bias_word_table, kept_summary, counterfactual_examples, counterfactual_share,
    log_probs, read_calibration, tau_sweep, tau_rows, condition_rows, tau_view, TauExplorer,
)

__all__ += [
    "CIDER_PROTOCOLS",
    "MASK_CODES",
    "with_train_rows",
    "frame_conditions",
    "mask_images",
    "mask_rate_rows",
    "mct_inputs",
    "branch_label",
    "block_mask_panels",
    "distillation_log",
    "rate_curves",
    "auilc_summary",
    "vocabulary",
    "decode",
    "word_kinds",
    "class_counts",
    "fitted_bias_words",
    "bias_word_table",
    "kept_summary",
    "counterfactual_examples",
    "counterfactual_share",
    "log_probs",
    "read_calibration",
    "tau_sweep",
    "tau_rows",
    "condition_rows",
    "tau_view",
    "TauExplorer",
]
