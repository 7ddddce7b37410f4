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
# # 00 · Quickstart: train, mask, evaluate, compare with the Bayes oracle
#
# **What this notebook teaches.** The whole mmlab loop in a few cells: load the `synthetic`
# dataset (a linear-Gaussian audio / visual / text generator whose Bayes-optimal classifier is
# known for *every* availability pattern), train the small reference model (zero fill + late
# fusion), evaluate it under the six fixed missing-modality conditions with seeded masks, and
# measure how far it is from the oracle.
#
# **Paper ties.** The conditions {A}, {V}, {T}, {AV}, {AT}, {VT} (braces name the *available*
# modalities) and their "Average" column are the layout of ADMC Tables 1-2 (spec §1.5);
# WA = accuracy and UA = macro recall (spec A15).
#
# **Cost.** About a minute on 2 CPU cores with the defaults. For paper-sized features:
# `preset="paper", device="cuda", epochs=40`.

# %% tags=["parameters"]
preset = "default"   # synthetic dataset: "tiny" (tests), "default" (2-core CPU), "paper" (IEMOCAP sizes, GPU)
device = "cpu"       # "cuda" at paper scale
seed = 1111          # training seed and test-mask seed
threads = 1          # CPU threads for torch / numba (1 avoids oversubscription on small CPUs, None keeps the library default)
interactive = True   # widgets when True; `mmlab run` and papermill pass False and get static figures
out_dir = None       # run folder from `mmlab run` (metrics/, figures/, models/), None for a temporary folder
epochs = 8            # epochs of the reference model (zero fill + late fusion)

# %%
from mmlab import explore, viz, workspace
from mmlab.data.synthetic import make_synthetic
from mmlab.evaluate import oracle_table
from mmlab.methods.oracle import oracle_of

workspace.setup_notebook(threads=threads, seed=seed)
rec = workspace.NotebookRecorder("00_quickstart", out_dir)
data = make_synthetic(preset=preset)
print(data.describe())

# %% [markdown]
# ## 1. The Bayes oracle: the best any method can do
#
# Because the generator is known, `oracle_table` gives the exact Bayes accuracy for full input
# and for each pattern. Losing a modality must cost accuracy, and pairs must beat singles: this
# is what makes the dataset able to tell completion methods apart.

# %%
oracle_rows = oracle_table(data, split="test")
rec.table("bayes_oracle", oracle_rows)
rec.show(viz.table_figure(oracle_rows, title="Bayes oracle on the test split"), "oracle_table")

# %% [markdown]
# ## 2. Train the reference model
#
# `explore.trained_method` trains with the one `Trainer` (early stopping on the validation split,
# atomic checkpoints) into a cache folder; a second call with the same settings reloads it.
# The model is trained under the MMIN-style random-pattern sampler, so it has seen every pattern.

# %%
model = explore.trained_method("reference", data, out_dir, overrides={"train.epochs": epochs},
                               device=device, seed=seed)
print("trained (or reloaded) the reference model in", model.run_dir)
rec.show(viz.training_curves(explore.training_log(model), metrics=("loss", "accuracy")), "training_curves")

# %% [markdown]
# ## 3. Evaluate under the six patterns (ADMC Tables 1-2 layout)
#
# `mmlab.evaluate.evaluate` draws the masks of every condition once from `seed` and uses the same
# masks for every method; the oracle is evaluated on exactly the same masks.

# %%
from mmlab.evaluate import evaluate

rows = evaluate(model, data, seed=seed, device=device) + evaluate(oracle_of(data), data, seed=seed)
rec.table("patterns", [{k: r[k] for k in ("method", "condition", "accuracy", "macro_recall")} for r in rows])
rec.show(viz.condition_bars(rows, "accuracy", title="Accuracy per available-modality condition"), "accuracy_per_pattern")

# %%
average = {r["method"]: r["accuracy"] for r in rows if r["condition"] == "Average"}
rec.log(reference_average=average["reference"], oracle_average=average["bayes_oracle"],
        gap_to_oracle=average["bayes_oracle"] - average["reference"])
rec.metrics
