"""Experiments: train one method, or train and compare several on the same seeded test masks.

`compare` is what `mmlab compare` runs. For every seed and method it trains (resumably) into
``out/runs/<method>/seed<seed>/`` with the one `Trainer`, then evaluates on the test split
under the requested protocols with masks drawn from that seed, the same masks for every
method. On `synthetic` the Bayes oracle is evaluated on the same masks as one more row
(``method = bayes_oracle``). Model selection inside training reads the validation split only.

`compare_suite` does the same for several datasets at once; ``compare_suite()`` with its
defaults is the full comparison (`FULL_SUITE`: every method in `COMPARISON_METHODS`, seeds
1111-1115, `synthetic` and `handwritten`), what ``mmlab compare --suite full`` runs. With
``workers > 1`` the (dataset, method, seed) jobs run in spawned processes, one torch thread
each, and the rows come back in job order, identical to a one-process run.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from mmlab.data import MMDataset, load_dataset
from mmlab.errors import ConfigError, DataError
from mmlab.tables import csv_text
from mmlab.utils import atomic_write_text

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


def method_input(name: str, data: MMDataset, device: str = "cpu") -> MMDataset:
    """The data method ``name`` sees: token-id modalities become features of the shared frozen
    text encoder (`mmlab.methods.text.featurize_tokens`, computed once and cached) unless the
    method runs a text encoder itself (``reads_tokens``)."""
    from mmlab.methods import method_class

    if data.token_modalities and not getattr(method_class(name), "reads_tokens", False):
        from mmlab.methods.text import featurize_tokens

        return featurize_tokens(data, device=device)
    return data


def train_method(
    name: str,
    data: str | MMDataset,
    out: str | Path,
    overrides: Iterable[str] = (),
    device: str = "cpu",
    seed: int = 1111,
    preset: str | None = None,
    progress: bool = True,
    checkpoint_seconds: float = 30.0,
):
    """Build method ``name`` for ``data`` and train all its stages into ``out`` (resumable;
    ``last.pt`` at most every ``checkpoint_seconds``, `TrainConfig`). Returns the trained method.
    """
    from mmlab.methods import make_method
    from mmlab.train import TrainConfig, Trainer
    from mmlab.utils import seed_everything

    data = method_input(name, _data(data), device)
    seed_everything(seed)
    method = make_method(name, data, list(overrides), preset=preset, seed=seed)
    method.fit_summary = Trainer(method, data, out, TrainConfig(seed=seed, device=device, progress=progress,
                                                                checkpoint_seconds=checkpoint_seconds)).fit()
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


DEFAULT_SEEDS: tuple[int, ...] = (1111, 1112, 1113, 1114, 1115)
COMPARISON_METHODS: tuple[str, ...] = (
    "admc", "admc_wo_adn", "admc_wo_itfn", "admc_use_itfn", "admc_joint",
    "zero_fill", "mean_fill", "full_zero", "ae", "cra", "mmin",
)
# The full comparison (issue #5): the three-modality pattern and rate sweeps on `synthetic`;
# on six-view `handwritten` the CPM-Nets eta sweep, the rate sweep and the full input (its 63
# view subsets are not a "six patterns" table).
FULL_SUITE: dict[str, tuple[str, ...]] = {
    "synthetic": ("patterns", "rates"),
    "handwritten": ("full", "eta", "rates"),
}


@dataclass(frozen=True)
class _Job:
    """Train one method for one seed on one dataset, then evaluate it under ``protocols``."""

    data: str | MMDataset
    name: str
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]
    protocols: tuple[str, ...]
    device: str
    preset: str | None
    group: int = 0  # index of the dataset in the suite
    checkpoint_seconds: float = 30.0
    test_splits: tuple[str, ...] = ("test",)


def _run_job(job: _Job, progress: bool = False, threads: int | None = None) -> tuple[list[dict], float]:
    """Run one `_Job` (in this process or a worker); returns its result rows and seconds taken."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    started = time.time()
    data = _cached_data(job.data) if isinstance(job.data, str) else job.data
    data = method_input(job.name, data, job.device)
    method = train_method(job.name, data, job.run_dir, job.overrides, job.device, job.seed, job.preset, progress,
                          job.checkpoint_seconds)
    rows = _evaluate_all(method, job.name, data, job.protocols, job.seed, job.device, job.test_splits)
    return rows, time.time() - started


@functools.lru_cache(maxsize=4)
def _cached_data(name: str) -> MMDataset:
    return load_dataset(name)


