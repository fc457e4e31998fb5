"""The preprocess stage as one transaction: prepared cases, splits and report, written all or nothing.

``run_preprocess`` prepares the dataset (agvq.data.preprocess), splits the prepared cases (a stable hash split, or
the user's split file), adds warnings for suspicious but valid data (a training or validation split without a
single voxel of a region), and commits ``prepared/``, the splits file and the report together: an error in any of
them (a bad case, a full disk, an unwritable folder, Ctrl-C, SIGTERM) leaves the previous outputs as they were.
"""
from __future__ import annotations

import logging
from pathlib import Path

from agvq.config import PreprocessConfig
from agvq.data.preprocess import preprocess_dataset
from agvq.data.splits import make_splits, splits_from_file
from agvq.io.outputs import staged_outputs
from agvq.io.splits import SPLITS
from agvq.regions import REGIONS

log = logging.getLogger(__name__)


def empty_region_warnings(splits: dict, cases: dict) -> list[str]:
    """A line for each region without a single voxel in every labelled case of the train (or val) split."""
    out = []
    for name in ("train", "val"):
        labelled = [cases[c]["tumour_voxels"] for c in splits[name] if cases[c].get("tumour_voxels") is not None]
        if not labelled:
            continue
        for region in REGIONS:
            if not any(v[region] for v in labelled):
                out.append(f"the {name} split has no {region} voxels in any of its {len(labelled)} labelled "
                           f"case(s); {region} models will learn or be validated on empty masks only")
    return out


def split_cases(case_ids: list[str], cfg: PreprocessConfig) -> tuple[dict, list[str]]:
    split = cfg.split
    if split.file:
        return splits_from_file(split.file, split.fold, case_ids)
    return make_splits(case_ids, split.val_fraction, split.test_fraction, split.seed), []


def run_preprocess(raw_dir: str | Path, out_dir: str | Path, splits_path: str | Path, report_path: str | Path,
                   cfg: PreprocessConfig, progress: bool = True) -> tuple[dict, dict]:
    """Prepare, split and report (see the module doc); returns (report, splits). Warnings are logged, one line
    each, and listed in the report."""
    with staged_outputs("preprocess") as staged:
        report = preprocess_dataset(raw_dir, out_dir, cfg, progress, staged=staged)
        splits, split_warnings = split_cases(sorted(report["cases"]), cfg)
        split_warnings += empty_region_warnings(splits, report["cases"])
        report["warnings"] += [{"case": None, "file": None, "problem": w} for w in split_warnings]
        report["splits"] = {"method": splits["method"], **{k: len(splits[k]) for k in SPLITS}}
        staged.write_json(splits_path, splits)
        staged.write_json(report_path, report)
    for item in report["warnings"]:
        where = "".join(f"{k} {item[k]}: " for k in ("case", "file") if item[k])
        log.warning("%s%s", where, item["problem"])
    return report, splits
