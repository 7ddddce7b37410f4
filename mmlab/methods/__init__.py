"""The method registry: ``name -> (class, config overrides)``; classes are imported lazily.

Ablations and variants are registered as names of their own (e.g. ``admc_wo_adn``) that
point at the same class with different config values, so `mmlab compare` treats every
row of a paper's table as one method. The table below is the one list of methods: reading it
imports no torch, so the CLI checks method names before anything heavy loads.
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable

from mmlab.errors import ConfigError

# name: ("module:Class", {dotted config overrides})
_ADMC = "mmlab.methods.admc:ADMC"
_CMARR = "mmlab.methods.cmarr:CMARR"
_FILL, _IMPUTE = "mmlab.methods.baselines.fill:FillFusion", "mmlab.methods.baselines.impute:ImputeClassify"
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "reference": ("mmlab.methods.reference:ZeroFillLateFusion", {}),
    # ADMC (mmlab/methods/admc.py) and the rows of its Tables 3 and 5
    "admc": (_ADMC, {}),
    "admc_wo_itfn": (_ADMC, {"itfn.training": "joint", "mmer": False}),
    "admc_wo_adn": (_ADMC, {"completion": "zero", "mmer": False}),
    "admc_joint": (_ADMC, {"itfn.training": "end_to_end", "completion": "zero", "mmer": False, "mf.scenarios": "full"}),
    "admc_use_itfn": (_ADMC, {"completion": "zero", "mmer": False, "mf.scenarios": "full"}),
    # ours: a conditional v-prediction ADN sampled from n = N (respaced DDPM-50), K chosen on valid
    "admc_cond": (_ADMC, {"adn.training": "conditional", "diffusion.prediction": "v", "diffusion.start_step": 1000,
                          "diffusion.sampler": "ddpm", "sample_steps": 50, "k_grid": [1, 4, 8, 16], "table4_steps": [1000]}),
    # CM-ARR (mmlab/methods/cmarr.py) and the rows of its Table 3
    "cmarr": (_CMARR, {}),
    "cmarr_baseline": (_CMARR, {"udcl": False, "spcl": False, "reconstruct": False, "train_on": "full",
                                "validate_on": "full"}),
    "cmarr_wo_udcl": (_CMARR, {"udcl": False}),
    "cmarr_wo_spcl": (_CMARR, {"spcl": False}),
    "cmarr_wo_attention": (_CMARR, {"umc_attention": False}),
    "cmarr_point": (_CMARR, {"contrastive.similarity": "cosine"}),
    "cmarr_alpha01": (_CMARR, {"alpha": 0.1}),  # ours: a lighter UDCL weight, chosen on valid (C14)
    # baselines (mmlab/methods/baselines/)
    "zero_fill": (_FILL, {"fill": "zero"}),
    "mean_fill": (_FILL, {"fill": "mean"}),
    # full_zero keeps the last weights of its best epoch: the weight average of the other baselines
    # lowered its valid accuracy on both datasets (docs/gap_to_oracle.md §8)
    "full_zero": (_FILL, {"fill": "zero", "train_on": "full", "validate_on": "full", "train.ema": 0.0}),
    "ae": (_IMPUTE, {"imputer": "ae"}),
    "cra": (_IMPUTE, {"imputer": "cra"}),
    "mmin": ("mmlab.methods.baselines.mmin:MMIN", {}),
    "dicmor": ("mmlab.methods.baselines.dicmor:DiCMoR", {}),
    "pooled_linear": ("mmlab.methods.pooled_linear:PooledLinear", {}),  # per-pattern logistic regression
    "kernel_experts": ("mmlab.methods.kernel_experts:KernelExperts", {}),  # product of per-modality kernel experts
    # ours: deep ensembles of three (mmlab/methods/ensemble.py), the seed variance averaged out
    **{f"{m}_x3": ("mmlab.methods.ensemble:Ensemble", {"member": m, "size": 3}) for m in ("zero_fill", "ae", "cra")},
    # ours: zero_fill with shared encoders and a classifier head per availability pattern
    "zero_fill_heads": (_FILL, {"fill": "zero", "heads": "pattern"}),
    # ours: one zero_fill per availability pattern (mmlab/methods/specialists.py)
    "zero_fill_pp": ("mmlab.methods.specialists:Specialists", {"member": "zero_fill"}),
    # ours: zero_fill_pp plus the shared zero_fill, chosen per pattern on valid
    "zero_fill_pp_shared": ("mmlab.methods.specialists:Specialists", {"member": "zero_fill", "shared": True}),
    # CIDer (mmlab/methods/cider.py) and rows of its Table V
    "cider": ("mmlab.methods.cider:CIDer", {}),
    "cider_wo_mssd": ("mmlab.methods.cider:CIDer", {"mssd": False}),
    "cider_wo_maci": ("mmlab.methods.cider:CIDer", {"head": "linear", "counterfactual": False}),
    "cider_rate_cv": ("mmlab.methods.cider:CIDer", {"bias_counts": "rate"}),  # ours: Eq. 27 on per-class rates
    # CIDer's MACI as a plug-in (mmlab/methods/maci.py): MCM in place of the classifier head(s)
    "zero_fill_maci": ("mmlab.methods.maci:FillFusionMACI", {"fill": "zero"}),
    "cmarr_maci": ("mmlab.methods.maci:CMARRMACI", {}),
    "admc_maci": ("mmlab.methods.maci:ADMCMACI", {}),
}


_BUILT_IN = {name: (target, dict(overrides)) for name, (target, overrides) in METHODS.items()}


def register_method(name: str, target: str, overrides: dict[str, Any] | None = None) -> None:
    """Register a method of your own (``target`` = "package.module:Class") under ``name``.
    `mmlab.experiments.compare` hands what was registered in this process to its workers
    (`added_methods`), so a registered name works with ``workers > 1`` and on a cluster."""
    METHODS[name] = (target, dict(overrides or {}))


def added_methods() -> dict[str, tuple[str, dict[str, Any]]]:
    """The entries `register_method` added or changed in this process."""
    return {name: entry for name, entry in METHODS.items() if _BUILT_IN.get(name) != entry}


def method_names() -> list[str]:
    """Every registered method name (imports no method module)."""
    return sorted(METHODS)


def method_class(name: str):
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}: expected one of {sorted(METHODS)}")
    target, _ = METHODS[name]
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def method_config(name: str, overrides: Iterable[str] | dict[str, Any] = (), preset: str | None = None):
    """The config `make_method` builds ``name`` with: its ``preset``, its registered overrides,
    then the user's (a bad name, preset, key or value raises `ConfigError` here)."""
    from mmlab.config import apply_overrides

    cls = method_class(name)
    cfg = cls.Config()
    if preset is not None:
        presets = getattr(cls, "PRESETS", {})
        if preset not in presets:
            raise ConfigError(f"method {name!r}: unknown preset {preset!r}; expected one of {sorted(presets)}")
        cfg = apply_overrides(cfg, presets[preset])
    cfg = apply_overrides(cfg, METHODS[name][1])
    return apply_overrides(cfg, overrides)


def make_method(name: str, data, overrides: Iterable[str] | dict[str, Any] = (), preset: str | None = None,
                seed: int = 0):
    """Build method ``name`` for dataset ``data`` with `method_config` (its registered overrides,
    then the user's); ``seed`` is the run seed every generator of the method derives from
    (``method.seed``).

    Each method class exposes ``Config`` (its dataclass), optional ``PRESETS`` {name: overrides},
    and ``__init__(cfg, data)``.
    """
    method = method_class(name)(method_config(name, overrides, preset), data)
    method.name, method.seed = name, int(seed)
    return method
