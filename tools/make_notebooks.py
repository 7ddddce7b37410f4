"""Generate the ordered notebooks in ``notebooks/`` (outputs stripped, kernelspec python3).

    .venv/bin/python tools/make_notebooks.py          # rewrite notebooks/*.ipynb
    .venv/bin/python tools/make_notebooks.py --check  # exit 1 if a notebook differs from this file

The notebooks are the source of truth for readers; this script is the source of truth for
their text, so that they stay reproducible and reviewable. Cells only narrate and call
`mmlab`; every computation lives in the package. Each notebook has one cell tagged
``parameters`` (papermill): its defaults run on a 2-core CPU in a few minutes, and
``preset="paper", device="cuda"`` (plus bigger epochs) runs it at paper scale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks"

# ---------------------------------------------------------------------------- shared text
COMMON_PARAMS = '''preset = "default"   # synthetic dataset: "tiny" (tests), "default" (2-core CPU), "paper" (IEMOCAP sizes, GPU)
device = "cpu"       # "cuda" at paper scale
seed = 1111          # training seed and test-mask seed
threads = 1          # CPU threads for torch / numba (1 avoids oversubscription on small CPUs, None keeps the library default)
interactive = True   # widgets when True; `mmlab run` and papermill pass False and get static figures
out_dir = None       # run folder from `mmlab run` (metrics/, figures/, models/), None for a temporary folder'''

# ADMC as trained once by 02 and reused by 03 and 05 (same parameters -> same cached model).
ADMC_PARAMS = '''admc_preset = None   # "paper": ADMC's paper sizes (D 256, ADN 4 layers x 8 heads, 400 ADN epochs)
# ADMC config overrides for the CPU budget ({} with admc_preset "paper"):
admc_overrides = {"itfn.train.epochs": 6, "adn.train.epochs": 40, "mf.train.epochs": 6, "mf.scenarios": "full", "mmer": False}'''

REF_PARAMS = '''epochs = 8            # epochs of the reference model (zero fill + late fusion)'''

SETUP = '''from IPython.display import display

from mmlab import explore, viz, workspace
from mmlab.data.synthetic import make_synthetic, oracle_of, oracle_table

workspace.setup_notebook(threads=threads, seed=seed)
rec = workspace.NotebookRecorder("{name}", out_dir)
data = make_synthetic(preset=preset)
print(data.describe())'''

TRAIN_ADMC = '''admc = explore.trained_method("admc", data, out_dir, overrides=admc_overrides, preset=admc_preset,
                              device=device, seed=seed)
print("trained (or reloaded) ADMC in", admc.run_dir)'''

TRAIN_REF = '''model = explore.trained_method("reference", data, out_dir, overrides={"train.epochs": epochs},
                               device=device, seed=seed)
print("trained (or reloaded) the reference model in", model.run_dir)'''


def setup(name: str) -> str:
    return SETUP.replace("{name}", name)


# ---------------------------------------------------------------------------- notebooks
NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["00_quickstart"] = [
    ("md", """# 00 · Quickstart: train, mask, evaluate, compare with the Bayes oracle

**What this notebook teaches.** The whole mmlab loop in a few cells: load the `synthetic`
dataset (a linear-Gaussian audio / visual / text generator whose Bayes-optimal classifier is
known for *every* availability pattern), train the small reference model (zero fill + late
fusion), evaluate it under the six fixed missing-modality conditions with seeded masks, and
measure how far it is from the oracle.

**Paper ties.** The conditions {A}, {V}, {T}, {AV}, {AT}, {VT} (braces name the *available*
modalities) and their "Average" column are the layout of ADMC Tables 1-2 (spec §1.5);
WA = accuracy and UA = macro recall (spec A15).

**Cost.** About a minute on 2 CPU cores with the defaults. For paper-sized features:
`preset="paper", device="cuda", epochs=40`."""),
    ("params", COMMON_PARAMS + "\n" + REF_PARAMS),
    ("code", setup("00_quickstart")),
    ("md", """## 1. The Bayes oracle: the best any method can do

