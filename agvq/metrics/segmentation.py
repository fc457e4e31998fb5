"""Per-case, per-region Dice and HD95 with the BraTS empty-mask conventions.

Conventions (written into every row's ``convention`` column):

* ``both_empty``: prediction and ground truth both empty -> Dice 1, HD95 0;
* ``pred_empty`` / ``truth_empty``: exactly one of them empty -> Dice 0, HD95 = ``empty_penalty`` (373.13 mm in
  BraTS, the diagonal of the 240x240x155 1 mm grid);
* ``""``: both non-empty, measured values.

With an NSD tolerance (``nsd_tolerance``, mm) the rows also hold the rest of the BraTS set: normalised surface
Dice (agvq.metrics.surface_dice), sensitivity and specificity (agvq.metrics.confusion) and the official BraTS
package's lesion-wise Dice / HD95, whose own conventions are stated in agvq.metrics.lesionwise.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from agvq.metrics.confusion import sensitivity_specificity
from agvq.metrics.lesionwise import lesion_metrics
from agvq.metrics.surface import bounding_box, hd95_from_distances, surface_distances, union_box
from agvq.metrics.surface_dice import surface_dice_from_distances
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
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], empty_penalty: float,
    nsd_tolerance: float | None = None,
) -> dict:
    """Dice, HD95 and the convention applied for one pair of boolean region masks; with ``nsd_tolerance`` (mm) also
    the normalised surface Dice, from the same surface distances (both empty: 1, one empty: 0)."""
    n_pred, n_truth = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
    row = {"pred_voxels": n_pred, "truth_voxels": n_truth, "pred_empty": n_pred == 0, "truth_empty": n_truth == 0}
    if n_pred == 0 and n_truth == 0:
        out = {"dice": 1.0, "hd95": 0.0, "convention": "both_empty", **row}
        return out if nsd_tolerance is None else {**out, "nsd": 1.0}
    if n_pred == 0 or n_truth == 0:
        out = {
            "dice": 0.0,
            "hd95": float(empty_penalty),
            "convention": "pred_empty" if n_pred == 0 else "truth_empty",
            **row,
        }
        return out if nsd_tolerance is None else {**out, "nsd": 0.0}
    overlap = int(np.count_nonzero(pred & truth))
    to_truth, to_pred = surface_distances(pred, truth, spacing)
    out = {"dice": 2.0 * overlap / (n_pred + n_truth), "hd95": hd95_from_distances(to_truth, to_pred),
           "convention": "", **row}
    if nsd_tolerance is not None:
        out["nsd"] = surface_dice_from_distances(to_truth, to_pred, nsd_tolerance)
    return out


def case_metrics(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    convention: str | LabelConvention,
    spacing: Sequence[float],
    regions: Sequence[str],
    empty_penalty: float,
    nsd_tolerance: float | None = None,
) -> list[dict]:
    """One row per region: {region, dice, hd95, convention, pred_empty, truth_empty, pred_voxels, truth_voxels}, and
    with ``nsd_tolerance`` (mm) also nsd, sensitivity, specificity (over the whole grid) and the lesion-wise
    lesion_dice, lesion_hd95, lesion_tp, lesion_fp, lesion_fn.

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
        row = {"region": region, **region_metrics(pred_masks[i], truth_masks[i], spacing, empty_penalty,
                                                  nsd_tolerance)}
        if nsd_tolerance is not None:
            row.update(sensitivity_specificity(pred_masks[i], truth_masks[i], total_voxels=pred_labels.size))
            row.update(lesion_metrics(pred_masks[i], truth_masks[i], spacing, empty_penalty))
        rows.append(row)
    return rows