def _execute(jobs: Sequence[_Job], workers: int, progress: bool) -> list[tuple[list[dict], float]]:
    """Run ``jobs``, in order in this process when ``workers == 1``, else on a pool of
    ``workers`` spawned processes with one torch thread each (small models run fastest on
    one thread per core). Results come back in job order, so rows do not depend on scheduling.
    """
    if workers < 1:
        raise ConfigError(f"workers: expected an integer >= 1, got {workers}")
    if workers == 1:
        bar = tqdm(jobs, desc="compare", disable=not progress or len(jobs) < 2)
        return [_run_job(job, progress=progress) for job in bar]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: list[tuple[list[dict], float] | None] = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_run_job, job, False, 1): i for i, job in enumerate(jobs)}
        bar = tqdm(total=len(jobs), desc=f"compare ({workers} workers)", disable=not progress)
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                bar.set_postfix_str(f"{jobs[i].name} seed {jobs[i].seed}: {results[i][1]:.0f} s")
                bar.update()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
        finally:
            bar.close()
    return results  # type: ignore[return-value]


def _check_protocols(protocol: str | Sequence[str]) -> list[str]:
    protocols = [p for p in (protocol.split(",") if isinstance(protocol, str) else protocol) if p]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ConfigError(f"--protocol: expected some of {list(PROTOCOLS)}, got {unknown or protocols}")
    return protocols


def _check_methods(methods: Sequence[str]) -> None:
    if not methods:
        raise ConfigError("--methods: expected at least one method name")
    from mmlab.methods import method_names

    known = method_names()
    bad = [m for m in methods if m not in known]
    if bad:
        raise ConfigError(f"--methods: unknown {bad}; expected some of {known}")


def compare_suite(
    suite: Mapping[str, str | Sequence[str]] | None = None,
    methods: Sequence[str] = COMPARISON_METHODS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    out: str | Path = "comparison",
    overrides: Iterable[str] = (),
    device: str = "cpu",
    preset: str | None = None,
    workers: int = 1,
    progress: bool = True,
    checkpoint_seconds: float = 30.0,
    test_splits: Sequence[str] = ("test",),
) -> dict[str, list[Path]]:
    """Compare ``methods`` on several datasets at once: ``suite`` maps a dataset name (or a
    BYO ``.npz`` path) to its protocols; the default, `FULL_SUITE`, is the full comparison.

    Every (dataset, seed, method) job goes to one pool of ``workers`` processes. Each dataset
    gets ``out/<dataset>/results.csv`` and ``results.md`` with its runs under
    ``out/<dataset>/runs/<method>/seed<k>/`` (resumable), and ``out/timing.csv`` lists the
    seconds of every job and the wall time. Returns the written paths per dataset name.
    """
    suite = dict(FULL_SUITE if suite is None else suite)
    if not suite:
        raise ConfigError("suite: expected at least one dataset")
    datasets = [_data(key) for key in suite]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ConfigError(f"suite: dataset names {names} repeat; expected one entry per dataset")
    entries = [(key, d, p, Path(out) / d.name) for key, d, p in zip(suite, datasets, suite.values())]
    return _compare(entries, methods, seeds, Path(out), overrides, device, preset, workers, progress,
                    checkpoint_seconds, test_splits)


def compare(
    data: str | MMDataset,
    methods: Sequence[str],
    protocol: str | Sequence[str] = "patterns",
    seeds: Sequence[int] = DEFAULT_SEEDS,
    out: str | Path = "compare",
    overrides: Iterable[str] = (),
    device: str = "cpu",
    preset: str | None = None,
    progress: bool = True,
    workers: int = 1,
    checkpoint_seconds: float = 30.0,
    test_splits: Sequence[str] = ("test",),
) -> list[Path]:
    """Train every method for every seed and evaluate all of them on the same seeded test masks.

    Writes ``out/results.csv`` (one row per dataset, method, protocol, condition, seed),
    ``out/results.md`` (mean ± std over seeds) and ``out/timing.csv``; returns the results'
    paths. ``test_splits``: the test splits to evaluate on (e.g. ``("test", "test_ood")``; a
    ``split`` column tells them apart); training never reads any of them. ``workers > 1`` runs the (method, seed) jobs in parallel processes, one torch
    thread each; the rows are the same as with one worker. Existing results are never
    overwritten.
    """
    written = _compare([(data, _data(data), protocol, Path(out))], methods, seeds, Path(out), overrides, device, preset,
                       workers, progress, checkpoint_seconds, test_splits)
    return next(iter(written.values()))


