"""Preprocessing: brain crop padded to the network stride, per-modality z-score, region masks.

Pure array functions (``brain_mask``, ``crop_box``, ``crop``, ``uncrop``, ``zscore``), the per-case wrappers
``prepare_case`` and ``prepare_volumes`` (the part after reading, used by inference, labels optional) and the dataset
runner ``preprocess_dataset``.

The dataset runner reads every file once: headers of all cases are checked first (cheap), then each case is
loaded, checked (truncation, a damaged gzip stream, NaN/inf, labels) and prepared in one pass by a pool of worker
processes that write into a staging folder. The staging folder replaces the output folder only when every case
passed (or, with ``on_error="skip"``, when the failing cases have been left out and listed), so a failed run leaves
nothing behind; it replaces only a folder this stage wrote (agvq.io.outputs). Suspicious but valid data (a
modality constant or all zero inside the brain) is prepared and listed as a warning.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import as_completed
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

from agvq.config import PreprocessConfig
from agvq.errors import CaseError
from agvq.io.discovery import CaseFiles, scan_cases
from agvq.io.outputs import StagedOutputs, staged_outputs
from agvq.io.prepared import write_prepared
from agvq.io.validation import CaseHeader, load_image, load_seg, validate_case
from agvq.processes import worker_pool
from agvq.regions import REGIONS, get_convention, labels_to_regions

Box = tuple[tuple[int, ...], tuple[int, ...]]


# ----------------------------------------------------------------------------------------------- pure functions
def brain_mask(image_stack: Iterable[np.ndarray]) -> np.ndarray:
    """Voxels that are nonzero in any modality; ``image_stack`` is (C, X, Y, Z) or a sequence of volumes."""
    mask = None
    for channel in image_stack:
        nonzero = np.asarray(channel) != 0
        mask = nonzero if mask is None else np.logical_or(mask, nonzero, out=mask)
    if mask is None:
        raise ValueError("brain_mask needs at least one modality")
    return mask


def crop_box(mask: np.ndarray, margin: int, stride: int, shape: tuple[int, ...] | None = None) -> Box:
    """(start, stop) of the bounding box of ``mask`` plus ``margin`` (clipped to the volume), its size padded up
    to a multiple of ``stride``, centred. The padded box may extend outside the volume (``crop`` zero-fills it).

    Matches MONAI's ``CropForeground(margin=margin, k_divisible=stride, allow_smaller=True)``.
    """
    mask = np.asarray(mask, dtype=bool)
    shape = tuple(mask.shape) if shape is None else tuple(int(s) for s in shape)
    if margin < 0 or stride < 1:
        raise ValueError(f"margin must be >= 0 and stride >= 1, got margin={margin}, stride={stride}")
    if not mask.any():
        raise ValueError("crop_box needs a non-empty mask")
    start, stop = [], []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=others))
        lo, hi = max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, shape[axis])
        size = -(-(hi - lo) // stride) * stride
        lo -= (size - (hi - lo)) // 2
        start.append(lo)
        stop.append(lo + size)
    return tuple(start), tuple(stop)


def _overlap(start, stop, shape) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the source grid and of the box that cover the part of the box inside the volume."""
    src, dst = [], []
    for lo, hi, n in zip(start, stop, shape):
        a, b = max(lo, 0), min(hi, n)
        if b <= a:
            a = b = max(min(lo, n), 0)
        src.append(slice(a, b))
        dst.append(slice(a - lo, a - lo + (b - a)))
    return tuple(src), tuple(dst)


def crop(array: np.ndarray, start, stop, fill=0) -> np.ndarray:
    """The box [start, stop) of the last len(start) axes of ``array`` (C-ordered copy), ``fill`` outside."""
    array = np.asarray(array)
    k = len(start)
    size = tuple(int(b) - int(a) for a, b in zip(start, stop))
    if any(s <= 0 for s in size):
        raise ValueError(f"empty crop box {start}..{stop}")
    out = np.full(array.shape[:-k] + size, fill, dtype=array.dtype)
    src, dst = _overlap(start, stop, array.shape[-k:])
    out[(...,) + dst] = array[(...,) + src]
    return out


