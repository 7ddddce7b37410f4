"""Executors (`mmlab.executors`): local processes give the rows of inline runs, a failed or killed
job is rerun and the finished ones are not, `--resume` adds seeds and protocols, a Slurm array
goes through submitit's own (mocked) Slurm machinery, sweeps, and reports of partial sweeps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmlab.cli import main
from mmlab.data.byo import write_npz
from mmlab.data.synthetic import make_synthetic
from mmlab.errors import ConfigError, DataError
from mmlab.evaluate import read_results
from mmlab.executors import JobsFailed, SlurmOptions, Task, read_rows, rows_path, submit_slurm, wait_jobs
from mmlab.experiments import compare, load_sweep
from mmlab.report import build_report, load_results

FAST = ["--train.epochs=2"]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return make_synthetic(preset="tiny")


def _by_key(path):
    return {(r["method"], r["protocol"], r["condition"], r["seed"]): r for r in read_results(path)}


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.glob("jobs/*/seed*/rows.*.csv"))}


def test_local_jobs_give_the_rows_of_inline_and_only_failed_jobs_rerun(tiny, tmp_path):
    """Two local submitit processes at a time, one thread each: the same rows as in this process.
    A failing job leaves the others' rows; the next run retries only it."""
    kw = dict(methods=["reference", "zero_fill"], protocol="patterns", seeds=[5, 6], progress=False)
    compare(tiny, out=tmp_path / "inline", overrides=FAST, **kw)
    out = tmp_path / "local"
    with pytest.raises(JobsFailed, match="2 of 4 job") as err:
        # a job that fails while training (a bad key would be refused before any job runs)
        compare(tiny, out=out, overrides=[*FAST, "--zero_fill.train.lr=1e30"], executor="local", workers=2, **kw)
    assert "zero_fill seed 5" in str(err.value) and "the loss is" in str(err.value)
    done = _mtimes(out)
    assert sorted({p.parent.parent.name + "/" + p.parent.name for p in done}) == [
        "bayes_oracle/seed5", "bayes_oracle/seed6", "reference/seed5", "reference/seed6"]
    assert not (out / "results.csv").exists()
    failed = json.loads((out / "jobs" / "zero_fill" / "seed5" / "status.json").read_text())
    assert failed["status"] == "failed" and "the loss is" in failed["runs"][-1]["error"]
    assert "Traceback" in (out / "jobs" / "zero_fill" / "seed5" / "error.txt").read_text()

    # the fixed command: the failed runs' folders hold the bad config, so they go first (a run
    # folder is only ever resumed with the config it was started with)
    shutil.rmtree(out / "runs" / "zero_fill")
    compare(tiny, out=out, overrides=FAST, executor="local", workers=2, **kw)
    assert {p: t for p, t in _mtimes(out).items() if p in done} == done  # finished jobs were not rerun
    status = json.loads((out / "jobs" / "zero_fill" / "seed5" / "status.json").read_text())
    assert status["status"] == "done" and status["runs"][-1]["executor"] == "local"
    assert list((out / "jobs" / "zero_fill" / "seed5" / "logs").glob("*_log.out"))
    one, two = _by_key(tmp_path / "inline" / "results.csv"), _by_key(out / "results.csv")
    assert one.keys() == two.keys() and {k[0] for k in one} == {"reference", "zero_fill", "bayes_oracle"}
    for k in one:
        assert one[k]["accuracy"] == two[k]["accuracy"], k


def test_resume_reruns_a_killed_job_and_adds_seeds_and_protocols(tiny, tmp_path):
    out = tmp_path / "cmp"
    kw = dict(methods=["reference", "zero_fill"], overrides=FAST, progress=False)
    compare(tiny, protocol="patterns", seeds=[5, 6], out=out, **kw)
    first = (out / "results.csv").read_text()
    before = _mtimes(out)
    killed = out / "jobs" / "zero_fill" / "seed6"
    for p in killed.glob("rows.*.csv"):  # a job killed before it wrote its rows
        p.unlink()
    with pytest.raises(DataError, match="--resume"):
        compare(tiny, protocol="patterns", seeds=[5, 6], out=out, **kw)
    compare(tiny, protocol="patterns", seeds=[5, 6], out=out, resume=True, **kw)
    assert (out / "results.csv").read_text() == first
    after = _mtimes(out)
    assert {p: t for p, t in after.items() if p.parent != killed} == {p: t for p, t in before.items()
                                                                       if p.parent != killed}
    assert len(json.loads((killed / "status.json").read_text())["runs"]) == 2

    compare(tiny, protocol="patterns,rates", seeds=[5, 6, 7], out=out, resume=True, **kw)
    assert {p: t for p, t in _mtimes(out).items() if p in after} == after  # no row rewritten
    rows = read_results(out / "results.csv")
    got = {(r["method"], r["protocol"], r["seed"]) for r in rows}
    assert got == {(m, p, s) for m in ("reference", "zero_fill", "bayes_oracle") for p in ("pattern", "rate_drop")
                   for s in (5, 6, 7)}
    assert len((out / "timing.csv").read_text().splitlines()) == 1 + 6 + 1
    with pytest.raises(ConfigError, match="spec.json"):  # finished jobs never take other overrides
        compare(tiny, ["zero_fill"], seeds=[5], out=out, overrides=["--train.epochs=3"], resume=True, progress=False)


