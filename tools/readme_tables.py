"""Regenerate the README's comparison tables from a full-comparison folder.

    .venv/bin/python tools/readme_tables.py cmp_full            # print the tables
    .venv/bin/python tools/readme_tables.py cmp_full --write    # rewrite them in README.md
    .venv/bin/python tools/readme_tables.py cmp_full cmp_more   # rows of several compare folders
    .venv/bin/python tools/readme_tables.py cmp_cmarr cmp_cmarr_hw --prefix cmarr --write   # "cmarr-..." tables

Each table sits in README.md between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``;
``--write`` replaces what is between the markers and nothing else. Cells are accuracy (WA) x100,
mean ± std over the seeds (population std, as MMSA), from the rows `mmlab.report` gathers.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import sys
from pathlib import Path

from mmlab.errors import MMLabError
from mmlab.evaluate import aggregate, split_of
from mmlab.report import ORACLE, load_results, oracle_gap, result_sources, wide_table
from mmlab.tables import markdown_table, mean_std_cell

README = Path(__file__).resolve().parents[1] / "README.md"
ORACLE_LABEL = "Bayes oracle"
LINEAR = "pooled_linear"  # the per-pattern logistic regression every learned method is measured against
KERNEL = "kernel_experts"  # the product of per-modality kernel experts, the nonlinear reference
REFERENCES = {ORACLE, LINEAR, KERNEL}  # never bolded as the best method


@functools.lru_cache(maxsize=None)
def _load(source: Path) -> list[dict]:
    """The rows of one folder or file, read once however many tables use them."""
    return load_results([source])


@functools.lru_cache(maxsize=None)
def _check_folder(folder: Path) -> None:
    """A folder with no results at all (a typo, results.csv not a file) is an error, not skipped."""
    result_sources(folder)


def _sources(folders: list[Path], dataset: str) -> list[Path]:
    """``folder/<dataset>/`` of a suite, or a single-dataset compare folder holding that dataset."""
    out = []
    for f in folders:
        _check_folder(f)
        if (f / dataset).is_dir():
            out.append(f / dataset)
        elif ((f / "results.csv").is_file() or (f / "jobs").is_dir()) and any(
                r["dataset"] == dataset for r in _load(f)):
            out.append(f)
    return out


def _seed_rows(folders: list[Path], dataset: str) -> list[dict]:
    """Rows of ``dataset``. The rows of one (method, seed, test split, protocol) come from the
    first folder that holds them: a later folder's are left out (a re-run with new defaults listed
    first replaces the old rows), so a row that several folders hold counts once."""
    rows, runs, seen = [], set(), set()
    for src in _sources(folders, dataset):
        mine = [r for r in _load(src) if r["dataset"] == dataset and r["protocol"] != "generation"]
        new_runs = set()
        for r in mine:
            run = (r["method"], r.get("seed"), split_of(r), r["protocol"])
            key = (*run, r["condition"])
            if run in runs or key in seen:
                continue
            seen.add(key)
            new_runs.add(run)
            rows.append(r)
        runs |= new_runs
    return rows


def _rows(folders: list[Path], dataset: str) -> list[dict]:
    """`_seed_rows` aggregated over the seeds."""
    rows = _seed_rows(folders, dataset)
    return aggregate(rows) if rows else []


def _label(method: str) -> str:
    return ORACLE_LABEL if method == ORACLE else method


def patterns_table(agg: list[dict]) -> str:
    """Methods x (full, six patterns, Average) with the Average's gap to the oracle."""
    header, rows = wide_table(agg, "pattern", "accuracy")
    _, gaps, methods = oracle_gap(agg, "pattern")
    avg = header.index("Average") - 1
    gap = {m: g[avg] for m, g in zip(methods, gaps)}
    best = max((m for m in gap if m not in REFERENCES), key=lambda m: gap[m])  # the best learned method
    linear = gap.get(LINEAR)
    out = []
    for r in rows:
        name = _label(r[0])
        cells = [f"**{name}**" if r[0] in (best, ORACLE) else name, *r[1:]]
        cells.append("0" if r[0] == ORACLE else f"{gap[r[0]]:+.1f}")
        if linear is not None:
            cells.append("" if r[0] == ORACLE else f"{gap[r[0]] - linear:+.1f}")
        out.append(cells)
    extra = ["gap to oracle"] + ([f"gap to {LINEAR}"] if linear is not None else [])
    return markdown_table([*header, *extra], out)


