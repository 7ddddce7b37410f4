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
# # 07 · CM-ARR: Gaussian alignment, flow reconstruction and the ablations
#
# **What this notebook teaches.** How CM-ARR handles a missing modality, one box of its Fig. 2 at
# a time, on `synthetic`, where the exact conditional law of a missing modality is known:
#
# 1. **Alignment** (§3.1): each modality's utterance becomes a Gaussian (mean μ, diagonal Σ), and a
#    contrastive loss on the 2-Wasserstein distance pulls a sample's modalities together. We draw
#    the Gaussians as ellipses before and after training and measure how much closer they got.
# 2. **Reconstruction** (§3.2): a normalizing flow per modality maps its features to a latent
#    space; a missing modality gets the mean latent of the available ones, sent back through its
#    own inverse flow and a residual refinement network. We look at that latent space.
# 3. **The reconstructed modality** beside its real value and beside draws from its exact
#    conditional law given the available modalities: what a perfect generator would give.
# 4. **Refinement and the ablations** (§3.3, Table 3): the committed comparison rows of CM-ARR,
#    its ablations and DiCMoR, as a plot against the Bayes oracle.
#
# **Paper ties.** Sun et al. 2024, "Enhancing Emotion Recognition in Incomplete Data: A Novel
# Cross-Modal Alignment, Reconstruction, and Refinement Framework", arXiv:2407.09029: §3.1 (the
# uncertainty modelling component UMC and the distribution-based contrastive loss UDCL, Eqs. 1-5),
# §3.2 (flows and reconstruction, Eqs. 6-9), §3.3 (SPCL and the cross-modal fusion, Eqs. 10-13),
# Eq. 14 (the total loss), Table 3 (ablations). Where the paper is silent, the choices C1-C15
# listed in `mmlab/methods/cmarr.py` apply.
#
# **How it works.** Every number and picture comes from `mmlab.explore.cmarr` (pure functions
# over the trained model's public pieces) and `mmlab.viz`. About 1.5 min on one CPU core with the
# defaults (most of it training CM-ARR for 8 epochs); the model is cached, so a second run
# reloads it.

# %% tags=["parameters"]
preset = "default"   # synthetic dataset: "tiny" (tests), "default" (2-core CPU), "paper" (IEMOCAP sizes, GPU)
device = "cpu"       # "cuda" at paper scale
seed = 1111          # training seed, test-mask seed and exact-conditional draws
threads = 1          # CPU threads for torch (1 avoids oversubscription on small CPUs, None keeps the library default)
interactive = True   # no widgets in this notebook: the figures are the same under `mmlab run` (False)
out_dir = None       # run folder from `mmlab run` (metrics/, figures/, models/), None for a temporary folder
method_name = "cmarr"   # "cmarr" (the paper's alpha 1) or a variant with flows: "cmarr_alpha01", "cmarr_wo_udcl", ...
cmarr_preset = None  # "paper": the §4.2 sizes (d 128, T 50, 32 flow steps, 20 RCABs, lr 1e-5, 100 epochs)
# CM-ARR config overrides for the CPU budget ({} for the CPU default: 20 epochs with early stopping, ~2 min):
cmarr_overrides = {"train.epochs": 8}
target = "T"         # the modality made missing and reconstructed from the others (sections 2-3)
n_ellipses = 5       # test samples whose Gaussians are drawn
ablation_results = None   # a `mmlab compare` results.csv; None: docs/results/cmarr/synthetic/results.csv of this repository

# %%
import inspect

import numpy as np

from mmlab import explore, viz, workspace
from mmlab.data.synthetic import make_synthetic

workspace.setup_notebook(threads=threads, seed=seed)
rec = workspace.NotebookRecorder("07_cmarr", out_dir)
data = make_synthetic(preset=preset)
print(data.describe())
cmarr = explore.trained_method(method_name, data, out_dir, overrides=cmarr_overrides, preset=cmarr_preset,
                               device=device, seed=seed)
