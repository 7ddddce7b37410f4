"""Feature extraction from raw media, offline: speech, transcripts and face images -> a
bring-your-own ``.npz`` (`mmlab.data.byo`).

- `layout`: the raw folder (``labels.csv`` + ``<id>.wav`` / ``<id>.txt`` / ``<id>/`` images)
- `audio`: MFCC + deltas (numpy, librosa's definition), openSMILE if installed
- `text`: all-MiniLM-L6-v2 token features, sentence vectors or bert-base-uncased token ids
- `face`: the FER2013 CNN of what-the-face-classification (304-d)
- `cache`: per-file features keyed by content and settings
- `pipeline`: `extract` (the CLI's ``mmlab extract``)
- `sample`: a small synthetic raw sample set (``mmlab extract --make-sample DIR``)
"""

from __future__ import annotations

import importlib

_WHERE = {  # public name -> submodule; imported on first use, so `mmlab --help` stays light
    "AudioConfig": "audio", "FaceConfig": "face", "TextConfig": "text", "RawSet": "layout", "scan_raw": "layout",
    "ExtractConfig": "pipeline", "ExtractResult": "pipeline", "extract": "pipeline", "make_raw_sample": "sample",
}
__all__ = ["AudioConfig", "ExtractConfig", "ExtractResult", "FaceConfig", "RawSet", "TextConfig", "extract",
           "make_raw_sample", "scan_raw"]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"mmlab.extract.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'mmlab.extract' has no attribute {name!r}")
