"""Speech -> frame features: a ``.wav`` reader and MFCC + deltas in numpy, openSMILE optional.

``mfcc`` computes what ``librosa.feature.mfcc`` (librosa 0.11, https://librosa.org) computes
with the same settings: a centred, zero-padded STFT with a periodic Hann window, the power
spectrum through a Slaney-style mel filterbank (librosa's default, ``htk=False``,
``norm="slaney"``), ``power_to_db`` (ref 1, amin 1e-10, top_db 80), then a type-II
orthonormal DCT; deltas are ``librosa.feature.delta`` (a Savitzky-Golay derivative over
``delta_width`` frames, ``mode="interp"``). It needs numpy and scipy only, so there is no
numba compile on the first call. The defaults are set for 16 kHz speech (25 ms windows every
10 ms, 64 mel bands, 40 coefficients), not librosa's music defaults.

openSMILE (https://audeering.github.io/opensmile-python/) is used only when the ``opensmile``
package is installed. Its Python wrapper is MIT-licensed, but the openSMILE library it ships is
under the audEERING Research License: free for non-commercial research and teaching only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmlab.errors import ConfigError, DataError

OPENSMILE_SETS = {  # extractor name -> (feature set, level)
    "opensmile_egemaps_lld": ("eGeMAPSv02", "LowLevelDescriptors"),
    "opensmile_egemaps": ("eGeMAPSv02", "Functionals"),
    "opensmile_compare_lld": ("ComParE_2016", "LowLevelDescriptors"),
    "opensmile_compare": ("ComParE_2016", "Functionals"),
}
AUDIO_EXTRACTORS = ("mfcc", *OPENSMILE_SETS)


@dataclass
class AudioConfig:
    """How a ``.wav`` becomes (frames, D) features."""

    extractor: str = "mfcc"  # mfcc, or one of OPENSMILE_SETS (needs the opensmile package)
    sample_rate: int = 16000  # every file is resampled to this rate first
    n_fft: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms
    n_mels: int = 64
    n_mfcc: int = 40
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2
    deltas: int = 2  # 0: MFCC only; 1: + delta; 2: + delta and delta-delta
    delta_width: int = 9

    def check(self) -> None:
        if self.extractor not in AUDIO_EXTRACTORS:
            raise ConfigError(f"audio extractor: unknown {self.extractor!r}; expected one of {list(AUDIO_EXTRACTORS)}")
        if self.n_mfcc > self.n_mels or min(self.n_fft, self.hop_length, self.n_mels, self.n_mfcc, self.sample_rate) < 1:
            raise ConfigError("audio: expected positive n_fft, hop_length, n_mels, n_mfcc, sample_rate and n_mfcc <= n_mels")
        if self.deltas not in (0, 1, 2) or self.delta_width < 3 or self.delta_width % 2 == 0:
            raise ConfigError("audio: deltas must be 0, 1 or 2 and delta_width an odd integer >= 3")

    @property
    def dim(self) -> int | None:
        return self.n_mfcc * (1 + self.deltas) if self.extractor == "mfcc" else None


# ------------------------------------------------------------------------------------ reading
def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 signal in [-1, 1], sample rate) of a RIFF/WAVE file: PCM 8/16/24/32-bit or
    IEEE float 32/64, any number of channels (averaged). A clear `DataError` names the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if not raw:
        raise DataError(f"{path}: empty file (0 bytes); expected a RIFF/WAVE file")
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise DataError(f"{path}: not a RIFF/WAVE file (starts with {raw[:12]!r})")
    fmt, data, pos = None, None, 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        body = raw[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise DataError(f"{path}: truncated 'fmt ' chunk")
            fmt = struct.unpack("<HHIIHH", body[:16])
            if fmt[0] == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
                fmt = (struct.unpack("<H", body[24:26])[0], *fmt[1:])
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise DataError(f"{path}: no {'fmt ' if fmt is None else 'data'} chunk; truncated or corrupt WAVE file")
    tag, channels, rate, _, _, bits = fmt
    kinds = {(1, 8): "u1", (1, 16): "<i2", (1, 32): "<i4", (3, 32): "<f4", (3, 64): "<f8"}
    if channels < 1 or rate < 1:
        raise DataError(f"{path}: header says {channels} channels at {rate} Hz")
    width = channels * (bits // 8)
    if not width:
        raise DataError(f"{path}: header says {bits} bits per sample")
    usable = len(data) - len(data) % width
    if (tag, bits) == (1, 24):
        b = np.frombuffer(data[:usable], np.uint8).reshape(-1, 3)
        x = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16))
        x = np.where(x >= 1 << 23, x - (1 << 24), x).astype(np.float32) / float(1 << 23)
    elif (tag, bits) in kinds:
        x = np.frombuffer(data[:usable], kinds[(tag, bits)]).astype(np.float32)
        if tag == 1:
            x = (x - 128.0) / 128.0 if bits == 8 else x / float(1 << (bits - 1))
    else:
        raise DataError(f"{path}: unsupported WAVE encoding (format tag {tag}, {bits} bits); "
                        "expected PCM 8/16/24/32-bit or float 32/64")
    x = x.reshape(-1, channels).mean(axis=1)
    if not len(x):
        raise DataError(f"{path}: holds no audio samples (empty data chunk)")
    if not np.isfinite(x).all():
        raise DataError(f"{path}: holds NaN or inf samples")
    return x.astype(np.float32), int(rate)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly) from ``rate`` to ``target`` Hz."""
    if rate == target:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