print(f"trained (or reloaded) {method_name} in", cmarr.run_dir)

# %% [markdown]
# ## 1. Alignment: the UMC's Gaussians and UDCL (§3.1, Eqs. 1-5)
#
# The UMC of modality $n$ reads its features $R_n$ and outputs, per frame, a mean and a variance
# (two branches of attention + MLP blocks; $\Sigma = \exp(\log\Sigma)$); averaging over the valid
# frames gives one diagonal Gaussian $\mathcal{N}(\mu_n, \Sigma_n)$ per utterance (choice C3). Two
# Gaussians are compared by the 2-Wasserstein distance (Eq. 1; we use standard deviations, the
# true $W_2$, and divide by the dimension $d$, choice C6):
#
# $$D_{2W}(\mathcal{N}_a, \mathcal{N}_b) = \tfrac{1}{d}\Big(\lVert \mu_a - \mu_b \rVert_2^2
# + \lVert \Sigma_a^{1/2} - \Sigma_b^{1/2} \rVert_2^2\Big),\qquad S = a\,D_{2W} + b\quad(a < 0,\ \text{Eq. 5}).$$
#
# UDCL is a symmetric InfoNCE over a batch (Eqs. 2-4): sample $i$'s Gaussian in modality $a$ must
# be more similar to its own Gaussian in modality $b$ than to any other sample's,
#
# $$\mathcal{L}^{a2b} = -\frac{1}{N}\sum_{i=1}^{N}\log\frac{\exp(S(\mathcal{N}^a_i, \mathcal{N}^b_i)/\tau)}
# {\sum_{j=1}^{N}\exp(S(\mathcal{N}^a_i, \mathcal{N}^b_j)/\tau)},\qquad
# \mathcal{L}_{\mathrm{UDCL}} = \sum_{a<b}\big(\mathcal{L}^{a2b} + \mathcal{L}^{b2a}\big),$$
#
# summed over every pair of modalities (choice C12), weighted by $\alpha = 1$ in Eq. 14. So the
# measurable effect of alignment is: a sample's modalities end up closer to each other (UDCL's
# positives, "within") than to other samples (its negatives, "between").

# %%
print(inspect.getsource(type(cmarr).udcl_loss))
before_model = explore.untrained_copy(cmarr, data)  # same architecture and seed, no training
gauss = {"before (initialisation)": explore.utterance_gaussians(before_model, data),
         "after training": explore.utterance_gaussians(cmarr, data)}
contrastive = cmarr.cfg.contrastive
dist = {k: explore.alignment_distances(g, contrastive.w2_use_variance, contrastive.w2_reduce) for k, g in gauss.items()}
align_rows = [{"state": k, "pair": p["pair"], "within D2W": p["within"], "within, means' term": p["within_mu"],
               "between D2W": p["between"], "within / between": p["ratio"], "retrieval top-1": p["retrieval"]}
              for k, d in dist.items() for p in d["pairs"]]
rec.table("alignment", align_rows, caption="D_2W (Eq. 1, per dimension) between the utterance Gaussians of one test "
          "sample's two modalities (within) and of two different samples (between), before and after training")
rec.show(viz.table_figure(align_rows, title="UDCL's effect on the test split: D_2W within vs between samples"),
         "alignment_table")
n_test = len(gauss["after training"][data.modalities[0]][0])
for k, d in dist.items():
    print(f"{k:>24}: within {d['within']:.3f}, between {d['between']:.3f}, ratio {d['ratio']:.3f}; a sample's own "
          f"Gaussian is the nearest in the other modality for {d['retrieval']:.1%} of {n_test} (chance {d['chance']:.1%})")

