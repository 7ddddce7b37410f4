"""The command line: data list / oracle, and clear errors instead of tracebacks."""

from __future__ import annotations

import pytest

from mmlab.cli import main


def test_data_list_shows_synthetic(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "bundled" in out


def test_data_oracle_prints_one_row_per_condition(capsys):
    assert main(["data", "oracle", "synthetic", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    for cond in ("full", "{A}", "{V}", "{T}", "{AV}", "{AT}", "{VT}"):
        assert f"\n{cond} " in out
    assert "accuracy" in out and "macro_recall" in out


def test_data_oracle_on_an_extra_test_split(capsys):
    """`synthetic_text`'s test_ood split has an oracle of its own (the shifted word law)."""
    assert main(["data", "oracle", "synthetic_text", "--preset", "tiny", "--split", "test_ood"]) == 0
    assert "on the test_ood split (200 samples)" in capsys.readouterr().out
    assert main(["data", "oracle", "synthetic_text", "--preset", "tiny", "--split", "test_foo"]) == 2
    assert "has no split 'test_foo'" in capsys.readouterr().err


def test_unknown_dataset_is_a_clear_error(capsys):
    assert main(["data", "oracle", "no_such_data"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'no_such_data'" in err and "Traceback" not in err


def test_bad_override_syntax_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["train", "reference", "--out", "x", "lr0.1"])
    assert "--section.key=value" in capsys.readouterr().err


def test_unknown_config_key_is_a_clear_error(tmp_path, capsys):
    rc = main(["train", "reference", "--data", "synthetic", "--out", str(tmp_path / "r"), "--no_such_key=1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown key" in err and "no_such_key" in err


def test_compare_runs_on_a_bring_your_own_file(tmp_path, capsys):
    """`mmlab compare --data FILE.npz` trains and evaluates on the user's own features."""
    import csv

    import torch

    from mmlab.data.byo import write_npz
    from mmlab.data.synthetic import make_synthetic

    torch.set_num_threads(1)
    path = tmp_path / "mine.npz"
    write_npz(make_synthetic(preset="tiny"), path)
    out = tmp_path / "cmp"
    rc = main(["compare", "--data", str(path), "--methods", "reference", "--protocol", "patterns",
               "--seeds", "3", "--out", str(out), "--train.epochs=2"])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "results.csv")))
    conds = {r["condition"] for r in rows if r["method"] == "reference"}
    assert {"full", "{A}", "{AV}", "Average"} <= conds
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert not any(r["method"] == "bayes_oracle" for r in rows)  # a file has no oracle
    # results are never overwritten
    assert main(["compare", "--data", str(path), "--methods", "reference", "--out", str(out), "--train.epochs=1"]) == 2
    assert "exists" in capsys.readouterr().err


def test_train_prints_the_run_folder_and_checks_checkpoint_seconds(tmp_path, capsys):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "r"
    rc = main(["train", "reference", "--data", "synthetic", "--out", str(out), "--checkpoint-seconds", "0",
               "--train.epochs=1"])
    printed = capsys.readouterr().out
    assert rc == 0 and f"trained reference on synthetic (seed 1111) into {out}" in printed
    assert "fusion" in printed and "valid:" in printed  # each stage's best valid epoch
    assert "test accuracy: full 0." in printed and "Average 0." in printed  # the test summary
    assert str(out / "metrics.csv") in printed
    assert (out / "checkpoints" / "fusion" / "last.pt").exists()
    rc = main(["train", "reference", "--data", "synthetic", "--out", str(tmp_path / "bad"), "--checkpoint-seconds", "-1"])
    assert rc == 2 and "checkpoint_seconds" in capsys.readouterr().err


def test_arguments_are_checked_before_torch_loads(tmp_path):
    """A typo answers at once with a clear error, without importing torch."""
    import subprocess
    import sys

    code = ("import sys; from mmlab.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    for args, message in [
        (["compare", "--seeds", "1111,abc", "--out", "x"], "--seeds: expected comma-separated integers"),
        (["compare", "--seeds", "7,7", "--out", "x"], "given more than once"),
        (["compare", "--methods", "", "--out", "x"], "--methods: expected comma-separated names"),
        (["compare", "--methods", "zero_fill,zero_fill", "--out", "x"], "given more than once"),
        (["compare", "--protocol", "pattern", "--out", "x"], "--protocol: unknown ['pattern']"),
        (["compare", "--device", "mps", "--out", "x"], "--device: expected cpu, cuda, cuda:N or auto"),
        (["compare", "--data", "missing.npz", "--out", "x"], "--data: 'missing.npz' is not a file"),
        (["train", "nope", "--out", "x"], "METHOD: unknown ['nope']"),
        (["train", "reference", "--seed", str(10**23), "--out", "x"], "--seed: expected"),
        (["compare", "--workers", "0", "--out", "x"], "--workers: expected an integer >= 1"),
    ]:
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)


def test_cli_protocol_names_match_experiments():
    from mmlab.cli import PROTOCOL_NAMES
    from mmlab.experiments import PROTOCOLS

    assert tuple(PROTOCOL_NAMES) == tuple(PROTOCOLS)


def test_help_lists_methods_and_override_syntax(capsys):
    for command in ("train", "compare"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "admc_wo_adn" in text and "zero_fill" in text and "--section.key=value" in text


def test_pin_threads(monkeypatch):
    import torch

    from mmlab.cli import pin_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert pin_threads(None) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert pin_threads(None) == 2 and pin_threads(3) == 3
    finally:
        torch.set_num_threads(before)
