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
# # 90 · Benchmark report: every method on the same seeded masks
#
# **What this notebook teaches.** How `mmlab compare` trains several methods over seeds and
# evaluates all of them on the same test masks (fixed patterns and the missing-rate sweep), with
# the Bayes oracle as an extra row, and how `mmlab.report` turns the `results.csv` into MMSA-style
# tables (mean ± std over seeds), the gap to the oracle and plotly charts.
#
# **Paper ties.** ADMC Tables 1-2 (patterns and their Average) and Table 3 (rates 0-0.5); the
# AUILC row summarises a rate sweep (CIDer Eq. 31).
#
# **Cost.** Trains each method once per seed (~2-3 min on 2 cores with the defaults). Paper
# scale: more `seeds`, `preset="paper"`, `device="cuda"`, and bigger epochs in `overrides`.

# %% tags=["parameters"]
preset = "default"   # synthetic dataset: "tiny" (tests), "default" (2-core CPU), "paper" (IEMOCAP sizes, GPU)
device = "cpu"       # "cuda" at paper scale
seed = 1111          # training seed and test-mask seed
threads = 1          # CPU threads for torch / numba (1 avoids oversubscription on small CPUs, None keeps the library default)
interactive = True   # widgets when True; `mmlab run` and papermill pass False and get static figures
out_dir = None       # run folder from `mmlab run` (metrics/, figures/, models/), None for a temporary folder
methods = ["reference", "admc"]   # any of `mmlab.methods.method_names()`
seeds = [1111]                     # MMSA uses 1111-1115
protocols = "patterns,rates"       # patterns, full, rates, eta, generation
# per-method config overrides ("<method>.<key>": value) for the CPU budget:
overrides = {"reference.train.epochs": 8, "admc.itfn.train.epochs": 6, "admc.adn.train.epochs": 40, "admc.mf.train.epochs": 6, "admc.mf.scenarios": "full", "admc.mmer": False}

# %%
from mmlab import explore, viz, workspace
from mmlab.data.synthetic import make_synthetic

workspace.setup_notebook(threads=threads, seed=seed)
rec = workspace.NotebookRecorder("90_benchmark_report", out_dir)
data = make_synthetic(preset=preset)
print(data.describe())

# %% [markdown]
# ## 1. Train and evaluate (`mmlab compare`)

# %%
from mmlab import report
from mmlab.evaluate import aggregate
from mmlab.experiments import compare
from mmlab.utils import new_run_dir

bench_dir = new_run_dir(rec.out_dir, prefix="benchmark-")
compare(data, methods, protocol=protocols, seeds=seeds, out=bench_dir / "compare", overrides=explore.override_args(overrides),
        device=device, progress=False)
paths = report.build_report([bench_dir / "compare"], bench_dir / "report")
print("\n".join(map(str, paths)))

# %% [markdown]
# ## 2. Tables (mean ± std over seeds, ×100)

# %%
rows = report.load_results([bench_dir / "compare"])
agg = aggregate(rows)
for protocol in dict.fromkeys(a["protocol"] for a in agg):
    header, body = report.wide_table(agg, protocol, "accuracy")
    table = [dict(zip(header, r)) for r in body]
    rec.table(f"accuracy_{protocol}", table)
    rec.show(viz.table_figure(table, title=f"accuracy, {protocol}"), f"table_{protocol}")

# %% [markdown]
# ## 3. Charts

# %%
for i, fig in enumerate(report.figures(agg, data.name)):
    rec.show(fig, f"report_figure_{i}")
average = {a["method"]: a["accuracy_mean"] for a in agg if a["protocol"] == "pattern" and a["condition"] == "Average"}
rec.log(**{f"average_accuracy_{m}": v for m, v in average.items()})
rec.metrics