Because the generator is known, `oracle_table` gives the exact Bayes accuracy for full input
and for each pattern. Losing a modality must cost accuracy, and pairs must beat singles: this
is what makes the dataset able to tell completion methods apart."""),
    ("code", '''oracle_rows = oracle_table(data, split="test")
rec.table("bayes_oracle", oracle_rows)
rec.show(viz.table_figure(oracle_rows, title="Bayes oracle on the test split"), "oracle_table")'''),
    ("md", """## 2. Train the reference model

`explore.trained_method` trains with the one `Trainer` (early stopping on the validation split,
atomic checkpoints) into a cache folder; a second call with the same settings reloads it.
The model is trained under the MMIN-style random-pattern sampler, so it has seen every pattern."""),
    ("code", TRAIN_REF + '''
rec.show(viz.training_curves(explore.training_log(model), metrics=("loss", "accuracy")), "training_curves")'''),
    ("md", """## 3. Evaluate under the six patterns (ADMC Tables 1-2 layout)

`mmlab.evaluate.evaluate` draws the masks of every condition once from `seed` and uses the same
masks for every method; the oracle is evaluated on exactly the same masks."""),
    ("code", '''from mmlab.evaluate import evaluate

rows = evaluate(model, data, seed=seed, device=device) + evaluate(oracle_of(data), data, seed=seed)
rec.table("patterns", [{k: r[k] for k in ("method", "condition", "accuracy", "macro_recall")} for r in rows])
rec.show(viz.condition_bars(rows, "accuracy", title="Accuracy per available-modality condition"), "accuracy_per_pattern")'''),
    ("code", '''average = {r["method"]: r["accuracy"] for r in rows if r["condition"] == "Average"}
rec.log(reference_average=average["reference"], oracle_average=average["bayes_oracle"],
        gap_to_oracle=average["bayes_oracle"] - average["reference"])
rec.metrics'''),
]

NOTEBOOKS["01_data_and_missingness"] = [
    ("md", """# 01 · Data and missingness: the batch contract, protocols and fill policies

**What this notebook teaches.** How a batch carries named modalities with padding, observation
and availability masks; how every missing-modality protocol of the three papers draws masks
(outside the model, from a seed, never from the features); how fill policies write
placeholders; and what each protocol costs the Bayes-optimal classifier.

**Paper ties.** ADMC's fixed patterns (Tables 1-2) and its missing-rate protocol (Table 3:
"randomly drop one or two modalities" with probability r, spec §1.5); the availability mask
*m* of ADMC Eq. 4 is `batch.avail`; CIDer's random modality-feature missing (RMFM) and RMM,
and the CPM-Nets view-missing rate η (spec §3.4, §4.1).

**Cost.** Seconds: nothing is trained."""),
    ("params", COMMON_PARAMS),
    ("code", setup("01_data_and_missingness")),
    ("md", """## 1. One batch

Every method receives an `MMBatch`: `feats[m]` (B, T_m, D_m), `pad_mask[m]` (B, T_m, True = real
frame), `obs_mask[m]` (True = observed after missingness), `avail` (B, M) and labels `y`."""),
    ("code", '''batch = data.batch(range(4))
for m in batch.modalities:
    print(f"{m}: feats {tuple(batch.feats[m].shape)}, real frames per sample {batch.pad_mask[m].sum(1).tolist()}")
print("avail", batch.avail.shape, "y", batch.y.tolist())'''),
    ("md", """## 2. What each modality is worth

The exact Bayes accuracy per condition (the `synthetic` generator gives every modality class
information of its own plus a shared latent, so pairs beat singles and full input beats pairs)."""),
    ("code", '''oracle_rows = oracle_table(data, split="test")
rec.table("bayes_oracle", oracle_rows)
rec.show(viz.condition_bars([{**r, "method": "Bayes oracle"} for r in oracle_rows], "accuracy",
                            title="Bayes accuracy per condition"), "oracle_per_condition")'''),
    ("md", """## 3. Masks of every protocol

