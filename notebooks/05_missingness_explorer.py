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
# # 05 · Missingness explorer: predictions under any mask vs the Bayes oracle
#
# **What this notebook teaches.** Pick a protocol (a fixed pattern, ADMC's rate drop, RMM,
# RMFM, CPM's η), a rate, a fill policy and a mask seed, and see at once how the trained model's
# accuracy and per-class recall move, and how far it sits from the best possible classifier under
# *exactly the same* masks.
#
# **Paper ties.** The fixed patterns of ADMC Tables 1-2 and the rate protocol of Table 3
# (ADMC §5.2-5.3); CIDer's RMM / RMFM (CIDer §III-A and its appendix); fill policies: zero and
# mean padding (ADMC §2.1), Gaussian noise (ADMC §3.3). Paper titles: README.md, "Papers".
#
# **How it works.** Every control calls `mmlab.explore.missingness_view` (a pure, cached
# function); this notebook only wires widgets. With `interactive=False` the same views are
# shown as static figures. ~1 min with the defaults.

# %% tags=["parameters"]
preset = "default"   # synthetic dataset: "tiny" (tests), "default" (2-core CPU), "paper" (IEMOCAP sizes, GPU)
device = "cpu"       # "cuda" at paper scale
seed = 1111          # training seed and test-mask seed
threads = 1          # CPU threads for torch / numba (1 avoids oversubscription on small CPUs, None keeps the library default)
interactive = True   # widgets when True; `mmlab run` and papermill pass False and get static figures
out_dir = None       # run folder from `mmlab run` (metrics/, figures/, models/), None for a temporary folder
epochs = 8            # epochs of the reference model (zero fill + late fusion)
protocol = "fixed"   # full, fixed, rate_drop, rmm, rmfm, traditional_rmfm, cpm
value = "{AV}"       # the available pattern for "fixed", else a rate in [0, 1]
fill = None          # zero, mean, noise (None: the model's own fill policy)

# %%
from IPython.display import display

from mmlab import explore, viz, workspace
from mmlab.data.synthetic import make_synthetic

workspace.setup_notebook(threads=threads, seed=seed)
rec = workspace.NotebookRecorder("05_missingness_explorer", out_dir)
data = make_synthetic(preset=preset)
print(data.describe())

# %%
model = explore.trained_method("reference", data, out_dir, overrides={"train.epochs": epochs},
                               device=device, seed=seed)
print("trained (or reloaded) the reference model in", model.run_dir)
state = explore.missingness_state(data, model)

# %% [markdown]
# ## The explorer
#
# Blue frames are observed, red ones were made missing. The bars compare the model's per-class
# recall with the Bayes oracle's under the same masks.

# %%
if interactive:
    app = explore.MissingnessExplorer(state, protocol=protocol, value=value, fill=fill, seed=seed)
    display(app.widget)
else:
    view = explore.missingness_view(state, protocol, value, fill, seed)
    rec.show(viz.missingness_figure(view), "explorer_view", view["label"])

# %% [markdown]
# ## Every pattern at once (ADMC Tables 1-2 layout)

# %%
patterns = explore.pattern_rows(state, fill, seed)
rec.table("patterns", patterns)
rec.show(viz.table_figure(patterns, title="Model vs Bayes oracle per condition"), "patterns")

# %% [markdown]
# ## Accuracy against the missing rate (ADMC Table 3 protocol and CIDer's RMFM)

# %%
rate_values = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
sweeps = {}
for p in ("rate_drop", "rmfm"):
    s = explore.missingness_sweep(state, p, rate_values, fill, seed)
    sweeps[f"{p}: model"], sweeps[f"{p}: Bayes oracle"] = s["accuracy"], s["oracle_accuracy"]
rec.show(viz.accuracy_vs_rate(rate_values, sweeps, title="Accuracy vs missing rate"), "accuracy_vs_rate")
view = explore.missingness_view(state, protocol, value, fill, seed)
rec.log(view_accuracy=view["accuracy"], view_oracle_accuracy=view["oracle_accuracy"], view_gap=view["gap"],
        rate_drop_0_5_accuracy=sweeps["rate_drop: model"][-1], rate_drop_0_5_oracle=sweeps["rate_drop: Bayes oracle"][-1])
rec.metrics