# ------------------------------------------------------------------------------------ MFCC
def hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa ``htk=False``): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log = f >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) triangular filters, Slaney area normalisation (librosa.filters.mel)."""
    fmax = sr / 2 if fmax is None else fmax
    freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff, ramps = np.diff(edges), edges[:, None] - freqs[None, :]
    lower, upper = -ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float64)


def dct_ortho(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) orthonormal type-II DCT matrix (scipy.fft.dct(type=2, norm="ortho"))."""
    k, n = np.arange(n_out)[:, None], np.arange(n_in)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[0] /= np.sqrt(2.0)
    return m


def mfcc(y: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """(frames, n_mfcc * (1 + deltas)) float32 MFCCs (+ deltas) of a mono signal at cfg.sample_rate."""
    pad = cfg.n_fft // 2
    y = np.pad(np.asarray(y, dtype=np.float64), (pad, pad))  # librosa's centred frames, pad_mode="constant"
    if len(y) < cfg.n_fft:
        y = np.pad(y, (0, cfg.n_fft - len(y)))
    n_frames = 1 + (len(y) - cfg.n_fft) // cfg.hop_length
    idx = np.arange(cfg.n_fft)[None, :] + cfg.hop_length * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(y[idx] * window, axis=1)) ** 2  # (frames, bins)
    mel = power @ mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax).T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)  # top_db
    c = db @ dct_ortho(cfg.n_mels, cfg.n_mfcc).T  # (frames, n_mfcc)
    parts = [c]
    if cfg.deltas:
        from scipy.signal import savgol_filter

        width = min(cfg.delta_width, n_frames if n_frames % 2 else n_frames - 1)
        for order in range(1, cfg.deltas + 1):
            if width > order:
                parts.append(savgol_filter(c, width, polyorder=order, deriv=order, axis=0, mode="interp"))
            else:  # too few frames for a derivative
                parts.append(np.zeros_like(c))
    return np.concatenate(parts, axis=1).astype(np.float32)


# ------------------------------------------------------------------------------------ openSMILE
def opensmile_features(y: np.ndarray, sr: int, name: str) -> np.ndarray:
    """(frames, D) openSMILE LLDs or (1, D) functionals (needs the ``opensmile`` package)."""
    import importlib

    try:  # optional, not declared in pyproject: its library's licence is for non-commercial research only
        opensmile = importlib.import_module("opensmile")
    except ImportError:
        raise ConfigError(f"audio extractor {name!r} needs the package 'opensmile' (pip install opensmile==2.6.0); "
                          "its bundled openSMILE library is under the audEERING Research License "
                          "(non-commercial research and teaching)") from None
    feature_set, level = OPENSMILE_SETS[name]
    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                            feature_level=getattr(opensmile.FeatureLevel, level))
    return np.asarray(smile.process_signal(y, sr).to_numpy(), dtype=np.float32)


def audio_features(path: str | Path, cfg: AudioConfig) -> np.ndarray:
    """(frames, D) float32 features of one ``.wav`` file."""
    y, sr = read_wav(path)
    y = resample(y, sr, cfg.sample_rate)
    if cfg.extractor == "mfcc":
        out = mfcc(y, cfg)
    else:
        out = opensmile_features(y, cfg.sample_rate, cfg.extractor)
    if not len(out) or not np.isfinite(out).all():
        raise DataError(f"{path}: the {cfg.extractor} features are empty or not finite")
    return out
