"""Token-id text modalities: the bert-base-uncased vocabulary and the one checker that
`MMDataset` and the bring-your-own validator share.

A token modality holds integer ids (N, T) in the bert-base-uncased WordPiece vocabulary
(Devlin et al., "BERT", arXiv:1810.04805): every row is ``[CLS] w_1 ... w_k [SEP] [PAD] ...``,
its length ``k + 2`` counts [CLS] and [SEP], and the ids past the length are [PAD] = 0.
"""

from __future__ import annotations

import numpy as np

VOCAB_SIZE = 30522  # bert-base-uncased (and all-MiniLM-L6-v2, which shares its vocabulary)
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 100, 101, 102, 103


def token_problems(ids: np.ndarray, lengths: np.ndarray | None, key: str, len_key: str) -> list[str]:
    """Every way ``ids`` (N, T) and ``lengths`` (N,) break the token contract, as messages
    ``"<key>: <problem>"``; ``lengths=None`` means every row is T tokens long.

    Checks: integer dtype, ids in [0, VOCAB_SIZE), lengths >= 2, [CLS] = 101 at position 0 and
    [SEP] = 102 at position length - 1 of every row. Padding is not checked (loaders zero it).
    """
    out: list[str] = []
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        return [f"{key}: token ids must be an integer array (N, T), got {ids.dtype} {ids.shape}"]
    n, t = ids.shape
    if ids.size == 0:
        return out
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= VOCAB_SIZE:
        bad = np.argwhere((ids < 0) | (ids >= VOCAB_SIZE))[0]
        out.append(
            f"{key}: token ids must lie in [0, {VOCAB_SIZE}) (the bert-base-uncased vocabulary), got range "
            f"[{lo}, {hi}] (e.g. {int(ids[tuple(bad)])} at row {bad[0]}, position {bad[1]}); "
            "integer features that are not token ids must be stored as floats"
        )
        return out
    ln = np.full(n, t, np.int64) if lengths is None else np.asarray(lengths).astype(np.int64)
    if ln.shape != (n,) or ln.min() < 1 or ln.max() > t:
        return out  # the length checks of the caller report this
    short = np.flatnonzero(ln < 2)
    if len(short):
        out.append(
            f"{len_key}: a token sequence counts [CLS] and [SEP], so its length must be >= 2; "
            f"row {short[0]} has {ln[short[0]]}"
        )
        return out
    rows = np.arange(n)
    no_cls = np.flatnonzero(ids[:, 0] != CLS_ID)
    if len(no_cls):
        r = no_cls[0]
        out.append(
            f"{key}: every token row must start with [CLS] = {CLS_ID} at position 0; {len(no_cls)} row(s) "
            f"do not (row {r} starts with {int(ids[r, 0])}); an integer (N, T) array is read as token ids, "
            "so store integer features that are not token ids as floats"
        )
    last = ids[rows, ln - 1]
    no_sep = np.flatnonzero(last != SEP_ID)
    if len(no_sep):
        r = no_sep[0]
        where = f"{len_key} - 1" if lengths is not None else f"T - 1, as there is no {len_key} and every row is T long"
        out.append(
            f"{key}: the last real token of every row (position {where}) must be [SEP] = {SEP_ID}, "
            f"since {len_key} counts [CLS] and [SEP]; {len(no_sep)} row(s) do not "
            f"(row {r} has {int(last[r])} at position {int(ln[r]) - 1})"
        )
    return out
