"""The rest of the BraTS metric set, per region, beside Dice and HD95 (agvq.metrics.segmentation):

* ``nsd``: normalised surface Dice at ``nsd_tolerance`` mm (agvq.metrics.surface_dice; both empty 1, one empty 0);
* ``sensitivity`` / ``specificity`` over the whole grid (agvq.metrics.confusion; sensitivity NaN for an empty truth);
* ``lesion_dice`` / ``lesion_hd95`` and the lesion counts ``lesion_tp`` / ``lesion_fp`` / ``lesion_fn``, as the
  official BraTS package computes them (agvq.metrics.lesionwise, where its conventions are stated).
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from agvq.metrics.confusion import sensitivity_specificity
from agvq.metrics.lesionwise import lesion_metrics
from agvq.metrics.surface_dice import normalized_surface_dice


def brats_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], total_voxels: int, *,
                  nsd_tolerance: float, empty_penalty: float) -> dict:
    """{nsd, sensitivity, specificity, lesion_dice, lesion_hd95, lesion_tp, lesion_fp, lesion_fn} of one region."""
    return {"nsd": normalized_surface_dice(pred, truth, spacing, nsd_tolerance),
            **sensitivity_specificity(pred, truth, total_voxels),
            **lesion_metrics(pred, truth, spacing, empty_penalty)}


def brats_extra(nsd_tolerance: float, empty_penalty: float) -> Callable:
    """The ``extra`` function of agvq.metrics.segmentation.case_metrics that adds :func:`brats_metrics`."""
    return functools.partial(brats_metrics, nsd_tolerance=float(nsd_tolerance), empty_penalty=float(empty_penalty))
