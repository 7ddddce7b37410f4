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
# # 05 · Diffusion-step explorer: real vs generated features as the start step n moves
#
# **What this notebook teaches.** ADMC generates a missing modality by running the reverse
# process from an intermediate step n (Eq. 3), keeping the available modalities (Eq. 4). Too
# small an n barely moves the noise-initialised token; too large an n lets the chain drift. Move
# n, the sampler (DDPM or DDIM) and the number of steps, and watch the generated features against
# the real ones in 2-D (Fig. 3), the accuracy of the unimodal head on the generated features
# (Table 4) and one sample's denoising trajectory.
#
# **Paper ties.** ADMC Eq. 3-4, Fig. 3 (t-SNE of real vs generated features, "extremely small or
# large n blur the clusters; n = 50 aligns best"), Table 4 (n = 30, 50, 80); spec §1.3, A6, A14.
#
# **How it works.** Every control calls `mmlab.explore.diffusion_view`: the test features are
# encoded once, completions are cached per (modality, n, sampler, steps), the projection is fitted
# once on the real features (UMAP `transform` places the generated ones; t-SNE is fitted jointly
# and cached). Reuses the ADMC of notebook 02; ~1 min with the defaults (UMAP compiles once).

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
n_samples = 400        # test samples shown (the paper's Fig. 3 uses 600 per modality)
projection = "umap"    # umap, pca or tsne
start_step = 50        # reverse-process start step n (ADMC: 50)
sampler = "ddpm"       # ddpm or ddim
num_steps = 50         # reverse transitions (clamped to n)
modality = None        # modality to generate from the others (None: the last one, T)
sweep_steps = [0, 10, 30, 50, 80, 150]   # start steps of the static sweep

# %%
from IPython.display import display

from mmlab import explore, viz, workspace
from mmlab.data.synthetic import make_synthetic

workspace.setup_notebook(threads=threads, seed=seed)
rec = workspace.NotebookRecorder("05_diffusion_step_explorer", out_dir)
data = make_synthetic(preset=preset)
print(data.describe())

# %%
admc = explore.trained_method("admc", data, out_dir, overrides=admc_overrides, preset=admc_preset,
                              device=device, seed=seed)
print("trained (or reloaded) ADMC in", admc.run_dir)
state = explore.diffusion_state(admc, data, n_samples=n_samples, projection=projection, seed=seed)
modality = modality or data.modalities[-1]

# %% [markdown]
# ## The explorer
#
# Left: real (o) and generated (x) features of the chosen modality, coloured by class. Right: the
# trajectory of one test sample from step n (diamond) to 0 (cross), with its real feature (star).

# %%
if interactive:
    app = explore.DiffusionExplorer(state, start_step=start_step, sampler=sampler, num_steps=num_steps,
                                    modality=modality)
    display(app.widget)
else:
    view = explore.diffusion_view(state, start_step, sampler, num_steps, modality)
    rec.show(viz.diffusion_figure(view), "explorer_view", f"{view['direction']} at n={start_step}")

# %% [markdown]
# ## Fig. 3 at three start steps

# %%
views = [explore.diffusion_view(state, n, sampler, num_steps, modality) for n in (10, start_step, 150)]
rec.show(viz.embedding_panels(views), "fig3_panels")

# %% [markdown]
# ## Generated-feature accuracy against n (the Table 4 columns as a curve)

# %%
sweep = explore.step_sweep(state, sweep_steps, modality, sampler, num_steps)
rec.table("step_sweep", sweep)
rec.show(viz.step_curves([r["start_step"] for r in sweep],
                         {"generated features": [r["generated_accuracy"] for r in sweep],
                          "real features": [r["real_accuracy"] for r in sweep]},
                         ylabel="ITFN-head accuracy", title=f"{sweep[0]['direction']}: accuracy vs start step n"),
         "accuracy_vs_n")
best = max(sweep, key=lambda r: r["generated_accuracy"])
rec.log(generated_accuracy_default=views[1]["generated_accuracy"], real_accuracy=views[1]["real_accuracy"],
        best_start_step=best["start_step"], best_generated_accuracy=best["generated_accuracy"],
        distance_default=views[1]["distance"])
rec.metrics