def _toy_job(x: int, progress: bool = False, threads: int | None = None) -> dict:
    return {"test.toy": [{"dataset": "toy", "method": "m", "protocol": "toy", "condition": "c", "seed": x,
                          "accuracy": x / 10, "threads": threads}]}


def test_slurm_array_through_submitits_mocked_slurm(tmp_path):
    """The array is submitted with the requested resources (the sbatch file submitit writes) and
    each job, run by submitit's own job runner, writes its rows."""
    from submitit.core import submission
    from submitit.core.test_core import MockedSubprocess
    from submitit.slurm.slurm import SlurmJob

    opts = SlurmOptions(partition="gpu", gpus_per_job=1, cpus_per_job=2, array_parallelism=2, time=90, mem=8)
    tasks = [Task(f"toy {x}", tmp_path / "jobs" / f"seed{x}", ("test.toy",), _toy_job, (x,)) for x in (1, 2, 3)]
    mock = MockedSubprocess(known_cmds=["srun"])
    try:
        with mock.context():
            jobs = submit_slurm(tasks, tmp_path / "slurm", opts)
            (script,) = (tmp_path / "slurm").glob("*_submission.sh")
            lines = script.read_text().splitlines()
            for want in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=2",
                         "#SBATCH --array=0-2%2", "#SBATCH --time=90", "#SBATCH --mem=8GB", "#SBATCH --job-name=mmlab",
                         "export OMP_NUM_THREADS=2"):
                assert want in lines, (want, lines)
            for job in jobs:
                with mock.job_context(job.job_id):
                    submission.process_job(job.paths.folder)
            spent, errors = wait_jobs(tasks, jobs, progress=False, poll_s=0)
    finally:
        SlurmJob.watcher.clear()
    assert errors == [None, None, None]
    for x, task, job in zip((1, 2, 3), tasks, jobs):
        (row,) = read_rows(rows_path(task.folder, "test.toy"))
        assert row["seed"] == x and row["accuracy"] == x / 10 and row["threads"] == 2
        run = json.loads((task.folder / "status.json").read_text())["runs"][-1]
        assert run["executor"] == "slurm" and run["job_id"] == job.job_id


def test_executor_arguments_are_clear_errors(tiny, tmp_path, capsys):
    with pytest.raises(ConfigError, match="--slurm.array-parallelism"):
        SlurmOptions(array_parallelism=0)
    with pytest.raises(ConfigError, match="--executor"):
        compare(tiny, ["reference"], seeds=[1], out=tmp_path / "a", executor="cluster", progress=False)
    with pytest.raises(ConfigError, match="--workers"):
        compare(tiny, ["reference"], seeds=[1], out=tmp_path / "b", executor="slurm", workers=2, progress=False)
    rc = main(["compare", "--executor", "slurm", "--slurm.partition", "gpu", "--methods", "reference", "--seeds", "1",
               "--out", str(tmp_path / "c")])
    assert rc == 2 and "srun" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_sweep_runs_a_grid_labels_its_rows_and_resumes(tmp_path, capsys):
    data = tmp_path / "tiny.npz"
    write_npz(make_synthetic(preset="tiny"), data)
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"datasets:\n  '{data}': [full]\nmethods: [reference]\nseeds: [3]\n"
                   "overrides: {train.epochs: 2}\ngrid:\n  train.lr: [0.01, 0.001]\n")
    out = tmp_path / "sw"
    assert main(["sweep", str(cfg), "--out", str(out)]) == 0, capsys.readouterr().err
    rows = read_results(out / "tiny" / "results.csv")
    assert {r["method"] for r in rows} == {"reference[train.lr=0.01]", "reference[train.lr=0.001]"}
    folders = sorted((out / "tiny" / "jobs" / "reference").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("seed3-") for f in folders)
    assert sorted(p.name for p in (out / "tiny" / "runs" / "reference").iterdir()) == [f.name for f in folders]
    specs = [json.loads((f / "spec.json").read_text())["overrides"] for f in folders]
    assert sorted(s[-1] for s in specs) == ["--train.lr=0.001", "--train.lr=0.01"]
    assert all(s[0] == "--train.epochs=2" for s in specs)
    assert (out / "report" / "report.md").is_file()
    capsys.readouterr()
    assert main(["sweep", str(cfg), "--out", str(out)]) == 2 and "--resume" in capsys.readouterr().err
    assert main(["sweep", str(cfg), "--out", str(out), "--resume"]) == 0
    assert "(0 run, 2 finished before)" in capsys.readouterr().out
    assert len(list(out.glob("report-*/report.md"))) == 1

    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [synthetic]\nmethod: [reference]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key\(s\) \['method'\]"):
        load_sweep(bad)
    assert main(["sweep", str(tmp_path / "none.yaml"), "--out", str(out)]) == 2


