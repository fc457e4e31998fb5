"""Per-case, per-region Dice and HD95 with the BraTS empty-mask conventions.

Conventions (written into every row's ``convention`` column):

* ``both_empty``: prediction and ground truth both empty -> Dice 1, HD95 0;
* ``pred_empty`` / ``truth_empty``: exactly one of them empty -> Dice 0, HD95 = ``empty_penalty`` (373.13 mm in
  BraTS, the diagonal of the 240x240x155 1 mm grid);
* ``""``: both non-empty, measured values.

``case_metrics`` takes an ``extra`` function for more metrics per region (the evaluate stage passes the rest of the
BraTS set, agvq.metrics.brats), so training, which scores validation with Dice and HD95 only, does not import them.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from agvq.metrics.surface import bounding_box, hd95, union_box
from agvq.regions import LabelConvention, get_convention, labels_to_regions, unknown_labels

CONVENTIONS = ("both_empty", "pred_empty", "truth_empty")
"""Names of the empty-mask conventions, as they appear in the ``convention`` column."""


class LabelValueError(ValueError):
    """A label map holds values outside its convention; ``source`` is "prediction" or "ground truth"."""

    def __init__(self, source: str, message: str):
        self.source = source
        super().__init__(f"{source}: {message}")


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks; 1.0 when both are empty (the BraTS convention)."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {truth.shape}")
    total = np.count_nonzero(pred) + np.count_nonzero(truth)
    if total == 0:
        return 1.0
    return 2.0 * np.count_nonzero(pred & truth) / total


def region_metrics(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], empty_penalty: float
) -> dict:
    """Dice, HD95 and the convention applied for one pair of boolean region masks."""
    n_pred, n_truth = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
    row = {"pred_voxels": n_pred, "truth_voxels": n_truth, "pred_empty": n_pred == 0, "truth_empty": n_truth == 0}
    if n_pred == 0 and n_truth == 0:
        return {"dice": 1.0, "hd95": 0.0, "convention": "both_empty", **row}
    if n_pred == 0 or n_truth == 0:
        return {
            "dice": 0.0,
            "hd95": float(empty_penalty),
            "convention": "pred_empty" if n_pred == 0 else "truth_empty",
            **row,
        }
    overlap = int(np.count_nonzero(pred & truth))
    return {"dice": 2.0 * overlap / (n_pred + n_truth), "hd95": hd95(pred, truth, spacing), "convention": "", **row}


def case_metrics(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    convention: str | LabelConvention,
    spacing: Sequence[float],
    regions: Sequence[str],
    empty_penalty: float,
    extra: Callable[[np.ndarray, np.ndarray, Sequence[float], int], dict] | None = None,
) -> list[dict]:
    """One row per region: {region, dice, hd95, convention, pred_empty, truth_empty, pred_voxels, truth_voxels}, plus
    what ``extra(pred_mask, truth_mask, spacing, total_voxels)`` returns for the region (masks on the union box,
    ``total_voxels`` the size of the whole grid).

    Both label maps use ``convention`` (a name from agvq.regions or a LabelConvention). All regions are
    evaluated together inside the bounding box of the union of both tumours (found from axis projections), so
    the region masks are never built on the full volume; nothing outside that box can change a number.
    Raises LabelValueError when a map holds labels outside the convention.
    """
    conv = get_convention(convention) if isinstance(convention, str) else convention
    pred_labels, truth_labels = np.asarray(pred_labels), np.asarray(truth_labels)
    if pred_labels.shape != truth_labels.shape:
        raise ValueError(f"label maps differ in shape: {pred_labels.shape} vs {truth_labels.shape}")
    if empty_penalty < 0 or not np.isfinite(empty_penalty):
        raise ValueError(f"empty_penalty must be a finite non-negative number, got {empty_penalty}")
    regions = list(regions)
    box = union_box(bounding_box(pred_labels), bounding_box(truth_labels))
    if box is None:  # no tumour anywhere: every region is both-empty
        box = tuple(slice(0, 0) for _ in pred_labels.shape)
    pred_crop, truth_crop = pred_labels[box], truth_labels[box]
    for source, crop in (("prediction", pred_crop), ("ground truth", truth_crop)):
        # Outside the box every voxel is 0, so checking the crop checks the whole map.
        if not np.issubdtype(crop.dtype, np.integer) and not np.array_equal(crop, np.rint(crop)):
            raise LabelValueError(source, "label map holds non-integer values")
        bad = unknown_labels(crop, conv)
        if bad:
            raise LabelValueError(source, f"labels {bad} are not in the {conv.name} convention {list(conv.labels)}")
    pred_masks = labels_to_regions(pred_crop, conv, regions)
    truth_masks = labels_to_regions(truth_crop, conv, regions)
    rows = []
    for i, region in enumerate(regions):
        row = {"region": region, **region_metrics(pred_masks[i], truth_masks[i], spacing, empty_penalty)}
        if extra is not None:
            row.update(extra(pred_masks[i], truth_masks[i], spacing, pred_labels.size))
        rows.append(row)
    return rows
