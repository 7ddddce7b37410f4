"""The ``mmlab`` command line: thin wrappers over the functions the notebooks call.

    mmlab run [-p NAME VALUE ...]            execute the notebooks in order into runs/<timestamp>/
    mmlab data list | oracle NAME | validate FILE
    mmlab train METHOD --data NAME_OR_PATH --out RUN_DIR [--key.sub=value ...]
    mmlab compare --data NAME --methods a,b --protocol patterns --seeds 1111 --out DIR [--workers 2]
    mmlab compare --suite full --workers 2 --out DIR     the full comparison of every method
    mmlab report RESULTS_DIR ... --out DIR
    mmlab bench [--methods a,b]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mmlab.errors import MMLabError


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
    out = run_notebooks(
        notebooks_dir=args.notebooks, runs_root=args.out, params=params, timeout=args.timeout, kernel=args.kernel
    )
    print(f"run folder: {out}")
    return 0


# ---------------------------------------------------------------------------- train / compare
def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.experiments import train_method

    train_method(args.method, args.data, args.out, overrides=extra, device=args.device, seed=args.seed, preset=args.preset,
                 checkpoint_seconds=args.checkpoint_seconds)
    print(f"trained {args.method} into {args.out}")
    return 0


def cmd_compare(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.errors import ConfigError
    from mmlab.experiments import COMPARISON_METHODS, FULL_SUITE, compare, compare_suite

    seeds = [int(s) for s in str(args.seeds).split(",") if s]
    methods = [m for m in args.methods.split(",") if m] if args.methods else list(COMPARISON_METHODS)
    common = dict(methods=methods, seeds=seeds, out=args.out, overrides=extra, device=args.device,
                  preset=args.preset, workers=args.workers, checkpoint_seconds=args.checkpoint_seconds,
                  test_splits=[s for s in args.test_split.split(",") if s])
    if args.suite:
        if args.data or args.protocol:
            raise ConfigError("--suite full fixes the datasets and protocols: drop --data / --protocol")
        written = compare_suite(FULL_SUITE, **common)
        paths = [p for ps in written.values() for p in ps]
        if not args.no_report:
            from mmlab.report import build_report

            paths += build_report([Path(ps[0]).parent for ps in written.values()], Path(args.out) / "report")
    else:
        paths = compare(data=args.data or "synthetic", protocol=args.protocol or "patterns", **common)
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_report(args: argparse.Namespace, extra: list[str]) -> int:
    from mmlab.report import build_report

    for p in build_report(args.results, args.out):
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


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the notebooks with papermill into a new runs/<timestamp>/ folder")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="notebook parameter")
    run.add_argument("--notebooks", default="notebooks", help="folder of ordered notebooks (default: notebooks)")
    run.add_argument("--out", default="runs", help="root of the run folders (default: runs)")
    run.add_argument("--timeout", type=int, default=900, help="per-cell execution timeout in seconds")
    run.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    run.set_defaults(func=cmd_run)

    data = sub.add_parser("data", help="datasets: list, oracle, validate")
    dsub = data.add_subparsers(dest="data_cmd", required=True)
    dl = dsub.add_parser("list", help="registered datasets and whether they are found on this machine")
    dl.add_argument("--data-root", default=None, help="where licensed datasets live (default: $MMLAB_DATA_ROOT)")
    do = dsub.add_parser("oracle", help="Bayes accuracy / macro recall per availability pattern")
    do.add_argument("name")
    do.add_argument("--split", default="test", choices=["train", "valid", "test"])
    do.add_argument("--preset", default=None, help="synthetic preset (default, paper, tiny)")
    dv = dsub.add_parser("validate", help="check a bring-your-own .npz file")
    dv.add_argument("file")
    data.set_defaults(func=cmd_data)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    common.add_argument("--preset", default=None, help="method size preset (e.g. paper)")
    common.add_argument("--checkpoint-seconds", type=float, default=30.0,
                        help="write last.pt at most this often (0 = every epoch; default 30)")

    tr = sub.add_parser("train", parents=[common], help="train one method (resumable); extra --a.b=v override its config")
    tr.add_argument("method")
    tr.add_argument("--data", default="synthetic", help="dataset name or path to a .npz file")
    tr.add_argument("--out", required=True, help="run folder (an unfinished one is resumed)")
    tr.add_argument("--seed", type=int, default=1111)
    tr.set_defaults(func=cmd_train)

    cp = sub.add_parser("compare", parents=[common], help="train and evaluate methods on the same seeded test masks")
    cp.add_argument("--data", default=None, help="dataset name or .npz path (default: synthetic)")
    cp.add_argument("--methods", default=None, help="comma-separated method names (default: every compared method)")
    cp.add_argument("--protocol", default=None,
                    help="patterns, full, rates, eta, generation; comma-separated for several (default: patterns)")
    cp.add_argument("--seeds", default="1111,1112,1113,1114,1115", help="comma-separated seeds (default: 1111-1115)")
    cp.add_argument("--suite", choices=["full"], default=None,
                    help="full: every dataset of the full comparison with its protocols, then the report")
    cp.add_argument("--test-split", default="test",
                    help="comma-separated test splits to evaluate on, e.g. test,test_ood (default: test)")
    cp.add_argument("--workers", type=int, default=1, help="parallel training processes, one thread each (default: 1)")
    cp.add_argument("--no-report", action="store_true", help="with --suite: skip writing OUT/report")
    cp.add_argument("--out", required=True)
    cp.set_defaults(func=cmd_compare)

    rp = sub.add_parser("report", help="aggregate results.csv files into CSV / Markdown / HTML")
    rp.add_argument("results", nargs="+", help="folders holding results.csv")
    rp.add_argument("--out", required=True)
    rp.set_defaults(func=cmd_report)

    bn = sub.add_parser("bench", help="parameters, throughput and memory of every method")
    bn.add_argument("--methods", default=None)
    bn.add_argument("--data", default="synthetic")
    bn.add_argument("--out", default=None, help="folder for bench.csv")
    bn.add_argument("--device", default="cpu")
    bn.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "compare"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    bad = [e for e in extra if not (e.startswith("--") and "=" in e)]
    if bad:
        parser.error(f"config overrides must look like --section.key=value, got {' '.join(bad)}")
    try:
        return int(args.func(args, extra) or 0)
    except MMLabError as err:
        print(f"mmlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmlab: interrupted; finished results stay on disk", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
