"""The CIDer notebook's pure functions (notebook 08): RMFM masks as images, the MCT's block
masks, the three distillation losses per epoch, accuracy-vs-rate curves with their AUILC beside
the Bayes oracle's, the counterfactual text of Eq. 27 and accuracy as Eq. 25's tau moves.

Equations are those of Zhong et al., "Towards Robust Multimodal Emotion Recognition under
Missing Modalities and Distribution Shifts" (CIDer; code https://github.com/gw-zhong/CIDer); the
choices B1-B21 are listed in `mmlab/methods/cider.py`. Everything here reads the method's
public pieces (``run``, ``counterfactual_ids``, ``keep_words``, ``fit_bias_words``, ``tau``,
``test_options``, ``cfg``, ``mods``, ``max_len``) and the library's mask generators and
`mmlab.evaluate`; nothing changes the trained method (the tau sweep never sets its tau).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from mmlab.data.dataset import MMDataset
from mmlab.data.tokens import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID, VOCAB_SIZE
from mmlab.errors import ConfigError
from mmlab.utils import first_best

CIDER_PROTOCOLS = ("rmfm", "traditional_rmfm", "rmm")  # CIDer's missing types for unaligned data (§III-A, appendix)
MASK_CODES = ("padding", "missing", "observed", "[CLS]/[SEP] (never dropped)")  # values 0..3 of a mask image
DISTILLATION = ("recon", "attn", "joint")  # Eqs. 17-19, the names `CIDer.stages` logs
TASK_LOSSES = ("teacher_task", "student_task", "loss")  # Eq. 28, the student's L_task and Eq. 30's total
SPECIAL = {PAD_ID: "[PAD]", UNK_ID: "[UNK]", CLS_ID: "[CLS]", SEP_ID: "[SEP]", MASK_ID: "[MASK]"}


# ============================================================================ data helpers
def _first(data: MMDataset, split: str, n: int | None) -> MMDataset:
    """The first ``n`` rows of ``split`` (all when None), as a dataset of its own."""
    idx = data.split_indices(split)
    return data.take(idx if n is None else idx[: max(int(n), 1)])


def with_train_rows(data: MMDataset, n: int | None) -> MMDataset:
    """``data`` with only its first ``n`` train rows (valid and every test split untouched; ids,
    and so the oracle's per-split law, kept). ``None``, or ``n`` at least the train split's size,
    returns ``data`` itself."""
    train = data.split_indices("train")
    if n is None or int(n) >= len(train):
        return data
    if int(n) < 1:
        raise ConfigError(f"train_rows: expected a positive number of rows or None, got {n!r}")
    keep = np.ones(len(data), bool)
    keep[train[int(n):]] = False
    return data.take(np.flatnonzero(keep))


def frame_conditions(protocol: str, data: MMDataset, rates: Sequence[float]) -> list:
    """The conditions of `mmlab.experiments.conditions_for` (CIDer's sweep, 0 to 1 by 0.1,
    [CLS]/[SEP] protected) at ``rates`` only."""
    from mmlab.experiments import CIDER_RATES, conditions_for

    conds = conditions_for(protocol, data)
    want = [round(float(r), 6) for r in rates]
    bad = [r for r in want if r not in {round(c.value, 6) for c in conds}]
    if bad or not want:
        raise ConfigError(f"rates: expected values of CIDer's grid {list(CIDER_RATES)}, got {list(rates)}")
    return [c for c in conds if round(c.value, 6) in want]


def _edges(pad: np.ndarray) -> np.ndarray:
    """(N, T) the first and last real position of each row ([CLS] and [SEP] of a token row)."""
    n = pad.sum(1, keepdims=True)
    pos = np.arange(pad.shape[1])[None]
    return pad & ((pos == 0) | (pos == n - 1))


# ============================================================================ 1. RMFM masks (§III-A)
def mask_images(data: MMDataset, protocols: Sequence[str] = CIDER_PROTOCOLS, rates: Sequence[float] = (0.2, 0.5, 0.8),
                n_samples: int = 8, split: str = "test", seed: int = 1111) -> dict[str, Any]:
    """Masks of ``protocols`` at ``rates`` drawn as `mmlab.evaluate` draws them (once over the
    whole ``split``, seed ``seed``, token edges protected), cut to the first ``n_samples`` rows.

    Returns {"modalities", "widths" {m: T_m}, "panels": [{"protocol", "rate", "image" (n, sum T_m)
    int codes `MASK_CODES`, "missing_rate" (content frames dropped, whole split), "per_modality"
    {m: rate}, "edges_kept" (every [CLS]/[SEP] observed, whole split)}]}."""
    from mmlab.missing import draw_masks, pad_masks

    part = data.subset(split)
    pad, mods, tokens = pad_masks(part), part.modalities, part.token_modalities
    edge = {m: _edges(pad[m]) if m in tokens else np.zeros_like(pad[m]) for m in mods}
    panels = []
    for protocol in protocols:
        for cond in frame_conditions(protocol, data, rates):
            masks = draw_masks(cond.generator, pad, mods, seed, tokens=tokens)
            content = {m: pad[m] & ~edge[m] for m in mods}
            lost = {m: int((content[m] & ~masks.obs[m]).sum()) for m in mods}
            image = np.concatenate([np.where(edge[m] & masks.obs[m], 3, np.where(masks.obs[m], 2, np.where(pad[m], 1, 0)))
                                    for m in mods], axis=1)[:n_samples]
            panels.append({"protocol": protocol, "rate": float(cond.value), "image": image.astype(np.int8),
                           "missing_rate": sum(lost.values()) / max(sum(int(c.sum()) for c in content.values()), 1),
                           "per_modality": {m: lost[m] / max(int(content[m].sum()), 1) for m in mods},
                           "edges_kept": bool(all((masks.obs[m] | ~edge[m]).all() for m in tokens))})
    return {"modalities": list(mods), "widths": {m: int(pad[m].shape[1]) for m in mods}, "panels": panels,
            "tokens": list(tokens), "split": split}


def mask_rate_rows(images: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per panel of `mask_images`: nominal vs realised rate of dropped content frames."""
    return [{"protocol": p["protocol"], "rate": p["rate"], "realised": p["missing_rate"],
             **{f"realised {m}": v for m, v in p["per_modality"].items()}, "[CLS]/[SEP] kept": p["edges_kept"]}
            for p in images["panels"]]


# ============================================================================ 2. MCT block masks (Eqs. 7-12)
@torch.no_grad()
def mct_inputs(method: Any, data: MMDataset, split: str = "test", index: int = 0) -> dict[str, Any]:
    """What the trained method's MCT receives for one sample (captured by a hook on ``method.mct``
    during ``method.run``): the segment lengths (T_l, T_a, T_v) (T_l three times with WSAM, Eq. 4;
    the padded native lengths without it, B21) and the (N,) key validity that `MCA.forward` ANDs
    into every branch mask (padding columns out)."""
    part = data.subset(split)
    seen: dict[str, Any] = {}

    def hook(module: Any, args: tuple) -> None:
        segments, valid = args[0], args[1]
        seen["lengths"] = tuple(int(x.shape[1]) for x in segments)
        seen["key_valid"] = None if valid is None else torch.cat(list(valid), 1)[0].cpu().numpy()

    was_training = method.training
    handle = method.mct.register_forward_pre_hook(hook)
    try:
        method.eval()
        method.run(part.batch(np.array([index]), device=_device(method)))
    finally:
        handle.remove()
        method.train(was_training)
    return {**seen, "names": list(method.mods), "sample": str(part.ids[index])}


def branch_label(subset: Sequence[int], names: Sequence[str]) -> str:
    """"T·A·V (tri)", "T↔A", "V" for a branch of `mmlab.nn.mct.branches`."""
    parts = [names[i] for i in subset]
    if len(parts) == len(names):
        return "·".join(parts) + " (tri)"
    return "↔".join(parts)


def block_mask_panels(lengths: Sequence[int], names: Sequence[str] = ("T", "A", "V"),
                      key_valid: np.ndarray | None = None) -> list[dict[str, Any]]:
    """The MCT's branch masks as `mmlab.nn.mct.block_masks` builds them (the tri one and the six
    of Eqs. 7-12, rows attend to columns where True), in its branch order; ``key_valid`` (N,)
    ANDs the padding columns out as `MCA.forward` does for one sample."""
    from mmlab.nn.mct import block_masks

    if len(names) != len(lengths):
        raise ConfigError(f"names: expected {len(lengths)} modality names, got {list(names)}")
    out = []
    for s, mask in block_masks(tuple(int(t) for t in lengths)).items():
        m = mask.numpy()
        if key_valid is not None:
            m = m & np.asarray(key_valid, bool)[None, :]
        out.append({"branch": branch_label(s, names), "subset": tuple(s), "mask": m})
    return out


# ============================================================================ 3. the distillation losses (Eqs. 17-19, 30)
def distillation_log(method: Any) -> list[dict[str, Any]]:
    """One row per epoch from the Trainer's metrics.csv (`training_log`): the train-epoch means
    of L_recon, L_attn, L_joint (Eqs. 17-19), the teacher's and student's L_task, Eq. 30's total
    ``loss``, their weighted shares (alpha, beta, gamma of ``method.cfg``) and the valid accuracy."""
    from mmlab.explore.common import training_log

    cfg = method.cfg
    weights = {"recon": cfg.alpha, "attn": cfg.beta, "joint": cfg.gamma}
    rows: dict[int, dict[str, Any]] = {}
    for r in training_log(method):
        e = int(r["epoch"])
        key = r["metric"] if r["split"] == "train" else f"{r['split']}_{r['metric']}"
        rows.setdefault(e, {"epoch": e})[key] = float(r["value"])
    out = []
    for e in sorted(rows):
        row = {k: rows[e][k] for k in ("epoch", *TASK_LOSSES, *DISTILLATION, "valid_accuracy") if k in rows[e]}
        for k, w in weights.items():
            if k in row:
                row[f"{w:g}·{k}"] = w * row[k]
        out.append(row)
    return out


# ============================================================================ 4. AUILC (Eq. 31)
def rate_curves(method: Any, data: MMDataset, protocols: Sequence[str] = CIDER_PROTOCOLS,
                rates: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), splits: Sequence[str] = ("test", "test_ood"),
                max_eval: int | None = None, seed: int = 1111, oracle: bool = True) -> list[dict[str, Any]]:
    """`mmlab.evaluate.evaluate` rows (one per rate, plus the ``AUILC`` row of Eq. 31) of
    ``method`` (None: the oracle only) and, with ``oracle``, of the Bayes oracle on the same masks,
    per protocol and split, on the first ``max_eval`` rows of each split (None: all)."""
    from mmlab.evaluate import evaluate
    from mmlab.methods.oracle import oracle_of

    who = ([method] if method is not None else []) + ([oracle_of(data)] if oracle else [])
    rows = []
    for split in splits:
        part = _first(data, split, max_eval)
        conds = [c for p in protocols for c in frame_conditions(p, data, rates)]
        for m in who:
            rows += evaluate(m, part, split=split, conditions=conds, seed=seed, train=data,
                             device=_device(m))
    return rows