# %% [markdown]
# Now the picture: one PCA fitted on the trained means (all test samples, all modalities) gives a
# 2-D basis $P$; each Gaussian is drawn as its 1σ ellipse, centre $P(\mu - c)$ and covariance
# $P\,\mathrm{diag}(\Sigma)\,P^\top$. The untrained Gaussians are projected on the same basis (the
# panel title says how much of their variance it keeps). Numbers label the samples; a dotted line
# joins the three means of one sample.

# %%
after = gauss["after training"]
basis = explore.fit_pca(np.concatenate([after[m][0] for m in data.modalities]))
samples = list(range(n_ellipses))
panels = {k: explore.project_gaussians(g, basis, samples) for k, g in gauss.items()}
rec.show(viz.gaussian_ellipses(panels), "gaussian_ellipses")
sigma_rows = [{"state": k, **r} for k, g in gauss.items() for r in explore.sigma_stats(g)]
rec.table("umc_variances", sigma_rows, caption="The UMC's variances: mean Sigma, spread of a sample's mean log Sigma "
          "over samples and of log Sigma over the dimensions of one sample")
rec.show(viz.table_figure(sigma_rows, title="What the UMC's variances vary with"), "umc_variances")
rec.log(alignment_within_before=dist["before (initialisation)"]["within"],
        alignment_within_after=dist["after training"]["within"],
        alignment_ratio_before=dist["before (initialisation)"]["ratio"],
        alignment_ratio_after=dist["after training"]["ratio"],
        alignment_retrieval_after=dist["after training"]["retrieval"])

# %% [markdown]
# **Reading the alignment.** At initialisation a sample's modalities are no closer to each other
# than to other samples (within / between ≈ 1, retrieval at chance). After training, at the
# defaults, the within-sample D_2W is about a quarter of the between-sample one (ratio ≈ 0.26) and a
# sample's own Gaussian is the nearest one in the other modality for about 30 % of the 1000 test
# samples (chance 0.1 %): UDCL did what Eqs. 2-4 ask. In the ellipses, the three means of a trained
# sample sit close together while the samples spread apart; before training a sample's three means
# are scattered among the others.
#
# The picture also shows that the ellipses are large and nearly the same circle for every sample
# and modality, and the variance table says why. A sample's overall uncertainty (its mean
# $\log\Sigma$) varies across samples more than ten times less than $\log\Sigma$ varies across the
# dimensions of one sample, before and after training. The variance branch ends in a LayerNorm
# (C3), which pins the mean of $\log\Sigma$ over dimensions of every frame to the norm's bias, so the
# UMC can shape its variance across dimensions but can hardly say "this utterance is more
# uncertain". About two thirds of the trained within-sample D_2W is the means' term; the rest
# is the difference of those variance shapes. Section 4 compares this distribution-based
# alignment with the point-based one ("w/ Point" of Table 3).
#
# ## 2. Reconstruction in the flows' latent space (§3.2, Eqs. 6-9)
#
# A Conv1d maps each utterance mean sequence to the common dimension $d$ and length $T$: $X_n$
# (choices C2, C5). A Glow-style flow per modality maps it to a latent $Z_n = F_n(X_n)$ (Eq. 6).
# When modality $m$ is missing and $\mathcal{A}$ is the set of available ones,
#
# $$\tilde Z_m = \frac{1}{|\mathcal{A}|}\sum_{k\in\mathcal{A}} Z_k\ \ (\text{Eq. 7}),\qquad
# \tilde X_m = F_m^{-1}(\tilde Z_m)\ \ (\text{Eq. 8}),\qquad \hat X_m = \mathrm{Rec}_m(\tilde X_m),\qquad
# \mathcal{L}_{\mathrm{rec}} = \lVert \hat X_m - X_m \rVert_2^2\ \ (\text{Eq. 9}),$$
#
# with $\mathrm{Rec}_m$ a stack of residual channel-attention blocks and $X_m$ the projection of the
# complete training features (detached). `CMARR.recover` is Eqs. 7-8 and $\mathrm{Rec}_m$; the
# flows are trained only through $\mathcal{L}_{\mathrm{rec}}$ and the classifier (no likelihood
# term, choice C4).

