"""A BERT-style encoder over token ids, in the loop of a method (CIDer's L = BERT(S), Eq. 3 input).

`TokenEncoder` wraps a Hugging Face model that the caller loaded from local files (the method
does the loading: `mmlab.methods.text` finds the offline all-MiniLM-L6-v2 or a user's local
BERT-style directory; nothing here downloads). Two modes:

- ``finetune=False``: frozen, eval mode, no gradients; the model is *not registered* as a
  sub-module, so it stays out of ``parameters()`` and checkpoints (it is rebuilt from its files).
  Encodings are memoised per token row (least recently used first out past ``cache_bytes``,
  1 GiB by default), so a row the encoder has seen once
  (complete text of the teacher pass, the all-[UNK] rows of pattern evaluation) costs nothing
  again: this is the "computed once" cache of a frozen encoder, shared by training and test;
- ``finetune=True``: a registered sub-module trained with its own parameter groups
  (`param_groups`: lr 5e-5, weight decay 1e-3 except bias and LayerNorm, CIDer's public code).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn


class TokenEncoder(nn.Module):
    """Token ids (B, T) + validity (B, T) -> last hidden states (B, T, H), zero on padding."""

    def __init__(self, model: nn.Module, finetune: bool = False, cache_bytes: int = 1 << 30):
        super().__init__()
        self.finetune = bool(finetune)
        self.hidden = int(model.config.hidden_size)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self.cache_bytes = int(cache_bytes)  # the frozen path's memo, least recently used rows dropped first
        self._cache: OrderedDict[bytes, Tensor] = OrderedDict()
        self._cached_bytes = 0
        if self.finetune:
            self.model = model.requires_grad_(True)
        else:
            model.eval().requires_grad_(False)
            self._frozen = [model]  # a list, so nn.Module does not register it

    @property
    def hf_model(self) -> nn.Module:
        return self.model if self.finetune else self._frozen[0]

    def _run(self, ids: Tensor, valid: Tensor) -> Tensor:
        model = self.hf_model
        if not self.finetune:
            dev = ids.device
            if next(model.parameters()).device != dev:
                model.to(dev)
        width = max(int(valid.sum(1).max()), 1)
        h = model(input_ids=ids[:, :width], attention_mask=valid[:, :width].long()).last_hidden_state
        h = torch.where(valid[:, :width, None], h, torch.zeros((), dtype=h.dtype, device=h.device))
        if width < ids.shape[1]:
            h = torch.cat([h, h.new_zeros(h.shape[0], ids.shape[1] - width, h.shape[2])], 1)
        return h

    def forward(self, ids: Tensor, valid: Tensor) -> Tensor:
        if self.finetune:
            return self._run(ids, valid)
        with torch.no_grad():
            return self._cached(ids, valid)

    def _cached(self, ids: Tensor, valid: Tensor) -> Tensor:
        """Frozen path: memoised per row (key = the row's ids up to its length)."""
        lengths = valid.sum(1).tolist()
        rows = ids.cpu().numpy()
        keys = [rows[i, : int(n)].tobytes() for i, n in enumerate(lengths)]
        out = ids.new_zeros(ids.shape[0], ids.shape[1], self.hidden, dtype=torch.float32)
        todo = []
        for i, k in enumerate(keys):
            v = self._cache.get(k)
            if v is None:
                todo.append(i)
            else:
                self._cache.move_to_end(k)
                out[i, : v.shape[0]] = v.to(ids.device)
        if todo:  # rows not cached are filled from this run, whatever the memo keeps afterwards
            idx = torch.tensor(todo, device=ids.device)
            h = self._run(ids[idx], valid[idx]).float()
            for j, i in enumerate(todo):
                n = int(lengths[i])
                out[i, :n] = h[j, :n]
                self._remember(keys[i], h[j, :n].cpu())
        return out

    def _remember(self, key: bytes, value: Tensor) -> None:
        self._cache[key] = value
        self._cached_bytes += value.numel() * value.element_size()
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.numel() * old.element_size()

    def param_groups(self, lr: float = 5e-5, weight_decay: float = 1e-3) -> list[dict[str, Any]]:
        """Optimiser groups of a fine-tuned encoder (CIDer's code): weight decay on every weight
        but biases and LayerNorm parameters, ``lr`` for all. Empty when frozen."""
        if not self.finetune:
            return []
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if "bias" in name or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
        return [{"params": decay, "lr": lr, "weight_decay": weight_decay},
                {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
