"""Missingness generators and fill policies: the protocols of ADMC (§5.2-5.3), CM-ARR (§4.3), CIDer
(§III-A and its appendix "Definition of Various Modality Missing Scenarios") and CPM-Nets' view
missing for multi-view data (titles in README.md, "Papers").

Missingness is applied *outside* the model, in two separate steps:

1. a **generator** draws `Masks` from padding masks only (never from features), with an explicit
   ``np.random.Generator``, so the same seeded test masks can be drawn once for a whole split
   and reused for every compared method;
2. a **fill policy** (`ZeroFill`, `MeanFill`, `NoiseFill`, `TokenFill`) writes placeholder values
   at the unobserved real frames. `mask_batch` does both halves on an `MMBatch` and keeps the
   complete features in ``batch.complete``.

Conventions: braces name the AVAILABLE modalities (``{T}`` = only text present, as ADMC's Table 1
caption defines it).
Modality-level protocols (FixedPattern, RandomPattern, RateModalityDrop, RMM, CPMViewMissing)
set ``obs[m] = pad[m] & avail[:, j]``; frame-level ones (TraditionalRMFM, RMFM, TMFM, STMFM, SMM)
set ``avail[:, j] = obs[m].any(1)``. ``protect_edges`` names modalities whose first and last
real frame (CIDer's [CLS]/[SEP], in its code) are never dropped; those frames are left out of the pool
that rates and counts refer to, and ``avail`` then reports whether any *content* frame survived.
Token modalities (integer ids) get this rule whatever the generator: ``draw_masks(...,
tokens=data.token_modalities)`` and `mask_batch` apply `keep_token_edges`, and `mask_batch` fills
their unobserved tokens with [UNK] (`with_tokens`).

Layout: `masks` (Masks, RNGs, padding masks), `modality` (whole-modality generators), `frames`
(frame-level generators), `protocols` (generators by name), `fill` (fill policies, `mask_batch`).
Import from ``mmlab.missing``.
"""

from __future__ import annotations

from mmlab.missing.masks import Pad, Masks, make_rng, draw_masks, keep_token_edges, pad_masks, pattern_name
from mmlab.missing.modality import Full, FixedPattern, all_patterns, RandomPattern, RateModalityDrop, RMM, CPMViewMissing
from mmlab.missing.frames import TraditionalRMFM, SMM, RMFM_MODES, RMFM_TRAIN_SAMPLERS, RMFM, TMFM, STMFM
from mmlab.missing.protocols import PROTOCOLS, make_protocol
from mmlab.missing.fill import ZeroFill, MeanFill, NoiseFill, TokenFill, FILLS, make_fill, mask_batch, resolve_fill, with_tokens
from mmlab.missing.sampling import random_mask_batch

__all__ = [
    "Pad",
    "Masks",
    "make_rng",
    "draw_masks",
    "keep_token_edges",
    "pad_masks",
    "pattern_name",
    "Full",
    "FixedPattern",
    "all_patterns",
    "RandomPattern",
    "RateModalityDrop",
    "RMM",
    "CPMViewMissing",
    "TraditionalRMFM",
    "SMM",
    "RMFM_MODES",
    "RMFM_TRAIN_SAMPLERS",
    "RMFM",
    "TMFM",
    "STMFM",
    "PROTOCOLS",
    "make_protocol",
    "ZeroFill",
    "MeanFill",
    "NoiseFill",
    "TokenFill",
    "FILLS",
    "make_fill",
    "resolve_fill",
    "mask_batch",
    "with_tokens",
    "random_mask_batch",
]
