"""CIDer's out-of-distribution re-partitions of CMU-MOSI / CMU-MOSEI as extra test splits.

CIDer (Zhong et al., "Towards Robust Multimodal Emotion Recognition under Missing Modalities and
Distribution Shifts"; github.com/gw-zhong/CIDer, ``bert_dataloader.py``) re-partitions MOSI and
MOSEI following CLUE so that words that go with a label in training stop doing so at test time,
one partition per task, each written with ``joblib.dump`` in the MMSA dict layout::

    OOD_MOSI/binary/MOSI_{aligned,unaligned}_50.pkl     tasks "binary", "2", "3"
    OOD_MOSI/seven/MOSI_{aligned,unaligned}_50.pkl      tasks "seven", "7"
    OOD_MOSEI/{binary,seven}/MOSEI_{aligned,unaligned}_50.pkl

CIDer trains and selects on the partition's train / valid and reports its test as "OOD"; its IID
results come from other models, trained on the MMSA pickles. A re-partition of the same clips
puts IID training clips in its test split (and IID test clips in its training splits): no split
of one file may be mixed with the other file's training splits as is; ids decide. Two layouts
(``ood=``):

* ``"test"`` (also ``True``; registry ``mosi:ood`` / ``mosi_ood``): train / valid / test are the
  IID pickle's, unchanged; ``test_ood`` is the partition's test split less every clip whose id is
  in the IID train or valid split (dropped, counted in a warning and in ``info["ood"]``). One
  model, trained on IID data, is scored on the IID test and on the shifted clips it never saw:
  ``mmlab compare --test-split test,test_ood``. ``test_ood`` ids are ``<id>@ood`` (a clip of
  the IID test appears in both test splits). Its numbers are not CIDer's OOD numbers (those
  models were trained on the partition).
* ``"partition"`` (registry ``mosi:ood_partition``): CIDer's OOD protocol: train / valid /
  ``test_ood`` are the partition's own splits; there is no ``test`` (IID test clips can be in the
  partition's training splits); score with ``--test-split test_ood``.

Ids are the leak check: a partition whose test ids match none of the IID ids is refused (the
check would be empty). When the partition has no ``text`` features, T is copied by id from the
IID pickle (when every clip is there). Nothing is downloaded; the files are read with
`mmlab.data.safe_joblib` (never ``joblib.load``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmlab.data.budget import Budget, nbytes_of
from mmlab.data.dataset import MMDataset
from mmlab.data.layout import MOSEI_DIRS, MOSI_DIRS, PathLike, locate, mmsa_check
from mmlab.data.mmsa import MMSA_TASKS, SPLIT_NAMES, Part, assemble, iid_file, load_mosei, load_mosi, read_mmsa_file
from mmlab.data.registry import data_root
from mmlab.errors import DataError

OOD_SPLIT = "test_ood"
OOD_LAYOUTS = ("test", "partition")
OOD_DIRS = {"mosi": ("OOD_MOSI", "ood_mosi", "OOD-MOSI"), "mosei": ("OOD_MOSEI", "ood_mosei", "OOD-MOSEI")}
HF_SOURCE = "Hugging Face dataset GWZhong/MSA_OOD_Dataset_in_CIDer"
ID_SUFFIX = "@ood"


def ood_partition(task: str) -> str:
    """The partition folder of a task: ``seven`` for 'seven' / '7', else ``binary``."""
    return "seven" if task in ("seven", "7") else "binary"


def ood_relpath(name: str, aligned: bool, task: str) -> Path:
    """``{binary,seven}/{MOSI,MOSEI}_{aligned,unaligned}_50.pkl``."""
    return Path(ood_partition(task)) / f"{name.upper()}_{'aligned' if aligned else 'unaligned'}_50.pkl"


def ood_dirs(root: PathLike | None, name: str, ood_root: PathLike | None = None) -> list[Path]:
    """Where an ``OOD_MOSI`` / ``OOD_MOSEI`` folder is looked for, in order: ``ood_root`` (the
    folder or its parent) if given; else the data root (if it is that folder), ``<root>/OOD_*``,
    and beside or inside the IID dataset folder."""
    names = OOD_DIRS[name]
    if ood_root is not None:
        r = Path(ood_root).expanduser()
        return [r, *(r / n for n in names)]
    r = data_root(root)
    cands = [r] if r.name.lower() in {n.lower() for n in names} else []
    cands += [r / n for n in names]
    base = locate(root, MOSI_DIRS if name == "mosi" else MOSEI_DIRS, mmsa_check, any_name=True)
    if base is not None:
        cands += [base.parent / n for n in names] + [base / n for n in names]
    return list(dict.fromkeys(cands))


def find_ood_file(root: PathLike | None, name: str, aligned: bool, task: str, ood_root: PathLike | None = None) -> Path:
    """The partition file for (``aligned``, ``task``); a `DataError` naming the expected path if absent."""
    rel, cands = ood_relpath(name, aligned, task), ood_dirs(root, name, ood_root)
    for c in cands:
        if (c / rel).is_file():
            return c / rel
    raise DataError(
        f"{name} OOD partition (task {task!r} -> {ood_partition(task)}/, aligned={aligned}): no file {cands[0] / rel} "
        f"(looked for {rel} in {', '.join(map(str, cands))}); CIDer's release ({HF_SOURCE}) unpacked as "
        f"OOD_{name.upper()}/{{binary,seven}}/ under the data root; see data_cards/{name}.md"
    )


def _find(name: str) -> Callable[[PathLike], Path | None]:
    def find(root: PathLike) -> Path | None:
        for c in ood_dirs(root, name):
            if any((c / ood_relpath(name, a, t)).is_file() for a in (False, True) for t in ("binary", "seven")):
                return c
        return None

    return find


find_mosi_ood, find_mosei_ood = _find("mosi"), _find("mosei")


def _iid_if_any(root: PathLike | None, name: str, dirs: Sequence[str], aligned: bool) -> Path | None:
    """The IID pickle of the same alignment, or None where there is none."""
    try:
        return iid_file(root, name, dirs, aligned)[1]
    except DataError:
        return None


def _layout(ood: bool | str) -> str:
    if ood is True:
        return "test"
    if ood not in OOD_LAYOUTS:
        raise DataError(f"ood: expected True, 'test' or 'partition' (or False / None for IID only), got {ood!r}")
    return str(ood)


def _ids(s: dict[str, np.ndarray], where: str) -> np.ndarray:
    if "id" not in s:
        raise DataError(f"{where}: has no 'id' key; the OOD loader needs sample ids to keep test clips out of "
                        "the training splits")
    return s["id"].astype(str)


def _fill_text(parts: dict[str, dict[str, np.ndarray]], donor: dict[str, dict[str, np.ndarray]],
               donor_path: Path, budget: Budget) -> list[str]:
    """Copy BERT ``text`` features by id from ``donor`` (the IID pickle) into the parts that
    have none; returns the parts filled (a part with an id the donor lacks is left as is)."""
    need = [sp for sp, s in parts.items() if "text" not in s and "id" in s]
    if not need or not all("text" in d and "id" in d for d in donor.values()):
        return []
    dims = {d["text"].shape[2] for d in donor.values()}
    if len(dims) != 1:
        return []
    t, dim = max(d["text"].shape[1] for d in donor.values()), dims.pop()
    index = {u: (sp, i) for sp, d in donor.items() for i, u in enumerate(d["id"].astype(str).tolist())}
    filled = []
    for sp in need:
        ids = parts[sp]["id"].astype(str).tolist()
        if not all(u in index for u in ids):
            continue
        budget.charge(nbytes_of((len(ids), t, dim), np.float32), f"[{sp}] [text]: copied by id from {donor_path}")
        out = np.zeros((len(ids), t, dim), np.float32)
        for j, u in enumerate(ids):
            dsp, i = index[u]
            x = donor[dsp]["text"][i]
            out[j, : len(x)] = x
        parts[sp]["text"] = out
        filled.append(sp)
    return filled


def _leak_mask(test: dict[str, np.ndarray], iid: dict[str, dict[str, np.ndarray]], ood_path: Path,
               iid_path: Path) -> tuple[np.ndarray, dict[str, int]]:
    """Which rows of the partition's test split to keep (not in the IID train / valid), and counts."""
    where = f"{ood_path} [test]"
    ids = _ids(test, where)
    seen = np.concatenate([_ids(iid[sp], f"{iid_path} [{sp}]") for sp in ("train", "valid")])
    every = np.concatenate([seen, _ids(iid["test"], f"{iid_path} [test]")])
    known, leak = np.isin(ids, every), np.isin(ids, seen)
    if not known.any():
        raise DataError(f"{where} [id]: none of its {len(ids)} ids (e.g. {str(ids[0])!r}) is an id of {iid_path} (e.g. "
                        f"{str(every[0])!r}), so no clip could be checked against the training splits; expected the "
                        "partition of the same dataset, with the same ids")
    if leak.all():
        raise DataError(f"{where}: every one of its {len(ids)} clips is in the train or valid split of {iid_path}; "
                        "no test_ood is left for a model trained on the IID splits: use ood='partition' "
                        "(CIDer's OOD protocol, trained on the partition)")
    reg = {u: r for sp in SPLIT_NAMES for u, r in zip(iid[sp]["id"].astype(str).tolist(), iid[sp]["regression_labels"].tolist())}
    differ = sum(1 for u, r in zip(ids.tolist(), test["regression_labels"].tolist()) if u in reg and abs(reg[u] - r) > 1e-4)
    counts = {"n_partition_test": len(ids), "n_dropped_in_train_valid": int(leak.sum()),
              "n_not_in_iid": int((~known).sum()), "n_label_differs": differ}
    if leak.any():
        warnings.warn(f"{where}: {int(leak.sum())} of its {len(ids)} clips are in the train or valid split of "
                      f"{iid_path}; dropped from test_ood ({int((~leak).sum())} kept)", stacklevel=5)
    if differ:
        warnings.warn(f"{where}: {differ} clips have another regression label in {iid_path}", stacklevel=5)
    return ~leak, counts