# %%
print(inspect.getsource(type(cmarr).recover))
lat = explore.flow_latents(cmarr, data, target=target, seed=seed)
rec.show(viz.latent_figure(lat), "flow_latents")
rec.table("latent_stats", lat["latent_stats"], caption="Norm of the mean and mean per-dimension std of each latent "
          "(time means over the test split)")
rec.table("latent_pairs", lat["latent_pairs"], caption="Mean Euclidean distance between two latents of the same test "
          "sample and of different samples")
rec.show(viz.table_figure(lat["latent_pairs"], title="Is one utterance one point of the latent space? Distances "
                          "between latents of the same vs different samples"), "latent_pairs")
print(f"Eq. 9 error per element against the real X_{target}: X~ = F^-1(Z~) alone {lat['x_tilde_mse']:.3f}, "
      f"X^ = Rec(X~) {lat['x_hat_mse']:.3f}; predicting 0 (the mean of the layer-normalised X) {lat['zero_mse']:.3f}")
rec.log(x_tilde_mse=lat["x_tilde_mse"], x_hat_mse=lat["x_hat_mse"], zero_mse=lat["zero_mse"])

# %% [markdown]
# **Reading the latent space.** Eq. 7 averages latents of *different* flows, which only makes
# sense if $F_A$, $F_V$ and $F_T$ send one utterance to nearby latents. Nothing in Eq. 14 asks for
# that directly (no likelihood or prior on $Z$, C4): the flows learn it only as far as
# $\mathcal{L}_{\mathrm{rec}}$ needs. In the left panel the three latent clouds and the mean latents
# overlap in one round ball, but that is by construction: the projection $X$ is layer-normalised and
# the flows' ActNorm layers standardise every channel, so every latent has about zero mean and unit
# variance per dimension (the latent table). Whether one utterance lands at the same place in every
# modality is what the distance table answers: at the defaults, $Z_A$ and $Z_T$ of the same sample
# are about 7.1 apart against 8.7 for two different samples (two independent standard Gaussian
# points in d = 32 dimensions are 8 apart), and the mean latent $\tilde Z_T$ is about 6.2 from its own
# $Z_T$ against 8.1 from the others. So the latents of one utterance are only loosely tied, and the
# two leading directions (right panel) show no class structure.
#
# The reconstruction errors say the same: the inverse flow alone reconstructs $X_T$ *worse than
# predicting zero* (about 1.4 vs 1.0 per element at the defaults); it is $\mathrm{Rec}_T$ that brings
# the error down (to about 0.4). In this implementation at CPU scale, the flow pair with Eq. 7
# acts as a learned feature map into which the residual network writes the reconstruction, not as a
# shared latent space where averaging is already the answer.
#
# ## 3. The reconstructed modality beside its real value and its exact conditional (C15)
#
# For the test split with only the other modalities available, `generate` returns the time mean
# of $\hat X_m$, and `real_features` the time mean of the real $X_m$. On `synthetic` the target's
# frames can also be drawn from their exact conditional law given the observed frames and encoded
# the same way: what a perfect *sampler* would give. A frozen linear probe per modality, fitted on
# real training features after CM-ARR's training (C15), reads all of them, as the unimodal heads
# of ADMC's Table 4 do.

# %%
view = explore.reconstruction_view(cmarr, data, target=target, seed=seed, k=4)
rec.show(viz.reconstruction_figure(view), "reconstruction")
acc = view["accuracy"]
print(f"{view['direction']}: probe accuracy on real {acc['real']:.1%}, reconstructed {acc['generated']:.1%}, "
      f"one exact draw {acc.get('exact', float('nan')):.1%}, mean of 4 exact draws {acc.get('exact_mean', float('nan')):.1%}")