def auilc_summary(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> list[dict[str, Any]]:
    """The AUILC rows of `rate_curves` side by side: split, protocol, one column per method, the
    method's gap to the oracle."""
    from mmlab.evaluate import AUILC

    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["condition"] == AUILC:
            out.setdefault((r["split"], r["protocol"]), {"split": r["split"], "protocol": r["protocol"]})[r["method"]] = \
                float(r[metric])
    for row in out.values():
        names = [k for k in row if k not in ("split", "protocol", "bayes_oracle")]
        if "bayes_oracle" in row:
            for n in names:
                row[f"{n} − oracle"] = row[n] - row["bayes_oracle"]
    return list(out.values())


def _device(method: Any) -> torch.device:
    from mmlab.methods.base import module_device

    return module_device(method) if isinstance(method, torch.nn.Module) else torch.device("cpu")


# ============================================================================ 5. the counterfactual text (Eqs. 26-27)
def vocabulary(data: MMDataset) -> dict[int, str]:
    """id -> word for the dataset's words (`synthetic_text`'s ``word_ids``) and the special tokens."""
    cfg = data.info.get("config")
    words = {int(i): w for w, i in getattr(cfg, "word_ids", {}).items()}
    return {**words, **SPECIAL}


def decode(ids: Sequence[int], vocab: Mapping[int, str], length: int | None = None) -> list[str]:
    """Token ids as words (``#id`` for an id outside ``vocab``), the first ``length`` only."""
    ids = list(np.asarray(ids).tolist())[: length]
    return [vocab.get(int(i), f"#{int(i)}") for i in ids]


def word_kinds(data: MMDataset) -> dict[int, str]:
    """id -> "class word (ang)", "bias word (hap)" or "filler" for `synthetic_text`'s words."""
    cfg = data.info.get("config")
    if cfg is None or not hasattr(cfg, "info_words"):
        return {}
    out = {}
    for k, ws in enumerate(cfg.info_words):
        out.update({cfg.word_ids[w]: f"class word ({data.classes[k]})" for w in ws})
    for k, ws in enumerate(cfg.bias_words):
        out.update({cfg.word_ids[w]: f"bias word ({data.classes[k]})" for w in ws})
    out.update({cfg.word_ids[w]: "filler" for w in cfg.filler_words})
    return out


def class_counts(data: MMDataset, modality: str = "T", split: str = "train") -> np.ndarray:
    """(C, VOCAB_SIZE) N_w per class (Eq. 26): how often each word occurs in the ``split`` texts of
    each class, special tokens zeroed (what `CIDer.fit_bias_words` counts)."""
    part = data.subset(split)
    ids, ln = part.feats[modality], np.asarray(part.lengths[modality])
    real = np.arange(ids.shape[1])[None] < ln[:, None]
    counts = np.stack([np.bincount(ids[(part.y == c)[:, None] & real], minlength=VOCAB_SIZE)
                       for c in range(part.n_classes)]).astype(float)
    counts[:, list(SPECIAL)] = 0
    return counts


def fitted_bias_words(name: str, data: MMDataset, overrides: Mapping[str, Any] | None = None, seed: int = 1111) -> Any:
    """An untrained CIDer variant ``name`` whose Eqs. 26-27 ran on the train split
    (`CIDer.fit_bias_words`): its ``keep_words`` and ``bias_word_report``, nothing trained."""
    from mmlab.explore.common import override_args
    from mmlab.methods import make_method

    method = make_method(name, data, override_args(overrides), seed=seed)
    if not getattr(method, "uses_counterfactual", False):
        raise ConfigError(f"{name}: has no counterfactual text (token text and counterfactual=true needed)")
    method.fit_bias_words(data.subset("train"))
    return method


def bias_word_table(methods: Mapping[str, Any], data: MMDataset) -> list[dict[str, Any]]:
    """One row per word seen in train: its kind, per-class counts N_w, Eq. 26's CV on raw counts
    and on per-class rates (population std, as the method), and for each ``methods`` entry (label
    -> a CIDer after `fit_bias_words`) whether Eq. 27 kept it (read from its ``keep_words``)."""
    first = next(iter(methods.values()))
    counts = class_counts(data, first.mods[0])
    rates = counts / counts.sum(1, keepdims=True).clip(min=1)
    seen = np.flatnonzero(counts.sum(0) > 0)
    vocab, kinds = vocabulary(data), word_kinds(data)
    kept = {k: m.keep_words.cpu().numpy() for k, m in methods.items()}
    rows = []
    for w in seen[np.argsort(-counts.sum(0)[seen], kind="stable")]:
        c, r = counts[:, w], rates[:, w]
        rows.append({"word": vocab.get(int(w), f"#{w}"), "kind": kinds.get(int(w), "?"),
                     **{f"N({cl})": int(v) for cl, v in zip(data.classes, c)},
                     "CV raw": float(c.std() / c.mean()), "CV rate": float(r.std() / r.mean()),
                     **{f"kept: {k}": bool(v[w]) for k, v in kept.items()}})
    return rows


def kept_summary(table: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per rule (``kept: ...`` column of `bias_word_table`) and word kind: how many words Eq. 27 kept."""
    rules = [k for k in table[0] if k.startswith("kept: ")] if table else []
    kinds = sorted({r["kind"].split(" (")[0] for r in table})
    out = []
    for rule in rules:
        row = {"rule": rule[len("kept: "):], "kept": sum(r[rule] for r in table), "seen": len(table)}
        for kind in kinds:
            of = [r for r in table if r["kind"].split(" (")[0] == kind]
            row[kind] = f"{sum(r[rule] for r in of)} / {len(of)}"
        out.append(row)
    return out


def counterfactual_examples(method: Any, data: MMDataset, split: str = "test", n: int = 6,
                            protocol: str | None = None, rate: float = 0.0, seed: int = 1111) -> list[dict[str, Any]]:
    """The first ``n`` texts of ``split`` beside S_cf = ``method.counterfactual_ids`` (Eq. 27:
    every word Eq. 27 did not keep becomes [MASK]); with ``protocol`` at ``rate`` the text is
    first masked as the evaluation masks it (dropped words read [UNK] and stay [UNK])."""
    from mmlab.missing import draw_masks, mask_batch, pad_masks, resolve_fill

    t = method.mods[0]
    part = data.subset(split)
    batch = part.batch(np.arange(min(n, len(part))))
    if protocol is not None:
        (cond,) = frame_conditions(protocol, data, [rate])
        masks = draw_masks(cond.generator, pad_masks(part), part.modalities, seed, tokens=part.token_modalities)
        batch = mask_batch(batch, masks.take(np.arange(batch.size)), resolve_fill(method.fill))
    ids = batch.feats[t].cpu()
    with torch.no_grad():
        cf = method.counterfactual_ids(ids).cpu()
    vocab, ln = vocabulary(data), batch.pad_mask[t].sum(1).tolist()
    rows = []
    for i in range(batch.size):
        k = int(ln[i])
        text, counter = decode(ids[i], vocab, k), decode(cf[i], vocab, k)
        rows.append({"sample": batch.ids[i], "label": data.classes[int(batch.y[i])], "text": " ".join(text),
                     "counterfactual": " ".join(counter),
                     "words kept": sum(a == b and a not in SPECIAL.values() for a, b in zip(text, counter))})
    return rows


def counterfactual_share(method: Any, data: MMDataset, split: str = "test") -> float:
    """Fraction of ``split`` texts whose counterfactual differs from the text (0: Eq. 25's tau
    term only rescales log p)."""
    part = data.subset(split)
    ids = torch.as_tensor(part.feats[method.mods[0]])
    with torch.no_grad():
        return float((method.counterfactual_ids(ids) != ids).any(1).float().mean())


# ============================================================================ 6. tau (Eq. 25, B5)
def _condition_masks(data: MMDataset, patterns: str) -> list[tuple[str, Any]]:
    """The masks `mmlab.evaluate.validate_classifier` scores tau on: "full" (None), the six
    patterns, or both ("seven"), drawn as it draws them (seed 0)."""
    from mmlab.missing import FixedPattern, all_patterns, draw_masks, pad_masks

    six = [p.available for p in all_patterns(data.modalities)]
    conds = {"full": [None], "six": six, "seven": [None, *six]}[patterns]
    pad = pad_masks(data)
    return [("full" if c is None else "{" + "".join(c) + "}",
             None if c is None else draw_masks(FixedPattern(c), pad, data.modalities, 0)) for c in conds]


@torch.no_grad()
def log_probs(method: Any, data: MMDataset, masks: Any, counterfactual: bool = False) -> np.ndarray:
    """(N, C) log p(y | do(L = l)) or, with ``counterfactual``, log p(y | do(L = l_cf)) (the two
    terms of Eq. 25 as `CIDer.predict_logits` computes them) under ``masks`` and the method's fill."""
    from mmlab.evaluate import predict
    from mmlab.missing import resolve_fill

    t = method.mods[0]

    def output(batch: Any) -> torch.Tensor:
        if counterfactual:
            batch = replace(batch, feats={**batch.feats, t: method.counterfactual_ids(batch.feats[t])})
        return F.log_softmax(method.run(batch).logits, -1)

    return predict(method, data, masks, device=_device(method), fill=resolve_fill(method.fill), output=output)


def read_calibration(method: Any) -> dict[str, Any] | None:
    """The run's calibration.json (tau chosen on valid and every tau's valid score), or None."""
    path = Path(getattr(method, "run_dir", "") or "") / "calibration.json"
    return json.loads(path.read_text()) if path.is_file() else None


def tau_sweep(method: Any, data: MMDataset, splits: Sequence[str] = ("valid", "test", "test_ood"),
              grid: Sequence[float] | None = None, max_eval: int | None = None, patterns: str | None = None,
              oracle: bool = True) -> dict[str, Any]:
    """Accuracy as Eq. 25's tau moves: for every split, the mean accuracy over the conditions tau
    is chosen on (``method.test_options_patterns``, "seven" = full input + six patterns) and the
    full-input accuracy, per tau of ``grid`` (default the method's ``tau_grid``). The two log-
    probability tables are computed once per condition, then argmax(log p - tau log p_cf) per tau.
    valid is always whole (it must reproduce the Trainer's choice); other splits use their first
    ``max_eval`` rows. ``cf_alone`` (and ``cf_alone_full``): the accuracy of the subtracted term
    log p(y | do(L = l_cf)) on its own, A and V as observed. ``chosen`` = the method's tau (chosen on valid by the Trainer), ``argmax_valid``
    = the first best tau of this valid curve, ``best`` = the first best tau of every split (for a
    test split an upper bound, never a choice); with ``oracle`` the Bayes oracle's accuracy on the
    same conditions."""
    from mmlab import metrics
    from mmlab.evaluate import predict
    from mmlab.methods.oracle import has_oracle, oracle_of

    grid = sorted({float(x) for x in (grid if grid is not None else method.cfg.tau_grid)})
    patterns = patterns or getattr(method, "test_options_patterns", "seven")
    near = min(grid, key=lambda g: abs(g - method.tau))  # tau is kept in a float32 buffer
    chosen = near if abs(near - method.tau) < 1e-6 else float(method.tau)
    out: dict[str, Any] = {"grid": grid, "patterns": patterns, "chosen": chosen, "curves": {},
                           "oracle": {}, "n": {}}
    for split in splits:
        part = _first(data, split, None if split == "valid" else max_eval)
        per: dict[str, list[float]] = {}  # condition -> accuracy per tau
        alone: dict[str, float] = {}  # condition -> accuracy of the counterfactual term alone
        orc: dict[str, float] = {}
        for label, masks in _condition_masks(part, patterns):
            f = log_probs(method, part, masks)
            cf = log_probs(method, part, masks, counterfactual=True) if method.uses_counterfactual else np.zeros_like(f)
            per[label] = [metrics.accuracy(part.y, (f - tau * cf).argmax(1)) for tau in grid]
            alone[label] = metrics.accuracy(part.y, cf.argmax(1))
            if oracle and has_oracle(data):
                orc[label] = metrics.accuracy(part.y, predict(oracle_of(data), part, masks).argmax(1))
        # the mean over conditions in validate_classifier's order and arithmetic, so valid reproduces its scores
        acc = [float(np.mean([per[c][j] for c in per])) for j in range(len(grid))]
        out["curves"][split] = {"accuracy": acc, "full": per.get("full", [math.nan] * len(grid)),
                                "conditions": per, "cf_alone": float(np.mean(list(alone.values()))),
                                "cf_alone_full": alone.get("full", math.nan)}
        out["n"][split] = len(part)
        if orc:
            out["oracle"][split] = float(np.mean(list(orc.values())))
            out.setdefault("oracle_conditions", {})[split] = orc
    out["best"] = {s: grid[first_best(c["accuracy"])] for s, c in out["curves"].items()}  # the Trainer's rule
    out["argmax_valid"] = out["best"].get("valid")
    cal = read_calibration(method)
    if cal and "scores" in cal:
        out["calibration"] = [{"tau": float(s["tau"]), "accuracy": float(s["accuracy"])} for s in cal["scores"]]
    return out


def tau_rows(sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per tau of `tau_sweep`: the mean accuracy of every split (and its full-input one),
    which tau was chosen on valid and which would be best on each test split."""
    rows = []
    for j, tau in enumerate(sweep["grid"]):
        row: dict[str, Any] = {"tau": tau}
        for s, c in sweep["curves"].items():
            row[s] = c["accuracy"][j]
            row[f"{s} full"] = c["full"][j]
        row["chosen on valid"] = math.isclose(tau, sweep["chosen"], abs_tol=1e-6)
        row["best on"] = ", ".join(s for s, b in sweep["best"].items() if s != "valid" and math.isclose(tau, b))
        rows.append(row)
    return rows


def condition_rows(sweep: Mapping[str, Any], tau: float | None = None) -> list[dict[str, Any]]:
    """Per condition of `tau_sweep` (full input, the six patterns), each split's accuracy at ``tau``
    (default: the tau chosen on valid) beside the Bayes oracle's on the same masks."""
    grid = list(sweep["grid"])
    j = grid.index(min(grid, key=lambda g: abs(g - float(sweep["chosen"] if tau is None else tau))))
    first = next(iter(sweep["curves"].values()))["conditions"]
    rows = []
    for label in first:
        row: dict[str, Any] = {"condition": label}
        for s, c in sweep["curves"].items():
            row[s] = c["conditions"][label][j]
        for s, o in sweep.get("oracle_conditions", {}).items():
            row[f"oracle {s}"] = o[label]
        rows.append(row)
    return rows


def tau_view(sweep: Mapping[str, Any], tau: float) -> dict[str, Any]:
    """What the tau explorer shows at one ``tau`` of the grid: each split's accuracy there and
    its change from the tau chosen on valid."""
    grid = list(sweep["grid"])
    j = int(np.argmin([abs(g - float(tau)) for g in grid]))
    c = int(np.argmin([abs(g - float(sweep["chosen"])) for g in grid]))
    return {"tau": grid[j], "chosen": grid[c],
            "accuracy": {s: v["accuracy"][j] for s, v in sweep["curves"].items()},
            "change": {s: v["accuracy"][j] - v["accuracy"][c] for s, v in sweep["curves"].items()}}


class TauExplorer:
    """A tau slider over a precomputed `tau_sweep` and a ``FigureWidget`` (`mmlab.viz.tau_figure`
    with the slider's tau drawn); each move only redraws (nothing is recomputed)."""

    def __init__(self, sweep: Mapping[str, Any], tau: float | None = None):
        import ipywidgets as W
        import plotly.graph_objects as go

        from mmlab import viz

        self.sweep = sweep
        start = sweep["chosen"] if tau is None else tau
        self.tau = W.SelectionSlider(options=list(sweep["grid"]), value=tau_view(sweep, start)["tau"],
                                     description="tau", continuous_update=False)
        self.summary = W.HTML()
        self.figure = go.FigureWidget(viz.tau_figure(sweep, self.tau.value))
        self._show()
        self.tau.observe(self._on_change, names="value")
        self.widget = W.VBox([self.tau, self.summary, self.figure])

    def _show(self) -> None:
        v = tau_view(self.sweep, self.tau.value)
        parts = [f"{s} <b>{a:.3f}</b> ({v['change'][s]:+.3f})" for s, a in v["accuracy"].items()]
        self.summary.value = (f"tau = {v['tau']:g} (chosen on valid: {v['chosen']:g}): " + " &middot; ".join(parts)
                              + " &middot; change from the valid choice in brackets")

    def update(self) -> dict[str, Any]:
        """Redraw for the slider's tau; returns `tau_view`."""
        from mmlab import viz

        viz.refresh(self.figure, viz.tau_figure(self.sweep, self.tau.value))
        self._show()
        return tau_view(self.sweep, self.tau.value)

    def _on_change(self, change: dict) -> None:
        self.update()
