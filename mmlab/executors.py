"""Executors: run jobs in this process, as local processes, or as a Slurm job array, through one
interface built on submitit (facebookincubator/submitit); every job writes its rows atomically into
its own folder, so a killed sweep resumes where it stopped.

A `Task` is one job: a picklable function ``fn(*args, progress=..., threads=...)`` that returns
its result rows per *part* (one test split x protocol, e.g. ``"test.patterns"``), and the job's
folder::

    <job>/spec.json            what the job is (dataset, method, seed, overrides, preset); written once
    <job>/rows.<part>.csv      its rows, one file per part, each written once (temp file + rename)
    <job>/status.json          running / done / failed, seconds, host, executor, job id, log files
    <job>/error.txt            the traceback of the last failure
    <job>/logs/                submitit's pickles, stdout and stderr (executor "local")

`run_task` is the function every executor runs. A job is *finished* when every part it is asked
for has its rows file; `execute` skips finished jobs and runs the others, so a re-run retries the
failed and the killed ones and leaves finished rows alone. Executors:

- ``inline``: in this process, or on a pool of ``workers`` spawned processes (one torch thread each);
- ``local``: each job a local process through ``submitit.LocalExecutor``, ``workers`` at a time,
  one torch thread each;
- ``slurm``: one Slurm job array (``submitit.SlurmExecutor``, options in `SlurmOptions`), its
  logs in ``<log_root>/slurm/`` (``status.json`` of each job names its files).

A folder's ``plan.json`` (`update_plan`) lists its jobs and their parts, so `gather` can collect
the rows of a finished or partial sweep and say which jobs are missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mmlab.errors import ConfigError, DataError, MMLabError
from mmlab.progress import progress as progress_bar
from mmlab.tables import records_csv_text
from mmlab.utils import atomic_write_text

EXECUTORS = ("inline", "local", "slurm")
SPEC, STATUS, ERROR, PLAN = "spec.json", "status.json", "error.txt", "plan.json"
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default (2 min) would kill real jobs
POLL_S = {"local": 0.5, "slurm": 30.0}


class JobsFailed(MMLabError):
    """Some jobs of a sweep failed; the rows of the others are on disk and a re-run retries these."""


# ------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class SlurmOptions:
    """Resources of every job of a Slurm array (``--slurm.*`` on the command line)."""

    partition: str | None = None  # None: the cluster's default partition
    gpus_per_job: int = 0
    cpus_per_job: int = 1  # also the job's torch threads
    array_parallelism: int = 32  # jobs of the array running at once (sbatch --array=0-N%P)
    time: int = 240  # minutes
    mem: float = 16.0  # GB
    account: str | None = None

    def __post_init__(self) -> None:
        for key, low in (("gpus_per_job", 0), ("cpus_per_job", 1), ("array_parallelism", 1), ("time", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"--slurm.{key.replace('_', '-')}: expected an integer >= {low}, got {value!r}")
        if not isinstance(self.mem, (int, float)) or not self.mem > 0:
            raise ConfigError(f"--slurm.mem: expected a positive number of GB, got {self.mem!r}")

    def parameters(self, name: str = "mmlab") -> dict[str, Any]:
        """``submitit.SlurmExecutor.update_parameters`` keywords (the ``#SBATCH`` lines)."""
        mem = f"{int(self.mem)}GB" if float(self.mem).is_integer() else f"{int(self.mem * 1024)}MB"
        params: dict[str, Any] = {
            "job_name": name, "time": self.time, "mem": mem, "cpus_per_task": self.cpus_per_job,
            "array_parallelism": self.array_parallelism,
            "setup": [f"export OMP_NUM_THREADS={self.cpus_per_job}", f"export MKL_NUM_THREADS={self.cpus_per_job}"],
        }
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.account:
            params["account"] = self.account
        return params


def check_executor(executor: str, workers: int = 1) -> None:
    """`ConfigError` naming the parameter unless ``executor`` and ``workers`` fit together."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: expected one of {list(EXECUTORS)}, got {executor!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers: expected an integer >= 1, got {workers}")
    if executor == "slurm" and workers > 1:
        raise ConfigError("--workers: applies to --executor inline or local; a Slurm array runs "
                          "--slurm.array-parallelism jobs at once")
    if executor == "slurm" and shutil.which("srun") is None:
        raise ConfigError("--executor slurm: no Slurm here (srun is not on PATH); run on the cluster's login "
                          "node, or use --executor local or inline")


# ------------------------------------------------------------------------------ a job's folder
@dataclass(frozen=True)
class Task:
    """One job: ``fn(*args, progress=..., threads=...)`` returns ``{part: rows}`` for ``parts``."""

    name: str  # for messages, e.g. "synthetic zero_fill seed 5"
    folder: Path
    parts: tuple[str, ...]
    fn: Callable[..., Mapping[str, list[dict]]]
    args: tuple = field(default=())


def part_name(split: str, protocol: str) -> str:
    return f"{split}.{protocol}"


def rows_path(folder: str | Path, part: str) -> Path:
    return Path(folder) / f"rows.{re.sub(r'[^A-Za-z0-9_.-]+', '_', part)}.csv"


def missing_parts(folder: str | Path, parts: Sequence[str]) -> list[str]:
    """The parts of ``parts`` that have no rows file in ``folder`` yet."""
    return [p for p in parts if not rows_path(folder, p).is_file()]


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> bool:
    """Write one part's rows (floats as ``repr``, like `mmlab.evaluate.write_results`) unless the
    file exists (rows are never overwritten); returns whether it wrote."""
    if path.exists():
        return False
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [{k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()} for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, records_csv_text(cells, cols) if rows else "")
    return True


def read_rows(path: Path) -> list[dict[str, Any]]:
    from mmlab.evaluate import read_results

    return read_results(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _plan_jobs(root: Path) -> list[dict[str, Any]]:
    """The job entries of ``root/plan.json`` ([] when there is none); `DataError` naming the
    file when it is not a plan mmlab wrote."""
    path = root / PLAN
    if not path.exists():
        return []
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable job plan ({err}); expected the plan.json `mmlab compare` writes") from None
    jobs = plan.get("jobs") if isinstance(plan, dict) else None
    if not isinstance(jobs, list) or not all(isinstance(e, dict) and isinstance(e.get("job"), str)
                                             and isinstance(e.get("parts"), list) for e in jobs):
        raise DataError(f"{path}: expected {{\"jobs\": [{{\"job\": folder, \"parts\": [...], ...}}]}}, "
                        "the plan `mmlab compare` writes")
    return jobs


def claim(folder: str | Path, spec: Mapping[str, Any]) -> None:
    """Record what the job in ``folder`` is (``spec.json``); a `ConfigError` when the folder
    already holds rows of a different job (e.g. ``--resume`` with other overrides). A folder
    without rows (its job failed or never ran) takes the new spec."""
    path = Path(folder) / SPEC
    spec = json.loads(json.dumps(dict(spec)))
    if path.is_file():
        old = _read_json(path)
        diff = sorted(k for k in {*old, *spec} if old.get(k) != spec.get(k))
        if diff and any(Path(folder).glob("rows.*.csv")):
            raise ConfigError(f"{path}: this job folder was run with {', '.join(f'{k}={old.get(k)!r}' for k in diff)}, "
                              f"now asked for {', '.join(f'{k}={spec.get(k)!r}' for k in diff)}; "
                              "resume with the same settings or choose a new --out folder")
        if not diff:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(spec, indent=1))


def job_seconds(folder: str | Path) -> float | None:
    """Seconds the job in ``folder`` has spent over its finished runs (None if unknown)."""
    return _read_json(Path(folder) / STATUS).get("seconds")


def _submitit_info() -> dict[str, Any]:
    """The executor, job id and log files of the submitit job we run in ({"executor": "inline"} outside one)."""
    if os.environ.get("SUBMITIT_EXECUTOR") not in ("local", "slurm"):
        return {"executor": "inline"}
    try:
        import submitit

        env = submitit.JobEnvironment()
        return {"executor": env.cluster, "job_id": env.job_id,
                "logs": [str(env.paths.stdout), str(env.paths.stderr)]}
    except Exception:  # noqa: BLE001 - the record is informative only
        return {"executor": os.environ["SUBMITIT_EXECUTOR"]}


def run_task(task: Task, progress: bool = False, threads: int | None = None) -> float:
    """The job function of every executor: run ``task``, write each part's rows atomically and
    record the outcome in ``status.json`` (and the traceback in ``error.txt``); returns seconds."""
    folder = Path(task.folder)
    folder.mkdir(parents=True, exist_ok=True)
    status = _read_json(folder / STATUS)
    runs = list(status.get("runs", []))
    run = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "parts": list(task.parts), "host": socket.gethostname(),
           "pid": os.getpid(), **_submitit_info(), "status": "running"}
    runs.append(run)
    done_s = float(status.get("seconds") or 0.0)

    def record(state: str) -> None:
        atomic_write_text(folder / STATUS, json.dumps({"status": state, "seconds": round(done_s, 1), "runs": runs},
                                                      indent=1))

    record("running")
    t0 = time.time()
    try:
        result = task.fn(*task.args, progress=progress, threads=threads)
        absent = [p for p in task.parts if p not in result]
        if absent:
            raise RuntimeError(f"job {task.name} returned no rows for part(s) {absent}")
        for part in task.parts:
            write_rows(rows_path(folder, part), result[part])
    except Exception as err:
        run.update(status="failed", seconds=round(time.time() - t0, 1), error=f"{type(err).__name__}: {err}")
        atomic_write_text(folder / ERROR, traceback.format_exc())
        record("failed")
        raise
    except BaseException:  # Ctrl-C, SIGTERM through the CLI, or a cancelled job: rerun on resume
        run.update(status="interrupted", seconds=round(time.time() - t0, 1))
        record("interrupted")
        raise
    seconds = time.time() - t0
    run.update(status="done", seconds=round(seconds, 1))
    done_s += seconds
    record("done")
    return seconds


def _failure(task: Task, job: Any = None) -> str | None:
    """None when ``task`` left every part on disk, else what went wrong (and where to look)."""
    if not missing_parts(task.folder, task.parts):
        return None
    runs = _read_json(Path(task.folder) / STATUS).get("runs") or [{}]
    last = runs[-1]
    what = last.get("error")
    if not what and job is not None:
        try:
            exc = job.exception()
            what = str(exc).strip().splitlines()[-1] if exc is not None else None
        except Exception as err:  # noqa: BLE001 - the job may have died before reporting
            what = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
        what = what or f"ended without writing its rows (state {getattr(job, 'state', '?')})"
    where = [str(Path(task.folder) / ERROR)] if (Path(task.folder) / ERROR).is_file() else []
    if job is not None:
        where += [str(job.paths.stderr).replace("%j", str(job.job_id)).replace("%t", "0")]
    return f"{what or 'ended without writing its rows'}" + (f" (see {', '.join(where)})" if where else "")


# ------------------------------------------------------------------------------ executors
def execute(tasks: Sequence[Task], executor: str = "inline", workers: int = 1, slurm: SlurmOptions | None = None,
            log_root: str | Path | None = None, progress: bool = True, poll_s: float | None = None) -> list[float]:
    """Run the unfinished ``tasks``; returns each task's seconds in this call (0 for one skipped).

    When jobs fail, the others still run; then `JobsFailed` lists the failed ones (their errors and
    log files). Their rows are missing, so the same call again retries exactly them."""
    check_executor(executor, workers)
    todo = [i for i, t in enumerate(tasks) if missing_parts(t.folder, t.parts)]
    seconds = [0.0] * len(tasks)
    if not todo:
        return seconds
    run = [tasks[i] for i in todo]
    cause: BaseException | None = None
    if executor == "inline":
        spent, errors, cause = _run_inline(run, workers, progress)
    elif executor == "local":
        spent, errors = _run_local(run, workers, progress, poll_s or POLL_S["local"])
    else:
        root = Path(log_root) if log_root is not None else Path(run[0].folder).parent
        jobs = submit_slurm(run, root / "slurm", slurm or SlurmOptions())
        spent, errors = wait_jobs(run, jobs, progress, poll_s or POLL_S["slurm"])
    for i, s in zip(todo, spent):
        seconds[i] = s
    failed = [(t, msg) for t, msg in zip(run, errors) if msg]
    if failed:
        lines = "\n".join(f"  {t.name}: {msg}" for t, msg in failed[:20])
        more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
        raise JobsFailed(f"{len(failed)} of {len(run)} job(s) failed; the rows of the others are on disk and "
                         f"the same command again reruns only the failed ones:\n{lines}{more}") from cause
    return seconds


def _last_seconds(task: Task) -> float:
    """Seconds of the job's latest run, from its ``status.json``."""
    runs = _read_json(Path(task.folder) / STATUS).get("runs") or [{}]
    return float(runs[-1].get("seconds") or 0.0)


def _run_inline(tasks: Sequence[Task], workers: int,
                progress: bool) -> tuple[list[float], list[str | None], BaseException | None]:
    """In this process (``workers == 1``) or on a pool of spawned processes, one torch thread each;
    returns seconds, errors and the first exception raised in this process."""
    spent, errors = [0.0] * len(tasks), [None] * len(tasks)
    if workers == 1:
        cause = None
        bar = progress_bar(tasks, desc="jobs", disable=not progress or len(tasks) < 2)
        for i, task in enumerate(bar):
            try:
                spent[i] = run_task(task, progress=progress)
            except Exception as err:  # noqa: BLE001 - recorded in the job's folder, reported at the end
                errors[i], cause = _failure(task) or "failed", cause or err
        return spent, errors, cause
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_task, task, False, 1): i for i, task in enumerate(tasks)}
        bar = progress_bar(total=len(tasks), desc=f"jobs ({workers} workers)", disable=not progress)
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    spent[i] = fut.result()
                    bar.set_postfix_str(f"{tasks[i].name}: {spent[i]:.0f} s")
                except Exception:  # noqa: BLE001
                    errors[i] = _failure(tasks[i]) or "failed"
                bar.update()
        except BaseException:
            _stop_workers(pool)  # their unfinished jobs are rerun on resume
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
    return spent, errors, None


