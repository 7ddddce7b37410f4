"""The Bayes oracle table, the generation protocol (ADMC Table 4 against the exact conditional) and
the benchmark's timed inference (`mmlab.evaluate`)."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mmlab.data.dataset import MMDataset
from mmlab.errors import ConfigError
from mmlab.methods.base import Method, module_device
from mmlab.methods.oracle import oracle_of
from mmlab.metrics import classification_report
from mmlab.missing import (FixedPattern, Full, Masks, draw_masks, mask_batch, pad_masks, pattern_name, resolve_fill)
from mmlab.utils import numpy_rng, torch_generator
from mmlab.evaluate.scoring import AVERAGE, Condition, evaluate, pattern_conditions


# ----------------------------------------------------------------- oracle
def oracle_table(data: MMDataset, split: str = "test", patterns: Sequence[Sequence[str]] | None = None) -> list[dict]:
    """The Bayes oracle on ``split`` for full input and every availability pattern (or
    ``patterns``): condition, accuracy, macro_recall and ``expected_accuracy`` (the mean posterior
    of the predicted class). Needs a dataset with a known generative model (`synthetic`)."""
    oracle = oracle_of(data)
    mods = tuple(data.modalities)
    if patterns is None:
        conds = pattern_conditions(mods)
    else:
        conds = [Condition("pattern", "full", Full()) if tuple(p) == mods else
                 Condition("pattern", pattern_name(tuple(p)), FixedPattern(tuple(p))) for p in patterns]
    expected = {"expected_accuracy": lambda logits, y: float(np.exp(logits.max(1).astype(np.float64)).mean())}
    rows = evaluate(oracle, data, split=split, conditions=conds, seed=0, extra_metrics=expected)
    return [{"condition": r["condition"], "accuracy": r["accuracy"], "macro_recall": r["macro_recall"],
             "expected_accuracy": r["expected_accuracy"]} for r in rows if r["condition"] != AVERAGE]


# ----------------------------------------------------------------- generation (ADMC Table 4)
EXACT = "exact_conditional"


def exact_name(method: Method) -> str:
    """The ``method`` column of the exact-conditional reference rows for ``method``: the exact
    draws go through the method's own encoder and head, so the reference belongs to them.
    ``method.exact_reference`` names a reference that several methods share (ADMC's variants
    share their ITFN encoders and heads for a seed: ``exact_conditional``); otherwise
    ``exact_conditional[<method name>]``."""
    return getattr(method, "exact_reference", None) or f"{EXACT}[{method.name}]"


@torch.no_grad()
def generation_table(method: Method, data: MMDataset, split: str = "test", seed: int = 1111,
                     sources: str = "auto", include_real: bool = True, batch_size: int = 256,
                     device: str | torch.device | None = None, k: int = 4) -> list[dict]:
    """What a completing method generates (ADMC Table 4, any method with the completion
    interface `mmlab.methods.base.Completion`): for every target modality and source set, the
    target is made unavailable (the same seeded masks for every method), ``method.generate``
    fills it from the sources ``k`` times, and the generated features go through the method's
    frozen unimodal head of the target (``feature_logits``): condition ``"VT->A"`` scores one
    generated sample, ``"VT->A mean"`` the mean of the ``k``. Swept over
    ``method.generation_options()`` (a sweep of several values adds ``"@n=50"``-style tags).

    On a dataset with a known generative model (`synthetic`), ``exact_conditional`` rows (`exact_name`)
    do the same with target frames drawn from their exact conditional law given the observed
    frames and encoded by the same frozen encoder (``real_features``): the best a generator can
    do. The method's rows then carry ``mean_error`` (RMS over feature dimensions of the mean of
    its ``k`` samples minus the mean of ``k`` exact ones, averaged over samples) and
    ``variance_ratio`` (the spread of its ``k`` samples over the spread of the ``k`` exact ones).

    ``sources``: "all" = every non-empty subset of the other modalities; "paper" = all the
    others and each single one (Table 4's 9 rows for A, V, T); "auto" = "all" for up to three
    modalities, else "paper". ``include_real`` adds the real features of each target ("real->T").
    """
    if not method.completes():
        raise ConfigError(f"{method.name}: the generation protocol needs a method with the completion interface")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"generation_table: k expected a positive integer, got {k!r}")
    part = data.subset(split)
    mods = tuple(part.modalities)
    device = module_device(method) if device is None else torch.device(device)
    mode = sources if sources != "auto" else ("all" if len(mods) <= 3 else "paper")
    if mode not in ("all", "paper"):
        raise ConfigError(f"sources: expected 'auto', 'all' or 'paper', got {sources!r}")
    options = method.generation_options()
    grid = [dict(zip(options, vals)) for vals in itertools.product(*options.values())] or [{}]
    tagged = [name for name, values in options.items() if len(values) > 1]
    sep = "" if all(len(m) == 1 for m in mods) else ","
    fill = resolve_fill(method.fill, part)
    pad = pad_masks(part)
    exact_model = part.info.get("oracle") if hasattr(part.info.get("oracle"), "sample_conditional_frames") else None
    base = {"dataset": data.name, "protocol": "generation", "split": split, "seed": seed, "n": len(part)}

    def scored(target: str, feats: torch.Tensor) -> dict[str, float]:
        logits = method.feature_logits(target, feats).float().cpu()
        return classification_report(part.y, logits.argmax(1).numpy(), part.n_classes)

    def collect(fn: Callable[[Any], torch.Tensor], masks: Masks | None, fill_seed: int) -> torch.Tensor:
        gen_fill, out = torch_generator(fill_seed, device=device), []
        for start in range(0, len(part), batch_size):
            idx = np.arange(start, min(start + batch_size, len(part)))
            batch = part.batch(idx, device=device)
            if masks is not None:
                batch = mask_batch(batch, masks.take(idx), fill, generator=gen_fill)
            out.append(fn(batch, idx))
        return torch.cat(out)

    def exact_draws(target: str, masks: Masks, draw_seed: int) -> torch.Tensor:
        """(k, N, D) real_features of target frames drawn from the exact conditional law."""
        rng = numpy_rng(draw_seed, "exact", target)
        obs = {m: masks.obs[m] for m in mods}
        draws = []
        for _ in range(k):
            frames = exact_model.sample_conditional_frames(part.feats, obs, target, part.lengths[target], rng)

            def encode(batch: Any, idx: np.ndarray, frames: np.ndarray = frames) -> torch.Tensor:
                x = torch.from_numpy(frames[idx, : batch.feats[target].shape[1]]).to(batch.feats[target])
                return method.real_features(replace(batch, feats={**batch.feats, target: x}), target)

            draws.append(collect(encode, None, seed))
        return torch.stack(draws)

    def summary(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean over draws (N, D), per-sample variance summed over dimensions (N,))."""
        return draws.mean(0), draws.var(0, unbiased=True).sum(-1) if len(draws) > 1 else torch.zeros(draws.shape[1])

    method.eval()
    rows = []
    for target in mods:
        others = [m for m in mods if m != target]
        if mode == "all":
            srcs = [c for k_ in range(len(others), 0, -1) for c in itertools.combinations(others, k_)]
        else:
            srcs = [tuple(others)] + [(m,) for m in others if len(others) > 1]
        if include_real:
            real = collect(lambda b, idx: method.real_features(b.for_eval(), target), None, seed)
            rows.append({**base, "method": method.name, "condition": f"real->{target}", "source": target,
                         "target": target, **{name: 0 for name in options}, **scored(target, real)})
        for src in srcs:
            masks = draw_masks(FixedPattern(src), pad, mods, seed)
            name = f"{sep.join(src)}->{target}"
            exact = None
            if exact_model is not None:
                exact = exact_draws(target, masks, seed)
                for label, feats in ((name, exact[0]), (f"{name} mean", exact.mean(0))):
                    rows.append({**base, "method": exact_name(method), "condition": label, "source": sep.join(src),
                                 "target": target, **scored(target, feats)})
            for opt in grid:
                gen = torch_generator(seed, "generation", target, sep.join(src), repr(sorted(opt.items())),
                                      device=device)
                draws = torch.stack([collect(lambda b, idx: method.generate(b.for_eval(), target, gen, **opt), masks,
                                             seed) for _ in range(k)])
                tag = ",".join(f"{'n' if o == 'start_step' else o}={opt[o]}" for o in tagged)
                label = name + (f"@{tag}" if tag else "")
                extra: dict[str, float] = {}
                if exact is not None:
                    (gm, gv), (em, ev) = summary(draws.float().cpu()), summary(exact.float().cpu())
                    extra = {"mean_error": float((gm - em).pow(2).mean(-1).sqrt().mean()),
                             "variance_ratio": float(gv.mean() / ev.mean()) if float(ev.mean()) > 0 else math.nan}
                for cond, feats in ((label, draws[0]), (f"{label} mean", draws.mean(0))):
                    rows.append({**base, "method": method.name, "condition": cond, "source": sep.join(src),
                                 "target": target, **opt, **scored(target, feats), **extra})
    return rows


# ----------------------------------------------------------------- inference throughput (bench)
@torch.no_grad()
def inference_throughput(method: Method, data: MMDataset, masks: Masks, batch_size: int, n_batches: int,
                         device: str | torch.device = "cpu", seed: int = 0) -> float:
    """Samples per second of ``method.predict_logits`` on masked, filled batches of ``data`` (rows
    cycled), timed around the model call only, after one warm-up batch. The same batch path as
    `predict`."""
    dev = torch.device(device)
    fill = resolve_fill(method.fill, data)
    gen = torch_generator(seed, device=dev)
    method.eval()
    samples, seconds = 0, 0.0
    for k in range(n_batches + 1):  # the first batch is a warm-up
        idx = (np.arange(batch_size) + k * batch_size) % len(data)
        batch = mask_batch(data.batch(idx, device=dev), masks.take(idx), fill, generator=gen).for_eval()
        _sync(dev)
        t = time.perf_counter()
        method.predict_logits(batch)
        _sync(dev)
        if k > 0:
            seconds += time.perf_counter() - t
            samples += len(idx)
    return samples / seconds if seconds > 0 else math.nan


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


