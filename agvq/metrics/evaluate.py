"""Evaluate predicted label maps against the raw ground truth: one row per case and region."""
from __future__ import annotations

import logging
import os
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from agvq.errors import CaseError, ConfigError
from agvq.io.discovery import CaseFiles, scan_cases
from agvq.io.nifti import NiftiReadError, Volume, read_volume
from agvq.metrics.brats import brats_extra
from agvq.metrics.segmentation import LabelValueError, case_metrics
from agvq.metrics.tables import COLUMNS, EXTRA_COLUMNS
from agvq.processes import worker_pool

log = logging.getLogger("agvq.metrics")

AFFINE_TOLERANCE_MM = 1e-3
"""Largest difference allowed between prediction and ground-truth affines (float32 header round-off)."""


@dataclass(frozen=True)
class _Job:
    case: str
    pred: Path
    seg: Path
    convention: str
    regions: tuple[str, ...]
    empty_penalty: float
    nsd_tolerance: float | None


def ground_truth(raw_dir: str | os.PathLike, case_ids: Sequence[str]) -> dict[str, CaseFiles]:
    """CaseFiles (with a segmentation) of each of ``case_ids`` under ``raw_dir``; CaseError names a missing one."""
    found, problems = scan_cases(raw_dir)
    by_id = {c.case: c for c in found}
    unreadable = {p.case: p for p in problems}
    out = {}
    for case in case_ids:
        if case in unreadable:
            raise unreadable[case]
        if case not in by_id:
            raise CaseError(case, None, f"no ground-truth case folder under {raw_dir}")
        if by_id[case].seg is None:
            raise CaseError(case, by_id[case].expected_name("seg"), "ground-truth segmentation file is missing")
        out[case] = by_id[case]
    return out


def _read(case: str, path: Path) -> Volume:
    try:
        return read_volume(path)
    except NiftiReadError as exc:
        raise CaseError(case, str(path), str(exc)) from None


def _evaluate_case(job: _Job) -> list[dict]:
    truth = _read(job.case, job.seg)
    pred = _read(job.case, job.pred)
    if pred.shape != truth.shape:
        raise CaseError(
            job.case, str(job.pred), f"prediction shape {pred.shape} differs from the ground truth's {truth.shape}"
        )
    if not np.allclose(pred.affine, truth.affine, rtol=0.0, atol=AFFINE_TOLERANCE_MM):
        diff = float(np.max(np.abs(pred.affine - truth.affine)))
        raise CaseError(
            job.case, str(job.pred), f"prediction affine differs from the ground truth's (max difference {diff:.4g})"
        )
    try:
        extra = None if job.nsd_tolerance is None else brats_extra(job.nsd_tolerance, job.empty_penalty)
        rows = case_metrics(pred.data, truth.data, job.convention, truth.spacing, job.regions, job.empty_penalty,
                            extra)
    except LabelValueError as exc:
        path = job.pred if exc.source == "prediction" else job.seg
        raise CaseError(job.case, str(path), str(exc)) from None
    return [{"case": job.case, **row} for row in rows]


def _evaluate_case_safe(job: _Job) -> list[dict] | tuple[str | None, str | None, str]:
    """Worker entry: a CaseError comes back as its (case, file, problem) fields, which always pickle."""
    try:
        return _evaluate_case(job)
    except CaseError as exc:
        return (exc.case, exc.file, exc.problem)


def _jobs(
    pred_dir: Path, raw_dir: Path, case_ids: Sequence[str], regions: tuple[str, ...], empty_penalty: float,
    nsd_tolerance: float | None,
) -> list[_Job]:
    missing = [case for case in case_ids if not (pred_dir / f"{case}.nii.gz").is_file()]
    if missing:
        more = f" ({len(missing) - 1} more cases lack predictions)" if len(missing) > 1 else ""
        raise CaseError(missing[0], str(pred_dir / f"{missing[0]}.nii.gz"),
                        f"prediction is missing{more}; if infer skipped it (infer.on_error: skip), its report says why")
    truth = ground_truth(raw_dir, case_ids)
    return [
        _Job(case, pred_dir / f"{case}.nii.gz", truth[case].seg, truth[case].convention, regions, float(empty_penalty),
             None if nsd_tolerance is None else float(nsd_tolerance))
        for case in case_ids
    ]


def evaluate_predictions(
    pred_dir: str | os.PathLike,
    raw_dir: str | os.PathLike,
    case_ids: Sequence[str],
    regions: Sequence[str],
    empty_penalty: float,
    workers: int,
    nsd_tolerance: float | None = None,
) -> pd.DataFrame:
    """Dice and HD95 (mm, spacing from the ground-truth header) of ``<pred_dir>/<case>.nii.gz`` for each case.

    Predictions are label maps in the case's own convention (brats2021 / brats2023, told by the raw file
    naming) on the ground truth's grid. Returns one row per case and region, in the given orders, with the
    columns of agvq.metrics.tables.COLUMNS (and, with ``nsd_tolerance`` in mm, EXTRA_COLUMNS: NSD, sensitivity,
    specificity, lesion-wise scores). Raises CaseError naming the case for a missing or unreadable file,
    a grid mismatch or labels outside the convention.
    """
    pred_dir, raw_dir = Path(pred_dir), Path(raw_dir)
    if not pred_dir.is_dir():
        raise ConfigError(f"prediction folder {pred_dir} does not exist")
    if not raw_dir.is_dir():
        raise ConfigError(f"raw data folder {raw_dir} does not exist")
    if not case_ids:
        raise ConfigError("no cases to evaluate")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    jobs = _jobs(pred_dir, raw_dir, list(case_ids), tuple(regions), empty_penalty, nsd_tolerance)
    results: dict[str, list[dict]] = {}
    progress = tqdm(total=len(jobs), desc="evaluate", unit="case")
    try:
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                results[job.case] = _evaluate_case(job)
                progress.update()
        else:
            with worker_pool(min(workers, len(jobs))) as pool:
                futures = {pool.submit(_evaluate_case_safe, job): job.case for job in jobs}
                for future in as_completed(futures):
                    out = future.result()
                    if isinstance(out, tuple):
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise CaseError(*out)
                    results[futures[future]] = out
                    progress.update()
    finally:
        progress.close()
    rows = [row for job in jobs for row in results[job.case]]
    log.info("evaluated %d cases x %d regions", len(jobs), len(regions))
    columns = list(COLUMNS) + (list(EXTRA_COLUMNS) if nsd_tolerance is not None else [])
    return pd.DataFrame(rows, columns=columns)
