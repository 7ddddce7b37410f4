"""DiCMoR: Distribution-Consistent Modal Recovering (Wang, Cui & Li, "Distribution-Consistent Modal
Recovering for Incomplete Multimodal Learning", ICCV 2023; public code
https://github.com/mdswyz/DiCMoR), the "DiCMoR+" baseline of CM-ARR (arXiv:2407.09029, Table 2).

It shares CM-ARR's code (`mmlab.methods.cmarr.CMARR`): the same Conv1d projections, per-modality
Glow flows (`mmlab.nn.flow.Glow`), RCAB reconstructors and cross-modal attention fusion, with
DiCMoR's settings instead of CM-ARR's alignment and refinement:

- no UMC, no UDCL, no SPCL: the Conv1d projects the features R_n themselves;
- flow likelihood: every available modality's latent is scored under a learned class-conditional
  Gaussian N(mu_y, diag(sigma_y^2)), one per class and shared by the modalities (that sharing is
  what aligns the latent spaces), NLL per dimension weighted 0.1;
- recovery: the missing modality m is F_m^-1 of each available modality's latent, the estimates
  are concatenated (absent sources zero) and fused by a 1x1 conv; the inverse-flow output is
  detached; then Rec_m and an MSE to the complete projected features weighted 0.1;
- L = CE + 0.1 * (NLL + L_rec), as DiCMoR's code.

Our choices: NLL in nats per dimension (DiCMoR: bits, clamped at 0); the training missingness is
CM-ARR's C1 (per row, full + the six patterns uniformly; DiCMoR trains one model per missing
rate); the fusion is CM-ARR's text-anchored cross-attention (DiCMoR: a MulT transformer).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmlab.methods.cmarr import CMARR, CMARRConfig


@dataclass
class DiCMoRConfig(CMARRConfig):
    """CM-ARR's config with DiCMoR's defaults (see the module docstring)."""

    proj_input: str = "features"
    udcl: bool = False
    spcl: bool = False
    z_fusion: str = "conv"
    detach_inverse: bool = True
    nll_weight: float = 0.1
    prior: str = "class"
    lam: float = 0.1


class DiCMoR(CMARR):
    """Projections -> flows to class-conditional Gaussians -> inverse flows -> RCAB -> fusion."""

    Config = DiCMoRConfig
    PRESETS = {  # DiCMoR public code (MOSEI): d = 64, K = 32, 20 RCABs, batch 16, lr 1e-4
        "paper": {"d": 64, "common_len": 50, "flow.steps": 32, "flow.hidden": 64, "rcab_blocks": 20,
                  "rcab_reduction": 16, "hidden": 64, "train.lr": 1e-4, "train.batch_size": 16,
                  "train.epochs": 100, "train.patience": 20, "train.ema": 0.0, "mean_skip": False},
    }
    name = "dicmor"
