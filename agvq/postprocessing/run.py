"""The postprocess stage: per variant, choose the steps on the validation predictions (scored against the validation
labels), then apply them to the test predictions, written as ``<out>/<variant>/<case>.nii.gz``.

Reads: ``<val_root>/<variant>/<case>.nii.gz`` and the validation cases' segmentations; ``<pred_root>/<variant>/
<case>.nii.gz`` for the test cases, whose label convention comes from their raw file naming. The test
segmentations are never opened.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from agvq.config import PostprocessConfig
from agvq.errors import CaseError, ConfigError
from agvq.io.outputs import atomic_dir
from agvq.io.discovery import discover_cases
from agvq.io.nifti import NiftiReadError, Volume, read_volume, write_volume
from agvq.io.outputs import check_separate
from agvq.metrics.evaluate import AFFINE_TOLERANCE_MM, ground_truth
from agvq.postprocessing.selection import Choice, ValidationCase, choose_steps
from agvq.postprocessing.steps import apply_to_labels
from agvq.regions import get_convention


def _read(case: str, path: Path) -> Volume:
    if not path.is_file():
        raise CaseError(case, str(path), "prediction is missing (run the infer stage for this split first)")
    try:
        return read_volume(path)
    except NiftiReadError as exc:
        raise CaseError(case, str(path), str(exc)) from None


def _check_grid(case: str, path: Path, pred: Volume, truth: Volume) -> None:
    if pred.shape != truth.shape:
        raise CaseError(case, str(path), f"prediction shape {pred.shape} differs from the ground truth's {truth.shape}")
    if not np.allclose(pred.affine, truth.affine, rtol=0.0, atol=AFFINE_TOLERANCE_MM):
        raise CaseError(case, str(path), "prediction affine differs from the ground truth's")


def load_validation(val_dir: Path, truths: dict, case_ids: Sequence[str]) -> list[ValidationCase]:
    """The validation predictions of one variant with their ground truth (``truths``: case -> (Volume, convention))."""
    cases = []
    for case in case_ids:
        path = val_dir / f"{case}.nii.gz"
        pred = _read(case, path)
        truth, convention = truths[case]
        _check_grid(case, path, pred, truth)
        cases.append(ValidationCase(case, pred.data, truth.data, convention, truth.spacing))
    return cases


def read_truths(raw_dir: str | os.PathLike, case_ids: Sequence[str]) -> dict:
    """case -> (ground-truth Volume, convention) for the given (validation) cases only."""
    out = {}
    for case, files in ground_truth(raw_dir, case_ids).items():
        try:
            out[case] = (read_volume(files.seg), files.convention)
        except NiftiReadError as exc:
            raise CaseError(case, str(files.seg), str(exc)) from None
    return out


def apply_to_folder(src: Path, dst: Path, case_ids: Sequence[str], conventions: dict[str, str], steps: Sequence[str],
                    cfg: PostprocessConfig) -> int:
    """Write the postprocessed ``<dst>/<case>.nii.gz`` of every case; returns how many label maps changed."""
    dst.mkdir(parents=True, exist_ok=True)
    changed = 0
    for case in case_ids:
        path = src / f"{case}.nii.gz"
        pred = _read(case, path)
        labels = apply_to_labels(pred.data, get_convention(conventions[case]), steps, cfg)
        changed += int(not np.array_equal(labels, pred.data))
        write_volume(dst / f"{case}.nii.gz", labels, pred.affine, pred.spacing)
    return changed


def postprocess_variants(variants: Sequence[str], pred_root: str | os.PathLike, val_root: str | os.PathLike,
                         raw_dir: str | os.PathLike, val_ids: Sequence[str], test_ids: Sequence[str],
                         out_root: str | os.PathLike, cfg: PostprocessConfig, regions: Sequence[str],
                         empty_penalty: float, nsd_tolerance: float, seeds: Sequence[int] | None = None) -> dict:
    """Choose and apply the postprocessing of every variant; returns the report written to the stage's JSON.

    With ``seeds``, each variant's predictions sit in ``seed<k>/`` folders: its steps are chosen on the validation
    predictions of every seed together (one choice per variant), then applied to each seed's test predictions."""
    if not variants:
        raise ConfigError("no variants to postprocess (params variants is empty)")
    pred_root, val_root = Path(pred_root), Path(val_root)
    check_separate({"--pred": pred_root, "--val-pred": val_root, "--raw": raw_dir}, {"--out": out_root})
    truths = read_truths(raw_dir, val_ids)
    by_id = {c.case: c for c in discover_cases(raw_dir, require_labels=False)}
    missing = [c for c in test_ids if c not in by_id]
    if missing:
        raise ConfigError(f"test cases {missing[:5]} of the split are not under {raw_dir}")
    conventions = {c: by_id[c].convention for c in test_ids}
    subs = [f"seed{k}" for k in seeds] if seeds is not None else [""]
    report: dict = {"split": "val", "metric": cfg.metric, "min_gain": cfg.min_gain, "candidates": list(cfg.steps),
                    "n_val_cases": len(val_ids), "n_test_cases": len(test_ids),
                    "seeds": list(seeds) if seeds is not None else None, "variants": {}}
    with atomic_dir(out_root, "postprocess") as tmp:
        for variant in tqdm(list(variants), desc="postprocess", unit="variant", dynamic_ncols=True):
            val_cases = [c for sub in subs for c in load_validation(val_root / variant / sub, truths, val_ids)]
            choice: Choice = choose_steps(val_cases, cfg, regions, empty_penalty, nsd_tolerance)
            changed = sum(apply_to_folder(pred_root / variant / sub, Path(tmp) / variant / sub, test_ids, conventions,
                                          choice.steps, cfg) for sub in subs)
            report["variants"][variant] = {**choice.as_dict(), "test_cases_changed": changed}
    return report