Blue = observed frame, red = a real frame made missing, grey = padding; columns are the frames
of A, V and T side by side, rows are the first test samples. Modality-level protocols (fixed
pattern, ADMC's rate drop, RMM, CPM) remove whole modalities; RMFM removes single frames."""),
    ("code", '''gallery, pad = explore.mask_gallery(data, seed=seed)
rec.show(viz.masks_figure(gallery, pad, rows=40), "mask_gallery")'''),
    ("md", """## 4. Nominal vs realised missing rates

A rate means different things in different papers: ADMC's rate is the fraction of *samples*
that lose one or two modalities, RMM drops each (sample, modality) independently, RMFM drops
frames, CPM's η counts missing (sample, view) entries while keeping at least one view."""),
    ("code", '''rates = explore.rate_table(data, rates=(0.1, 0.3, 0.5), seed=seed)
rec.table("realised_rates", rates)
rec.show(viz.table_figure(rates, title="Realised missingness per protocol and nominal rate"), "rate_table")'''),
    ("md", """## 5. Fill policies

Missingness and filling are separate steps: the same mask can be filled with zeros (most
baselines), the train mean, or Gaussian noise (ADMC's starting point for the missing tokens)."""),
    ("code", '''panels = explore.fill_examples(data, protocol="rmfm", value=0.5, seed=seed)
rec.show(viz.feature_heatmaps(panels, title=f"Sample 0, modality {data.modalities[0]}, RMFM rate 0.5"), "fill_policies")'''),
    ("md", """## 6. The cost of missingness for the best possible classifier (ADMC Table 3 protocol)

The Bayes oracle itself under increasing rates: an upper bound for every curve of notebook 04
and of the benchmark report."""),
    ("code", '''oracle_state = explore.missingness_state(data, oracle_of(data), oracle=False)
rate_values = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
sweeps = {p: explore.missingness_sweep(oracle_state, p, rate_values, seed=seed)["accuracy"] for p in ("rate_drop", "rmm", "rmfm")}
rec.show(viz.accuracy_vs_rate(rate_values, sweeps, title="Bayes accuracy vs missing rate"), "oracle_vs_rate")
rec.log(oracle_full=oracle_rows[0]["accuracy"],
        oracle_single_mean=sum(r["accuracy"] for r in oracle_rows[1:4]) / 3,
        oracle_rate_drop_0_5=sweeps["rate_drop"][-1],
        rmfm_missing_frames_0_5=[r["missing_frames"] for r in rates if r["protocol"] == "rmfm"][-1])
rec.metrics'''),
]

