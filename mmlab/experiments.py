"""Experiments: train one method, or train and compare several on the same seeded test masks.

`compare` is what `mmlab compare` runs. For every seed and method it trains (resumably) into
``out/runs/<method>/seed<seed>/`` with the one `Trainer`, then evaluates on the test split
under the requested protocols with masks drawn from that seed, the same masks for every
method. On `synthetic` the Bayes oracle is evaluated on the same masks as one more row
(``method = bayes_oracle``). Model selection inside training reads the validation split only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from tqdm.auto import tqdm

from mmlab.data import MMDataset, load_dataset
from mmlab.errors import ConfigError, DataError

PROTOCOLS = ("patterns", "full", "rates", "eta", "generation")


def _data(data: str | MMDataset) -> MMDataset:
    return data if isinstance(data, MMDataset) else load_dataset(data)


def _split_overrides(overrides: Iterable[str], methods: Sequence[str]) -> dict[str, list[str]]:
    """Route ``--admc.x=1`` to method ``admc`` only; other overrides go to every method."""
    routed: dict[str, list[str]] = {m: [] for m in methods}
    for item in overrides:
        key = item[2:] if item.startswith("--") else item
        head, _, rest = key.partition(".")
        if head in routed and rest:
            routed[head].append("--" + rest)
        else:
            for m in methods:
                routed[m].append(item)
    return routed


def train_method(
    name: str,
    data: str | MMDataset,
    out: str | Path,
    overrides: Iterable[str] = (),
    device: str = "cpu",
    seed: int = 1111,
    preset: str | None = None,
    progress: bool = True,
):
    """Build method ``name`` for ``data`` and train all its stages into ``out`` (resumable).

    Returns the trained method.
    """
    from mmlab.methods import make_method
    from mmlab.train import TrainConfig, Trainer
    from mmlab.utils import seed_everything

    data = _data(data)
    seed_everything(seed)
    method = make_method(name, data, list(overrides), preset=preset)
    Trainer(method, data, out, TrainConfig(seed=seed, device=device, progress=progress)).fit()
    return method


def conditions_for(protocol: str, data: MMDataset) -> list:
    """The evaluation conditions of a protocol name."""
    from mmlab import evaluate as ev

    if protocol == "patterns":
        return ev.pattern_conditions(data.modalities, include_full=True)
    if protocol == "full":
        return [c for c in ev.pattern_conditions(data.modalities, include_full=True) if c.label == "full"]
    if protocol == "rates":
        return ev.rate_conditions()
    if protocol == "eta":
        return ev.eta_conditions()
    raise ConfigError(f"protocol: expected some of {list(PROTOCOLS)}, got {protocol!r}")


def compare(
    data: str | MMDataset,
    methods: Sequence[str],
    protocol: str | Sequence[str] = "patterns",
    seeds: Sequence[int] = (1111,),
    out: str | Path = "compare",
    overrides: Iterable[str] = (),
    device: str = "cpu",
    preset: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Train every method for every seed and evaluate all of them on the same seeded test masks.

    Writes ``out/results.csv`` (one row per dataset, method, protocol, condition, seed) and
    ``out/results.md`` (mean ± std over seeds); returns their paths. An existing results file
    is never overwritten.
    """
    from mmlab import evaluate as ev
    from mmlab.data.synthetic import oracle_of

    protocols = [p for p in (protocol.split(",") if isinstance(protocol, str) else protocol) if p]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ConfigError(f"--protocol: expected some of {list(PROTOCOLS)}, got {unknown or protocols}")
    if not methods:
        raise ConfigError("--methods: expected at least one method name")
    from mmlab.methods import method_names

    known = method_names()
    bad = [m for m in methods if m not in known]
    if bad:
        raise ConfigError(f"--methods: unknown {bad}; expected some of {known}")
    out = Path(out)
    if (out / "results.csv").exists():
        raise DataError(f"{out / 'results.csv'} exists: choose a new --out folder (results are never overwritten)")
    data = _data(data)
    routed = _split_overrides(overrides, methods)
    rows: list[dict[str, Any]] = []
    oracle = oracle_of(data) if "oracle" in data.info else None
    started = time.time()
    for seed in seeds:
        for name in tqdm(methods, desc=f"seed {seed}", disable=not progress):
            method = train_method(
                name, data, out / "runs" / name / f"seed{seed}", routed[name], device, seed, preset, progress
            )
            rows += _evaluate_all(method, name, data, protocols, seed, device)
        if oracle is not None:
            rows += _evaluate_all(oracle, "bayes_oracle", data, [p for p in protocols if p != "generation"], seed, "cpu")
    paths = list(ev.write_results(rows, out).values())
    if progress:
        print(f"compare: {len(methods)} method(s) x {len(seeds)} seed(s) in {time.time() - started:.0f} s")
    return paths


def _evaluate_all(method, name: str, data: MMDataset, protocols: Sequence[str], seed: int, device: str) -> list[dict]:
    from mmlab import evaluate as ev

    rows: list[dict] = []
    method.name = name
    train = data.subset("train")
    for protocol in protocols:
        if protocol == "generation":
            # Table 4 exists only for variants with an ADN and independent ITFN heads
            if hasattr(method, "generation_table") and getattr(method, "denoiser", None) is not None:
                for r in method.generation_table(data, split="test", seed=seed):
                    rows.append({"dataset": data.name, "method": name, "protocol": "generation", "seed": seed, **r})
            continue
        conds = conditions_for(protocol, data)
        rows += ev.evaluate(method, data, split="test", conditions=conds, seed=seed, train=train, device=device)
    return rows
