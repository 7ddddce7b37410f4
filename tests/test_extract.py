"""mmlab.extract: raw media -> bring-your-own .npz, offline, on a tiny synthetic sample set and
on small bad files the tests write."""

from __future__ import annotations

import shutil
import struct
import sys
import wave

import numpy as np
import pytest

from mmlab.cli import main
from mmlab.data.byo import load_npz, validate_npz
from mmlab.errors import ConfigError, DataError
from mmlab.extract import AudioConfig, ExtractConfig, TextConfig, extract, make_raw_sample, scan_raw
from mmlab.extract.audio import dct_ortho, hz_to_mel, mel_filterbank, mel_to_hz, mfcc, read_wav

FAST = dict(text=TextConfig(extractor="token_ids"), show_progress=False)  # no encoder: the tokenizer only


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw") / "sample"
    info = make_raw_sample(root, n_per_class=6, frames=2, seed=3, speech="numpy", p_missing=0.25)
    assert info["samples"] == 24 and info["speech"] == "numpy" and info["missing_one_modality"] > 0
    return root


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


def _copy(sample, tmp_path, per_class=2):
    """A small raw folder: the first ``per_class`` complete samples (all three modalities) of each class."""
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = ["id,label"]
    for label in ("neutral", "happy", "sad", "angry"):
        complete = [f"{label}_{k:03d}" for k in range(6)
                    if all((sample / p).exists() for p in (f"{label}_{k:03d}.wav", f"{label}_{k:03d}.txt", f"{label}_{k:03d}"))]
        for sid in complete[:per_class]:
            for p in (f"{sid}.wav", f"{sid}.txt"):
                shutil.copy(sample / p, raw / p)
            shutil.copytree(sample / sid, raw / sid)
            rows.append(f"{sid},{label}")
    (raw / "labels.csv").write_text("\n".join(rows) + "\n")
    return raw, [r.split(",")[0] for r in rows[1:]]


# ------------------------------------------------------------------------------------ the whole path
def test_sample_set_extracts_to_a_valid_file_with_missing_modalities(sample, tmp_path, cache):
    out = tmp_path / "x.npz"
    r = extract(sample, out, ExtractConfig(cache_dir=cache, show_progress=False))
    problems, summary = validate_npz(out)
    assert problems == [] and "OK" in summary
    d = np.load(out)
    assert list(d["classes"]) == ["neutral", "happy", "sad", "angry"] and len(d["y"]) == 24
    assert d["X_A"].shape[2] == 120 and d["X_T"].shape[2] == 384 and d["X_V"].shape[1:] == (2, 304)
    assert set(d["split"]) == {"train", "valid", "test"}
    # a missing file is a missing modality: fewer available than samples, and its row holds no data
    missing_a = [i for i, s in enumerate(d["ids"]) if not (sample / f"{s}.wav").exists()]
    assert r.available["A"] == 24 - len(missing_a) and sum(24 - n for n in r.available.values()) > 0
    for i in missing_a:
        assert d["len_A"][i] == 1 and not d["X_A"][i].any() and not d["avail_A"][i]
    assert d["avail_A"].sum() == r.available["A"]
    data = load_npz(out)
    assert not data.batch(missing_a).avail[:, 0].any()  # never read as data
    assert data.modalities == ("A", "T", "V") and data.dims["V"] == 304


def test_rerun_reads_the_cache_and_writes_the_same_file(sample, tmp_path, cache):
    cfg = ExtractConfig(cache_dir=cache, **FAST)
    first = extract(sample, tmp_path / "a.npz", cfg)
    second = extract(sample, tmp_path / "b.npz", cfg)
    assert first.cache_hits == 0 and second.cache_hits == sum(second.available.values())
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    changed = ExtractConfig(cache_dir=cache, audio=AudioConfig(n_mfcc=13), **FAST)  # new settings, new entries
    third = extract(sample, tmp_path / "c.npz", changed)
    assert np.load(tmp_path / "c.npz")["X_A"].shape[2] == 39 and third.cache_hits == sum(third.available.values()) - third.available["A"]


def test_utterance_level_and_token_ids(sample, tmp_path):
    r = extract(sample, tmp_path / "u.npz", ExtractConfig(level="utterance", use_cache=False, **FAST))
    d = np.load(tmp_path / "u.npz")
    assert d["X_A"].shape == (24, 240) and d["X_V"].shape == (24, 304)  # audio: mean and std over frames
    assert d["X_T"].dtype == np.int64 and (d["X_T"][:, 0] == 101).all()
    assert (d["X_T"][np.arange(24), d["len_T"] - 1] == 102).all() and validate_npz(tmp_path / "u.npz")[0] == []
    assert r.shapes["T"] == d["X_T"].shape