def _stop_workers(pool: Any) -> None:
    """Terminate a process pool's workers (an interrupted run must not leave them training)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()


def _run_local(tasks: Sequence[Task], workers: int, progress: bool,
               poll_s: float) -> tuple[list[float], list[str | None]]:
    """Each task a local process through ``submitit.LocalExecutor`` (logs in ``<job>/logs/``),
    at most ``workers`` at once, one torch thread each."""
    import submitit

    spent, errors = [0.0] * len(tasks), [None] * len(tasks)
    queue, running = list(range(len(tasks))), {}  # task index -> submitit job
    bar = progress_bar(total=len(tasks), desc=f"jobs (local, {workers} at a time)", disable=not progress)
    try:
        while queue or running:
            while queue and len(running) < workers:
                i = queue.pop(0)
                ex = submitit.LocalExecutor(folder=Path(tasks[i].folder) / "logs")
                ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
                running[i] = ex.submit(run_task, tasks[i], False, 1)
            for i, job in list(running.items()):
                if job.done():
                    del running[i]
                    spent[i], errors[i] = _last_seconds(tasks[i]), _failure(tasks[i], job)
                    bar.update()
            if running:
                time.sleep(poll_s)
    except BaseException:
        _cancel_local({i: (job, tasks[i]) for i, job in running.items()})
        raise
    finally:
        bar.close()
    return spent, errors


def _cancel_local(running: Mapping[int, tuple[Any, Task]], grace_s: float = 3.0) -> None:
    """Stop running local jobs: submitit's cancel (SIGINT to its wrapper process), then SIGKILL
    to whatever is left after ``grace_s``: the job process named in its status.json and the
    wrapper. SIGINT alone is not enough: a process started from a background shell inherits
    SIGINT as ignored (and submitit's job process ignores SIGTERM, Slurm's preemption notice)."""
    for job, _ in running.values():
        job.cancel(check=False)
    pids = []
    for job, task in running.values():
        wrapper = getattr(job, "_process", None)
        if wrapper is None:
            continue
        runs = _read_json(Path(task.folder) / STATUS).get("runs") or [{}]
        child = runs[-1].get("pid")  # the job process, if it is this wrapper's child (not a reused pid)
        pids += [wrapper.pid] + ([child] if isinstance(child, int) and _parent(child) == wrapper.pid else [])
    deadline = time.time() + grace_s
    while time.time() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for job, _ in running.values():
        wrapper = getattr(job, "_process", None)
        if wrapper is not None:
            try:
                wrapper.wait(timeout=grace_s)
            except Exception:  # noqa: BLE001 (a wrapper we could not reap stays a zombie until we exit)
                pass


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of Linux ``/proc/<pid>/stat`` after the command name (state, ppid, ...), None
    when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _parent(pid: int) -> int | None:
    """The parent pid of ``pid``, None when unknown."""
    fields = _proc_stat(pid)
    return int(fields[1]) if fields and fields[1].isdigit() else None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (without ``/proc``: whether it exists)."""
    fields = _proc_stat(pid)
    if fields is not None:
        return fields[0] != "Z"
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def submit_slurm(tasks: Sequence[Task], folder: str | Path, options: SlurmOptions) -> list[Any]:
    """Submit ``tasks`` as one Slurm job array (submitit); its logs and pickles go to ``folder``."""
    import submitit

    try:
        ex = submitit.SlurmExecutor(folder=Path(folder))
    except RuntimeError as err:
        raise ConfigError(f"--executor slurm: no Slurm here ({err}); run on the cluster's login node, "
                          "or use --executor local or inline") from None
    ex.update_parameters(**options.parameters())
    with ex.batch():
        jobs = [ex.submit(run_task, task, False, options.cpus_per_job) for task in tasks]
    return jobs


