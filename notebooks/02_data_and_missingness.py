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
# # 02 · Data and missingness: the batch contract, protocols and fill policies
#
# **What this notebook teaches.** How a batch carries named modalities with padding, observation
# and availability masks; how every missing-modality protocol of the three papers draws masks
# (outside the model, from a seed, never from the features); how fill policies write
# placeholders; and what each protocol costs the Bayes-optimal classifier.
#
# **Paper ties.** ADMC's fixed patterns (Tables 1-2) and its missing-rate protocol (Table 3:
# "randomly drop one or two modalities" with probability r, ADMC §5.3); the availability mask
# *m* of ADMC Eq. 4 is `batch.avail`; CIDer's random modality-feature missing (RMFM, CIDer
# §III-A) and RMM (its appendix), and the CPM-Nets view-missing rate η (Zhang et al., NeurIPS
# 2019). Paper titles: README.md, "Papers".
#
# **Cost.** Seconds: nothing is trained.

# %% tags=["parameters"]
preset = "default"   # synthetic dataset: "tiny" (tests), "default" (2-core CPU), "paper" (IEMOCAP sizes, GPU)
device = "cpu"       # "cuda" at paper scale
seed = 1111          # training seed and test-mask seed
threads = 1          # CPU threads for torch / numba (1 avoids oversubscription on small CPUs, None keeps the library default)
interactive = True   # widgets when True; `mmlab run` and papermill pass False and get static figures
out_dir = None       # run folder from `mmlab run` (metrics/, figures/, models/), None for a temporary folder

# %%
from mmlab import explore, viz, workspace
from mmlab.data.synthetic import make_synthetic
from mmlab.evaluate import oracle_table
from mmlab.methods.oracle import oracle_of

workspace.setup_notebook(threads=threads, seed=seed)
rec = workspace.NotebookRecorder("02_data_and_missingness", out_dir)
data = make_synthetic(preset=preset)
print(data.describe())

# %% [markdown]
# ## 1. One batch
#
# Every method receives an `MMBatch`: `feats[m]` (B, T_m, D_m), `pad_mask[m]` (B, T_m, True = real
# frame), `obs_mask[m]` (True = observed after missingness), `avail` (B, M) and labels `y`.

# %%
batch = data.batch(range(4))
for m in batch.modalities:
    print(f"{m}: feats {tuple(batch.feats[m].shape)}, real frames per sample {batch.pad_mask[m].sum(1).tolist()}")
print("avail", batch.avail.shape, "y", batch.y.tolist())

# %% [markdown]
# ## 2. What each modality is worth
#
# The exact Bayes accuracy per condition (the `synthetic` generator gives every modality class
# information of its own plus a shared latent, so pairs beat singles and full input beats pairs).

# %%
oracle_rows = oracle_table(data, split="test")
rec.table("bayes_oracle", oracle_rows)
rec.show(viz.condition_bars([{**r, "method": "Bayes oracle"} for r in oracle_rows], "accuracy",
                            title="Bayes accuracy per condition"), "oracle_per_condition")

# %% [markdown]
# ## 3. Masks of every protocol
#
# Blue = observed frame, red = a real frame made missing, grey = padding; columns are the frames
# of A, V and T side by side, rows are the first test samples. Modality-level protocols (fixed
# pattern, ADMC's rate drop, RMM, CPM) remove whole modalities; RMFM removes single frames.

# %%
gallery, pad = explore.mask_gallery(data, seed=seed)
rec.show(viz.masks_figure(gallery, pad, rows=40), "mask_gallery")

# %% [markdown]
# ## 4. Nominal vs realised missing rates
#
# A rate means different things in different papers: ADMC's rate is the fraction of *samples*
# that lose one or two modalities, RMM drops each (sample, modality) independently, RMFM drops
# frames, CPM's η counts missing (sample, view) entries while keeping at least one view.

# %%
rates = explore.rate_table(data, rates=(0.1, 0.3, 0.5), seed=seed)
rec.table("realised_rates", rates)
rec.show(viz.table_figure(rates, title="Realised missingness per protocol and nominal rate"), "rate_table")

# %% [markdown]
# ## 5. Fill policies
#
# Missingness and filling are separate steps: the same mask can be filled with zeros (most
# baselines), the train mean, or Gaussian noise (ADMC's starting point for the missing tokens).

# %%
panels = explore.fill_examples(data, protocol="rmfm", value=0.5, seed=seed)
rec.show(viz.feature_heatmaps(panels, title=f"Sample 0, modality {data.modalities[0]}, RMFM rate 0.5"), "fill_policies")

# %% [markdown]
# ## 6. The cost of missingness for the best possible classifier (ADMC Table 3 protocol)
#
# The Bayes oracle itself under increasing rates: an upper bound for every curve of notebook 05
# and of the benchmark report.

# %%
oracle_state = explore.missingness_state(data, oracle_of(data), oracle=False)
rate_values = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
sweeps = {p: explore.missingness_sweep(oracle_state, p, rate_values, seed=seed)["accuracy"] for p in ("rate_drop", "rmm", "rmfm")}
rec.show(viz.accuracy_vs_rate(rate_values, sweeps, title="Bayes accuracy vs missing rate"), "oracle_vs_rate")
rec.log(oracle_full=oracle_rows[0]["accuracy"],
        oracle_single_mean=sum(r["accuracy"] for r in oracle_rows[1:4]) / 3,
        oracle_rate_drop_0_5=sweeps["rate_drop"][-1],
        rmfm_missing_frames_0_5=[r["missing_frames"] for r in rates if r["protocol"] == "rmfm"][-1])
rec.metrics