def test_report_of_a_partial_run_names_the_missing_jobs(tiny, tmp_path, capsys):
    out = tmp_path / "cmp"
    compare(tiny, ["reference", "zero_fill"], seeds=[5], out=out, overrides=FAST, progress=False)
    for name in ("results.csv", "results.md"):  # as after a run whose zero_fill job failed
        (out / name).unlink()
    for p in (out / "jobs" / "zero_fill" / "seed5").glob("rows.*.csv"):
        p.unlink()
    assert {r["method"] for r in load_results([out])} == {"reference", "bayes_oracle"}
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    err = capsys.readouterr().err
    assert "1 job(s) have no rows yet" in err and "zero_fill seed 5: test.patterns" in err
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Partial results" in md and "zero_fill seed 5" in md
    with pytest.raises(DataError, match="no results file"):
        build_report([tmp_path / "rep"], tmp_path / "rep2")


def test_notebooks_run_as_local_jobs(tmp_path):
    """`mmlab run --executor local`: each notebook is one submitit job (papermill), in order."""
    import nbformat

    from mmlab.workspace import run_notebooks

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    params = nbformat.v4.new_code_cell("x = 1\nout_dir = None")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(
        "import pathlib\npathlib.Path(out_dir, 'x.txt').write_text(str(x))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbs / "00_toy.ipynb")
    run = run_notebooks(nbs, tmp_path / "runs", params={"x": 7}, executor="local", log=lambda s: None)
    assert (run / "x.txt").read_text() == "7"
    assert (run / "notebooks" / "00_toy.ipynb").is_file()
    assert list((run / "jobs" / "00_toy").glob("*_log.out"))
    assert json.loads((run / "summary.json").read_text())["notebooks"][0]["status"] == "ok"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


@pytest.mark.parametrize("executor", ["local", "inline"])
def test_sigterm_stops_the_jobs_and_a_rerun_finishes_them(tiny, tmp_path, executor):
    """`kill` of a running compare (two jobs at a time) ends its job processes too and leaves the
    jobs unfinished (so that the same command again reruns them)."""
    data = tmp_path / "tiny.npz"
    write_npz(tiny, data)
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-c", "import sys; from mmlab.cli import main; sys.exit(main())", "compare", "--data",
           str(data), "--methods", "zero_fill", "--seeds", "5,6", "--protocol", "patterns", "--out", str(out),
           "--executor", executor, "--workers", "2", "--train.epochs=100000", "--train.patience=100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    err = tmp_path / "stderr.txt"  # a file, not a pipe: a job outliving the command must fail the test, not hang it
    # a shell's background job inherits SIGINT as ignored; so may the jobs: cancelling must not rely on SIGINT
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err.open("w"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    statuses = [out / "jobs" / "zero_fill" / f"seed{s}" / "status.json" for s in (5, 6)]
    deadline = time.time() + 120
    while not all(p.exists() for p in statuses) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert all(p.exists() for p in statuses), err.read_text() if proc.poll() is not None else "no job"
    pids = [json.loads(p.read_text())["runs"][-1]["pid"] for p in statuses]
    assert all(_alive(pid) for pid in pids)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert "interrupted; finished results stay on disk" in err.read_text()
    deadline = time.time() + 30
    while any(_alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids), "a job process outlived the command"
    assert not (out / "results.csv").exists()
    for p in statuses:  # unfinished: the same command again reruns them (tested above)
        assert json.loads(p.read_text())["status"] != "done" and not list(p.parent.glob("rows.*.csv"))


@pytest.mark.parametrize("text, match", [
    (b"datasets: [synthetic]\nmethods: [reference]\n# \xff\xfe\n", "not a UTF-8 text file"),
    (b"datasets: " + b"[" * 5000 + b"]" * 5000 + b"\n", "not valid YAML"),
    (b"datasets: [synthetic]\nmethods: &m [reference]\ntest_splits: *m\n", "not valid YAML"),
    (b"datasets: [synthetic]\nseeds: [true, false]\n", "seeds: expected a list of distinct integers"),
    (b"datasets: [synthetic]\nseeds: [1180591620717411303424]\n", "seeds: expected a list of distinct integers"),
    (b"datasets: [synthetic]\ncheckpoint_seconds: .nan\n", "checkpoint_seconds: expected a number"),
    (b"datasets: [synthetic]\ndevice: gpu0\n", "device: expected cpu, cuda, cuda:N or auto, got 'gpu0'"),
    (b"datasets: [synthetic]\ndevice: 1\n", "device: expected cpu, cuda, cuda:N or auto, got 1"),
    (b"datasets: [synthetic]\ndevice: \"cpu\\n\"\n", "device: expected cpu, cuda, cuda:N or auto, got 'cpu\\\\n'"),
    (b"datasets: [synthetic]\npreset: [paper]\n", "preset: expected a preset name"),
    (b"datasets: [synthetic]\ngrid:\n" + b"".join(b"  k%d.x: [0,1,2,3,4,5,6,7,8,9]\n" % i for i in range(8)),
     "grid: 100000000 points"),
])
def test_a_hostile_sweep_file_is_refused_at_once(tmp_path, text, match):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(text)
    with pytest.raises(ConfigError, match=match):
        load_sweep(bad)