print(f"RMS distance to the real feature: reconstructed {view['generated_to_real']:.3f}, one exact draw "
      f"{view['exact_to_real']:.3f}, mean of 4 exact draws {view['exact_mean_to_real']:.3f}; the exact conditional "
      f"mean itself (estimated from the draws' spread): {view['conditional_sd']:.3f}")
print("spread of each cloud around its own mean (RMS):", {k: round(v, 3) for k, v in view["spread"].items()})

# %%
from mmlab.evaluate import generation_table

gen_rows = generation_table(cmarr, data, split="test", seed=seed, k=4)
cols = ("method", "condition", "accuracy", "macro_recall", "mean_error", "variance_ratio")
target_rows = [{c: r.get(c, "") for c in cols} for r in gen_rows if r["target"] == target]
rec.table("generation", target_rows, caption=f"The generation protocol for {target}: the frozen probe on real, "
          f"reconstructed and exact-conditional features (one sample, and the mean of 4)")
rec.show(viz.table_figure(target_rows, title=f"Generation rows for {target} (ADMC Table 4 protocol, k = 4)"),
         "generation_table")
rec.log(real_accuracy=acc["real"], generated_accuracy=acc["generated"],
        **({"exact_accuracy": acc["exact"], "exact_mean_accuracy": acc["exact_mean"]} if "exact" in acc else {}))

# %% [markdown]
# **Reading the reconstruction.** The crosses (reconstructed) form a tighter cloud than the
# circles (real) and the diamonds (one exact draw): at the defaults their spread is about 0.63
# against 0.86. CM-ARR's reconstruction is deterministic, an inverse flow of the mean latent
# followed by a fixed network, so it returns one point per sample, never a sample from a
# distribution. The table says the same in numbers: its `variance_ratio` is 0 (its k = 4 "samples"
# are identical, so "AV->T" and "AV->T mean" coincide), and `mean_error` is its RMS distance to the
# mean of the 4 exact draws.
#
# That changes how to read the accuracies. A single exact draw carries the conditional *noise* as
# well as the signal; the best point estimate is the conditional *mean*. Measured as RMS distance to
# the real feature (at the defaults): one exact draw about 0.61, CM-ARR about 0.46, and the exact
# conditional mean itself about 0.43 (estimated from the spread of the draws; a draw is √2 times
# farther, as two independent draws are). So CM-ARR's point estimate is under 10 % farther from
# the truth than the best possible one, and its cloud is more shrunk towards the average $T$ than
# the conditional mean's would be (about $\sqrt{0.86^2 - 0.43^2} \approx 0.74$). For the probe, a
# point estimate can therefore beat a single exact draw: at the defaults it does for A->T and V->T
# (about 41 and 44 % against 39 and 40 %) but not for AV->T (43 against 46 %), and the mean of 4
# exact draws is above it everywhere. The gap between the reconstructed and the real rows (about
# 43 vs 61 %) is mostly information that $T$ carries of its own, which no method can recover from
# A and V; part of it is the skip of C17, which lets the classifier read the frame means directly,
# so the projections the probe reads carry less class information than without it
# (`cmarr_overrides = {"mean_skip": False}` shows the difference).
#
# ## 4. Refinement and the ablations (§3.3, Table 3)
#
# Refinement is SPCL (a supervised contrastive loss over the projected features of every
# modality, reconstructed ones included, β = 0.1) and the text-anchored cross-modal attention
# fusion (Eqs. 10-13). Their value shows in the ablations: the committed rows of
# `mmlab compare --protocol patterns` for CM-ARR, its Table 3 rows (Baseline: no alignment, no
# reconstruction, no SPCL, trained on full input; w/o UDCL; w/o SPCL; w/o attention in the UMC;
# w/ Point: cosine of points instead of D_2W), our α = 0.1 (C14) and DiCMoR (Wang, Cui & Li,
# "Distribution-Consistent Modal Recovering for Incomplete Multimodal Learning", ICCV 2023). Each bar is the mean
# over the six availability patterns; with several seeds, error bars are ±1 standard deviation
# over seeds. These rows come from the full CPU default training (20 epochs), not from this
# notebook's shorter one.

