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
# # 01 · Feature extraction: from raw speech, transcripts and faces to mmlab's feature file
#
# **What this notebook teaches.** Where a researcher's data starts: a folder of `.wav` files,
# transcripts and face images with a `labels.csv`. `mmlab extract` turns it into the
# bring-your-own `.npz` every method trains on: MFCC + deltas for speech, all-MiniLM-L6-v2 token
# features for text, the 304-d features of a FER2013-trained CNN for faces. A missing file is a
# missing modality for that sample. We look at each step on one utterance, project each
# modality's utterance features, and run `mmlab compare` on the result.
#
# **The data is SYNTHETIC.** By default the notebook makes the raw sample set of
# `data_cards/raw_sample.md`: espeak-ng speech with class-dependent pitch, rate and loudness,
# transcripts from class-dependent word lists, cartoon faces with class-dependent mouths and
# brows. It says nothing about real emotion recognition; it exercises the path from media to
# methods. Point `raw_dir` at your own folder (same layout) to extract yours.
#
# **Cost.** About 1-2 min on 2 cores with the defaults (making 320 utterances, extracting them
# with 2 workers, one UMAP per modality, `zero_fill` on utterance features). A re-run reads the
# feature cache.

# %% tags=["parameters"]
preset = "default"   # raw sample set size: "tiny" (12 per class, tests), "default" (80 per class)
device = "cpu"       # the text encoder's device
seed = 1111          # training seed and test-mask seed of the comparison
threads = 1          # CPU threads for torch / numba (1 avoids oversubscription on small CPUs, None keeps the library default)
interactive = True   # `mmlab run` and papermill pass False; this notebook has no widgets
out_dir = None       # run folder from `mmlab run`, None for a temporary folder
raw_dir = None       # a raw folder (labels.csv, <id>.wav, <id>.txt, <id>/); None: make the synthetic sample set in out_dir
audio = "mfcc"       # mfcc, or opensmile_egemaps / opensmile_egemaps_lld / opensmile_compare[_lld] (needs opensmile)
text = "minilm_tokens"  # minilm_tokens, minilm_sentence or token_ids
face = "fer"         # the FER2013 CNN (what-the-face-classification)
workers = 2          # processes for audio and faces
methods = "zero_fill"  # comma-separated methods for `mmlab compare` on the utterance-level file, e.g. "zero_fill,admc"
projection = "umap"  # 2-D projection of the utterance features: umap or pca

# %%
import dataclasses
import tempfile
from pathlib import Path

from mmlab import viz, workspace
from mmlab.experiments import compare
from mmlab.extract import AudioConfig, ExtractConfig, FaceConfig, TextConfig, extract, scan_raw, views

workspace.setup_notebook(threads=threads, seed=seed)
rec = workspace.NotebookRecorder("01_feature_extraction", out_dir)
work = Path(out_dir) / "extract" if out_dir else Path(tempfile.mkdtemp(prefix="mmlab-extract-"))
if raw_dir is None:
    info = views.ensure_sample(work / "raw_sample", views.SAMPLE_SIZES[preset])
    raw_dir = info["path"]
    print(info)
print("raw folder:", raw_dir, "| files:", sorted(p.name for p in Path(raw_dir).iterdir())[:6], "...")

# %% [markdown]
# ## 1. Speech: spectrogram, then MFCC + deltas
#
# 40 MFCCs every 10 ms (25 ms windows, 64 mel bands), then their first and second time
# derivatives: the definition of `librosa.feature.mfcc` and `librosa.feature.delta`, computed in
# numpy. Each utterance becomes a (frames, 120) sequence.

# %%
sample = views.complete_sample(raw_dir)
cfg = ExtractConfig(audio=AudioConfig(extractor=audio), text=TextConfig(extractor=text), face=FaceConfig(extractor=face),
                    workers=workers, device=device)
av = views.audio_view(sample.media["audio"], AudioConfig())
rec.show(views.audio_figure(av, f"{sample.id} ({sample.label}): spectrogram and MFCC + deltas"), "audio")
smile = views.opensmile_view(sample.media["audio"])
if smile is not None:
    rec.show(views.opensmile_figure(smile), "opensmile_lld")
else:
    print("openSMILE is not installed (pip install opensmile==2.6.0; research licence): no LLD curve")

# %% [markdown]
# ## 2. Text: word pieces, token ids and their features
#
# The bert-base-uncased tokenizer that ships with all-MiniLM-L6-v2 cuts the transcript into word
# pieces between [CLS] and [SEP]; the encoder gives one 384-d vector per piece.

# %%
tv = views.text_view(sample.media["text"], TextConfig(extractor="minilm_tokens"))
print(tv["text"])
print(list(zip(tv["tokens"], tv["ids"])))
rec.show(views.text_figure(tv), "text")

# %% [markdown]
# ## 3. Faces: one image per frame, 304 features each
#
# Each image is turned gray, resized to 48x48 and passed through the FER2013 CNN; we keep its
# penultimate layer. One example per class:

# %%
faces = {c: views.faces_view(views.complete_sample(raw_dir, c).media["face"]) for c in scan_raw(raw_dir).classes}
rec.show(views.faces_figure(faces), "faces")

# %% [markdown]
# ## 4. Extract the whole folder
#
# Frame level (the default) keeps the sequences; utterance level pools each sample to one vector
# (mean and std over frames for audio, the mean for faces and text). The second call reads the
# per-file cache the first one wrote. Both files pass `mmlab data validate`.

# %%
frame = extract(raw_dir, work / "features_frame.npz", cfg)
print(frame.summary())
utter = extract(raw_dir, work / "features_utterance.npz", dataclasses.replace(cfg, level="utterance"))
print(utter.summary())
rec.log(samples=len(frame.ids), **{f"dim_{m}": s[-1] for m, s in frame.shapes.items()},
        **{f"available_{m}": n for m, n in frame.available.items()},
        **{f"seconds_{k.split(':')[0]}": v for k, v in frame.seconds.items()})

# %% [markdown]
# ## 5. Each modality alone, projected
#
# A 2-D projection of every modality's utterance features (samples that have it), coloured by
# class: the class cues rendered into the synthetic media show up as clusters.

# %%
points, labels, classes = views.utterance_points(utter.path, projection=projection)
rec.show(views.points_figure(points, labels, classes, f"Utterance features by class ({projection})"), "projection")

# %% [markdown]
# ## 6. Train and compare on the extracted file
#
# The same call as `mmlab compare --data features_utterance.npz --methods zero_fill --protocol
# patterns`: each method trains on full input and is scored with each modality pattern.
# `{A}` means only audio is available. Chance is 1/4.

# %%
paths = compare(str(utter.path), methods=methods.split(","), protocol="patterns", seeds=[seed], out=work / "compare",
                device=device, resume=True)
rows = views.pattern_accuracy(paths[0], chance=1 / len(classes))
rec.table("pattern_accuracy", rows)
rec.show(viz.condition_bars(rows, metric="accuracy"), "pattern_accuracy")
first = methods.split(",")[0]
rec.log(**{f"{first}_accuracy_{r['condition'].strip('{}')}": r["accuracy"] for r in rows
           if r["method"] == first and r["condition"] not in ("full", "Average")},
        **{f"{first}_average": r["accuracy"] for r in rows if r["method"] == first and r["condition"] == "Average"})
rec.metrics
