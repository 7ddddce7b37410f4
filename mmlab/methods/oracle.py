"""The Bayes-optimal classifier of a dataset with a known generative model, as a `Method`.

`synthetic` (and any dataset whose ``info["oracle"]`` has ``log_posterior(feats, obs)``) has an
exact posterior for every availability pattern and frame mask; `BayesOracle` wraps it so that it
is evaluated like every other method, on the same masks (`mmlab.evaluate.oracle_table`).
A model with ``law_by_id = True`` (`synthetic_text`, whose test_ood split has its own word law)
also receives the batch's sample ids, ``log_posterior(feats, obs, ids=...)``, so one oracle scores
every split under that split's law.
"""

from __future__ import annotations

import torch

from mmlab.data.batch import MMBatch
from mmlab.data.dataset import MMDataset
from mmlab.errors import DataError
from mmlab.methods.base import Method


class BayesOracle(Method):
    """The exact posterior log p(y | observed frames); reads only ``obs_mask`` frames, so the fill
    policy does not matter. Nothing to train."""

    name = "bayes_oracle"
    fill = "zero"

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def stages(self, data: MMDataset) -> list:
        return []

    def predict_logits(self, batch: MMBatch) -> torch.Tensor:
        feats = {m: batch.feats[m].detach().cpu().numpy() for m in batch.modalities}
        obs = {m: batch.obs_mask[m].detach().cpu().numpy() for m in batch.modalities}
        # a model whose law differs between splits (`synthetic_text`: test vs test_ood) picks each
        # row's law from its sample id
        extra = {"ids": list(batch.ids)} if getattr(self.model, "law_by_id", False) else {}
        return torch.from_numpy(self.model.log_posterior(feats, obs, **extra)).float().to(batch.device)


def has_oracle(data: MMDataset) -> bool:
    """Whether ``data`` carries an exact generative model (``info["oracle"]``)."""
    return callable(getattr(data.info.get("oracle"), "log_posterior", None))


def oracle_of(data: MMDataset) -> BayesOracle:
    """The Bayes oracle of a dataset with a known generative model (DataError for any other)."""
    if not has_oracle(data):
        raise DataError(f"dataset {data.name!r} has no exact oracle (only `synthetic` and `synthetic_text` have one)")
    return BayesOracle(data.info["oracle"])
