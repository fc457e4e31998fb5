"""Normalised surface Dice (NSD) at a tolerance in millimetres.

The share of both surfaces that lies within ``tolerance`` mm of the other surface:
``(|{p in S_pred : d(p, S_truth) <= tau}| + |{t in S_truth : d(t, S_pred) <= tau}|) / (|S_pred| + |S_truth|)``,
with the surfaces and exact Euclidean distances of agvq.metrics.surface (the ones HD95 uses). This is MONAI 1.6's
``compute_surface_dice(y_pred, y, class_thresholds=[tau], spacing=..., use_subvoxels=False)`` (the tests check it).

Conventions (the project's, as for Dice): both masks empty -> 1 (MONAI gives NaN); exactly one empty -> 0 (as MONAI).
A distance within ``ROUNDING_MM`` of the tolerance counts as within it: distances on a grid are exact sums of
squared spacings (1.2^2 + 1.6^2 = 2^2), which scaled float64 coordinates miss by an ulp in either direction.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from agvq.metrics.surface import surface_distances

ROUNDING_MM = 1e-6


def surface_dice_from_distances(to_truth: np.ndarray, to_pred: np.ndarray, tolerance: float) -> float:
    """NSD from the two directed surface-distance arrays (mm) of two non-empty masks."""
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"NSD tolerance must be a finite non-negative number of mm, got {tolerance}")
    total = len(to_truth) + len(to_pred)
    if total == 0:
        raise ValueError("surface distances of two non-empty masks cannot both be empty")
    limit = tolerance + ROUNDING_MM
    within = np.count_nonzero(to_truth <= limit) + np.count_nonzero(to_pred <= limit)
    return float(within / total)


def normalized_surface_dice(pred: np.ndarray, truth: np.ndarray, spacing: float | Sequence[float],
                            tolerance: float) -> float:
    """NSD of two boolean masks of the same shape at ``tolerance`` mm (``spacing`` in mm per axis)."""
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        return 1.0
    if not has_pred or not has_truth:
        return 0.0
    return surface_dice_from_distances(*surface_distances(pred, truth, spacing), tolerance)