NOTEBOOKS["02_encoders_itfn"] = [
    ("md", """# 02 · ADMC stage (a): independently trained feature networks (ITFN)

**What this notebook teaches.** ADMC first trains one encoder per modality *alone*, on
single-modality classification, then freezes it (Fig. 2a): an LSTM + max-pool for audio and
video, a TextCNN for text, each with a 2-layer FC head. Their utterance-level features are
standardised with train statistics (spec A8) and stacked as F⁰ = (F_a, F_v, F_t) ∈ R^{M×D}, the
tokens that the diffusion model of notebook 03 completes.

**Paper ties.** ADMC §3.1 and Fig. 2(a); spec §1.2 (encoder shapes) and A1, A2, A8; the
"w/o ITFN" ablation of Tables 1-2 is `admc_wo_itfn`.

**Cost.** This notebook trains ADMC once (all three stages, ~1-2 min on 2 cores with the
defaults; notebooks 03 and 05 reuse it). Paper scale: `preset="paper", device="cuda",
admc_preset="paper", admc_overrides=[]`."""),
    ("params", COMMON_PARAMS + "\n" + ADMC_PARAMS + "\nprojection = \"pca\"    # 2-D projection of the features: pca, umap or tsne"),
    ("code", setup("02_encoders_itfn")),
    ("md", """## 1. Train (or reload) ADMC

The `Trainer` runs the method's stages in order, each with the other parts frozen:
`itfn_A`, `itfn_V`, `itfn_T` (stage a), `adn` (stage b), `mf_full` (stage c)."""),
    ("code", TRAIN_ADMC + '''
log = [r for r in explore.training_log(admc) if r["stage"].startswith("itfn")]
rec.show(viz.training_curves(log, metrics=("loss", "macro_recall"), title="ITFN training (one stage per modality)"),
         "itfn_training")'''),
    ("md", """## 2. How good is each modality alone?

Each frozen unimodal head on its own test features, beside the exact Bayes accuracy of that
single modality: the encoders cannot beat the oracle, and the gap is what is left to learn."""),
    ("code", '''state = explore.diffusion_state(admc, data, n_samples=10_000, projection=projection, seed=seed, warm=False)
itfn_rows = explore.itfn_table(state, oracle_of(data))
rec.table("itfn", itfn_rows)
rec.show(viz.table_figure(itfn_rows, title="Unimodal ITFN heads vs the Bayes oracle (test)"), "itfn_table")'''),
    ("md", """## 3. Standardised features (spec A8)

Diffusion assumes roughly unit-variance data; encoder outputs are not normalised, so ADMC
z-scores every feature dimension with train statistics before the ADN and the fusion."""),
    ("code", '''stats = explore.feature_stats(state)
rec.table("feature_stats", stats)
rec.show(viz.table_figure(stats, title="ITFN feature statistics (test)"), "feature_stats")'''),
    ("md", """## 4. The feature space of each modality

A 2-D projection of the standardised test features per modality, coloured by class: the
clusters each encoder found on its own."""),
    ("code", '''points = {m: explore.feature_projection(state, m) for m in data.modalities}
rec.show(viz.feature_maps(points, state.part.y, data.classes), "feature_maps")
rec.log(**{f"itfn_accuracy_{r['modality']}": r["itfn_accuracy"] for r in itfn_rows},
        **{f"oracle_accuracy_{r['modality']}": r["oracle_accuracy"] for r in itfn_rows})
rec.metrics'''),
]

NOTEBOOKS["03_diffusion_completion"] = [
    ("md", """# 03 · ADMC stages (b) and (c): diffusion completion of missing modalities (MMCR)

**What this notebook teaches.** How the attention-based diffusion network (ADN) fills in a
missing modality: the forward process noises the stacked features (Eq. 1), the noise
predictor ε_θ is a self-attention network over the modality tokens (Eq. 2), and the reverse
process runs from an intermediate step n (not from N) with the available tokens put back,
forward-noised, after every step (Eq. 3-4). The completed tokens go to the fusion classifier
(Eq. 6).

**Paper ties.** ADMC Eq. 1-4 and 6, Fig. 2(b, c), Table 4 (classifying generated features
alone at n = 30, 50, 80); spec §1.3 and A5-A7, A14.

**Cost.** Reuses the ADMC trained by notebook 02 (trains it if run alone); ~1 min."""),
    ("params", COMMON_PARAMS + "\n" + ADMC_PARAMS + "\nstart_steps = [30, 50, 80]   # the start steps n of ADMC Table 4"),
    ("code", setup("03_diffusion_completion")),
    ("code", TRAIN_ADMC),
    ("md", """## 1. The forward process (Eq. 1)

F^n = sqrt(ᾱ_n) F⁰ + sqrt(1-ᾱ_n) ε with the linear schedule β = 3e-4 … 0.06 over N = 1000 steps.
At the paper's n = 50 about 92 % of the variance is still signal: starting the reverse process
there is a short chain, not generation from scratch."""),
    ("code", '''rec.show(viz.schedule_figure(admc.diffusion.alphas_cumprod.cpu().numpy(), marks=start_steps, max_step=300), "schedule")
rec.show(viz.training_curves([r for r in explore.training_log(admc) if r["stage"] == "adn"], metrics=("loss", "mae"),
                             title="ADN training: ε-MSE (Eq. 2 loss) and ε-MAE on fixed validation draws"), "adn_training")'''),
    ("md", """## 2. One completion, step by step (Eq. 3-4)

Generate the last modality from the others for a few test samples and follow each generated
token's distance to the sample's real feature along the reverse chain n, n-1, …, 0."""),
    ("code", '''state = explore.diffusion_state(admc, data, n_samples=400, projection="pca", seed=seed, warm=False)
track = explore.trajectory_distances(state, start_step=50, modality=data.modalities[-1])
series = {f"sample {i}": d for i, d in enumerate(track["distances"][:6])}
rec.show(viz.step_curves(track["steps"], series, ylabel="distance to the real feature",
                         title=f"Reverse process from n=50 (real-feature spread {track['real_spread']:.2f})"), "trajectory_distances")'''),
    ("md", """## 3. Table 4: classify the generated features alone

Each generated feature goes through the frozen unimodal ITFN head of its modality (spec A14);
`real->X` rows give the same head on real features for reference."""),
    ("code", '''table4 = admc.generation_table(data, split="test", start_steps=start_steps, seed=seed)
rec.table("table4", table4)
rec.show(viz.table_figure([{k: r[k] for k in ("condition", "accuracy", "macro_recall")} for r in table4],
                          title="ADMC Table 4 on this dataset: generated-feature accuracy"), "table4")'''),
    ("md", """## 4. MMCR: recognition with completed modalities

The six conditions again, now with ADMC completing the missing tokens before the fusion
classifier, next to the Bayes oracle on the same masks."""),
    ("code", '''from mmlab.evaluate import evaluate

rows = evaluate(admc, data, seed=seed, device=device) + evaluate(oracle_of(data), data, seed=seed)
rec.table("mmcr_patterns", [{k: r[k] for k in ("method", "condition", "accuracy", "macro_recall")} for r in rows])
rec.show(viz.condition_bars(rows, "accuracy", title="MMCR accuracy per condition vs the Bayes oracle"), "mmcr_patterns")
average = {r["method"]: r["accuracy"] for r in rows if r["condition"] == "Average"}
generated = [r for r in table4 if r["start_step"] == 50 and not r["condition"].startswith("real")]
rec.log(admc_average=average["admc"], oracle_average=average["bayes_oracle"],
        table4_mean_accuracy_n50=sum(r["accuracy"] for r in generated) / max(len(generated), 1))
rec.metrics'''),
]