def uncrop(array: np.ndarray, start, stop, original_shape, fill=0) -> np.ndarray:
    """Inverse of ``crop``: put ``array`` (box-sized in its last axes) back on a grid of ``original_shape``
    (spatial), ``fill`` where the box did not cover; the parts of the box outside the grid are dropped."""
    array = np.asarray(array)
    k = len(start)
    size = tuple(int(b) - int(a) for a, b in zip(start, stop))
    if tuple(array.shape[-k:]) != size:
        raise ValueError(f"array shape {array.shape} does not match crop box size {size}")
    original_shape = tuple(int(s) for s in original_shape)
    out = np.full(array.shape[:-k] + original_shape, fill, dtype=array.dtype)
    src, dst = _overlap(start, stop, original_shape)
    out[(...,) + src] = array[(...,) + dst]
    return out


def zscore(image: Iterable[np.ndarray], brain: np.ndarray) -> np.ndarray:
    """Per channel: (x - mean) / std over ``brain`` voxels, 0 outside; float32 (C, X, Y, Z).

    Statistics in float64 (population std, as MONAI's NormalizeIntensity); a channel with std 0 is only
    centred. An empty ``brain`` gives all zeros.
    """
    brain = np.asarray(brain, dtype=bool)
    channels = list(image)
    out = np.zeros((len(channels),) + brain.shape, dtype=np.float32)
    if not brain.any():
        return out
    for c, channel in enumerate(channels):
        values = np.asarray(channel)[brain].astype(np.float32)
        mean, std = values.mean(dtype=np.float64), values.std(dtype=np.float64)
        values -= np.float32(mean)
        if std > 0:
            values /= np.float32(std)
        out[c][brain] = values
    return out


def constant_channels(image: Iterable[np.ndarray], brain: np.ndarray, zscored: np.ndarray | None = None
                      ) -> list[tuple[int, float]]:
    """(channel index, value) of each channel that holds one value on every ``brain`` voxel (nothing to z-score:
    an all-zero or blank scan). An empty ``brain`` gives none.

    With ``zscored`` (``zscore(image, brain)``), only the channels that are zero everywhere there are examined: a
    channel is constant inside the brain exactly when its z-score is all zero, and ``any()`` on a normal channel
    stops at its first brain voxel, so the check costs next to nothing.
    """
    brain = np.asarray(brain, dtype=bool)
    if not brain.any():
        return []
    out = []
    for c, channel in enumerate(image):
        if zscored is not None and zscored[c].any():
            continue
        values = np.asarray(channel)[brain]
        lo, hi = values.min(), values.max()
        if lo == hi:
            out.append((c, float(lo)))
    return out


# ------------------------------------------------------------------------------------------------- one case
def prepare_from_header(header: CaseHeader, modalities, margin: int, stride: int) -> tuple[dict, dict]:
    """Load (once), check and prepare a case whose headers ``validate_case`` accepted; returns (arrays, props).

    The crop box covers the brain and, for labelled cases, every labelled voxel, so masks are never cut.
    """
    modalities = list(modalities)
    # no local names for the loaded arrays, so prepare_volumes can free the full volumes once they are cropped
    return prepare_volumes(header, [load_image(header, m) for m in modalities],
                           load_seg(header) if header.has_labels else None, modalities, margin, stride)


