"""BraTS lesion-wise Dice and HD95, as the official BraTS package computes them.

The official package (PyPI ``brats-evaluation`` 0.0.10 on ``panoptica`` 2.1.7, glioma config ``gli``, parsed by its
``brats-parse-metrics seg``) defines, per region mask:

* lesions: 26-connected components of the truth and of the prediction (cc3d's default connectivity);
* matching: one-to-one, maximising the summed Dice of matched pairs (Hungarian assignment, scipy's
  ``linear_sum_assignment`` on cost ``1 - Dice``); a pair is a candidate when its Dice is at least 1e-6, i.e. when
  the two lesions overlap at all. No lesion is dilated before matching;
* per matched pair: the Dice of the two lesions and their HD95, the 95th percentile of the POOLED surface distances
  of both directions (unlike the case-wise HD95 of agvq.metrics.surface, the larger of the two directed ones);
* the lesion-wise Dice / HD95 of the case: the MEAN over matched pairs only. Missed truth lesions and spurious
  predicted lesions are counted (``lesion_fn`` / ``lesion_fp``) but do not enter the means;
* no matched pair although a lesion exists (prediction or truth empty, or nothing overlaps): Dice 0, HD95 infinite,
  which we report as ``empty_penalty`` (373.13 mm, the BraTS penalty) so the tables stay finite;
* no lesion in either: undefined (NaN), left out of the means, as the package's summary drops it.

This differs from the BraTS 2023 description (ground-truth lesions dilated before matching, all predicted components
that touch a dilated lesion merged, missed and spurious lesions scored Dice 0 / HD95 374 inside the mean): the
package is what the challenge runs, so it is followed here. tests/test_lesionwise.py checks every number against
the package's own output on constructed pairs (tests/reference/lesionwise).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from agvq.metrics.surface import surface_distances, union_box

CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
"""26-connectivity of lesions (3D)."""

MATCH_THRESHOLD = 1e-6
"""Smallest Dice of a candidate pair (the package's ``matching_threshold``)."""

COLUMNS = ("lesion_dice", "lesion_hd95", "lesion_tp", "lesion_fp", "lesion_fn")


def lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components of a boolean mask: (label array, number of lesions)."""
    mask = np.asarray(mask, dtype=bool)
    structure = CONNECTIVITY if mask.ndim == 3 else np.ones((3,) * mask.ndim, dtype=bool)
    labels, count = ndimage.label(mask, structure=structure)
    return labels, int(count)


def _pair_dice(truth_labels: np.ndarray, n_truth: int, pred_labels: np.ndarray, n_pred: int) -> np.ndarray:
    """(n_truth, n_pred) Dice of every truth lesion with every predicted lesion."""
    both = (truth_labels > 0) & (pred_labels > 0)
    pairs = truth_labels[both].astype(np.int64) * (n_pred + 1) + pred_labels[both]
    inter = np.bincount(pairs, minlength=(n_truth + 1) * (n_pred + 1)).reshape(n_truth + 1, n_pred + 1)[1:, 1:]
    vol_truth = np.bincount(truth_labels.ravel(), minlength=n_truth + 1)[1:]
    vol_pred = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)[1:]
    return 2.0 * inter / (vol_truth[:, None] + vol_pred[None, :])


def match_lesions(truth_labels: np.ndarray, n_truth: int, pred_labels: np.ndarray,
                  n_pred: int) -> list[tuple[int, int, float]]:
    """One-to-one matches (truth label, predicted label, Dice) that maximise the summed Dice of overlapping pairs."""
    if n_truth == 0 or n_pred == 0:
        return []
    dice = _pair_dice(truth_labels, n_truth, pred_labels, n_pred)
    cost = np.where(dice >= MATCH_THRESHOLD, 1.0 - dice, 1.0 + 1e-6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r) + 1, int(c) + 1, float(dice[r, c])) for r, c in zip(rows, cols) if cost[r, c] < 1.0]


def pooled_hd95(pred: np.ndarray, truth: np.ndarray, spacing: float | Sequence[float]) -> float:
    """95th percentile of the surface distances of both directions pooled (the package's per-lesion HD95)."""
    to_truth, to_pred = surface_distances(pred, truth, spacing)
    return float(np.percentile(np.concatenate([to_truth, to_pred]), 95))


def lesion_metrics(pred: np.ndarray, truth: np.ndarray, spacing: float | Sequence[float],
                   empty_penalty: float) -> dict:
    """{lesion_dice, lesion_hd95, lesion_tp, lesion_fp, lesion_fn} of two boolean masks of one shape."""
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {truth.shape}")
    pred_labels, n_pred = lesions(pred)
    truth_labels, n_truth = lesions(truth)
    matches = match_lesions(truth_labels, n_truth, pred_labels, n_pred)
    tp = len(matches)
    row = {"lesion_tp": tp, "lesion_fp": n_pred - tp, "lesion_fn": n_truth - tp}
    if n_pred == 0 and n_truth == 0:
        return {"lesion_dice": float("nan"), "lesion_hd95": float("nan"), **row}
    if tp == 0:
        return {"lesion_dice": 0.0, "lesion_hd95": float(empty_penalty), **row}
    truth_boxes = ndimage.find_objects(truth_labels)
    pred_boxes = ndimage.find_objects(pred_labels)
    dices, hds = [], []
    for t, p, d in matches:
        box = union_box(truth_boxes[t - 1], pred_boxes[p - 1])
        dices.append(d)
        hds.append(pooled_hd95(pred_labels[box] == p, truth_labels[box] == t, spacing))
    return {"lesion_dice": float(np.mean(dices)), "lesion_hd95": float(np.mean(hds)), **row}