NOTEBOOKS["04_missingness_explorer"] = [
    ("md", """# 04 · Missingness explorer: predictions under any mask vs the Bayes oracle

**What this notebook teaches.** Pick a protocol (a fixed pattern, ADMC's rate drop, RMM,
RMFM, CPM's η), a rate, a fill policy and a mask seed, and see at once how the trained model's
accuracy and per-class recall move, and how far it sits from the best possible classifier under
*exactly the same* masks.

**Paper ties.** The fixed patterns of ADMC Tables 1-2 and the rate protocol of Table 3
(spec §1.5); CIDer's RMM / RMFM (spec §3.4); fill policies (spec §4.1).

**How it works.** Every control calls `mmlab.explore.missingness_view` (a pure, cached
function); this notebook only wires widgets. With `interactive=False` the same views are
shown as static figures. ~1 min with the defaults."""),
    ("params", COMMON_PARAMS + "\n" + REF_PARAMS + '''
protocol = "fixed"   # full, fixed, rate_drop, rmm, rmfm, traditional_rmfm, cpm
value = "{AV}"       # the available pattern for "fixed", else a rate in [0, 1]
fill = None          # zero, mean, noise (None: the model's own fill policy)'''),
    ("code", setup("04_missingness_explorer")),
    ("code", TRAIN_REF + '''
state = explore.missingness_state(data, model)'''),
    ("md", """## The explorer

Blue frames are observed, red ones were made missing. The bars compare the model's per-class
recall with the Bayes oracle's under the same masks."""),
    ("code", '''if interactive:
    app = explore.MissingnessExplorer(state, protocol=protocol, value=value, fill=fill, seed=seed)
    display(app.widget)
else:
    view = explore.missingness_view(state, protocol, value, fill, seed)
    rec.show(viz.missingness_figure(view), "explorer_view", view["label"])'''),
    ("md", """## Every pattern at once (ADMC Tables 1-2 layout)"""),
    ("code", '''patterns = explore.pattern_rows(state, fill, seed)
rec.table("patterns", patterns)
rec.show(viz.table_figure(patterns, title="Model vs Bayes oracle per condition"), "patterns")'''),
    ("md", """## Accuracy against the missing rate (ADMC Table 3 protocol and CIDer's RMFM)"""),
    ("code", '''rate_values = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
sweeps = {}
for p in ("rate_drop", "rmfm"):
    s = explore.missingness_sweep(state, p, rate_values, fill, seed)
    sweeps[f"{p}: model"], sweeps[f"{p}: Bayes oracle"] = s["accuracy"], s["oracle_accuracy"]
rec.show(viz.accuracy_vs_rate(rate_values, sweeps, title="Accuracy vs missing rate"), "accuracy_vs_rate")
view = explore.missingness_view(state, protocol, value, fill, seed)
rec.log(view_accuracy=view["accuracy"], view_oracle_accuracy=view["oracle_accuracy"], view_gap=view["gap"],
        rate_drop_0_5_accuracy=sweeps["rate_drop: model"][-1], rate_drop_0_5_oracle=sweeps["rate_drop: Bayes oracle"][-1])
rec.metrics'''),
]