def _check_test_splits(test_splits: str | Sequence[str], datasets: Sequence[MMDataset]) -> tuple[str, ...]:
    splits = tuple(p for p in (test_splits.split(",") if isinstance(test_splits, str) else test_splits) if p)
    if not splits or len(set(splits)) != len(splits):
        raise ConfigError(f"--test-split: expected distinct split names, got {list(splits)}")
    for data in datasets:
        bad = [s for s in splits if s in ("train", "valid") or not (data.split == s).any()]
        if bad:
            have = sorted(set(data.split.tolist()) - {"train", "valid"})
            raise ConfigError(f"--test-split: dataset {data.name!r} has no test split {bad}; expected some of {have}")
    return splits


def _compare(entries, methods, seeds, out: Path, overrides, device, preset, workers, progress,
             checkpoint_seconds: float = 30.0, test_splits: Sequence[str] = ("test",)) -> dict[str, list[Path]]:
    """`compare` / `compare_suite`: ``entries`` are (name or dataset, dataset, protocols, folder)."""
    from mmlab import evaluate as ev
    from mmlab.methods.oracle import has_oracle, oracle_of

    _check_methods(methods)
    if not seeds:
        raise ConfigError("--seeds: expected at least one seed")
    plans = [(_check_protocols(protocols), folder) for _, _, protocols, folder in entries]
    timing = out / "timing.csv"
    for path in [*(folder / "results.csv" for _, folder in plans), timing]:
        if path.exists():
            raise DataError(f"{path} exists: choose a new --out folder (results are never overwritten)")
    datasets = [data for _, data, _, _ in entries]
    test_splits = _check_test_splits(test_splits, datasets)
    routed = _split_overrides(overrides, methods)
    jobs = [
        # workers reload a named dataset rather than receive a pickled copy
        _Job(entry if workers > 1 and isinstance(entry, str) else data, name, int(seed), folder / "runs" / name / f"seed{seed}",
             tuple(routed[name]), tuple(protocols), device, preset, group, checkpoint_seconds, test_splits)
        for group, ((entry, data, _, _), (protocols, folder)) in enumerate(zip(entries, plans))
        for seed in seeds for name in methods
    ]
    started = time.time()
    results = _execute(jobs, workers, progress)
    written: dict[str, list[Path]] = {}
    for group, (data, (protocols, folder)) in enumerate(zip(datasets, plans)):
        rows = [r for job, (job_rows, _) in zip(jobs, results) if job.group == group for r in job_rows]
        if has_oracle(data):
            oracle, kept = oracle_of(data), [p for p in protocols if p != "generation"]
            for seed in seeds:
                rows += _evaluate_all(oracle, "bayes_oracle", data, kept, int(seed), "cpu", test_splits)
        written[data.name] = list(ev.write_results(rows, folder).values())
    wall = time.time() - started
    cells = [[datasets[job.group].name, job.name, job.seed, f"{secs:.1f}"] for job, (_, secs) in zip(jobs, results)]
    atomic_write_text(timing, csv_text(["dataset", "method", "seed", "seconds"], [*cells, ["all", "all", "all", f"{wall:.1f}"]]))
    if progress:
        print(f"compare: {len(methods)} method(s) x {len(seeds)} seed(s) x {len(entries)} dataset(s) in {wall:.0f} s "
              f"wall ({sum(s for _, s in results):.0f} s of jobs, {workers} worker(s)); times in {timing}")
    return written


def _evaluate_all(method, name: str, data: MMDataset, protocols: Sequence[str], seed: int, device: str,
                  test_splits: Sequence[str] = ("test",)) -> list[dict]:
    """Every protocol on every test split, through `mmlab.evaluate` (the generation protocol only
    for methods with the completion interface, `Method.completes`)."""
    from mmlab import evaluate as ev

    rows: list[dict] = []
    method.name = name
    train = data.subset("train")
    for split in test_splits:
        for protocol in protocols:
            if protocol == "generation":
                if callable(getattr(method, "completes", None)) and method.completes():
                    rows += ev.generation_table(method, data, split=split, seed=seed, device=device)
                continue
            conds = conditions_for(protocol, data)
            rows += ev.evaluate(method, data, split=split, conditions=conds, seed=seed, train=train, device=device)
    return rows
