"""Face images -> 304-d features of a FER2013-trained CNN, pure torch, offline.

The network and its weights (``active_model.pth``, 17 MB) ship in the PyPI package
``what-the-face-classification`` 0.0.27 (https://pypi.org/project/what-the-face-classification/):
three tanh conv + max-pool blocks on a 48x48 gray face, then fc 2000 -> fc 304 -> 7 logits
(angry, disgust, fear, happy, sad, surprise, neutral). We take the 304-d ReLU activation that
feeds the logits. Install it with ``pip install --no-deps what-the-face-classification==0.0.27``:
its declared dependencies (torchvision, opencv) are not needed here, because we load only its
``model.py`` and do the package's preprocessing (resize the shorter side to 48, centre crop,
grayscale, [0, 1]) with Pillow. Face crops are taken as given: no detection, no alignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmlab.errors import ConfigError, DataError

FACE_EXTRACTORS = ("fer",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
INSTALL = "pip install --no-deps what-the-face-classification==0.0.27"
_NET: dict[str, object] = {}


@dataclass
class FaceConfig:
    """How a folder of face images (one per frame) becomes (frames, 304) features."""

    extractor: str = "fer"
    max_frames: int = 32  # at most this many images per sample, evenly spaced
    batch_size: int = 64

    def check(self) -> None:
        if self.extractor not in FACE_EXTRACTORS:
            raise ConfigError(f"face extractor: unknown {self.extractor!r}; expected one of {list(FACE_EXTRACTORS)}")
        if self.max_frames < 1 or self.batch_size < 1:
            raise ConfigError("face: max_frames and batch_size must be >= 1")


def frame_files(folder: str | Path) -> list[Path]:
    """The image files of a face folder, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_face(path: str | Path, size: int = 48) -> np.ndarray:
    """(size, size) float32 gray image in [0, 1]: shorter side resized to ``size``, centre crop."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ConfigError("face images need the package 'pillow' (pip install pillow)") from None
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            g = im.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable image ({err}); expected a PNG or JPEG face crop") from None
    w, h = g.size
    if min(w, h) < 1:
        raise DataError(f"{path}: image has size {w}x{h}")
    scale = size / min(w, h)
    g = g.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    left, top = (g.size[0] - size) // 2, (g.size[1] - size) // 2
    g = g.crop((left, top, left + size, top + size))
    return np.asarray(g, dtype=np.float32) / 255.0


def load_fer_net():
    """The FER2013 CNN with its bundled weights, in eval mode (cached per process)."""
    if "fer" in _NET:
        return _NET["fer"]
    import importlib
    import importlib.resources as ir

    try:  # installed by bin/bootstrap with --no-deps, not declared in pyproject (its declared deps are not wanted)
        SimpleConvolutionalNetwork = importlib.import_module("what_the_face_classification.model").SimpleConvolutionalNetwork
    except ImportError:
        raise ConfigError(f"face extractor 'fer' needs the package 'what-the-face-classification' ({INSTALL}; "
                          "bin/bootstrap installs it)") from None
    import torch

    net = SimpleConvolutionalNetwork(3, [[1, 28], [28, 56], [56, 112]], [3, 3, 3], [0, 0, 0], 304, 4 * 4 * 112)
    weights = ir.files("what_the_face_classification") / "active_model.pth"
    net.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
    _NET["fer"] = net.eval().requires_grad_(False)
    return _NET["fer"]


def fer_features(images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(n, 48, 48) gray faces in [0, 1] -> (n, 304) float32 penultimate activations."""
    import torch
    import torch.nn.functional as F

    net = load_fer_net()
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + batch_size]))[:, None]
            for conv, pool in ((net.conv1, net.pool1), (net.conv2, net.pool2), (net.conv3, net.pool3)):
                x = pool(torch.tanh(conv(x)))
            x = F.relu(net.fc2(F.relu(net.fc1(x.reshape(len(x), -1)))))
            out.append(x.numpy().astype(np.float32))
    return np.concatenate(out)


def face_features(folder: str | Path, cfg: FaceConfig) -> np.ndarray:
    """(frames, 304) features of the images in one face folder."""
    files = frame_files(folder)
    if not files:
        raise DataError(f"{folder}: face folder holds no images (expected {', '.join(IMAGE_SUFFIXES)} files)")
    if len(files) > cfg.max_frames:
        files = [files[i] for i in np.linspace(0, len(files) - 1, cfg.max_frames).round().astype(int)]
    return fer_features(np.stack([read_face(f) for f in files]), cfg.batch_size)