# %%
abl = explore.ablation_summary(ablation_results)
print(abl["message"])
if abl["rows"]:
    rec.show(viz.ablation_figure(abl), "ablations")
    rec.table("ablations", abl["rows"], caption="Six-pattern average accuracy per method (mean and sd over seeds) "
              "and its gap to the Bayes oracle, from the committed comparison rows")
    if abl["oracle"]:
        print(f"Bayes oracle: {abl['oracle']['average']:.3f}")
    for r in abl["rows"]:
        sd = f" ± {r['std']:.3f}" if r["n_seeds"] > 1 else ""
        gap = f", gap to the oracle {r['gap_to_oracle']:+.3f}" if "gap_to_oracle" in r else ""
        print(f"{r['method']:>20}: {r['average']:.3f}{sd} over {r['n_seeds']} seed(s){gap}")
else:
    print("no ablation plot: nothing to read")

# %% [markdown]
# **Reading the ablations.** On `synthetic`, five seeds in the committed rows, all trained at the
# CPU default: the weight average of C16 and the frames'-mean skip into the fusion head of C17
# (the numbers above are read from the file):
#
# - **Reconstruction matters most.** The Baseline (no UDCL, no SPCL, no reconstruction, trained on
#   complete data only, so it meets zero-filled modalities for the first time at test) loses about
#   8 points of six-pattern average and varies most across seeds, as in the paper's Table 3. It
#   differs in both what it does with a missing modality and what it trains on, and these rows
#   cannot separate the two.
# - **Everything else is at the noise level here.** "w/o UDCL", our lighter α = 0.1, "w/o SPCL",
#   "w/o attention" and "w/ Point" all land within about 0.3 of CM-ARR (about 65.2), inside their
#   spreads over seeds. The skip of C17 hands the head each available modality's frame mean,
#   which on `synthetic` is most of what a classifier needs, so the rest of the pipeline decides
#   little of the accuracy. Without the skip (the rows in `docs/results/cmarr/before_c17/`)
#   removing UDCL *helped* by about 1.4 points, against the paper: every modality of `synthetic`
#   carries class information of its own, section 1 showed UDCL pulling a sample's modalities
#   together, and the projection reads those aligned means (C5). On IEMOCAP the paper found the
#   opposite.
# - DiCMoR (flows with class-conditional priors, no UDCL or SPCL) is about half a point above
#   CM-ARR; every variant stays more than a point under the Bayes oracle.
#
# ## What to try next
#
# - `cmarr_overrides = {}`: the full CPU default (20 epochs with early stopping, about 2 min);
#   the alignment numbers should tighten further and the reconstruction rows move towards the
#   exact mean.
# - `method_name = "cmarr_wo_udcl"`: the same pictures without UDCL. Section 1 then shows what
#   training alone does to the Gaussians (the classifier and L_rec still shape the UMC, because
#   the projection reads its means), and the ablation plot says whether that is better here.
# - `method_name = "cmarr_alpha01"`: our lighter alignment (C14), between the two.
# - `target = "A"` or `"V"`: reconstruct another modality; compare its generation rows with T's.
# - Add `"nll_weight": 1.0` to `cmarr_overrides`: train the flows with a likelihood term (C4), so
#   that every $Z_m$ is pushed towards one standard Gaussian and Eq. 7's average acts on a shared
#   latent space; watch the X~ error of section 2.
# - Add `"mean_skip": False` to `cmarr_overrides`: CM-ARR without the skip of C17, so that the
#   head has to read the fused, reconstructed features; the reconstruction rows of section 3 then
#   carry more class information (the skip lets the head bypass the projections the probes read).
# - `cmarr_preset = "paper", cmarr_overrides = {}, device = "cuda"`: the paper's sizes.
