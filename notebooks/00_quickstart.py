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
# modalities) and their "Average" column are the layout of ADMC Tables 1-2 (ADMC §5.2); WA =
# accuracy and UA = macro recall (ADMC §4.3; choice A15 in `mmlab/methods/admc.py`). Paper title:
# README.md, "Papers".
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
import numpy as np

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
y_test = data.subset("test").y
majority = np.bincount(y_test).max() / len(y_test)
oracle = {r["condition"]: r["accuracy"] for r in oracle_rows}
singles = [v for c, v in oracle.items() if c != "full" and len(c) == 3]  # "{A}", "{V}", "{T}"
pairs = [v for c, v in oracle.items() if c != "full" and len(c) == 4]  # "{AV}", ...
print(f"Bayes oracle: full {oracle['full']:.1%}; pairs {min(pairs):.1%}-{max(pairs):.1%}; "
      f"singles {min(singles):.1%}-{max(singles):.1%}; always guessing the majority class {majority:.1%}")

# %% [markdown]
# **Reading the table.** Even the oracle is far from 100 %: the classes overlap in every
# modality, so full input tops out around 80 % at the default preset. Each lost modality costs
# accuracy (full > pairs > singles, as printed above) because each carries class information the
# others do not; no method, however clever its completion, can beat these numbers on average. The
# `accuracy` column counts correct test predictions, `expected_accuracy` is the mean posterior the
# oracle gives its own predictions on the same samples; the two differ by label luck (one or two
# points with 1000 test samples), which is also the size of difference a single run cannot resolve.
#
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
valid = [(int(r["epoch"]), float(r["value"])) for r in explore.training_log(model)
         if r["split"] == "valid" and r["metric"] == "accuracy"]
best_epoch, best_valid = max(valid, key=lambda e: e[1])
print(f"best validation accuracy {best_valid:.1%} at epoch {best_epoch} of {len(valid)} (the weights kept)")

# %% [markdown]
# **Reading the curves.** The training loss keeps falling while the validation accuracy flattens
# after a few epochs: the small model learns what it can early, and the Trainer keeps the weights
# of the best validation epoch printed above (early stopping), not the last ones. More epochs
# mostly buy nothing here; fewer leave accuracy on the table (see "What to try next").

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
acc = {(r["method"], r["condition"]): r["accuracy"] for r in rows}
gaps = {c: acc["bayes_oracle", c] - acc["reference", c] for m, c in acc if m == "reference" and c != "Average"}
print("gap to the oracle per condition (points):", {c: round(100 * g, 1) for c, g in gaps.items()})

# %% [markdown]
# **Reading the bars.** The reference model follows the oracle's shape: pairs beat single
# modalities and full input beats both, so it does use every modality it is given. It stays
# below the oracle condition by condition, by the points printed above (at the defaults between
# about 1 and 4). Two reasons: each modality is classified by its own learned head and the
# available logits are simply averaged (late fusion), a fixed rule the Bayes oracle does not have
# to follow; and the heads are learned from 3000 training samples, not from the true generator.
# Completion methods such as ADMC (notebook 04) try to close these per-condition gaps by
# generating the missing features instead of filling zeros.

# %% [markdown]
# ## 4. Conclusion: how far is the reference model from the best possible?
#
# The "Average" column (mean accuracy over the six patterns, the number ADMC Tables 1-2 rank
# methods by) of the model against the oracle and against always guessing the majority class.

# %%
average = {r["method"]: r["accuracy"] for r in rows if r["condition"] == "Average"}
rec.log(reference_average=average["reference"], oracle_average=average["bayes_oracle"],
        gap_to_oracle=average["bayes_oracle"] - average["reference"])
gap, headroom = average["bayes_oracle"] - average["reference"], average["bayes_oracle"] - majority
print(f"six-pattern average: reference {average['reference']:.1%}, Bayes oracle {average['bayes_oracle']:.1%}, "
      f"majority class {majority:.1%}")
print(f"gap to the oracle: {100 * gap:.1f} points, i.e. the model covers {1 - gap / headroom:.0%} of the way "
      f"from guessing to the oracle; largest gap in {max(gaps, key=gaps.get)} ({100 * max(gaps.values()):.1f} points)")

# %% [markdown]
# **Conclusion.** The zero-fill reference model is far above guessing and a few points below
# the Bayes oracle on the six-pattern average (numbers above; at the default parameters about
# 64 % against 67 %, a gap of roughly 3 points, with a majority class of about 30 %). Those few
# points are the whole room any missing-modality method has on this dataset: a completion method
# is only useful if it closes part of this gap, and one that beats the oracle by more than
# finite-sample luck has a bug or has seen the test labels. Because the oracle is exact, every
# later notebook reports its models against it.
#
# ## What to try next
#
# - `epochs = 2` or `epochs = 20`: watch the gap to the oracle grow with too little training and
#   stop shrinking with more (early stopping keeps the best validation epoch).
# - `seed = 1112`: a new training seed and new test masks; differences of about one point between
#   seeds are noise, not a better model.
# - `preset = "paper", device = "cuda", epochs = 40`: IEMOCAP-sized features (on a GPU).
# - Open **02_data_and_missingness** next (how batches, masks and the missing-modality protocols
#   are built), then **05_missingness_explorer** to poke at any mask interactively, and
#   **02**/**03** for ADMC itself.
