# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · ADMC stage (a): independently trained feature networks (ITFN)
#
# **What this notebook teaches.** ADMC first trains one encoder per modality *alone*, on
# single-modality classification, then freezes it (Fig. 2a): an LSTM + max-pool for audio and
# video, a TextCNN for text, each with a 2-layer FC head (the CPU default mean-pools instead and
# adds a linear map of the frames' mean, both chosen on the valid split: choice A1). Their utterance-level features are
# standardised with train statistics (choice A8) and stacked as F⁰ = (F_a, F_v, F_t) ∈ R^{M×D}, the
# tokens that the diffusion model of notebook 04 completes.
#
# **Paper ties.** ADMC §3.1 and Fig. 2(a); §4.1-4.2 (encoder shapes); choices A1, A2 and A8 in
# `mmlab/methods/admc.py`, where the paper is silent; the "w/o ITFN" ablation of Tables 1-2 is
# `admc_wo_itfn`. Paper title: README.md, "Papers".
#
# **Cost.** This notebook trains ADMC once (all three stages, ~1-2 min on 2 cores with the
# defaults; notebooks 04 and 06 reuse it). Paper scale: `preset="paper", device="cuda",
# admc_preset="paper", admc_overrides=[]`.

# %% tags=["parameters"]
preset = "default"   # synthetic dataset: "tiny" (tests), "default" (2-core CPU), "paper" (IEMOCAP sizes, GPU)
device = "cpu"       # "cuda" at paper scale
seed = 1111          # training seed and test-mask seed
threads = 1          # CPU threads for torch / numba (1 avoids oversubscription on small CPUs, None keeps the library default)
interactive = True   # widgets when True; `mmlab run` and papermill pass False and get static figures
out_dir = None       # run folder from `mmlab run` (metrics/, figures/, models/), None for a temporary folder
admc_preset = None   # "paper": ADMC's paper sizes (D 256, ADN 4 layers x 8 heads, 400 ADN epochs)
# ADMC config overrides for the CPU budget ({} with admc_preset "paper"):
admc_overrides = {"itfn.train.epochs": 6, "adn.train.epochs": 40, "mf.train.epochs": 6, "mf.scenarios": "full", "mmer": False}
projection = "pca"    # 2-D projection of the features: pca, umap or tsne

# %%
from mmlab import explore, viz, workspace
from mmlab.data.synthetic import make_synthetic
from mmlab.methods.oracle import oracle_of

workspace.setup_notebook(threads=threads, seed=seed)
rec = workspace.NotebookRecorder("03_encoders_itfn", out_dir)
data = make_synthetic(preset=preset)
print(data.describe())

# %% [markdown]
# ## 1. Train (or reload) ADMC
#
# The `Trainer` runs the method's stages in order, each with the other parts frozen:
# `itfn_A`, `itfn_V`, `itfn_T` (stage a), `adn` (stage b), `mf_full` (stage c).

# %%
admc = explore.trained_method("admc", data, out_dir, overrides=admc_overrides, preset=admc_preset,
                              device=device, seed=seed)
print("trained (or reloaded) ADMC in", admc.run_dir)
log = [r for r in explore.training_log(admc) if r["stage"].startswith("itfn")]
rec.show(viz.training_curves(log, metrics=("loss", "macro_recall"), title="ITFN training (one stage per modality)"),
         "itfn_training")

# %% [markdown]
# ## 2. How good is each modality alone?
#
# Each frozen unimodal head on its own test features, beside the exact Bayes accuracy of that
# single modality: the encoders cannot beat the oracle, and the gap is what is left to learn.

# %%
state = explore.diffusion_state(admc, data, n_samples=10_000, projection=projection, seed=seed, warm=False)
itfn_rows = explore.itfn_table(state, oracle_of(data))
rec.table("itfn", itfn_rows)
rec.show(viz.table_figure(itfn_rows, title="Unimodal ITFN heads vs the Bayes oracle (test)"), "itfn_table")

# %% [markdown]
# ## 3. Standardised features (choice A8)
#
# Diffusion assumes roughly unit-variance data; encoder outputs are not normalised, so ADMC
# z-scores every feature dimension with train statistics before the ADN and the fusion.

# %%
stats = explore.feature_stats(state)
rec.table("feature_stats", stats)
rec.show(viz.table_figure(stats, title="ITFN feature statistics (test)"), "feature_stats")

# %% [markdown]
# ## 4. The feature space of each modality
#
# A 2-D projection of the standardised test features per modality, coloured by class: the
# clusters each encoder found on its own.

# %%
points = {m: explore.feature_projection(state, m) for m in data.modalities}
rec.show(viz.feature_maps(points, state.part.y, data.classes), "feature_maps")
rec.log(**{f"itfn_accuracy_{r['modality']}": r["itfn_accuracy"] for r in itfn_rows},
        **{f"oracle_accuracy_{r['modality']}": r["oracle_accuracy"] for r in itfn_rows})
rec.metrics
