"""Loaders for the licensed benchmarks, reading the layouts their public releases use.

None of this data ships with mmlab: each loader looks under a data root (``MMLAB_DATA_ROOT`` or
``--data-root``) for a folder of the dataset's name, or takes that folder directly. The data
cards in ``data_cards/`` say how to obtain each set and which protocol each paper used.

============ ======================================================= ==========================
name         layout                                                   splits
============ ======================================================= ==========================
iemocap      MMIN: A/comparE.h5, V/denseface.h5, L/bert_large.h5,     MMIN 10-fold CV
             A/comparE_mean_std.h5, target/{fold}/{trn,val,tst}_*.npy (fold = 1..10)
msp_improv   the same MMIN layout                                     MMIN 12-fold CV
mintrec      {train,dev,test}.tsv, video_data/video_feats.pkl,        official train/dev/test
             audio_data/audio_feats.pkl [, text_data/text_feats.pkl]
mosi, mosei  MMSA: Processed/{aligned,unaligned}_50.pkl               official train/valid/test
mosi_ood,    the MMSA pickle + CIDer's OOD_{MOSI,MOSEI}/{binary,seven}/  + test_ood (mmsa_ood);
mosei_ood    {MOSI,MOSEI}_{aligned,unaligned}_50.pkl (joblib)         or the OOD partition's own
============ ======================================================= ==========================

Names take options after a colon: ``mosi:aligned,seven``, ``mosi:ood`` (= ``mosi_ood``),
``mosei_ood:unaligned,seven``, ``mosi:ood_partition`` (`mmlab.data.mmsa_ood.mmsa_options`).

Pickles are read with the restricted unpickler (`mmlab.data.safe_pickle`), ``.npy`` files
without pickle (object arrays through the same restricted unpickler), HDF5 with h5py without
following links out of the file. Every malformed input becomes a `DataError` that names the
file and the key. Each file is loaded under a memory budget (`mmlab.data.budget`: ``max_bytes``,
else ``MMLAB_MAX_BYTES``, else 4 GiB) that counts what it holds and what the loader builds from
it, padding included, before anything is allocated; ``max_len`` refuses longer sequences.
Sample ids must be unique.

One module per layout: `mmlab.data.mmin`, `mmlab.data.mintrec`, `mmlab.data.mmsa` (and
`mmlab.data.mmsa_ood` for CIDer's OOD partitions, joblib files read by `mmlab.data.safe_joblib`); shared
checks and folder lookup in `mmlab.data.layout`. This module registers them.
"""

from __future__ import annotations

from mmlab.data.layout import (
    IEMOCAP_DIRS, MINTREC_DIRS, MOSEI_DIRS, MOSI_DIRS, MSP_DIRS, find_iemocap, find_mintrec, find_mosei, find_mosi,
    find_msp_improv,
)
from mmlab.data.mintrec import MINTREC_EMOTION, MINTREC_LABELS, load_mintrec
from mmlab.data.mmin import EMOTIONS_4, load_iemocap, load_msp_improv
from mmlab.data.mmsa import MMSA_TASKS, load_mosei, load_mosi
from mmlab.data.mmsa_ood import find_mosei_ood, find_mosi_ood, load_mosei_ood, load_mosi_ood, mmsa_options
from mmlab.data.registry import DatasetEntry, register_dataset

__all__ = [
    "load_iemocap", "load_msp_improv", "load_mintrec", "load_mosi", "load_mosei", "load_mosi_ood", "load_mosei_ood",
    "find_iemocap", "find_msp_improv", "find_mintrec", "find_mosi", "find_mosei",
    "IEMOCAP_DIRS", "MSP_DIRS", "MINTREC_DIRS", "MOSI_DIRS", "MOSEI_DIRS",
    "EMOTIONS_4", "MINTREC_LABELS", "MINTREC_EMOTION", "MMSA_TASKS",
]


# ---------------------------------------------------------------------------- registry
for _entry in (
    DatasetEntry("iemocap", load_iemocap, "IEMOCAP 4-class, MMIN features (ComParE/DenseFace/BERT-large), 10 folds",
                 "iemocap.md", find=find_iemocap),
    DatasetEntry("msp_improv", load_msp_improv, "MSP-IMPROV 4-class, MMIN layout, 12 folds", "msp_improv.md",
                 find=find_msp_improv, aliases=("msp-improv", "msp")),
    DatasetEntry("mintrec", load_mintrec, "MIntRec 20 intents: wav2vec2 audio, ROI video (text only if precomputed)",
                 "mintrec.md", find=find_mintrec),
    DatasetEntry("mosi", load_mosi, "CMU-MOSI sentiment, MMSA pickle (BERT/COVAREP/Facet)", "mosi.md", find=find_mosi,
                 aliases=("cmu-mosi",), options=mmsa_options),
    DatasetEntry("mosei", load_mosei, "CMU-MOSEI sentiment, MMSA pickle (BERT/COVAREP/Facet)", "mosei.md",
                 find=find_mosei, aliases=("cmu-mosei",), options=mmsa_options),
    DatasetEntry("mosi_ood", load_mosi_ood, "CMU-MOSI IID splits + test_ood from CIDer's OOD re-partition", "mosi.md",
                 find=find_mosi_ood, aliases=("cmu-mosi-ood",), options=mmsa_options),
    DatasetEntry("mosei_ood", load_mosei_ood, "CMU-MOSEI IID splits + test_ood from CIDer's OOD re-partition",
                 "mosei.md", find=find_mosei_ood, aliases=("cmu-mosei-ood",), options=mmsa_options),
):
    register_dataset(_entry)