NOTEBOOKS["05_diffusion_step_explorer"] = [
    ("md", """# 05 · Diffusion-step explorer: real vs generated features as the start step n moves

**What this notebook teaches.** ADMC generates a missing modality by running the reverse
process from an intermediate step n (Eq. 3), keeping the available modalities (Eq. 4). Too
small an n barely moves the noise-initialised token; too large an n lets the chain drift. Move
n, the sampler (DDPM or DDIM) and the number of steps, and watch the generated features against
the real ones in 2-D (Fig. 3), the accuracy of the unimodal head on the generated features
(Table 4) and one sample's denoising trajectory.

**Paper ties.** ADMC Eq. 3-4, Fig. 3 (t-SNE of real vs generated features, "extremely small or
large n blur the clusters; n = 50 aligns best"), Table 4 (n = 30, 50, 80); spec §1.3, A6, A14.

**How it works.** Every control calls `mmlab.explore.diffusion_view`: the test features are
encoded once, completions are cached per (modality, n, sampler, steps), the projection is fitted
once on the real features (UMAP `transform` places the generated ones; t-SNE is fitted jointly
and cached). Reuses the ADMC of notebook 02; ~1 min with the defaults (UMAP compiles once)."""),
    ("params", COMMON_PARAMS + "\n" + ADMC_PARAMS + '''
n_samples = 400        # test samples shown (the paper's Fig. 3 uses 600 per modality)
projection = "umap"    # umap, pca or tsne
start_step = 50        # reverse-process start step n (ADMC: 50)
sampler = "ddpm"       # ddpm or ddim
num_steps = 50         # reverse transitions (clamped to n)
modality = None        # modality to generate from the others (None: the last one, T)
sweep_steps = [0, 10, 30, 50, 80, 150]   # start steps of the static sweep'''),
    ("code", setup("05_diffusion_step_explorer")),
    ("code", TRAIN_ADMC + '''
state = explore.diffusion_state(admc, data, n_samples=n_samples, projection=projection, seed=seed)
modality = modality or data.modalities[-1]'''),
    ("md", """## The explorer

Left: real (o) and generated (x) features of the chosen modality, coloured by class. Right: the
trajectory of one test sample from step n (diamond) to 0 (cross), with its real feature (star)."""),
    ("code", '''if interactive:
    app = explore.DiffusionExplorer(state, start_step=start_step, sampler=sampler, num_steps=num_steps,
                                    modality=modality)
    display(app.widget)
else:
    view = explore.diffusion_view(state, start_step, sampler, num_steps, modality)
    rec.show(viz.diffusion_figure(view), "explorer_view", f"{view['direction']} at n={start_step}")'''),
    ("md", """## Fig. 3 at three start steps"""),
    ("code", '''views = [explore.diffusion_view(state, n, sampler, num_steps, modality) for n in (10, start_step, 150)]
rec.show(viz.embedding_panels(views), "fig3_panels")'''),
    ("md", """## Generated-feature accuracy against n (the Table 4 columns as a curve)"""),
    ("code", '''sweep = explore.step_sweep(state, sweep_steps, modality, sampler, num_steps)
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
rec.metrics'''),
]