def test_workers_give_the_same_features(sample, tmp_path):
    cfg = dict(use_cache=False, media=("audio", "face"), show_progress=False)
    extract(sample, tmp_path / "w1.npz", ExtractConfig(workers=1, **cfg))
    extract(sample, tmp_path / "w2.npz", ExtractConfig(workers=2, **cfg))
    a, b = np.load(tmp_path / "w1.npz"), np.load(tmp_path / "w2.npz")
    assert a.files == b.files
    for k in a.files:  # a worker's torch/BLAS kernels may sum in another order: floats equal to rounding
        x, y = a[k], b[k]  # each NpzFile access reads the array again
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"key {k}")
        else:
            np.testing.assert_array_equal(x, y, err_msg=f"key {k}")


def test_cli_make_sample_then_extract(tmp_path, capsys):
    raw, out = tmp_path / "s", tmp_path / "s.npz"
    assert main(["extract", "--make-sample", str(raw), "--n-per-class", "5", "--speech", "numpy", "--out", str(out),
                 "--text", "token_ids", "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert "SYNTHETIC" in text and "N=20" in text and validate_npz(out)[0] == []
    assert "synthetic" in (raw / "README.md").read_text().lower()
    assert main(["extract", str(raw)]) == 2 and "--out" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ audio
def _write_wav(path, y, sr=16000, width=2, channels=1):
    scale = {1: 127, 2: 32767, 3: 8388607, 4: 2147483647}[width]
    q = np.round(np.repeat(y[:, None], channels, 1) * scale).astype(np.int64).ravel()
    if width == 1:
        raw = (q + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = b"".join(struct.pack("<i", int(v))[:3] for v in q)
    else:
        raw = q.astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(sr)
        w.writeframes(raw)


def test_read_wav_pcm_widths_float_and_stereo(tmp_path):
    y = 0.5 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)
    for width, tol in ((1, 1e-2), (2, 1e-4), (3, 1e-6), (4, 1e-6)):
        _write_wav(tmp_path / f"w{width}.wav", y, width=width, channels=2)
        x, sr = read_wav(tmp_path / f"w{width}.wav")
        assert sr == 16000 and np.abs(x - y).max() < tol, width
    body = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    data = y.astype("<f4").tobytes()
    blob = b"RIFF" + struct.pack("<I", 4 + 24 + 8 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + body
    (tmp_path / "f.wav").write_bytes(blob + b"data" + struct.pack("<I", len(data)) + data)
    x, sr = read_wav(tmp_path / "f.wav")
    assert sr == 8000 and np.allclose(x, y, atol=1e-7)


@pytest.mark.parametrize("content, expected", [
    (b"", "empty file"), (b"not a wave file at all", "not a RIFF/WAVE"),
    (b"RIFF\x04\x00\x00\x00WAVE", "no fmt  chunk"),
])
def test_read_wav_bad_files_name_the_file(tmp_path, content, expected):
    (tmp_path / "bad.wav").write_bytes(content)
    with pytest.raises(DataError, match=expected) as err:
        read_wav(tmp_path / "bad.wav")
    assert "bad.wav" in str(err.value)


def test_mfcc_pieces_match_their_definitions():
    from scipy.fft import dct

    x = np.random.default_rng(0).standard_normal((5, 64))
    assert np.allclose(x @ dct_ortho(64, 20).T, dct(x, type=2, norm="ortho", axis=1)[:, :20])
    assert hz_to_mel(1000.0) == pytest.approx(15.0) and np.allclose(mel_to_hz(hz_to_mel([50, 900, 4000])), [50, 900, 4000])
    fb = mel_filterbank(16000, 400, 64)
    assert fb.shape == (64, 201) and (fb.sum(1) > 0).all()
    cfg = AudioConfig()
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    c = mfcc(tone, cfg)
    assert c.shape == (101, 120) and np.isfinite(c).all()  # 1 s at a 10 ms hop, centred frames; 40 x (1 + 2 deltas)
    assert np.abs(c[8:-8, 40:]).max() < 1e-3 * np.abs(c[:, :40]).max() + 1e-4  # a steady tone: deltas ~ 0


def test_mfcc_matches_librosa_when_installed():
    """Measured with librosa 0.11.0 on a sample-set utterance: MFCC within 6e-5, deltas within 2e-5."""
    librosa = pytest.importorskip("librosa")
    y = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1
    cfg = AudioConfig()
    ref = librosa.feature.mfcc(y=y, sr=16000, n_mfcc=40, n_fft=400, hop_length=160, n_mels=64, fmin=0.0, fmax=None)
    assert np.allclose(mfcc(y, cfg)[:, :40], ref.T, atol=1e-2)


# ------------------------------------------------------------------------------------ bad input
def _raises(raw, match, tmp_path, **cfg):
    out = tmp_path / "out.npz"
    out.write_bytes(b"previous")
    with pytest.raises(DataError, match=match) as err:
        extract(raw, out, ExtractConfig(use_cache=False, **{**FAST, **cfg}))
    assert out.read_bytes() == b"previous"  # nothing half-written, the old file untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    return str(err.value)


@pytest.mark.parametrize("what", ["empty_wav", "corrupt_wav", "latin1_txt", "bad_image", "empty_face_dir"])
def test_bad_files_are_named_and_skip_bad_writes_the_rest(sample, tmp_path, what):
    raw, ids = _copy(sample, tmp_path)
    sid = ids[0]
    target, expected = {
        "empty_wav": (raw / f"{sid}.wav", "empty file"), "corrupt_wav": (raw / f"{sid}.wav", "not a RIFF/WAVE"),
        "latin1_txt": (raw / f"{sid}.txt", "not valid UTF-8"), "bad_image": (raw / sid / "000.png", "unreadable image"),
        "empty_face_dir": (raw / sid, "holds no images"),
    }[what]
    if what == "empty_face_dir":
        shutil.rmtree(target)
        target.mkdir()
    else:
        target.write_bytes({"empty_wav": b"", "corrupt_wav": b"\x00garbage" * 9, "latin1_txt": "caf\xe9 ol\xe9".encode("latin-1"),
                            "bad_image": b"\x89PNG broken"}[what])
    msg = _raises(raw, expected, tmp_path)
    assert str(target) in msg and "--skip-bad" in msg
    r = extract(raw, tmp_path / "ok.npz", ExtractConfig(use_cache=False, skip_bad=True, **FAST))
    assert len(r.ids) == len(ids) and len(r.problems) == 1 and str(target) in r.problems[0]
    assert validate_npz(tmp_path / "ok.npz")[0] == []
    m = {"empty_wav": "A", "corrupt_wav": "A", "latin1_txt": "T"}.get(what, "V")
    assert r.available[m] == len(ids) - 1


def test_layout_problems_are_all_listed(sample, tmp_path):
    raw, ids = _copy(sample, tmp_path)
    (raw / "classes.txt").write_text("neutral\nhappy\nsad\nangry\n")
    (raw / "orphan.wav").write_bytes((raw / f"{ids[0]}.wav").read_bytes())
    lines = (raw / "labels.csv").read_text().splitlines()
    (raw / "stranger.txt").write_text("who knows\n")
    lines += [f"{ids[1]},sad", "ghost,happy", "stranger,bored"]
    (raw / "labels.csv").write_text("\n".join(lines) + "\n")
    msg = _raises(raw, "problem", tmp_path)
    assert "orphan.wav: media with no label" in msg
    assert f"duplicate id {ids[1]!r}" in msg and "'ghost' has no media" in msg and "unknown label 'bored'" in msg
    assert "labels.csv line" in msg
    r = extract(raw, tmp_path / "ok.npz", ExtractConfig(use_cache=False, skip_bad=True, **FAST))
    assert len(r.problems) == 4 and ids[1] not in r.ids and "ghost" not in r.ids and len(r.ids) == len(ids) - 1


@pytest.mark.parametrize("labels, expected", [
    (None, "labels.csv: not found"), ("name,label\na,b\n", "expected id,label"), ("", "empty"),
])
def test_labels_file_problems(tmp_path, labels, expected):
    raw = tmp_path / "raw"
    raw.mkdir()
    if labels is not None:
        (raw / "labels.csv").write_text(labels)
    with pytest.raises(DataError, match=expected):
        scan_raw(raw)


def test_out_must_be_a_writable_file_path(sample, tmp_path):
    raw, _ = _copy(sample, tmp_path)
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(DataError, match="is a folder"):
        extract(raw, tmp_path / "folder.npz", ExtractConfig(use_cache=False, **FAST))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="cannot write here"):
        extract(raw, tmp_path / "file" / "x.npz", ExtractConfig(use_cache=False, **FAST))


def test_one_modality_is_not_enough(sample, tmp_path):
    raw, ids = _copy(sample, tmp_path)
    msg = _raises(raw, "at least two modalities", tmp_path, media=("audio",))
    assert str(raw) in msg


def test_missing_extractor_packages_name_the_install(sample, tmp_path, monkeypatch):
    from mmlab.extract import face

    monkeypatch.setitem(sys.modules, "what_the_face_classification", None)
    monkeypatch.setitem(sys.modules, "what_the_face_classification.model", None)
    monkeypatch.setattr(face, "_NET", {})
    with pytest.raises(ConfigError, match="pip install --no-deps what-the-face-classification"):
        face.load_fer_net()
    monkeypatch.setitem(sys.modules, "opensmile", None)
    from mmlab.extract.audio import opensmile_features

    with pytest.raises(ConfigError, match="Research License"):
        opensmile_features(np.zeros(1600, np.float32), 16000, "opensmile_egemaps")


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="level"):
        extract(tmp_path, tmp_path / "x.npz", ExtractConfig(level="word"))
    with pytest.raises(ConfigError, match="audio extractor"):
        extract(tmp_path, tmp_path / "x.npz", ExtractConfig(audio=AudioConfig(extractor="wav2vec")))
    with pytest.raises(ConfigError, match="not empty"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "f").write_text("x")
        make_raw_sample(tmp_path / "full")