def wait_jobs(tasks: Sequence[Task], jobs: Sequence[Any], progress: bool = True,
              poll_s: float = 30.0) -> tuple[list[float], list[str | None]]:
    """Wait for submitted jobs; returns (seconds, error or None) per task. Interrupting leaves the
    jobs running on the cluster: re-run the same command after they end to collect their rows."""
    pending = set(range(len(jobs)))
    bar = progress_bar(total=len(jobs), desc="jobs (slurm)", disable=not progress)
    if progress and jobs:
        print(f"submitted {len(jobs)} job(s), first id {jobs[0].job_id}", flush=True)
    try:
        while pending:
            for i in sorted(pending):
                if jobs[i].done():
                    pending.discard(i)
                    bar.update()
            if pending:
                time.sleep(poll_s)
    finally:
        bar.close()
    return [_last_seconds(t) for t in tasks], [_failure(t, j) for t, j in zip(tasks, jobs)]


def run_call(fn: Callable[..., Any], args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
             executor: str = "inline", folder: str | Path = ".", slurm: SlurmOptions | None = None) -> Any:
    """``fn(*args, **kwargs)`` as one job of ``executor`` (its logs in ``folder``); waits and returns
    its result, or raises `MMLabError` with the job's error and log file."""
    check_executor(executor)
    kwargs = dict(kwargs or {})
    if executor == "inline":
        return fn(*args, **kwargs)
    import submitit

    if executor == "local":
        ex: Any = submitit.LocalExecutor(folder=Path(folder))
        ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    else:
        try:
            ex = submitit.SlurmExecutor(folder=Path(folder))
        except RuntimeError as err:
            raise ConfigError(f"--executor slurm: no Slurm here ({err}); use --executor local or inline") from None
        ex.update_parameters(**(slurm or SlurmOptions()).parameters())
    job = ex.submit(fn, *args, **kwargs)
    try:
        return job.result()
    except Exception as err:  # noqa: BLE001 - submitit wraps the job's exception with its traceback
        lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
        raise MMLabError(f"job {job.job_id} failed: {lines[-1] if lines else type(err).__name__} "
                         f"(log: {job.paths.stderr})") from None