def swept_table(agg: list[dict], protocol: str) -> str:
    header, rows = wide_table(agg, protocol, "accuracy")
    return markdown_table(header, [[_label(r[0]), *r[1:]] for r in rows])


def full_input_table(agg: list[dict], methods: dict[str, str]) -> str:
    """ADMC Table 5: WA / UA on full input for the named methods and the oracle."""
    look = {a["method"]: a for a in agg if a["protocol"] == "pattern" and a["condition"] == "full"}
    cells = []
    for m in [*methods, ORACLE]:
        a = look[m]
        wa, ua = a["accuracy_mean"] * 100, a["macro_recall_mean"] * 100
        if m == ORACLE:
            cells.append(f"{wa:.1f} / {ua:.1f}")
        else:
            cells.append(f"{wa:.1f} ± {a['accuracy_std'] * 100:.1f} / {ua:.1f} ± {a['macro_recall_std'] * 100:.1f}")
    return markdown_table([*methods.values(), ORACLE_LABEL], [cells])


def generation_table(folders: list[Path]) -> str:
    """One generated sample (and the mean of k) per direction against the exact conditional:
    accuracy of the frozen head, mean error and variance ratio (synthetic; the start step of
    a sweep is left out: rows without an "@n=" tag)."""
    rows, seen = [], set()
    for r in (r for src in _sources(folders, "synthetic") for r in _load(src)):
        key = (r["method"], r["condition"], split_of(r), r.get("seed"))
        if r["protocol"] == "generation" and len(str(r.get("source", ""))) == 2 and "@" not in r["condition"] \
                and key not in seen:  # the exact_conditional rows of several folders count once
            seen.add(key)
            rows.append(r)
    agg = aggregate(rows)
    look = {(a["method"], a["condition"]): a for a in agg}
    names = list(dict.fromkeys(a["method"] for a in agg))
    methods = [m for m in names if not m.startswith("exact_conditional")]
    exact = [m for m in names if m.startswith("exact_conditional")]
    order: list[str] = []  # each method, then its reference (its own, else ADMC's shared one)
    for m in methods:
        ref = f"exact_conditional[{m}]" if f"exact_conditional[{m}]" in exact else "exact_conditional"
        order += [m] + ([ref] if ref in exact and ref not in order else [])
    out = []
    for direction in ("VT->A", "AT->V", "AV->T"):
        for m in order:
            one, mean = look.get((m, direction)), look.get((m, f"{direction} mean"))
            if one is None:
                continue
            cells = [direction, _label(m), mean_std_cell(one["accuracy_mean"], one["accuracy_std"], one["n_seeds"], 100, 1),
                     mean_std_cell(mean["accuracy_mean"], mean["accuracy_std"], mean["n_seeds"], 100, 1)]
            for c in ("mean_error", "variance_ratio"):
                v = one.get(c + "_mean", math.nan)
                cells.append("" if math.isnan(v) else f"{v:.2f} ± {one[c + '_std']:.2f}")
            out.append(cells)
    return markdown_table(["direction", "method", "one sample", "mean of k", "mean error", "variance ratio"], out)


def handwritten_full_table(agg: list[dict]) -> str:
    """Methods x accuracy with all six views, mean ± std over the seeds."""
    rows = [[_label(a["method"]), mean_std_cell(a["accuracy_mean"], a["accuracy_std"], a["n_seeds"], 100, 2)]
            for a in agg if a["protocol"] == "pattern" and a["condition"] == "full"]
    return markdown_table(["method", "all six views"], rows)