def prepare_volumes(header: CaseHeader, volumes: list, seg: np.ndarray | None, modalities, margin: int,
                    stride: int) -> tuple[dict, dict]:
    """Crop, z-score and region masks of already loaded raw ``volumes`` (``modalities`` order, on the grid of
    ``header``) and the optional label map ``seg``: the part of ``prepare_from_header`` after reading, so that
    inference can fill a missing sequence or the robustness study perturb the raw intensities first."""
    modalities = list(modalities)
    brain = brain_mask(volumes)
    if not brain.any():
        raise CaseError(header.case, None, "every modality is zero: no brain voxels to crop to")
    extent = brain if seg is None else (brain | (seg != 0))
    start, stop = crop_box(extent, margin, stride)
    brain_c = crop(brain, start, stop)
    cropped = [crop(v, start, stop) for v in volumes]
    del volumes, brain, extent  # keep one case's peak memory low: only the crops are needed from here
    image = zscore(cropped, brain_c)
    warnings = []
    for c, level in constant_channels(cropped, brain_c, image):
        if modalities[c] not in header.files:  # a missing sequence filled at inference (already warned about)
            continue
        what = "all zero" if level == 0 else f"constant ({level:g})"
        warnings.append({"file": header.files[modalities[c]].name,
                         "problem": f"modality {modalities[c]} is {what} inside the brain (a blank or failed scan?)"})
    arrays = {"image": image, "brain": brain_c}
    del cropped
    if seg is not None:
        regions = labels_to_regions(crop(seg, start, stop), get_convention(header.convention), REGIONS)
        arrays["masks"] = regions.astype(np.uint8)
    props = {
        "case": header.case,
        "naming": header.naming,
        "convention": header.convention,
        "modalities": modalities,
        "original_shape": list(header.shape),
        "affine": np.asarray(header.affine).tolist(),
        "spacing": list(header.spacing),
        "crop_start": [int(s) for s in start],
        "crop_stop": [int(s) for s in stop],
        "has_labels": seg is not None,
        "files": {k: p.name for k, p in header.files.items()},
        "warnings": warnings,
    }
    return arrays, props


def prepare_case(case_files: CaseFiles, modalities, margin: int, stride: int,
                 require_labels: bool = True) -> tuple[dict, dict]:
    """Validate and prepare one case (labels used when present, required with ``require_labels``)."""
    header = validate_case(case_files, modalities, require_labels)
    return prepare_from_header(header, modalities, margin, stride)


# --------------------------------------------------------------------------------------------- the dataset
def _stage_case(header: CaseHeader, modalities, margin, stride, staging: Path, compress_level: int) -> dict:
    """Worker task: prepare one case into ``staging``; a CaseError comes back as data (it does not pickle)."""
    try:
        arrays, props = prepare_from_header(header, modalities, margin, stride)
    except CaseError as exc:
        return {"case": header.case, "error": (exc.case, exc.file, exc.problem)}
    write_prepared(staging, arrays, props, compress_level)
    masks = arrays.get("masks")
    return {"case": header.case, "naming": props["naming"], "has_labels": props["has_labels"],
            "original_shape": props["original_shape"], "crop_start": props["crop_start"],
            "crop_stop": props["crop_stop"], "crop_shape": list(arrays["brain"].shape),
            "tumour_voxels": None if masks is None else
            {r: int(np.count_nonzero(m)) for r, m in zip(REGIONS, masks)},
            "warnings": props["warnings"]}


def _run_pool(headers: list[CaseHeader], task_args: tuple, workers: int, stop_early: bool, progress: bool) -> dict:
    """Results by case. With ``stop_early``, cases after a failed one (in sorted order) are cancelled; every case
    before it still runs, so the first failing case in sorted order is always known."""
    results: dict[str, dict] = {}
    bar = tqdm(total=len(headers), desc="preprocess", unit="case", disable=None if progress else True)
    try:
        if workers <= 1:
            for header in headers:
                results[header.case] = res = _stage_case(header, *task_args)
                bar.update()
                if stop_early and "error" in res:
                    break
            return results
        with worker_pool(workers) as pool:
            futures = {pool.submit(_stage_case, h, *task_args): h.case for h in headers}
            for future in as_completed(futures):
                if future.cancelled():
                    continue
                res = future.result()
                results[res["case"]] = res
                bar.update()
                if stop_early and "error" in res:
                    for other, case in futures.items():
                        if case > res["case"]:
                            other.cancel()
        return results
    finally:
        bar.close()


