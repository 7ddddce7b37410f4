"""Reliability of runs (the run-folder half of the hostile-input issue): one writer per folder,
no raw traceback for a damaged or foreign run folder, a torn metrics.csv repaired, bounded YAML
overrides, settings never silently ignored, files with the user's umask."""

import os
import subprocess
import sys
import time

import pytest
import torch

from mmlab.cli import main
from mmlab.errors import ConfigError, DataError
from mmlab.train import TrainConfig, Trainer, load_checkpoint, save_checkpoint
from mmlab.utils import FolderLock, atomic_write_text

from test_train import csv_rows, small_model, toy_data



@pytest.fixture(scope="module")
def data():
    return toy_data(90)


def fit(data, out, **kw):
    return Trainer(small_model(data), data, out, TrainConfig(progress=False, **kw)).fit()


# ----------------------------------------------------------------------------- one writer per folder
def test_a_busy_run_folder_is_refused_at_once_and_a_stale_lock_is_taken_over(data, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from mmlab.utils import FolderLock\n"
                               f"with FolderLock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(DataError, match=r"another mmlab process is writing this run folder \(process \d+"):
            fit(data, tmp_path)
        assert time.monotonic() - started < 5  # at once, not after training
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale and is taken over
    assert (tmp_path / FolderLock.NAME).exists()
    fit(data, tmp_path)
    assert not (tmp_path / FolderLock.NAME).exists()


def test_a_torn_lock_file_is_stale(tmp_path):
    (tmp_path / FolderLock.NAME).write_text("12")
    with FolderLock(tmp_path):
        assert (tmp_path / FolderLock.NAME).read_text().split()[0] == str(os.getpid())


# ----------------------------------------------------------------------------- damaged or foreign folders
def test_out_that_is_a_file_or_holds_foreign_files(data, tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(DataError, match="is a file; expected a folder"):
        fit(data, a_file)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="not an mmlab config.json"):
        fit(data, tmp_path / "cfg")
    (tmp_path / "met").mkdir()
    (tmp_path / "met" / "metrics.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="not mmlab's metrics.csv"):
        fit(data, tmp_path / "met")


def test_torn_metrics_csv_is_repaired_and_equals_an_uninterrupted_run(data, tmp_path):
    fit(data, tmp_path / "ref", checkpoint_seconds=0)
    reference = [r[1:] for r in csv_rows(tmp_path / "ref" / "metrics.csv")]

    class Crash(Exception):
        pass

    out = tmp_path / "run"

    def crash(stage, epoch, metrics):
        if epoch == 2:
            text = (out / "metrics.csv").read_text()
            (out / "metrics.csv").write_text(text + "2026-01-01T00:00:00,fusion,3,tra")  # a torn write of epoch 3
            raise Crash

    with pytest.raises(Crash):
        Trainer(small_model(data), data, out, TrainConfig(progress=False, checkpoint_seconds=0),
                on_epoch_end=crash).fit()
    with pytest.warns(UserWarning, match="torn"):
        fit(data, out, checkpoint_seconds=0)
    resumed = [r[1:] for r in csv_rows(out / "metrics.csv")]
    assert resumed == reference


@pytest.mark.parametrize("damage, match", [
    (lambda ck: [1, 2, 3], "a list, expected a dict"),
    (lambda ck: {k: v for k, v in ck.items() if k != "model"}, "no 'model'"),
    (lambda ck: {**ck, "epoch": "two"}, "'epoch' is a str"),
    (lambda ck: {**ck, "rng": {"torch": torch.zeros(3, dtype=torch.uint8)}}, "damaged checkpoint"),
    (lambda ck: {**ck, "model": {k: torch.zeros(1) for k in ck["model"]}}, "weights do not fit this method"),
])
def test_a_damaged_last_pt_is_reported_with_the_way_out(data, tmp_path, damage, match):
    class Stop(Exception):
        pass

    def stop(stage, epoch, metrics):
        raise Stop

    with pytest.raises(Stop):
        Trainer(small_model(data), data, tmp_path, TrainConfig(progress=False, checkpoint_seconds=0),
                on_epoch_end=stop).fit()
    last = tmp_path / "checkpoints" / "fusion" / "last.pt"
    save_checkpoint(last, damage(load_checkpoint(last)))
    with pytest.raises(DataError, match=match) as err:
        fit(data, tmp_path)
    assert str(last) in str(err.value) and "delete it and resume" in str(err.value)
    last.unlink()
    fit(data, tmp_path)  # the way out works


# ----------------------------------------------------------------------------- writes
def test_a_full_disk_names_the_file_and_keeps_earlier_files(tmp_path, monkeypatch):
    import errno
    import tempfile

    target = tmp_path / "results.csv"
    atomic_write_text(target, "old\n")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(DataError, match=r"results.csv: cannot write here \(No space left on device\)"):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"


def test_files_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
        os.umask(0o002)
        atomic_write_text(tmp_path / "b.txt", "x")
        assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


# ----------------------------------------------------------------------------- arguments and settings
@pytest.mark.parametrize("override, match", [
    ("--train.epochs=" + "[" * 60000, "longer than"),
    ("--train.epochs=" + "[" * 50 + "]" * 50, "nesting deeper than 32"),
    ("--train.epochs=[&a [1,2], *a, *a]", "aliases"),
    ("--train.seed=5", "the run seed is --seed"),
])
def test_overrides_are_bounded_and_never_silently_ignored(tmp_path, capsys, override, match):
    rc = main(["train", "reference", "--data", "synthetic", "--out", str(tmp_path / "r"), override])
    assert rc == 2 and match in capsys.readouterr().err


def test_duplicate_methods_or_seeds_are_refused_in_python_too(tmp_path):
    from mmlab.data.synthetic import make_synthetic
    from mmlab.experiments import compare

    tiny = make_synthetic(preset="tiny")
    with pytest.raises(ConfigError, match="given more than once"):
        compare(tiny, ["reference", "reference"], seeds=[1], out=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="given more than once"):
        compare(tiny, ["reference"], seeds=[7, 7], out=tmp_path / "b", progress=False)


def test_report_on_a_non_utf8_or_odd_csv(tmp_path, capsys):
    from mmlab.evaluate import aggregate, read_results

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.csv").write_bytes(b"dataset,method,protocol,condition\n\xff\xfe,x,y,z\n")
    with pytest.raises(DataError, match="not a UTF-8 text file"):
        read_results(bad / "results.csv")
    assert main(["report", str(bad), "--out", str(tmp_path / "rep")]) == 2
    assert "not a UTF-8 text file" in capsys.readouterr().err
    rows = [{"dataset": "d", "method": "m", "protocol": "p", "condition": "c", "accuracy": 0.5, "note": "hello"},
            {"dataset": "d", "method": "m", "protocol": "p", "condition": "c", "accuracy": "n/a", "note": "x"}]
    with pytest.warns(UserWarning, match=r"\['note'\] hold no numbers.*\['accuracy'\] hold some non-numeric"):
        aggregate(rows)


def test_a_failing_metrics_append_names_the_file(data, tmp_path, monkeypatch):
    import builtins
    import errno

    real_open = builtins.open

    def full_disk(path, mode="r", *a, **k):
        if str(path).endswith("metrics.csv") and "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full_disk)
    with pytest.raises(DataError, match=r"metrics.csv: cannot append metrics \(No space left on device\)"):
        fit(data, tmp_path)


@pytest.mark.parametrize("tail, fields", [("synthetic,m,pattern\n", 3), ("synthetic,m,pattern,full,test,1,0.5,9\n", 8)])
def test_a_torn_or_overlong_results_line_is_named(tmp_path, capsys, tail, fields):
    from mmlab.evaluate import read_results

    folder = tmp_path / "torn"
    folder.mkdir()
    (folder / "results.csv").write_text("dataset,method,protocol,condition,split,seed,accuracy\n"
                                        "synthetic,m,pattern,full,test,1,0.5\n" + tail)
    with pytest.raises(DataError, match=rf"line 3 has {fields} fields, expected 7"):
        read_results(folder / "results.csv")
    assert main(["report", str(folder), "--out", str(tmp_path / "rep")]) == 2
    assert "line 3 has" in capsys.readouterr().err


def test_a_results_file_cut_mid_row_is_refused(tmp_path, capsys):
    """A copy cut inside the last number ("0.45" -> "0.4") would read as another result: mmlab
    ends every results.csv with a line end, so a last line without one is refused."""
    from mmlab.evaluate import read_results

    folder = tmp_path / "cut"
    folder.mkdir()
    (folder / "results.csv").write_text("dataset,method,protocol,condition,seed,accuracy\n"
                                        "synthetic,m,pattern,full,1,0.5\nsynthetic,m,pattern,{A},1,0.4")
    with pytest.raises(DataError, match="last line has no line end"):
        read_results(folder / "results.csv")
    assert main(["report", str(folder), "--out", str(tmp_path / "rep")]) == 2
    assert "cut short" in capsys.readouterr().err


def test_rows_of_several_seeds_without_a_seed_column_are_named(tmp_path, capsys):
    folder = tmp_path / "noseed"
    folder.mkdir()
    (folder / "results.csv").write_text("dataset,method,protocol,condition,accuracy\n"
                                        "synthetic,m,pattern,full,0.5\nsynthetic,m,pattern,full,0.6\n")
    assert main(["report", str(folder), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "appears twice" in err and "with no seed" in err and "also in" not in err
    (folder / "results.csv").write_text("dataset,method,protocol,condition,accuracy\n"  # equal values: still two seeds
                                        "synthetic,m,pattern,full,0.5\nsynthetic,m,pattern,full,0.5\n")
    assert main(["report", str(folder), "--out", str(tmp_path / "rep")]) == 2
    assert "with no seed" in capsys.readouterr().err


def test_a_nan_result_is_named_in_the_report(tmp_path, capsys):
    folder = tmp_path / "nan"
    folder.mkdir()
    (folder / "results.csv").write_text("dataset,method,protocol,condition,seed,accuracy\n"
                                        "synthetic,m,pattern,full,1,nan\nsynthetic,m,pattern,full,2,0.5\n")
    assert main(["report", str(folder), "--out", str(tmp_path / "rep")]) == 0
    named = "synthetic / m / pattern / full / seed 1: accuracy"
    assert named in capsys.readouterr().err
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "1 result(s) are not a number" in report and named in report
    assert "| m | - |" in report  # the seed-2 value alone is not passed off as the mean
    assert "plotly" not in (tmp_path / "rep" / "report.html").read_text()  # no empty chart for it


def test_a_results_csv_that_is_a_folder_is_named(tmp_path, capsys):
    (tmp_path / "odd" / "results.csv").mkdir(parents=True)
    assert main(["report", str(tmp_path / "odd"), "--out", str(tmp_path / "rep")]) == 2
    assert "odd/results.csv: exists but is not a file" in capsys.readouterr().err
    suite = tmp_path / "suite"  # in a suite's dataset folder too, not skipped
    (suite / "a").mkdir(parents=True)
    (suite / "a" / "results.csv").write_text("dataset,method,protocol,condition,seed,accuracy\na,m,pattern,full,1,0.5\n")
    (suite / "b" / "results.csv").mkdir(parents=True)
    assert main(["report", str(suite), "--out", str(tmp_path / "rep2")]) == 2
    assert "b/results.csv: exists but is not a file" in capsys.readouterr().err


@pytest.mark.parametrize("plan", ['[1, 2]', '{"jobs": [{"job": "x"}]}', '{"jobs": [', 'null'])
def test_a_damaged_job_plan_is_named(tmp_path, capsys, plan):
    from mmlab.data.synthetic import make_synthetic
    from mmlab.experiments import compare

    out = tmp_path / "cmp"
    compare(make_synthetic(preset="tiny"), ["reference"], seeds=[1], out=out, progress=False,
            overrides=["--train.epochs=1"])
    (out / "results.csv").unlink()  # the report rebuilds the rows from jobs/ and its plan
    (out / "jobs" / "plan.json").write_text(plan)
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 2
    assert "plan.json" in capsys.readouterr().err
