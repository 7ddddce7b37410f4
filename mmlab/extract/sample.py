"""A small SYNTHETIC raw sample set in the `mmlab extract` layout (data card: data_cards/raw_sample.md).

Four classes (neutral, happy, sad, angry), each rendered with its own *made-up* cues: speech
with class-dependent pitch, rate and amplitude, transcripts drawn from class-dependent word
lists, and 48x48 gray cartoon faces whose mouth curvature and brow slant depend on the class.
Speech comes from Debian's espeak-ng (``apt-get install espeak-ng``) when it is on the PATH,
else from a small numpy source-filter synthesizer (a pulse train at a class-dependent pitch
through two formant resonators) with the same kind of class-dependent prosody. Some samples
lack one modality. It says nothing about real emotion recognition: it exercises the path from
media to methods, and every modality carries the class signal that was rendered into it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from mmlab.errors import ConfigError
from mmlab.utils import atomic_write_bytes, atomic_write_text

CLASSES = ("neutral", "happy", "sad", "angry")
# espeak-ng -p pitch (0-99), -s words per minute, -a amplitude (0-200); the numpy synthesizer maps the same numbers
PROSODY = {"neutral": (45, 160, 90), "happy": (72, 200, 120), "sad": (25, 120, 60), "angry": (55, 215, 170)}
WORDS = {
    "neutral": "table window paper street morning report number chair meeting letter train station".split(),
    "happy": "wonderful great love sunshine smile party delighted lovely fantastic joy laugh gift".split(),
    "sad": "lonely tears sorry lost miss grief gloomy alone cry funeral broken empty".split(),
    "angry": "furious hate stupid unfair shut enough annoyed rage blame outrageous damn fight".split(),
}
FILLER = "the a today we it was this is so very and then I you".split()
FACE = {  # mouth curvature (+ smile), brow slant (+ inner ends down), mouth openness
    "neutral": (0.0, 0.0, 0.0), "happy": (1.0, -0.2, 0.4), "sad": (-0.8, -0.7, 0.0), "angry": (-0.3, 0.9, 0.2),
}
README = ("SYNTHETIC sample set made by mmlab (mmlab.extract.sample). The classes are rendered with made-up cues "
          "(pitch/rate/loudness, word lists, cartoon mouth and brows). It says nothing about real emotion "
          "recognition; see data_cards/raw_sample.md.\n")


def _sentence(label: str, rng: np.random.Generator) -> str:
    words = []
    for _ in range(int(rng.integers(4, 8))):
        r = rng.random()
        if r < 0.45:
            words.append(str(rng.choice(WORDS[label])))
        elif r < 0.55:  # a cue word of another class: text alone is not perfect
            words.append(str(rng.choice(WORDS[str(rng.choice([c for c in CLASSES if c != label]))])))
        else:
            words.append(str(rng.choice(FILLER)))
    return " ".join(words)


# ------------------------------------------------------------------------------------ speech
def _wav_bytes(y: np.ndarray, sr: int) -> bytes:
    import io

    pcm = (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm)
    return buf.getvalue()


def _espeak(text: str, pitch: int, rate: int, amp: int, voice: str, path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate), "-a", str(amp), "-w", str(wav), text],
                       check=True, capture_output=True, timeout=60)
        atomic_write_bytes(path, wav.read_bytes())


def synth_numpy(text: str, pitch: int, rate: int, amp: int, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """A crude voiced-source speech stand-in: per syllable a pulse train at f0 (from ``pitch``)
    through two formant resonators, syllable length from ``rate``, loudness from ``amp``."""
    from scipy.signal import lfilter

    f0_base = 80.0 + 1.6 * pitch
    syll = 60.0 / rate / 1.4  # seconds per syllable
    out = [np.zeros(int(0.1 * sr))]
    for word in text.split():
        for _ in range(max(1, len(word) // 3)):
            n = int(syll * sr * rng.uniform(0.8, 1.2))
            t = np.arange(n) / sr
            f0 = f0_base * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(1, 3) * t)) * rng.uniform(0.95, 1.05)
            phase = np.cumsum(f0 / sr)
            src = (np.diff(np.floor(phase), prepend=0) > 0).astype(float) + 0.02 * rng.standard_normal(n)
            y = src
            for f, bw in ((rng.uniform(300, 800), 90.0), (rng.uniform(900, 2300), 120.0)):
                r = np.exp(-np.pi * bw / sr)
                y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r], y)
            out.append(y * np.hanning(n))
        out.append(np.zeros(int(0.06 * sr)))
    y = np.concatenate(out)
    return (y / (np.abs(y).max() + 1e-9) * 0.9 * amp / 200).astype(np.float32)


# ------------------------------------------------------------------------------------ faces
def render_face(label: str, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """(size, size) uint8 cartoon face: head ellipse, eyes, brows slanted and a mouth curved by class."""
    curve, slant, openness = FACE[label]
    curve, slant = curve + rng.normal(0, 0.25), slant + rng.normal(0, 0.25)
    yy, xx = np.mgrid[0:size, 0:size].astype(float) / size
    cx, cy, s = 0.5 + rng.normal(0, 0.02), 0.5 + rng.normal(0, 0.02), rng.uniform(0.9, 1.05)
    u, v = (xx - cx) / s, (yy - cy) / s
    img = np.full((size, size), rng.uniform(0.15, 0.3))
    img[(u / 0.38) ** 2 + (v / 0.46) ** 2 < 1] = rng.uniform(0.65, 0.85)
    for ex in (-0.15, 0.15):
        img[((u - ex) / 0.06) ** 2 + ((v + 0.1) / 0.045) ** 2 < 1] = 0.1
        inner = np.sign(-ex) * (u - ex)  # > 0 towards the nose
        brow_y = -0.22 + 0.08 * slant * inner / 0.1
        img[(np.abs(u - ex) < 0.1) & (np.abs(v - brow_y) < 0.022)] = 0.1
    mouth_y = 0.22 + 0.5 * curve * (0.12**2 - u**2) / 0.12
    lips = (np.abs(u) < 0.16) & (np.abs(v - mouth_y) < 0.02 + 0.05 * openness * (1 - (u / 0.16) ** 2).clip(0))
    img[lips] = 0.08
    img += rng.normal(0, 0.03, img.shape)
    return (img.clip(0, 1) * 255).astype(np.uint8)


def _png(img: np.ndarray, path: Path) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------------------------ the set
def make_raw_sample(out_dir: str | Path, n_per_class: int = 80, frames: int = 3, seed: int = 0,
                    speech: str = "auto", p_missing: float = 0.1) -> dict:
    """Write the synthetic raw sample set into ``out_dir`` (created; must be empty or absent).

    ``speech``: "espeak" (needs espeak-ng), "numpy", or "auto" (espeak-ng when found). A fraction
    ``p_missing`` of the samples lacks one modality. Returns a summary dict.
    """
    out = Path(out_dir)
    if speech not in ("auto", "espeak", "numpy"):
        raise ConfigError(f"speech: expected auto, espeak or numpy, got {speech!r}")
    if speech == "espeak" and not shutil.which("espeak-ng"):
        raise ConfigError("speech='espeak' needs espeak-ng on the PATH (apt-get install espeak-ng)")
    if n_per_class < 5 or frames < 1:
        raise ConfigError("n_per_class must be >= 5 (train, valid and test need samples) and frames >= 1")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty (expected a new folder for the sample set)")
    out.mkdir(parents=True, exist_ok=True)
    engine = "espeak-ng" if speech == "espeak" or (speech == "auto" and shutil.which("espeak-ng")) else "numpy"
    rng = np.random.default_rng(seed)
    rows, missing = ["id,label,split"], 0
    for c, label in enumerate(CLASSES):
        order = rng.permutation(n_per_class)
        n_valid = max(1, int(round(0.1 * n_per_class)))
        n_train = min(int(round(0.7 * n_per_class)), n_per_class - n_valid - 1)  # every split gets samples
        for k in range(n_per_class):
            sid = f"{label}_{k:03d}"
            split = "train" if order[k] < n_train else "valid" if order[k] < n_train + n_valid else "test"
            rows.append(f"{sid},{label},{split}")
            drop = int(rng.integers(3)) if rng.random() < p_missing else -1
            missing += drop >= 0
            text = _sentence(label, rng)
            p, s, a = (int(v * rng.uniform(0.9, 1.1)) for v in PROSODY[label])
            if drop != 0:
                if engine == "espeak-ng":
                    voice = str(rng.choice(["en-us", "en-gb", "en-us+m3", "en-us+f2"]))
                    _espeak(text, min(p, 99), s, min(a, 200), voice, out / f"{sid}.wav")
                else:
                    atomic_write_bytes(out / f"{sid}.wav", _wav_bytes(synth_numpy(text, p, s, a, rng), 16000))
            if drop != 1:
                atomic_write_text(out / f"{sid}.txt", text + "\n")
            if drop != 2:
                (out / sid).mkdir()
                for f in range(frames):
                    _png(render_face(label, rng), out / sid / f"{f:03d}.png")
    atomic_write_text(out / "labels.csv", "\n".join(rows) + "\n")
    atomic_write_text(out / "classes.txt", "\n".join(CLASSES) + "\n")
    atomic_write_text(out / "README.md", README + f"speech engine: {engine}\n")
    return {"path": str(out), "samples": len(rows) - 1, "classes": list(CLASSES), "speech": engine,
            "missing_one_modality": int(missing)}