def check_headers(raw_dir: str | Path, cfg: PreprocessConfig) -> tuple[list[CaseHeader], list[CaseError], int]:
    """(headers of the valid cases, failures sorted by case, number of case folders found): the cheap first pass.
    With ``on_error="stop"`` the first failure in sorted order is raised."""
    cases, failures = scan_cases(raw_dir)
    found = len(cases) + len(failures)
    headers = []
    for case_files in cases:
        try:
            headers.append(validate_case(case_files, list(cfg.modalities), cfg.require_labels))
        except CaseError as exc:
            failures.append(exc)
    failures.sort(key=lambda e: e.case or "")
    if cfg.on_error == "stop" and failures:
        raise failures[0]
    return headers, failures, found


def _entry(case: str | None, file: str | None, problem: str) -> dict:
    return {"case": case, "file": file, "problem": problem}


def preprocess_dataset(raw_dir: str | Path, out_dir: str | Path, cfg: PreprocessConfig, progress: bool = True,
                       before_commit: Callable[[list[str]], None] | None = None,
                       staged: StagedOutputs | None = None) -> dict:
    """Prepare every case under ``raw_dir`` into ``out_dir`` (replaced whole, atomically); returns the report.

    ``cfg.on_error``: "stop" raises the first failing case's CaseError (header problems of all cases are found
    before any data is read, so they come first; within each level the first case in sorted order);
    "skip" leaves failing cases out and lists them in the report. ``cfg.workers`` 0 means all available cores.
    ``before_commit(case_ids)`` runs before the output is committed; raising there aborts the run cleanly. With
    ``staged``, the folder is staged there and committed with the caller's other outputs (all or nothing).
    """
    if staged is None:
        with staged_outputs("preprocess") as own:
            return preprocess_dataset(raw_dir, out_dir, cfg, progress, before_commit, own)
    t0 = time.perf_counter()
    modalities, workers, stop = list(cfg.modalities), cfg.workers, cfg.on_error == "stop"
    if workers == 0:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    headers, failures, found = check_headers(raw_dir, cfg)
    staging = staged.folder(out_dir)
    task_args = (modalities, cfg.margin, cfg.stride, staging, cfg.compress_level)
    results = _run_pool(headers, task_args, min(workers, max(len(headers), 1)), stop, progress)
    data_failures = sorted((CaseError(*r["error"]) for r in results.values() if "error" in r),
                           key=lambda e: e.case or "")
    if stop and data_failures:
        raise data_failures[0]
    failures = sorted(failures + data_failures, key=lambda e: e.case or "")
    done = {c: {k: v for k, v in r.items() if k not in ("case", "warnings")}
            for c, r in sorted(results.items()) if "error" not in r}
    if not done:
        raise CaseError(None, str(raw_dir), f"no valid cases to prepare ({len(failures)} skipped: "
                                            f"{failures[0] if failures else 'none found'})")
    warnings = [_entry(c, w["file"], w["problem"]) for c, r in sorted(results.items()) for w in r.get("warnings", ())]
    if before_commit is not None:
        before_commit(sorted(done))
    return {
        "raw_dir": str(raw_dir),
        "modalities": modalities,
        "margin": cfg.margin,
        "stride": cfg.stride,
        "on_error": cfg.on_error,
        "workers": workers,
        "counts": {"found": found, "prepared": len(done), "skipped": len(failures)},
        "skipped": [_entry(f.case, f.file, f.problem) for f in failures],
        "warnings": warnings,
        "cases": done,
        "elapsed_seconds": round(time.perf_counter() - t0, 3),
    }
