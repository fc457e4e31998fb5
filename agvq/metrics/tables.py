"""Per-case metric tables -> summary statistics, and their atomic CSV / JSON files.

The JSON summary is what ``dvc metrics`` reads: it never holds NaN or inf (non-finite values are left out of the
statistics and counted instead; a region without any finite value is an error).
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import pandas as pd

from agvq.io.atomic import atomic_path, write_json
from agvq.metrics.segmentation import CONVENTIONS

METRICS = ("dice", "hd95")
"""The headline metrics: every summary has them and the ablation compares them."""
COLUMNS = ("case", "region", "dice", "hd95", "convention", "pred_empty", "truth_empty", "pred_voxels", "truth_voxels")
EXTRA_METRICS = ("nsd", "sensitivity", "specificity", "lesion_dice", "lesion_hd95")
"""The rest of the BraTS set (agvq.metrics.segmentation with an NSD tolerance), summarised when a table has them."""
LESION_COUNTS = ("lesion_tp", "lesion_fp", "lesion_fn")
EXTRA_COLUMNS = EXTRA_METRICS + LESION_COUNTS


def _stats(values: pd.Series) -> dict:
    """mean / median / std (population, ddof=0) / min / max of the finite values."""
    arr = values.to_numpy(dtype=np.float64)
    return {
        "mean": float(np.mean(arr)),
        "median": float(np.median(arr)),
        "std": float(np.std(arr)),
        "min": float(np.min(arr)),
        "max": float(np.max(arr)),
    }


def summarize(cases: pd.DataFrame, regions: Sequence[str], empty_penalty: float) -> dict:
    """Summary of a per-case table (columns as in COLUMNS, one row per case and region).

    Returns {"n_cases", "conventions" (what the empty-mask rules are), "regions": {region: {"count",
    "dice": stats, "hd95": stats, "conventions": {name: count}, "nonfinite": {metric: count}, "seed_sd":
    {metric: spread over training seeds}}}, "mean": {metric: mean over regions of the region means}, "seeds",
    and with a ``seed`` column "per_seed": {seed: {region: {metric: mean}}}}. Statistics pool every (case, seed)
    row.

    The metrics of EXTRA_METRICS that the table holds are summarised the same way, except that a region without
    any finite value of one (lesion-wise scores are undefined where neither mask has a lesion, sensitivity where the
    truth is empty) only counts them; their "mean" is over the regions that have one. The lesion counts of the
    table are summed per region ("lesions": {tp, fp, fn}).
    """
    missing = [c for c in ("case", "region", *METRICS, "convention") if c not in cases.columns]
    if missing:
        raise ValueError(f"per-case table lacks columns {missing}")
    if cases.empty:
        raise ValueError("per-case table is empty")
    summary: dict = {
        "n_cases": int(cases["case"].nunique()),
        "conventions": {
            "both_empty": {"dice": 1.0, "hd95": 0.0},
            "one_empty": {"dice": 0.0, "hd95": float(empty_penalty)},
        },
        "regions": {},
    }
    for region in regions:
        rows = cases[cases["region"] == region]
        if rows.empty:
            raise ValueError(f"per-case table has no rows for region {region}")
        conv = rows["convention"].fillna("").astype(str)
        entry: dict = {"count": int(len(rows)), "nonfinite": {}}
        for metric in METRICS:
            values = pd.to_numeric(rows[metric], errors="coerce")
            finite = values[np.isfinite(values.to_numpy(dtype=np.float64))]
            entry["nonfinite"][metric] = int(len(values) - len(finite))
            if finite.empty:
                raise ValueError(f"region {region} has no finite {metric} value")
            entry[metric] = _stats(finite)
        entry["conventions"] = {name: int((conv == name).sum()) for name in CONVENTIONS}
        entry["seed_sd"] = {metric: seed_spread(rows, metric) for metric in METRICS}
        _summarize_extra(rows, entry)
        summary["regions"][region] = entry
    summary["mean"] = {
        metric: float(np.mean([summary["regions"][r][metric]["mean"] for r in regions])) for metric in METRICS
    }
    seeds = sorted(int(x) for x in cases["seed"].unique()) if "seed" in cases.columns else [0]
    summary["seeds"] = seeds
    if "seed" in cases.columns:
        summary["per_seed"] = {
            str(seed): {region: {metric: float(pd.to_numeric(
                cases.loc[(cases["seed"] == seed) & (cases["region"] == region), metric], errors="coerce").mean())
                for metric in METRICS} for region in regions} for seed in seeds}
    for metric in (m for m in EXTRA_METRICS if m in cases.columns):
        means = [summary["regions"][r][metric]["mean"] for r in regions if metric in summary["regions"][r]]
        if means:
            summary["mean"][metric] = float(np.mean(means))
    if "nsd" in cases.columns:
        summary["conventions"]["both_empty"]["nsd"] = 1.0
        summary["conventions"]["one_empty"]["nsd"] = 0.0
    if "lesion_dice" in cases.columns:
        summary["conventions"]["lesion_no_match"] = {"lesion_dice": 0.0, "lesion_hd95": float(empty_penalty)}
    _assert_finite(summary)
    return summary


def seed_spread(rows: pd.DataFrame, metric: str) -> float:
    """Standard deviation (ddof 1) over training seeds of the per-seed mean of ``metric``; 0 with one seed."""
    if "seed" not in rows.columns:
        return 0.0
    means = rows.groupby("seed")[metric].apply(lambda v: pd.to_numeric(v, errors="coerce").mean())
    return float(means.std(ddof=1)) if len(means) > 1 else 0.0
def _summarize_extra(rows: pd.DataFrame, entry: dict) -> None:
    """Add the EXTRA_METRICS and lesion counts of one region's rows to its summary ``entry``."""
    for metric in (m for m in EXTRA_METRICS if m in rows.columns):
        values = pd.to_numeric(rows[metric], errors="coerce")
        finite = values[np.isfinite(values.to_numpy(dtype=np.float64))]
        entry["nonfinite"][metric] = int(len(values) - len(finite))
        if not finite.empty:
            entry[metric] = _stats(finite)
    counts = [c for c in LESION_COUNTS if c in rows.columns]
    if counts:
        entry["lesions"] = {c.removeprefix("lesion_"): int(pd.to_numeric(rows[c]).sum()) for c in counts}


def _assert_finite(obj, where: str = "summary") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"{where} is not finite ({obj})")
    if isinstance(obj, dict):
        for key, value in obj.items():
            _assert_finite(value, f"{where}.{key}")


def write_case_table(cases: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the per-case table as CSV atomically."""
    with atomic_path(path) as tmp:
        cases.to_csv(tmp, index=False)


def write_summary(summary: dict, path: str | os.PathLike) -> None:
    """Write the summary as JSON atomically (it is checked to hold only finite numbers)."""
    _assert_finite(summary)
    write_json(path, summary)
