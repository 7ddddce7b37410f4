"""The ``mmlab`` command line: thin wrappers over the functions the notebooks call.

    mmlab run [-p NAME VALUE ...]            execute the notebooks in order into runs/<timestamp>/
    mmlab data list | oracle NAME | validate FILE
    mmlab train METHOD --data NAME_OR_PATH --out RUN_DIR [--key.sub=value ...]
    mmlab compare --data NAME --methods a,b --protocol patterns --seeds 1111 --out DIR [--workers 2]
    mmlab compare --suite full --workers 2 --out DIR     the full comparison of every method
    mmlab compare ... --executor inline|local|slurm [--slurm.partition P ...] [--resume]
    mmlab sweep CONFIG --out DIR [--executor ...]        a grid of datasets x methods x seeds x overrides
    mmlab report RESULTS_DIR ... --out DIR
    mmlab bench [--methods a,b]
    mmlab extract RAW_DIR --out FILE.npz [--text ..] [--audio ..] [--face fer] [--level frame|utterance] [--workers N]
    mmlab extract --make-sample DIR [--out FILE.npz]    the synthetic raw sample set (then extract it)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from mmlab.config import check_device_name
from mmlab.errors import ConfigError, MMLabError


def _table(rows: list[dict], columns: Sequence[str], floats: str = "{:.4f}") -> str:
    cells = [[floats.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


# ---------------------------------------------------------------------------- data
def cmd_data(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.data import list_datasets, load_dataset

    if args.data_cmd == "list":
        rows = list_datasets(args.data_root)
        for r in rows:
            r["found"] = "yes" if r["found"] else "no"
        print(_table(rows, ["name", "found", "where", "description"]))
        return 0
    if args.data_cmd == "oracle":
        from mmlab.evaluate import oracle_table

        data = load_dataset(args.name, **({"preset": args.preset} if args.preset else {}))
        if not (data.split == args.split).any():
            raise ConfigError(f"--split: dataset {args.name!r} has no split {args.split!r}; expected one of {data.splits}")
        rows = oracle_table(data, split=args.split)
        print(f"Bayes oracle of {args.name!r} on the {args.split} split ({int((data.split == args.split).sum())} samples)")
        print(_table(rows, ["condition", "accuracy", "macro_recall", "expected_accuracy"]))
        return 0
    if args.data_cmd == "validate":
        from mmlab.data.byo import validate_npz

        problems, summary = validate_npz(args.file)
        if problems:
            print(f"{args.file}: {len(problems)} problem(s)")
            for p in problems:
                print(f"  - {p}")
            return 1
        print(summary)
        return 0
    raise MMLabError(f"unknown data command {args.data_cmd!r}")


# ---------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.workspace import run_notebooks

    params = {name: value for name, value in (args.param or [])}
    # notebooks_dir None: the repository's notebooks/, wherever mmlab is started from; a relative --out is
    # relative to this directory (run_notebooks makes both absolute before papermill sees them)
    out = run_notebooks(
        notebooks_dir=args.notebooks, runs_root=args.out, params=params, timeout=args.timeout, kernel=args.kernel,
        **_executor_kwargs(args),
    )
    print(f"run folder: {out}")
    return 0


# ---------------------------------------------------------------------------- train / compare
def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.data import load_dataset
    from mmlab.evaluate import evaluate, pattern_conditions
    from mmlab.experiments import method_input, train_method

    data = method_input(args.method, load_dataset(args.data), args.device)
    method = train_method(args.method, data, args.out, overrides=extra, device=args.device, seed=args.seed,
                          preset=args.preset, checkpoint_seconds=args.checkpoint_seconds)
    print(f"\ntrained {args.method} on {data.name} (seed {args.seed}) into {args.out}")
    for stage, summary in getattr(method, "fit_summary", {}).items():
        if stage != "calibration" and summary.get("best_metric") is not None:
            val = ", ".join(f"{k} {v:.4f}" for k, v in summary["val"].items() if k in ("accuracy", "macro_recall", "mae"))
            print(f"  {stage:<12} best epoch {summary['best_epoch']:>3} of {summary['epochs_run']:<3} valid: {val}")
    conds = pattern_conditions(data.modalities) if len(data.modalities) <= 4 else pattern_conditions(data.modalities)[:1]
    for split in data.test_splits:
        rows = evaluate(method, data, split=split, conditions=conds, seed=args.seed, device=args.device)
        acc = {r["condition"]: r["accuracy"] for r in rows}
        shown = {k: acc[k] for k in ("full", "Average") if k in acc}
        print(f"  {split} accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
              + ("  (Average = mean over the patterns with a modality missing)" if "Average" in shown else ""))
    print(f"  per-epoch metrics: {Path(args.out) / 'metrics.csv'}; checkpoints: {Path(args.out) / 'checkpoints'}")
    return 0


def cmd_compare(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.experiments import COMPARISON_METHODS, FULL_SUITE, compare, compare_suite

    seeds = args.seed_list
    methods = args.method_list if args.method_list is not None else list(COMPARISON_METHODS)
    common = dict(methods=methods, seeds=seeds, out=args.out, overrides=extra, device=args.device,
                  preset=args.preset, workers=args.workers, checkpoint_seconds=args.checkpoint_seconds,
                  test_splits=[s for s in args.test_split.split(",") if s], resume=args.resume,
                  **_executor_kwargs(args))
    if args.suite:
        if args.data or args.protocol:
            raise ConfigError("--suite full fixes the datasets and protocols: drop --data / --protocol")
        written = compare_suite(FULL_SUITE, **common)
        paths = [p for ps in written.values() for p in ps]
        if not args.no_report:
            paths += _report(written, args.out)
    else:
        paths = compare(data=args.data or "synthetic", protocol=args.protocol or "patterns", **common)
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_sweep(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.experiments import sweep

    written = sweep(args.config, args.out, overrides=extra, workers=args.workers, resume=args.resume,
                    **_executor_kwargs(args))
    paths = [p for ps in written.values() for p in ps]
    if not args.no_report:
        paths += _report(written, args.out)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _report(written: dict, out: str) -> list[Path]:
    """The report of a suite or sweep in OUT/report (a new OUT/report-<time> when --resume finds one)."""
    from mmlab.report import build_report
    from mmlab.utils import new_run_dir

    target = Path(out) / "report"
    if target.exists():
        target = new_run_dir(out, prefix="report-")
    return build_report([Path(ps[0]).parent for ps in written.values()], target)


def cmd_report(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.report import MAX_LISTED, build_report, load_results, missing_jobs, not_a_number

    missing = missing_jobs(args.results)
    if missing:
        print(f"mmlab report: partial results, {len(missing)} job(s) have no rows yet:", file=sys.stderr)
        for m in missing:
            print(f"  {m}", file=sys.stderr)
    rows = load_results(args.results)
    bad = not_a_number(rows)
    if bad:
        print(f"mmlab report: {len(bad)} result(s) are not a number; their cells show '-':", file=sys.stderr)
        for b in bad[:MAX_LISTED]:
            print(f"  {b}", file=sys.stderr)
    for p in build_report(args.results, args.out, rows=rows):
        print(f"wrote {p}")
    return 0


def cmd_bench(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.bench import run_bench

    run_bench(
        methods=[m for m in args.methods.split(",") if m] if args.methods else None,
        data=args.data,
        out=args.out,
        device=args.device,
    )
    return 0


# ---------------------------------------------------------------------------- extract
def cmd_extract(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.extract import AudioConfig, ExtractConfig, FaceConfig, TextConfig, extract, make_raw_sample

    raw = args.raw
    if args.make_sample:
        info = make_raw_sample(args.make_sample, n_per_class=args.n_per_class, seed=args.sample_seed,
                               speech=args.speech)
        print(f"wrote the SYNTHETIC raw sample set {info['path']}: {info['samples']} samples, classes "
              f"{', '.join(info['classes'])}, speech by {info['speech']}, {info['missing_one_modality']} lacking one "
              "modality (data_cards/raw_sample.md)")
        if raw is None and args.out is None:
            return 0
        raw = raw or args.make_sample
    if raw is None or args.out is None:
        raise ConfigError("extract: expected RAW_DIR and --out FILE.npz (or --make-sample DIR)")
    cfg = ExtractConfig(
        audio=AudioConfig(extractor=args.audio), text=TextConfig(extractor=args.text), face=FaceConfig(extractor=args.face),
        media=tuple(args.media.split(",")) if args.media else None, level=args.level, workers=args.workers,
        skip_bad=args.skip_bad, classes=args.classes.split(",") if args.classes else None, cache_dir=args.cache_dir,
        use_cache=not args.no_cache, device=args.device,
    )
    result = extract(raw, args.out, cfg)
    for p in result.problems:
        print(f"skipped: {p}", file=sys.stderr)
    print(result.summary())
    return 0


# ---------------------------------------------------------------------------- argument checks
PROTOCOL_NAMES = ("patterns", "full", "rates", "eta", "generation", "rmfm", "traditional_rmfm", "rmm", "tmfm",
                  "stmfm")  # = mmlab.experiments.PROTOCOLS (tested)


def _names(flag: str, text: str | None, known: Sequence[str]) -> list[str] | None:
    """A comma-separated list of known, distinct names; None when the flag was not given."""
    if text is None:
        return None
    names = [n.strip() for n in str(text).split(",")]
    if not text.strip() or any(not n for n in names):
        raise ConfigError(f"{flag}: expected comma-separated names, got {text!r}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{flag}: unknown {unknown}; expected some of {sorted(known)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{flag}: {repeated} given more than once")
    return names


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """Comma-separated distinct integers in [0, 2**63)."""
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) >= 2**63:
            raise ConfigError(f"{flag}: expected comma-separated integers in [0, 2**63), got {part!r} in {text!r}")
        seeds.append(int(part))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"{flag}: seed(s) {repeated} given more than once (each seed is one run folder)")
    return seeds


def check_args(args: argparse.Namespace) -> None:
    """Check the arguments of any command before anything imports torch (a typo answers at once)."""
    from mmlab.methods import method_names  # the static registry: no torch

    device = getattr(args, "device", None)
    if device is not None:
        check_device_name(str(device), "--device")
    for flag in ("threads", "workers"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag}: expected an integer >= 1, got {value}")
    data = getattr(args, "data", None)
    if data and (str(data).endswith(".npz") or "/" in str(data)) and not Path(data).is_file():
        raise ConfigError(f"--data: {data!r} is not a file (expected a dataset name or a .npz path)")
    if args.command == "train":
        _names("METHOD", args.method, method_names())
        parse_seeds(str(args.seed), "--seed")
    if args.command == "compare":
        args.method_list = _names("--methods", args.methods, method_names())
        args.seed_list = parse_seeds(args.seeds)
        _names("--protocol", args.protocol, PROTOCOL_NAMES)
        _names("--test-split", args.test_split, [s for s in str(args.test_split).split(",") if s.strip()])
    if args.command == "sweep" and not Path(args.config).is_file():
        raise ConfigError(f"CONFIG: {args.config!r} is not a file (expected a YAML or JSON sweep file)")
    if args.command == "bench" and args.methods is not None:
        _names("--methods", args.methods, method_names())


def pin_threads(threads: int | None) -> int:
    """torch's intra-op threads for this process: ``threads``, else $OMP_NUM_THREADS, else 1.

    Set through the environment before torch is imported (and on torch when it already is):
    measured on a busy 2-core machine, these small models ran 10-20x slower on torch's default
    of one thread per core than on one thread."""
    n = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or 1
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


def _add_executor_options(parser: argparse.ArgumentParser, resume: bool = True) -> None:
    """--executor and the --slurm.* resources (and --resume) of compare, sweep and run."""
    parser.add_argument("--executor", choices=["inline", "local", "slurm"], default="inline",
                        help="inline: in this process (or --workers spawned ones); local: each job a local process "
                             "(submitit); slurm: one Slurm job array (default: inline)")
    if resume:
        parser.add_argument("--resume", action="store_true",
                            help="add methods, seeds or protocols to an existing --out folder: reuse its finished "
                                 "jobs, run the missing ones, rewrite results.csv/.md and timing.csv")
    g = parser.add_argument_group("Slurm resources per job (with --executor slurm)")
    g.add_argument("--slurm.partition", dest="slurm_partition", metavar="NAME", default=None,
                   help="partition (default: the cluster's default)")
    g.add_argument("--slurm.gpus-per-job", dest="slurm_gpus_per_job", metavar="N", type=int, default=0,
                   help="GPUs (default: 0)")
    g.add_argument("--slurm.cpus-per-job", dest="slurm_cpus_per_job", metavar="N", type=int, default=1,
                   help="CPUs, also the job's torch threads (default: 1)")
    g.add_argument("--slurm.array-parallelism", dest="slurm_array_parallelism", metavar="N", type=int, default=32,
                   help="jobs of the array running at once (default: 32)")
    g.add_argument("--slurm.time", dest="slurm_time", metavar="MINUTES", type=int, default=240,
                   help="time limit in minutes (default: 240)")
    g.add_argument("--slurm.mem", dest="slurm_mem", metavar="GB", type=float, default=16.0,
                   help="memory in GB (default: 16)")
    g.add_argument("--slurm.account", dest="slurm_account", metavar="NAME", default=None,
                   help="account to charge (default: none)")


def _executor_kwargs(args: argparse.Namespace) -> dict:
    """``executor`` and ``slurm`` (`mmlab.executors.SlurmOptions`) from the parsed options."""
    from mmlab.executors import SlurmOptions

    slurm = SlurmOptions(partition=args.slurm_partition, gpus_per_job=args.slurm_gpus_per_job,
                         cpus_per_job=args.slurm_cpus_per_job, array_parallelism=args.slurm_array_parallelism,
                         time=args.slurm_time, mem=args.slurm_mem, account=args.slurm_account)
    return {"executor": args.executor, "slurm": slurm}


def _methods_epilog(command: str) -> str:
    from mmlab.methods import method_names

    routed = ("  --zero_fill.train.epochs=5     only method zero_fill (prefix = a method name)\n"
              if command == "compare" else "")
    return ("methods:\n  " + ", ".join(method_names()) + "\n\n"
            "config overrides (any number, after the options): --section.key=value, e.g.\n"
            "  --train.epochs=5                every method given (one without train.epochs is an error)\n" + routed +
            "  --itfn.encoder.d_out=128        nested keys are dotted; values are YAML (lists: [1,2])\n"
            "Each method's keys are its config dataclass (e.g. mmlab/methods/admc.py ADMCConfig).")


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the notebooks with papermill into a new runs/<timestamp>/ folder")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="notebook parameter")
    run.add_argument("--notebooks", default=None,
                     help="folder of ordered notebooks (default: the repository's notebooks/, from any directory)")
    run.add_argument("--out", default="runs",
                     help="root of the run folders, relative to the current directory (default: runs)")
    run.add_argument("--timeout", type=int, default=900, help="per-cell execution timeout in seconds")
    run.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    _add_executor_options(run, resume=False)
    run.set_defaults(func=cmd_run)

    data = sub.add_parser("data", help="datasets: list, oracle, validate")
    dsub = data.add_subparsers(dest="data_cmd", required=True)
    dl = dsub.add_parser("list", help="registered datasets and whether they are found on this machine")
    dl.add_argument("--data-root", default=None, help="where licensed datasets live (default: $MMLAB_DATA_ROOT)")
    do = dsub.add_parser("oracle", help="Bayes accuracy / macro recall per availability pattern")
    do.add_argument("name")
    do.add_argument("--split", default="test",
                    help="train, valid, test or an extra test split such as test_ood (default: test)")
    do.add_argument("--preset", default=None,
                    help="dataset preset (synthetic: default, paper, tiny; synthetic_text: default, tiny)")
    dv = dsub.add_parser("validate", help="check a bring-your-own .npz file")
    dv.add_argument("file")
    data.set_defaults(func=cmd_data)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    common.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: 1, or $OMP_NUM_THREADS when set; the small "
                             "CPU defaults run fastest on one thread, and --workers N runs N such processes)")
    common.add_argument("--preset", default=None, help="method size preset (e.g. paper)")
    common.add_argument("--checkpoint-seconds", type=float, default=30.0,
                        help="write last.pt at most this often (0 = every epoch; default 30)")

    tr = sub.add_parser("train", parents=[common], help="train one method (resumable); extra --a.b=v override its config",
                        epilog=_methods_epilog("train"), formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("method")
    tr.add_argument("--data", default="synthetic", help="dataset name or path to a .npz file")
    tr.add_argument("--out", required=True, help="run folder (an unfinished one is resumed)")
    tr.add_argument("--seed", type=int, default=1111)
    tr.set_defaults(func=cmd_train)

    cp = sub.add_parser("compare", parents=[common], help="train and evaluate methods on the same seeded test masks",
                        epilog=_methods_epilog("compare"), formatter_class=argparse.RawDescriptionHelpFormatter)
    cp.add_argument("--data", default=None, help="dataset name or .npz path (default: synthetic)")
    cp.add_argument("--methods", default=None, help="comma-separated method names (default: every compared method)")
    cp.add_argument("--protocol", default=None,
                    help="patterns, full, rates, eta, generation, or CIDer's rmfm, traditional_rmfm, rmm, tmfm, "
                         "stmfm (rates 0-1 with AUILC; tmfm / stmfm on aligned data only); comma-separated for "
                         "several (default: patterns)")
    cp.add_argument("--seeds", default="1111,1112,1113,1114,1115", help="comma-separated seeds (default: 1111-1115)")
    cp.add_argument("--suite", choices=["full"], default=None,
                    help="full: every dataset of the full comparison with its protocols, then the report")
    cp.add_argument("--test-split", default="test",
                    help="comma-separated test splits to evaluate on, e.g. test,test_ood (default: test)")
    cp.add_argument("--workers", type=int, default=1,
                    help="parallel jobs (inline and local executors), one thread each (default: 1)")
    cp.add_argument("--no-report", action="store_true", help="with --suite: skip writing OUT/report")
    cp.add_argument("--out", required=True)
    _add_executor_options(cp)
    cp.set_defaults(func=cmd_compare)

    sw = sub.add_parser("sweep", help="a grid of datasets x methods x seeds x dotted overrides from a YAML/JSON file",
                        epilog="CONFIG keys: datasets {name or .npz: [protocols]}, methods, seeds, overrides "
                               "{key: value}, grid {dotted.key: [values]}, test_splits, device, preset, "
                               "checkpoint_seconds (mmlab.experiments.load_sweep)")
    sw.add_argument("config", help="YAML or JSON sweep file")
    sw.add_argument("--out", required=True, help="sweep folder: OUT/<dataset>/{results.csv,jobs/,runs/}, OUT/report")
    sw.add_argument("--workers", type=int, default=1,
                    help="parallel jobs (inline and local executors), one thread each (default: 1)")
    sw.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: 1)")
    sw.add_argument("--no-report", action="store_true", help="skip writing OUT/report")
    _add_executor_options(sw)
    sw.set_defaults(func=cmd_sweep)

    rp = sub.add_parser("report", help="aggregate results.csv files into CSV / Markdown / HTML")
    rp.add_argument("results", nargs="+", help="folders holding results.csv")
    rp.add_argument("--out", required=True)
    rp.set_defaults(func=cmd_report)

    bn = sub.add_parser("bench", help="parameters, throughput and memory of every method")
    bn.add_argument("--methods", default=None)
    bn.add_argument("--data", default="synthetic")
    bn.add_argument("--out", default=None, help="folder for bench.csv")
    bn.add_argument("--device", default="cpu")
    bn.add_argument("--threads", type=int, default=None, help="torch threads (default: 1, or $OMP_NUM_THREADS)")
    bn.set_defaults(func=cmd_bench)

    from mmlab.extract.audio import AUDIO_EXTRACTORS
    from mmlab.extract.face import FACE_EXTRACTORS
    from mmlab.extract.text import TEXT_EXTRACTORS

    ex = sub.add_parser("extract", help="raw speech, transcripts and face images -> a bring-your-own .npz",
                        epilog="RAW_DIR: labels.csv (id,label[,split][,y_reg]) and per id any of <id>.wav, <id>.txt, "
                               "<id>/ (face images); a missing file is a missing modality (data_cards/raw_sample.md)")
    ex.add_argument("raw", nargs="?", default=None, metavar="RAW_DIR", help="the raw folder")
    ex.add_argument("--out", default=None, help="the .npz to write (atomically; checked like mmlab data validate)")
    ex.add_argument("--text", choices=TEXT_EXTRACTORS, default="minilm_tokens",
                    help="all-MiniLM-L6-v2 token features (T, 384), sentence vector (384) or bert-base-uncased "
                         "token ids (default: minilm_tokens)")
    ex.add_argument("--audio", choices=AUDIO_EXTRACTORS, default="mfcc",
                    help="MFCC + deltas (default), or openSMILE sets (needs the opensmile package; research licence)")
    ex.add_argument("--face", choices=FACE_EXTRACTORS, default="fer", help="the FER2013 CNN, 304-d (default: fer)")
    ex.add_argument("--media", default=None, help="comma-separated subset of audio,text,face (default: each found)")
    ex.add_argument("--level", choices=["frame", "utterance"], default="frame",
                    help="frame: (N, T, D) sequences; utterance: one vector per sample (default: frame)")
    ex.add_argument("--workers", type=int, default=1, help="processes for audio and faces (default: 1)")
    ex.add_argument("--skip-bad", action="store_true", help="report bad files and samples and write the rest")
    ex.add_argument("--classes", default=None, help="comma-separated allowed labels in order (else RAW_DIR/classes.txt)")
    ex.add_argument("--cache-dir", default=None, help="feature cache (default: $MMLAB_CACHE/extract or "
                                                      "~/.cache/mmlab/extract)")
    ex.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    ex.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (the text encoder)")
    ex.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: 1)")
    g = ex.add_argument_group("the synthetic raw sample set")
    g.add_argument("--make-sample", default=None, metavar="DIR", help="write it into DIR (new or empty)")
    g.add_argument("--n-per-class", type=int, default=80, help="samples per class, 4 classes (default: 80)")
    g.add_argument("--speech", choices=["auto", "espeak", "numpy"], default="auto",
                   help="espeak-ng when installed (auto), or the numpy synthesizer")
    g.add_argument("--sample-seed", type=int, default=0)
    ex.set_defaults(func=cmd_extract)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "compare", "sweep"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    bad = [e for e in extra if not (e.startswith("--") and "=" in e)]
    if bad:
        parser.error(f"config overrides must look like --section.key=value, got {' '.join(bad)}")
    previous = _terminate_as_interrupt()
    try:
        check_args(args)  # every argument is checked before torch is imported
        pin_threads(getattr(args, "threads", None))
        return int(args.func(args, extra) or 0)
    except MMLabError as err:
        print(f"mmlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print("mmlab: interrupted; finished results stay on disk", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's cancel) handled as Ctrl-C: running jobs are cancelled,
    pools stopped, and what finished stays on disk."""


def _terminate_as_interrupt():
    """Route SIGTERM to `Terminated` while a command runs; returns the previous handler (None
    outside the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
