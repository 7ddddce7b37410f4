"""Baselines of the ADMC and CM-ARR tables (ADMC §5.1, Tables 1-3; CM-ARR §4.2-4.4, Tables 2-3;
zero / mean padding: ADMC §2.1; titles in README.md, "Papers"), on the shared Method / Trainer core.

=============  ================================================================  ==============
name           what it is                                                        file
=============  ================================================================  ==============
zero_fill      encoders + fusion MLP, random-pattern training, zero-filled input  ``fill.py``
mean_fill      the same with train-mean fill                                      ``fill.py``
full_zero      CM-ARR "Baseline": trained on complete data, zero-filled at test   ``fill.py``
ae             frozen encoders -> AE imputes missing embeddings -> classifier     ``impute.py``
cra            the same with a Cascaded Residual AE (Tran et al., CVPR 2017)      ``impute.py``
mmin           MMIN (Zhao et al., ACL 2021): teacher, CRA imagination + cycle     ``mmin.py``
=============  ================================================================  ==============

Every one has a CPU default that trains in about a minute on ``synthetic`` and a ``paper``
preset (``make_method(name, data, preset="paper")``) with the published sizes.
"""

from mmlab.methods.baselines.fill import FillFusion, FillFusionConfig
from mmlab.methods.baselines.impute import ImputeClassify, ImputeConfig
from mmlab.methods.baselines.mmin import MMIN, MMINConfig

BASELINES = ("zero_fill", "mean_fill", "full_zero", "ae", "cra", "mmin")

__all__ = ["BASELINES", "FillFusion", "FillFusionConfig", "ImputeClassify", "ImputeConfig", "MMIN", "MMINConfig"]
