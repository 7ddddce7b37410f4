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

Every (dataset, method, seed) job goes through one executor (`mmlab.executors`: ``inline``,
``local`` processes or a ``slurm`` array, built on submitit) and writes its rows atomically into
its own folder; the aggregated files are derived from those rows. Layout of an ``out`` folder
(one such folder per dataset under a suite's or a sweep's ``out``)::

    results.csv, results.md                 all rows; mean ± std over seeds (rewritten on --resume)
    timing.csv                              seconds per job and the wall time (in a suite's root)
    runs/<method>/seed<k>[-<hash>]/         the Trainer's run folder (checkpoints, metrics.csv)
    jobs/plan.json                          every planned job and its parts (split.protocol)
    jobs/<method>/seed<k>[-<hash>]/         spec.json, rows.<split>.<protocol>.csv, status.json, logs/
    jobs/bayes_oracle/seed<k>/              the oracle's rows (computed in the calling process)

A job is finished when each of its parts has its rows file: a re-run skips it, so a killed run
resumes, and ``resume=True`` adds methods, seeds or protocols to a finished folder. `sweep` runs
a grid over datasets x methods x seeds x dotted overrides from a YAML or JSON file.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mmlab import executors as ex
from mmlab.config import check_device_name, refuse_seed_override
from mmlab.data import MMDataset, load_dataset
from mmlab.errors import ConfigError, DataError
from mmlab.executors import SlurmOptions
from mmlab.tables import csv_text
from mmlab.utils import FolderLock, atomic_write_text

# CIDer's missing types (mmlab/methods/cider.py; appendix definitions in mmlab/missing/frames.py), each swept
# over rates 0, 0.1, ..., 1 with an AUILC row (its Eq. 31); SMM is the frame-level twin of "patterns"
FRAME_PROTOCOLS = ("rmfm", "traditional_rmfm", "rmm", "tmfm", "stmfm")
PROTOCOLS = ("patterns", "full", "rates", "eta", "generation") + FRAME_PROTOCOLS
ORACLE = "bayes_oracle"


def _data(data: str | MMDataset) -> MMDataset:
    return data if isinstance(data, MMDataset) else load_dataset(data)


def _check_overrides(methods: Sequence[str], overrides: Iterable[str], preset: str | None,
                     grid: Sequence[Sequence[str]] = ((),)) -> None:
    """Apply every method's overrides to its config before any job runs, so a typo or a
    malformed value fails at once (not inside the first job)."""
    from mmlab.config import apply_overrides
    from mmlab.methods import METHODS, method_class

    for point in grid:
        routed = _split_overrides([*overrides, *point], methods)
        for name in methods:
            cls = method_class(name)
            cfg = cls.Config()
            presets = getattr(cls, "PRESETS", {})
            if preset is not None:
                if preset not in presets:
                    raise ConfigError(f"--preset: method {name!r} has no preset {preset!r}; expected one of "
                                      f"{sorted(presets)}")
                cfg = apply_overrides(cfg, presets[preset])
            cfg = apply_overrides(apply_overrides(cfg, METHODS[name][1]), routed[name])
            refuse_seed_override(routed[name])


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

    overrides = list(overrides)
    refuse_seed_override(overrides)
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
    if protocol in FRAME_PROTOCOLS:  # CIDer's sweeps: rates 0 (complete) to 1 (all dropped)
        first = data.lengths[data.modalities[0]]
        if protocol in ("tmfm", "stmfm") and any(not np.array_equal(data.lengths[m], first) for m in data.modalities):
            raise ConfigError(f"protocol {protocol!r}: temporal missing needs word-aligned data (equal lengths per "
                              f"sample in every modality); {data.name} is unaligned (use rmfm, traditional_rmfm or rmm)")
        return ev.rate_conditions(CIDER_RATES, protocol=protocol, protect_edges=tuple(data.token_modalities))
    raise ConfigError(f"protocol: expected some of {list(PROTOCOLS)}, got {protocol!r}")


CIDER_RATES = tuple(round(0.1 * i, 1) for i in range(11))
DEFAULT_SEEDS: tuple[int, ...] = (1111, 1112, 1113, 1114, 1115)
COMPARISON_METHODS: tuple[str, ...] = (
    "admc", "admc_cond", "admc_wo_adn", "admc_wo_itfn", "admc_use_itfn", "admc_joint",
    "zero_fill", "mean_fill", "full_zero", "ae", "cra", "mmin", "pooled_linear", "kernel_experts",
    "cmarr", "dicmor",
)
# Registered methods the full suite leaves out, and why (each is measured on its own; README "Results")
OUTSIDE_FULL_SUITE: dict[str, str] = {
    "reference": "the small model of the tests and the quickstart, not a published method",
    **dict.fromkeys(("cider", "cider_wo_mssd", "cider_wo_maci", "cider_rate_cv"),
                    "reads token text (synthetic_text, test_ood); 8-19 min per run on the CPU default"),
    **dict.fromkeys(("cmarr_baseline", "cmarr_wo_udcl", "cmarr_wo_spcl", "cmarr_wo_attention", "cmarr_point",
                     "cmarr_alpha01"),
                    "CM-ARR's Table 3 ablations, measured on their own (docs/results/cmarr/); 1-2 min per run"),
    **dict.fromkeys(("zero_fill_x3", "ae_x3", "cra_x3"),
                    "deep ensembles of three (mmlab/methods/ensemble.py): three times a member's training; "
                    "measured on their own (docs/results/ensembles/)"),
    "zero_fill_heads": "zero_fill with a classifier head per availability pattern: measured, no better than one "
                       "shared head (docs/gap_to_oracle.md §17.4)",
    "zero_fill_pp_shared": "zero_fill_pp plus the shared zero_fill, chosen per pattern on valid: 2^M trainings; "
                           "measured on its own (docs/results/specialists/)",
    "zero_fill_pp": "one zero_fill per availability pattern (mmlab/methods/specialists.py): 2^M - 1 trainings "
                    "(63 on handwritten); measured on its own (docs/results/specialists/)",
    **dict.fromkeys(("zero_fill_maci", "cmarr_maci", "admc_maci"),
                    "CIDer's MACI as a plug-in, measured with CIDer on synthetic_text (docs/results/cider/)"),
}
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
    parts: tuple[tuple[str, str], ...] = ()  # the (split, protocol) pairs to evaluate; () = all of them
    label: str = ""  # the method name in the rows (a sweep adds its grid values); "" = ``name``
    # methods registered at run time in the planning process, (name, target, overrides as JSON),
    # registered again in the job's process (a spawned worker or a cluster node starts without them)
    registered: tuple[tuple[str, str, str], ...] = ()

    def pairs(self) -> list[tuple[str, str]]:
        return list(self.parts) or [(s, p) for s in self.test_splits for p in self.protocols]


def _run_job(job: _Job, progress: bool = False, threads: int | None = None) -> dict[str, list[dict]]:
    """Run one `_Job` (the job function of every executor): train resumably, then evaluate;
    returns the result rows per part (``"<split>.<protocol>"``, `mmlab.executors.part_name`)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from mmlab.methods import register_method

    for name, target, overrides in job.registered:
        register_method(name, target, json.loads(overrides))
    data = _cached_data(job.data) if isinstance(job.data, str) else job.data
    data = method_input(job.name, data, job.device)
    method = train_method(job.name, data, job.run_dir, job.overrides, job.device, job.seed, job.preset, progress,
                          job.checkpoint_seconds)
    return _evaluate_parts(method, job.label or job.name, data, job.pairs(), job.seed, job.device, progress)


@functools.lru_cache(maxsize=4)
def _cached_data(name: str) -> MMDataset:
    return load_dataset(name)


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
    repeated = sorted({m for m in methods if list(methods).count(m) > 1})
    if repeated:
        raise ConfigError(f"--methods: {repeated} given more than once (each method and seed is one run folder)")


def _suite_entries(suite: Mapping[str, str | Sequence[str]] | None, out: Path) -> list[tuple]:
    suite = dict(FULL_SUITE if suite is None else suite)
    if not suite:
        raise ConfigError("suite: expected at least one dataset")
    datasets = [_data(key) for key in suite]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ConfigError(f"suite: dataset names {names} repeat; expected one entry per dataset")
    return [(key, d, p, out / d.name) for key, d, p in zip(suite, datasets, suite.values())]


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
    executor: str = "inline",
    resume: bool = False,
    slurm: SlurmOptions | None = None,
) -> dict[str, list[Path]]:
    """Compare ``methods`` on several datasets at once: ``suite`` maps a dataset name (or a
    BYO ``.npz`` path) to its protocols; the default, `FULL_SUITE`, is the full comparison.

    Every (dataset, seed, method) job goes to one ``executor`` (`mmlab.executors`: "inline" with
    ``workers`` processes, "local" processes, or a "slurm" array with ``slurm`` resources). Each
    dataset gets ``out/<dataset>/results.csv`` and ``results.md``, its runs under
    ``out/<dataset>/runs/<method>/seed<k>/`` and its jobs' rows under
    ``out/<dataset>/jobs/<method>/seed<k>/``; ``out/timing.csv`` lists the seconds of every job
    and the wall time. ``resume``: see `compare`. Returns the written paths per dataset name.
    """
    entries = _suite_entries(suite, Path(out))
    return _compare(entries, methods, seeds, Path(out), overrides, device, preset, workers, progress,
                    checkpoint_seconds, test_splits, executor, resume, slurm)


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
    executor: str = "inline",
    resume: bool = False,
    slurm: SlurmOptions | None = None,
) -> list[Path]:
    """Train every method for every seed and evaluate all of them on the same seeded test masks.

    Writes ``out/results.csv`` (one row per dataset, method, protocol, condition, seed),
    ``out/results.md`` (mean ± std over seeds) and ``out/timing.csv``; returns the results'
    paths. ``test_splits``: the test splits to evaluate on (e.g. ``("test", "test_ood")``; a
    ``split`` column tells them apart); training never reads any of them.

    Each (method, seed) is one job of ``executor`` (`mmlab.executors`): "inline" runs it in
    this process, or with ``workers > 1`` in parallel spawned processes, one torch thread each;
    "local" runs each as a local process; "slurm" submits them as one job array (``slurm``:
    `SlurmOptions`). The rows are the same for every executor. A job writes its rows into
    ``out/jobs/<method>/seed<k>/`` (one file per test split and protocol, never overwritten),
    so a killed run resumes: the same call skips finished jobs and retries the others. An
    existing ``results.csv`` is refused unless ``resume``, which adds methods, seeds or
    protocols to the folder, reuses every finished job and rewrites the aggregated files.
    """
    written = _compare([(data, _data(data), protocol, Path(out))], methods, seeds, Path(out), overrides, device, preset,
                       workers, progress, checkpoint_seconds, test_splits, executor, resume, slurm)
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


def _digest(overrides: Sequence[str]) -> str:
    """Eight hex digits naming a set of grid overrides (a sweep job's folder suffix)."""
    return hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:8]


def _plan_jobs(entries, plans, methods, seeds, overrides, device, preset, workers, checkpoint_seconds,
               test_splits, executor, grid) -> list[_Job]:
    """Every (dataset, seed, grid point, method) job once, in that order."""
    routed = _split_overrides(overrides, methods)
    remote = workers > 1 or executor != "inline"  # workers reload a named dataset rather than receive a copy
    registered = _registrations()
    jobs, seen = [], set()
    for group, ((entry, data, _, _), (protocols, folder)) in enumerate(zip(entries, plans)):
        for seed in seeds:
            for point in grid:
                extra_of = _split_overrides(point, methods)
                for name in methods:
                    extra = tuple(extra_of[name])
                    if (group, int(seed), name, extra) in seen:
                        continue
                    seen.add((group, int(seed), name, extra))
                    tag = f"seed{seed}" + (f"-{_digest(extra)}" if extra else "")
                    label = f"{name}[{','.join(o.lstrip('-') for o in extra)}]" if extra else name
                    jobs.append(_Job(entry if remote and isinstance(entry, str) else data, name, int(seed),
                                     folder / "runs" / name / tag, (*routed[name], *extra), tuple(protocols), device,
                                     preset, group, checkpoint_seconds, test_splits, label=label,
                                     registered=registered))
    return jobs


def _registrations() -> tuple[tuple[str, str, str], ...]:
    """`mmlab.methods.added_methods` as (name, target, overrides as JSON) for the jobs."""
    from mmlab.methods import added_methods

    out = []
    for name, (target, overrides) in sorted(added_methods().items()):
        try:
            out.append((name, target, json.dumps(overrides, sort_keys=True)))
        except TypeError as err:
            raise ConfigError(f"register_method({name!r}): its overrides must be JSON values (numbers, strings, "
                              f"lists, dicts) to reach the compare's jobs; {err}") from None
    return tuple(out)


def _write_results(rows: list[dict], folder: Path) -> list[Path]:
    """``results.csv`` and ``results.md`` of ``rows`` into ``folder``, each replaced atomically."""
    import shutil
    import tempfile

    from mmlab import evaluate as ev

    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".results-"))
    try:
        paths = []
        for path in ev.write_results(rows, tmp).values():
            os.replace(path, folder / path.name)
            paths.append(folder / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def _compare(entries, methods, seeds, out: Path, overrides, device, preset, workers, progress,
             checkpoint_seconds: float = 30.0, test_splits: Sequence[str] = ("test",), executor: str = "inline",
             resume: bool = False, slurm: SlurmOptions | None = None,
             grid: Sequence[Sequence[str]] = ((),)) -> dict[str, list[Path]]:
    """`compare` / `compare_suite` / `sweep`: ``entries`` are (name or dataset, dataset, protocols,
    folder); ``grid`` lists the override sets of a sweep (each set with each method is a job)."""
    ex.check_executor(executor, workers)
    _check_methods(methods)
    _check_overrides(methods, overrides, preset, grid)
    if not seeds:
        raise ConfigError("--seeds: expected at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: {sorted({s for s in seeds if list(seeds).count(s) > 1})} given more than once")
    plans = [(_check_protocols(protocols), folder) for _, _, protocols, folder in entries]
    timing = out / "timing.csv"
    if not resume:
        for path in [*(folder / "results.csv" for _, folder in plans), timing]:
            if path.exists():
                raise DataError(f"{path} exists: pass --resume (resume=True) to add methods, seeds or protocols to "
                                "this folder, reusing its finished jobs, or choose a new --out folder "
                                "(results are never overwritten)")
    datasets = [data for _, data, _, _ in entries]
    test_splits = _check_test_splits(test_splits, datasets)
    # one compare, sweep or suite writes a folder at a time: a second one fails at once, naming the first
    with FolderLock(out, "compare folder"):
        return _run_compare(entries, datasets, plans, methods, seeds, out, timing, overrides, device, preset, workers,
                            progress, checkpoint_seconds, test_splits, executor, resume, slurm, grid)


def _run_compare(entries, datasets, plans, methods, seeds, out, timing, overrides, device, preset, workers, progress,
                 checkpoint_seconds, test_splits, executor, resume, slurm, grid) -> dict[str, list[Path]]:
    from mmlab.methods.oracle import has_oracle, oracle_of

    jobs = _plan_jobs(entries, plans, methods, seeds, overrides, device, preset, workers, checkpoint_seconds,
                      test_splits, executor, grid)
    started = time.time()
    tasks, planned = [], [[] for _ in plans]
    for job in jobs:
        data, root = datasets[job.group], plans[job.group][1] / "jobs"
        folder = root / job.name / job.run_dir.name
        ex.claim(folder, {"dataset": data.name, "method": job.name, "seed": job.seed, "overrides": list(job.overrides),
                          "preset": job.preset})
        parts = [ex.part_name(s, p) for s, p in job.pairs()]
        planned[job.group].append({"job": f"{job.name}/{folder.name}", "method": job.label or job.name,
                                   "seed": job.seed, "parts": parts, "rank": 0})
        lacking = set(ex.missing_parts(folder, parts))
        todo = tuple(pair for pair, part in zip(job.pairs(), parts) if part in lacking)
        tasks.append(ex.Task(f"{data.name} {job.label or job.name} seed {job.seed}", folder,
                             tuple(ex.part_name(*pair) for pair in todo), _run_job, (replace(job, parts=todo),)))
    for group, (data, (protocols, folder)) in enumerate(zip(datasets, plans)):
        kept = [p for p in protocols if p != "generation"]
        if has_oracle(data) and kept:  # the Bayes oracle on the same masks: cheap, computed here
            oracle = None
            for seed in seeds:
                ofolder = folder / "jobs" / ORACLE / f"seed{seed}"
                ex.claim(ofolder, {"dataset": data.name, "method": ORACLE, "seed": int(seed)})
                pairs = [(s, p) for s in test_splits for p in kept]
                parts = [ex.part_name(s, p) for s, p in pairs]
                planned[group].append({"job": f"{ORACLE}/{ofolder.name}", "method": ORACLE, "seed": int(seed),
                                       "parts": parts, "rank": 1})
                lacking = set(ex.missing_parts(ofolder, parts))
                if lacking:
                    oracle = oracle or oracle_of(data)
                    todo = [pair for pair, part in zip(pairs, parts) if part in lacking]
                    for part, rows in _evaluate_parts(oracle, ORACLE, data, todo, int(seed), "cpu").items():
                        ex.write_rows(ex.rows_path(ofolder, part), rows)
        ex.update_plan(folder / "jobs", planned[group])
    spent = ex.execute(tasks, executor, workers, slurm, log_root=out, progress=progress)
    written: dict[str, list[Path]] = {}
    cells = []
    for data, (_, folder) in zip(datasets, plans):
        rows, missing = ex.gather(folder / "jobs")
        if missing:
            raise DataError(f"{folder}: jobs without rows: {'; '.join(missing)}")
        written[data.name] = _write_results(rows, folder)
        plan = json.loads((folder / "jobs" / ex.PLAN).read_text())["jobs"]
        for e in (e for e in plan if e.get("rank", 0) == 0):
            secs = ex.job_seconds(folder / "jobs" / e["job"])
            cells.append([data.name, e["method"], e["seed"], "" if secs is None else f"{secs:.1f}"])
    wall = time.time() - started
    atomic_write_text(timing, csv_text(["dataset", "method", "seed", "seconds"], [*cells, ["all", "all", "all", f"{wall:.1f}"]]))
    if progress:
        ran = sum(1 for t in tasks if t.parts)
        print(f"compare: {len(tasks)} job(s) ({ran} run, {len(tasks) - ran} finished before) on {len(entries)} "
              f"dataset(s) in {wall:.0f} s wall ({sum(spent):.0f} s of jobs, executor {executor}, {workers} worker(s)); "
              f"times in {timing}")
    return written


def _evaluate_parts(method, name: str, data: MMDataset, pairs: Sequence[tuple[str, str]], seed: int,
                    device: str, progress: bool = False) -> dict[str, list[dict]]:
    """Rows per (test split, protocol) pair, through `mmlab.evaluate` (the generation protocol only
    for methods with the completion interface, `Method.completes`), keyed by `part_name`; with
    ``progress`` an evaluation that takes a while shows its conditions' progress."""
    from mmlab import evaluate as ev

    method.name = name
    train = data.subset("train")
    out: dict[str, list[dict]] = {}
    for split, protocol in pairs:
        rows: list[dict] = []
        if protocol == "generation":
            if callable(getattr(method, "completes", None)) and method.completes():
                rows = ev.generation_table(method, data, split=split, seed=seed, device=device)
        else:
            conds = conditions_for(protocol, data)
            rows = ev.evaluate(method, data, split=split, conditions=conds, seed=seed, train=train, device=device,
                               progress=progress)
        out[ex.part_name(split, protocol)] = list(rows)
    return out


# ------------------------------------------------------------------------------ sweeps
MAX_GRID_POINTS = 10_000  # a sweep file's grid; more is a typo or a job for several files
SWEEP_KEYS = ("datasets", "methods", "seeds", "overrides", "grid", "test_splits", "device", "preset",
              "checkpoint_seconds")


def _override_text(key: str, value: Any) -> str:
    """``--key=value`` with the value as YAML reads it back (strings as they are)."""
    return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"


def load_sweep(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read and check a sweep file (YAML or JSON), e.g.::

        datasets: {synthetic: [patterns, rates], handwritten: [full]}   # name or .npz path: protocols
        methods: [zero_fill, admc]          # default: every compared method
        seeds: [1111, 1112, 1113]           # default: 1111-1115
        overrides: {train.epochs: 20}       # every job (or a list of "--key=value")
        grid:                               # dotted key: values; every combination is a job
          admc.diffusion.start_step: [30, 50]
          train.lr: [0.001, 0.0003]

    Also ``test_splits``, ``device``, ``preset``, ``checkpoint_seconds``. Returns the checked
    values with defaults filled in; `ConfigError` names the file and the key."""
    where = "sweep config"
    if not isinstance(config, Mapping):
        import yaml

        path = Path(config)
        where = str(path)
        from mmlab.config import MAX_CONFIG_BYTES, safe_yaml

        try:
            if path.stat().st_size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: sweep file larger than {MAX_CONFIG_BYTES} bytes")
            config = safe_yaml(path.read_text(encoding="utf-8"))  # no aliases, bounded nesting
        except OSError as err:
            raise ConfigError(f"{path}: cannot read the sweep file ({err.strerror})") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not a UTF-8 text file (byte {err.start}); expected a YAML sweep file") from None
        except (yaml.YAMLError, RecursionError) as err:
            raise ConfigError(f"{path}: not valid YAML or JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: expected a mapping with keys {list(SWEEP_KEYS)}, got {type(config).__name__}")
    unknown = sorted(set(config) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {list(SWEEP_KEYS)}")

    def names(key: str, default: Sequence[str]) -> list[str]:
        value = config.get(key, default)
        value = value.split(",") if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: {key}: expected a non-empty list of names, got {value!r}")
        return list(value)

    datasets = config.get("datasets")
    if isinstance(datasets, (list, tuple)) and all(isinstance(d, str) for d in datasets):
        datasets = {d: "patterns" for d in datasets}
    if not isinstance(datasets, Mapping) or not datasets:
        raise ConfigError(f"{where}: datasets: expected a mapping of dataset name or .npz path to protocols, e.g. "
                          f"{{synthetic: [patterns, rates]}}, got {datasets!r}")
    suite = {}
    for name, protocols in datasets.items():
        protocols = protocols.split(",") if isinstance(protocols, str) else protocols
        if not isinstance(protocols, (list, tuple)) or not protocols:
            raise ConfigError(f"{where}: datasets.{name}: expected a list of protocols {list(PROTOCOLS)}, got {protocols!r}")
        try:
            suite[str(name)] = tuple(_check_protocols(list(protocols)))
        except ConfigError as err:
            raise ConfigError(f"{where}: datasets.{name}: {err}") from None
    seeds = config.get("seeds", list(DEFAULT_SEEDS))
    if not isinstance(seeds, (list, tuple)) or not seeds or len(set(seeds)) != len(seeds) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seeds):
        raise ConfigError(f"{where}: seeds: expected a list of distinct integers in [0, 2^63), got {seeds!r}")
    overrides = config.get("overrides") or []
    if isinstance(overrides, Mapping):
        overrides = [_override_text(str(k), v) for k, v in overrides.items()]
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(o, str) and o.startswith("--") and "=" in o
                                                           for o in overrides):
        raise ConfigError(f"{where}: overrides: expected a mapping {{key: value}} or a list of '--key=value', "
                          f"got {overrides!r}")
    grid = config.get("grid") or {}
    if not isinstance(grid, Mapping) or not all(isinstance(v, (list, tuple)) and v for v in grid.values()):
        raise ConfigError(f"{where}: grid: expected a mapping of dotted key to a non-empty list of values, got {grid!r}")
    n_points = math.prod(len(v) for v in grid.values())
    if n_points > MAX_GRID_POINTS:
        raise ConfigError(f"{where}: grid: {n_points} points (the product of the lists' lengths); at most "
                          f"{MAX_GRID_POINTS} per sweep file, split it into several")
    points = [tuple(_override_text(str(k), v) for k, v in zip(grid, values))
              for values in itertools.product(*grid.values())]
    preset = config.get("preset")
    if preset is not None and not (isinstance(preset, str) and preset):
        raise ConfigError(f"{where}: preset: expected a preset name such as 'paper', got {preset!r}")
    seconds = config.get("checkpoint_seconds", 30.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise ConfigError(f"{where}: checkpoint_seconds: expected a number >= 0, got {seconds!r}")
    return {"suite": suite, "methods": names("methods", COMPARISON_METHODS), "seeds": [int(s) for s in seeds],
            "overrides": list(overrides), "grid": points or [()], "test_splits": names("test_splits", ["test"]),
            "device": check_device_name(config.get("device", "cpu"), f"{where}: device"), "preset": preset,
            "checkpoint_seconds": float(seconds)}


def sweep(
    config: str | Path | Mapping[str, Any],
    out: str | Path,
    overrides: Iterable[str] = (),
    executor: str = "inline",
    workers: int = 1,
    resume: bool = False,
    slurm: SlurmOptions | None = None,
    progress: bool = True,
) -> dict[str, list[Path]]:
    """A grid over datasets x methods x seeds x dotted overrides (`load_sweep`), one job each.

    Like `compare_suite` (``out/<dataset>/results.csv``, ``results.md``, ``jobs/``, ``runs/``,
    ``out/timing.csv``); a job of a grid point is ``jobs/<method>/seed<k>-<hash of its overrides>/``
    and its rows name the method with the point's values, e.g. ``admc[diffusion.start_step=30]``.
    ``overrides`` (the command line's) follow the file's. Returns the written paths per dataset."""
    cfg = load_sweep(config)
    entries = _suite_entries(cfg["suite"], Path(out))
    return _compare(entries, cfg["methods"], cfg["seeds"], Path(out), [*cfg["overrides"], *overrides], cfg["device"],
                    cfg["preset"], workers, progress, cfg["checkpoint_seconds"], cfg["test_splits"], executor, resume,
                    slurm, cfg["grid"])