def load_ood(root: PathLike | None, name: str, dirs: Sequence[str], aligned: bool, task: str, ood: bool | str,
             max_len: int | None, max_bytes: int | str | None, ood_root: PathLike | None) -> MMDataset:
    """`load_mosi` / `load_mosei` with ``ood`` set (see the module docstring for the layouts)."""
    layout = _layout(ood)
    ood_path = find_ood_file(root, name, aligned, task, ood_root)
    info: dict[str, Any] = {"aligned": aligned, "task": task,
                            "ood": {"layout": layout, "file": str(ood_path), "partition": ood_partition(task)}}
    if layout == "test":
        base, iid_path = iid_file(root, name, dirs, aligned)
        budget = Budget(str(iid_path), max_bytes)
        iid = read_mmsa_file(iid_path, budget)
        sub = Budget(str(ood_path), budget.left)
        test = read_mmsa_file(ood_path, sub, joblib=True)["test"]  # only its test split is used
        budget.charge(sub.used, f"contents of {ood_path} (read beside it)")
        keep, counts = _leak_mask(test, iid, ood_path, iid_path)
        info["ood"].update(counts, text_from_iid=_fill_text({OOD_SPLIT: test}, iid, iid_path, budget))
        parts = {sp: Part(s, f"{iid_path} [{sp}]", np.ones(len(s["regression_labels"]), bool)) for sp, s in iid.items()}
        parts[OOD_SPLIT] = Part(test, f"{ood_path} [test]", keep, ID_SUFFIX)
        info.update(root=str(base), file=str(iid_path))
        return assemble(f"{name}_ood", parts, aligned, task, budget, max_len, info)
    budget = Budget(str(ood_path), max_bytes)
    splits = read_mmsa_file(ood_path, budget, joblib=True)
    filled: list[str] = []
    iid_path = _iid_if_any(root, name, dirs, aligned) if any("text" not in s for s in splits.values()) else None
    if iid_path is not None:  # the partition has no BERT features: copy them by id from the IID pickle
        sub = Budget(str(iid_path), budget.left)
        donor = read_mmsa_file(iid_path, sub)
        budget.charge(sub.used, f"contents of {iid_path} (read beside it for its 'text' features)")
        filled = _fill_text(splits, donor, iid_path, budget)
        del donor
    info["ood"]["text_from_iid"] = filled
    out = {"train": "train", "valid": "valid", "test": OOD_SPLIT}
    parts = {out[sp]: Part(s, f"{ood_path} [{sp}]", np.ones(len(s["regression_labels"]), bool)) for sp, s in splits.items()}
    info.update(root=str(ood_path.parent.parent), file=str(ood_path))
    return assemble(f"{name}_ood_partition", parts, aligned, task, budget, max_len, info)