NOTEBOOKS["90_benchmark_report"] = [
    ("md", """# 90 · Benchmark report: every method on the same seeded masks

**What this notebook teaches.** How `mmlab compare` trains several methods over seeds and
evaluates all of them on the same test masks (fixed patterns and the missing-rate sweep), with
the Bayes oracle as an extra row, and how `mmlab.report` turns the `results.csv` into MMSA-style
tables (mean ± std over seeds), the gap to the oracle and plotly charts.

**Paper ties.** ADMC Tables 1-2 (patterns and their Average) and Table 3 (rates 0-0.5); the
AUILC row summarises a rate sweep (CIDer Eq. 31).

**Cost.** Trains each method once per seed (~2-3 min on 2 cores with the defaults). Paper
scale: more `seeds`, `preset="paper"`, `device="cuda"`, and bigger epochs in `overrides`."""),
    ("params", COMMON_PARAMS + '''
methods = ["reference", "admc"]   # any of `mmlab.methods.method_names()`
seeds = [1111]                     # MMSA uses 1111-1115
protocols = "patterns,rates"       # patterns, full, rates, eta, generation
# per-method config overrides ("<method>.<key>": value) for the CPU budget:
overrides = {"reference.train.epochs": 8, "admc.itfn.train.epochs": 6, "admc.adn.train.epochs": 40, "admc.mf.train.epochs": 6, "admc.mf.scenarios": "full", "admc.mmer": False}'''),
    ("code", setup("90_benchmark_report")),
    ("md", """## 1. Train and evaluate (`mmlab compare`)"""),
    ("code", '''from pathlib import Path

from mmlab import report
from mmlab.evaluate import aggregate
from mmlab.experiments import compare
from mmlab.utils import new_run_dir

bench_dir = new_run_dir(rec.out_dir, prefix="benchmark-")
compare(data, methods, protocol=protocols, seeds=seeds, out=bench_dir / "compare", overrides=explore.override_args(overrides),
        device=device, progress=False)
paths = report.build_report([bench_dir / "compare"], bench_dir / "report")
print("\\n".join(map(str, paths)))'''),
    ("md", """## 2. Tables (mean ± std over seeds, ×100)"""),
    ("code", '''rows = report.load_results([bench_dir / "compare"])
agg = aggregate(rows)
for protocol in dict.fromkeys(a["protocol"] for a in agg):
    header, body = report.wide_table(agg, protocol, "accuracy")
    table = [dict(zip(header, r)) for r in body]
    rec.table(f"accuracy_{protocol}", table)
    rec.show(viz.table_figure(table, title=f"accuracy, {protocol}"), f"table_{protocol}")'''),
    ("md", """## 3. Charts"""),
    ("code", '''for i, fig in enumerate(report.figures(agg, data.name)):
    rec.show(fig, f"report_figure_{i}")
average = {a["method"]: a["accuracy_mean"] for a in agg if a["protocol"] == "pattern" and a["condition"] == "Average"}
rec.log(**{f"average_accuracy_{m}": v for m, v in average.items()})
rec.metrics'''),
]


# ---------------------------------------------------------------------------- build
def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python", "pygments_lexer": "ipython3"},
    }
    for i, (kind, src) in enumerate(cells):
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        cell.id = f"{name[:2]}-{i:02d}"
        if kind == "params":
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a notebook differs")
    args = ap.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    stale = []
    for name, cells in NOTEBOOKS.items():
        text = nbformat.writes(build(name, cells)) + "\n"
        path = OUT / f"{name}.ipynb"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run tools/make_notebooks.py):", ", ".join(stale))
        return 1
    if not args.check:
        print(f"wrote {len(NOTEBOOKS)} notebooks into {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