def ood_table(rows: list[dict]) -> str:
    """`synthetic_text` (CIDer's issue): per test split, full input, the six-pattern average and the
    RMFM / RMM AUILC (Eq. 31 of CIDer, rates 0-1), mean ± std over the seeds; the last columns are
    each method's RMFM AUILC gap to the oracle's on both splits, averaged over the method's seeds
    against the oracle of the same seed (the same masks)."""
    agg = aggregate(rows)
    look = {(a["method"], a["protocol"], a["condition"], split_of(a)): a for a in agg}
    auilc = {(r["method"], split_of(r), r["seed"]): r["accuracy"] for r in rows
             if r["protocol"] == "rmfm" and r["condition"] == "AUILC"}

    def gap(m: str, split: str) -> str:
        pairs = [(v, auilc.get((ORACLE, sp, seed))) for (mm, sp, seed), v in auilc.items() if mm == m and sp == split]
        if m == ORACLE or not pairs or any(o is None for _, o in pairs):
            return ""
        return f"{100 * sum(v - o for v, o in pairs) / len(pairs):+.1f}"

    splits = [s for s in ("test", "test_ood") if any(k[3] == s for k in look)]
    cols = [("pattern", "full"), ("pattern", "Average"), ("rmfm", "AUILC"), ("rmm", "AUILC")]
    methods = list(dict.fromkeys(a["method"] for a in agg if a["method"] != ORACLE)) + [ORACLE]
    out = []
    for m in methods:
        cells = [f"**{_label(m)}**" if m == ORACLE else m]
        for s in splits:
            for p, c in cols:
                a = look.get((m, p, c, s))
                cells.append("" if a is None else mean_std_cell(a["accuracy_mean"], a["accuracy_std"], a["n_seeds"], 100, 1))
        cells += [gap(m, s) for s in splits]
        out.append(cells)
    names = {"full": "full", "Average": "six-pattern avg", "AUILC": "AUILC"}
    header = ["method"] + [f"{s}: {p.upper() + ' ' if p != 'pattern' else ''}{names[c]}" for s in splits for p, c in cols]
    header += [f"RMFM AUILC gap to oracle, {s}" for s in splits]
    return markdown_table(header, out)


def tables(folders: list[Path], prefix: str = "") -> dict[str, str]:
    """The tables the folders' rows make (those of a dataset they hold no rows of are left out),
    named ``<prefix>-<name>`` with a prefix."""
    syn, hw = _rows(folders, "synthetic"), _rows(folders, "handwritten")
    has = lambda agg, protocol: any(a["protocol"] == protocol for a in agg)  # noqa: E731
    found = {}
    if has(syn, "pattern"):
        found["synthetic-patterns"] = patterns_table(syn)
    if has(syn, "rate_drop"):
        found["synthetic-rates"] = swept_table(syn, "rate_drop")
    full = {"admc_joint": "Jointly_training (`admc_joint`)", "admc_use_itfn": "Use_ITFN (`admc_use_itfn`)",
            "admc": "MMER (`admc`)"}
    if all(any(a["method"] == m for a in syn) for m in full):
        found["synthetic-full"] = full_input_table(syn, full)
    if has(hw, "pattern"):
        found["handwritten-full"] = handwritten_full_table(hw)
    if has(hw, "cpm"):
        found["handwritten-eta"] = swept_table(hw, "cpm")
    if has(hw, "rate_drop"):
        found["handwritten-rates"] = swept_table(hw, "rate_drop")
    text = _seed_rows(folders, "synthetic_text")
    if any(r["protocol"] == "rmfm" for r in text):
        found["synthetic_text-ood"] = ood_table(text)
    if any(r["protocol"] == "generation" for src in _sources(folders, "synthetic") for r in _load(src)):
        found["synthetic-generation"] = generation_table(folders)
    return {f"{prefix}-{k}" if prefix else k: v for k, v in found.items()}


def write(readme: Path, found: dict[str, str]) -> list[str]:
    text = readme.read_text()
    missing = []
    for name, table in found.items():
        pattern = re.compile(rf"(<!-- table:{re.escape(name)} -->\n)(?:.*?\n)?(<!-- /table:{re.escape(name)} -->)", re.S)
        if not pattern.search(text):
            missing.append(name)
            continue
        text = pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text)
    readme.write_text(text)
    return missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", type=Path, nargs="+", help="--out folders of `mmlab compare --suite full` (and others)")
    ap.add_argument("--write", action="store_true", help="rewrite the tables in README.md")
    ap.add_argument("--prefix", default="", help="name the tables <prefix>-<name> (e.g. cmarr)")
    args = ap.parse_args()
    try:
        found = tables(args.folders, args.prefix)
    except MMLabError as err:
        sys.exit(f"readme_tables: {err}")
    if args.write:
        missing = write(README, found)
        print(f"rewrote {len(found) - len(missing)} tables in {README}")
        if missing:
            print(f"not placed (README.md has no markers for them): {missing}", file=sys.stderr)
    else:
        for name, table in found.items():
            print(f"<!-- table:{name} -->\n{table}\n<!-- /table:{name} -->\n")


if __name__ == "__main__":
    main()