# ------------------------------------------------------------------------------ plans
def update_plan(root: str | Path, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Merge ``entries`` into ``root/plan.json`` (written atomically) and return the merged plan.

    An entry is ``{"job": folder relative to root, "method", "seed", "parts": [...], "rank": int}``;
    an entry already planned gains new parts, a new one is appended, and the list is kept sorted by
    ``rank`` (the Bayes oracle after the methods), so a resumed folder keeps its order."""
    root = Path(root)
    plan = {e["job"]: dict(e) for e in _plan_jobs(root)}
    for e in entries:
        if e["job"] in plan:
            old = plan[e["job"]]
            old["parts"] = list(dict.fromkeys([*old["parts"], *e["parts"]]))
        else:
            plan[e["job"]] = {**e, "parts": list(e["parts"])}
    merged = sorted(plan.values(), key=lambda e: e.get("rank", 0))
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / PLAN, json.dumps({"jobs": merged}, indent=1))
    return merged


def has_plan(root: str | Path) -> bool:
    return (Path(root) / PLAN).is_file()


def missing_jobs(root: str | Path) -> list[str]:
    """Each job of ``root/plan.json`` with parts still missing: ``"zero_fill seed 5: test.rates (folder)"``."""
    root = Path(root)
    out = []
    for e in _plan_jobs(root):
        lacking = missing_parts(root / e["job"], e["parts"])
        if lacking:
            out.append(f"{e.get('method')} seed {e.get('seed')}: {', '.join(lacking)} ({root / e['job']})")
    return out


def gather(root: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of every finished part of the jobs in ``root/plan.json``, in plan order, and
    `missing_jobs` (a finished or a partial sweep)."""
    root = Path(root)
    rows: list[dict[str, Any]] = []
    for e in _plan_jobs(root):
        for part in e["parts"]:
            path = rows_path(root / e["job"], part)
            if path.is_file():
                rows += read_rows(path)
    return _once(rows), missing_jobs(root)


def _once(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reference rows that several completing methods' jobs write alike (``exact_conditional``
    of the generation protocol, `mmlab.evaluate.exact_name`) are kept once per (dataset,
    method, protocol, condition, split, seed)."""
    seen, out = set(), []
    for r in rows:
        if str(r.get("method", "")).startswith("exact_conditional"):
            key = tuple(r.get(c) for c in ("dataset", "method", "protocol", "condition", "split", "seed"))
            if key in seen:
                continue
            seen.add(key)
        out.append(r)
    return out