# ---------------------------------------------------------------------------- registry options
OPTION_HELP = ("aligned | unaligned, a task (" + " | ".join(MMSA_TASKS) + "), ood (IID splits + test_ood) | "
               "ood_partition (CIDer's OOD protocol), comma-separated, e.g. mosi:aligned,seven,ood")


def mmsa_options(tokens: Sequence[str]) -> dict[str, Any]:
    """Loader keywords from ``mosi:<tokens>``: ``aligned`` / ``unaligned``, a task, ``ood`` /
    ``ood_partition`` (``partition`` for short); a `DataError` names an unknown or repeated one."""
    out: dict[str, Any] = {}
    for tok in tokens:
        t = tok.strip().lower()
        key, value = (("aligned", t == "aligned") if t in ("aligned", "unaligned") else ("task", t) if t in MMSA_TASKS
                      else ("ood", "test") if t == "ood" else ("ood", "partition") if t in ("ood_partition", "partition")
                      else (None, None))
        if key is None:
            raise DataError(f"dataset option {tok!r}: expected {OPTION_HELP}")
        if key in out and out[key] != value:
            raise DataError(f"dataset options: {key} given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def load_mosi_ood(root: PathLike | None = None, ood: bool | str = "test", **kw: Any) -> MMDataset:
    """`load_mosi` with ``ood="test"`` by default (registry name ``mosi_ood``)."""
    return load_mosi(root, ood=ood, **kw)


def load_mosei_ood(root: PathLike | None = None, ood: bool | str = "test", **kw: Any) -> MMDataset:
    """`load_mosei` with ``ood="test"`` by default (registry name ``mosei_ood``)."""
    return load_mosei(root, ood=ood, **kw)
