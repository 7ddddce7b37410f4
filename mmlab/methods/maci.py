"""MACI as a plug-in: CIDer's multimodal causal module (MCM) in place of another method's classifier.

CIDer (Zhong et al., "Towards Robust Multimodal Emotion Recognition under Missing Modalities and
Distribution Shifts"; `mmlab.methods.cider`) adds its model-agnostic causal inference (MACI) to
DLF and MPLMM (its Table IV, "DLF+MACI", "MPLMM+MACI"). Here any registered method whose
classifier is an `mmlab.nn.encoders.MLPHead` on a joint representation can be wrapped the same
way (`with_maci`): every such head ``head(h) -> logits`` is replaced by `MCMAdapter`, which is
Eqs. 21-24 on the same h:

- class prototypes [X_1^i; ...; X_M^i]: per class i, the mean over the training split of each
  modality's time-mean features (the features the method reads, so token text is the shared
  frozen encoder's output, as CIDer's L_i come from the pretrained, not fine-tuned, BERT);
  frames a sample lacks natively do not count;
- Eq. 21 one 3-layer MLP per modality on the prototypes, Eq. 22 concatenation with h, Eq. 23 one
  linear classifier per class, Eq. 24 the mixture of their softmaxes weighted by the class prior
  P(i) (probabilities are mixed, choice B8 of mmlab/methods/cider.py; the adapter returns log y');
- at training the train prior and train prototypes (the module is in ``train()`` mode, as the
  Trainer sets the modules of the running stage); at validation and test (``eval()``) the
  uniform prior and every prototype replaced by the mean of the class means (CIDer's footnote 4;
  choice B7 of mmlab/methods/cider.py), exactly as `mmlab.methods.cider.CIDer` does.

What the plug-in does not do: the counterfactual text of Eqs. 25-27 needs token ids at test
time, and the wrapped methods read the text modality as frozen-encoder features (they never see
the ids), so a ``*_maci`` method is "MACI with MCM only" (CIDer's Table V row "w/o F.C.T.");
`cider` itself has both parts. The MCM width is ``MCM_WIDTH`` (CIDer's d = 32 on MOSI).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.methods.admc import ADMC
from mmlab.methods.base import Method, module_device
from mmlab.methods.baselines.fill import FillFusion
from mmlab.methods.cmarr import CMARR
from mmlab.nn.cider_modules import MCMHead
from mmlab.nn.encoders import MLPHead

MCM_WIDTH = 32


class MCMAdapter(nn.Module):
    """A classifier head ``h (B, d_joint) -> (B, C)`` computed by MCM (Eqs. 21-24): train prior and
    prototypes in ``train()`` mode, uniform prior and mean prototypes in ``eval()`` mode."""

    def __init__(self, d_joint: int, proto_dims: list[int], n_classes: int, width: int = MCM_WIDTH):
        super().__init__()
        self.mcm = MCMHead(d_joint, width, proto_dims, n_classes)

    def forward(self, h: Tensor) -> Tensor:
        if self.training:
            return self.mcm(h)
        protos = self.mcm.prototypes.mean(0, keepdim=True).expand_as(self.mcm.prototypes)
        return self.mcm(h, protos, torch.full_like(self.mcm.prior, 1.0 / len(self.mcm.prior)))


def replace_heads(method: nn.Module, proto_dims: list[int], n_classes: int, prefix: str = "") -> list[str]:
    """Swap every `MLPHead` of ``method`` whose name starts with ``prefix`` for an `MCMAdapter` on
    the same input; returns their names."""
    names = [name for name, mod in method.named_modules() if isinstance(mod, MLPHead) and name.startswith(prefix)]
    if not names:
        raise ConfigError(f"{type(method).__name__}: MACI needs a classifier head (an MLPHead on a joint "
                          "representation) to replace; found none")
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = method.get_submodule(parent_name) if parent_name else method
        head: MLPHead = getattr(parent, attr)
        setattr(parent, attr, MCMAdapter(head.net[0].in_features, proto_dims, n_classes))
    return names


@torch.no_grad()
def class_prototypes(train: MMDataset, device: torch.device) -> tuple[Tensor, Tensor]:
    """((C, sum D_m) class means of each modality's time-mean features, (C,) train prior) over the
    observed frames of the training split."""
    mods, n_classes = train.modalities, train.n_classes
    sums = {m: torch.zeros(n_classes, train.dims[m], dtype=torch.float64) for m in mods}
    counts = {m: torch.zeros(n_classes, dtype=torch.float64) for m in mods}
    for batch in train.iter_batches(512):
        y = batch.y
        for m in mods:
            obs = batch.obs_mask[m]
            has = obs.any(1)
            w = obs.to(torch.float64)[..., None]
            row_mean = (batch.feats[m].double() * w).sum(1) / w.sum(1).clamp_min(1.0)
            sums[m].index_add_(0, y[has], row_mean[has])
            counts[m].index_add_(0, y[has], torch.ones(int(has.sum()), dtype=torch.float64))
    protos = torch.cat([sums[m] / counts[m].clamp_min(1.0)[:, None] for m in mods], 1)
    prior = torch.bincount(torch.as_tensor(train.y, dtype=torch.long), minlength=n_classes).double()
    return protos.float().to(device), (prior / prior.sum()).float().to(device)


def with_maci(base: type[Method], heads: str = "") -> type[Method]:
    """The class of ``base`` with MCM in place of its joint classifier heads: the `MLPHead` s whose
    module names start with ``heads`` (ADMC: "mfs.", its fusion classifiers, not the unimodal
    ITFN heads)."""

    class WithMACI(base):  # type: ignore[misc, valid-type]
        __doc__ = f"{base.__name__} with CIDer's MCM as its classifier (`mmlab.methods.maci`)."

        def __init__(self, cfg: Any, data: MMDataset):
            super().__init__(cfg, data)
            if any(m in data.token_modalities for m in data.modalities):
                raise ConfigError(f"{base.__name__}+MACI reads features; token text reaches it through the shared "
                                  "frozen encoder (mmlab.methods.text), not as ids")
            self.maci_heads = replace_heads(self, [data.dims[m] for m in data.modalities], data.n_classes, heads)

        def stages(self, data: MMDataset) -> list:
            protos, prior = class_prototypes(data.subset("train"), module_device(self))
            for mod in self.modules():
                if isinstance(mod, MCMAdapter):
                    mod.mcm.prototypes.copy_(protos)
                    mod.mcm.prior.copy_(prior)
            return super().stages(data)

    WithMACI.__name__ = WithMACI.__qualname__ = f"{base.__name__}MACI"
    return WithMACI


FillFusionMACI = with_maci(FillFusion)
CMARRMACI = with_maci(CMARR)
ADMCMACI = with_maci(ADMC, heads="mfs.")
