"""Bootstrap confidence intervals over cases and training seeds.

Per-case tables (agvq.metrics.tables) hold one row per (case, region), and a ``seed`` column when a variant was
trained with several seeds. A variant's mean is the mean over its (case, seed) rows. Intervals resample the cases
with replacement (paired across the two variants of a comparison: the same cases) and, hierarchically, each
variant's seeds with replacement (independently: seed k of one variant has nothing to do with seed k of another),
so they carry both sources of uncertainty: which cases were drawn, and which training runs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def check_bootstrap(n_boot: int, confidence: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"bootstrap resamples must be at least 1, got {n_boot}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def case_seed_matrix(cases: pd.DataFrame, metric: str, region: str, side: str = "table") -> pd.DataFrame:
    """(case x seed) values of ``metric`` in ``region`` (NaN where a seed lacks a case or its value is not
    finite); a table without a ``seed`` column is one seed (0). Raises ValueError for a region without rows or a
    (case, seed) listed twice."""
    rows = cases[cases["region"] == region]
    if rows.empty:
        raise ValueError(f"per-case table {side} has no rows for region {region}")
    seeds = rows["seed"] if "seed" in rows.columns else pd.Series(0, index=rows.index)
    frame = pd.DataFrame({"case": rows["case"].astype(str).to_numpy(), "seed": seeds.astype(int).to_numpy(),
                          "value": pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=np.float64)})
    dup = frame.duplicated(["case", "seed"])
    if dup.any():
        case = frame.loc[dup, "case"].iloc[0]
        raise ValueError(f"per-case table {side} lists case {case} twice for region {region}")
    return frame.pivot(index="case", columns="seed", values="value").sort_index()


def _means(matrix: np.ndarray, case_idx: np.ndarray, seed_idx: np.ndarray) -> np.ndarray:
    """Mean of each resample: ``matrix[cases, seeds]`` with case_idx (B, n) and seed_idx (B, k); NaN ignored."""
    picked = matrix[case_idx[:, :, None], seed_idx[:, None, :]]
    return np.nanmean(picked.reshape(picked.shape[0], -1), axis=1)


def _interval(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - float(confidence)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(values, n_boot: int, seed: int, confidence: float) -> dict:
    """Mean of the finite ``values`` and its percentile bootstrap CI: {mean, ci_low, ci_high, n}."""
    check_bootstrap(n_boot, confidence)
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError("no finite values to bootstrap")
    rng = np.random.default_rng(seed)
    boot = arr[rng.integers(0, arr.size, size=(int(n_boot), arr.size))].mean(axis=1)
    low, high = _interval(boot, confidence)
    return {"mean": float(arr.mean()), "ci_low": low, "ci_high": high, "n": int(arr.size)}


def variant_ci(cases: pd.DataFrame, metric: str, region: str, n_boot: int, seed: int, confidence: float) -> dict:
    """Mean of a variant over its (case, seed) rows and its bootstrap CI (cases, then seeds, resampled):
    {mean, ci_low, ci_high, n (cases), seeds}."""
    check_bootstrap(n_boot, confidence)
    matrix = case_seed_matrix(cases, metric, region).to_numpy()
    matrix = matrix[np.isfinite(matrix).any(axis=1)]
    if matrix.size == 0:
        raise ValueError(f"no finite {metric} values for region {region}")
    rng = np.random.default_rng(seed)
    n, k = matrix.shape
    boot = _means(matrix, rng.integers(0, n, size=(int(n_boot), n)), rng.integers(0, k, size=(int(n_boot), k)))
    low, high = _interval(boot, confidence)
    return {"mean": float(np.nanmean(matrix)), "ci_low": low, "ci_high": high, "n": int(n), "seeds": int(k)}


def paired_bootstrap(cases_a: pd.DataFrame, cases_b: pd.DataFrame, metric: str, region: str, n_boot: int,
                     seed: int, confidence: float, names: tuple[str, str] = ("A", "B")) -> dict:
    """Bootstrap of the difference of means ``a - b`` of ``metric`` in ``region``, paired by case id; each side's
    seeds are resampled independently within every case resample.

    Returns {mean_diff, ci_low, ci_high (percentile interval at ``confidence``), p_value (two-sided: twice the
    smaller share of bootstrap differences on either side of 0, at most 1), n_cases (cases used), n_dropped
    (cases without a finite value on both sides), seeds_a, seeds_b}. Raises ValueError when the two tables do not
    hold the same cases (``names`` label them).
    """
    check_bootstrap(n_boot, confidence)
    a = case_seed_matrix(cases_a, metric, region, names[0])
    b = case_seed_matrix(cases_b, metric, region, names[1])
    only_a, only_b = sorted(set(a.index) - set(b.index)), sorted(set(b.index) - set(a.index))
    if only_a or only_b:
        raise ValueError(f"case sets differ for region {region}: {len(only_a)} only in {names[0]} {only_a[:3]}, "
                         f"{len(only_b)} only in {names[1]} {only_b[:3]}")
    b = b.reindex(a.index)
    finite = np.isfinite(a.to_numpy()).any(axis=1) & np.isfinite(b.to_numpy()).any(axis=1)
    if not finite.any():
        raise ValueError(f"no case has finite {metric} in both tables for region {region}")
    ma, mb = a.to_numpy()[finite], b.to_numpy()[finite]
    n, ka, kb = ma.shape[0], ma.shape[1], mb.shape[1]
    rng = np.random.default_rng(seed)
    case_idx = rng.integers(0, n, size=(int(n_boot), n))
    boot = (_means(ma, case_idx, rng.integers(0, ka, size=(int(n_boot), ka)))
            - _means(mb, case_idx, rng.integers(0, kb, size=(int(n_boot), kb))))
    low, high = _interval(boot, confidence)
    p_value = min(1.0, 2.0 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0))))
    return {"mean_diff": float(np.nanmean(ma) - np.nanmean(mb)), "ci_low": low, "ci_high": high,
            "p_value": p_value, "n_cases": int(n), "n_dropped": int((~finite).sum()), "seeds_a": int(ka),
            "seeds_b": int(kb)}
