"""Voxel-wise sensitivity and specificity of a predicted region mask.

Sensitivity = TP / (TP + FN), specificity = TN / (TN + FP), counted over the whole image grid (as BraTS does, not
only the brain), which MONAI's ``get_confusion_matrix`` + ``compute_confusion_matrix_metric`` compute too. An empty
truth leaves sensitivity undefined: NaN (as MONAI), which the summaries count and leave out of the means.
"""
from __future__ import annotations

import numpy as np


def sensitivity_specificity(pred: np.ndarray, truth: np.ndarray, total_voxels: int | None = None) -> dict:
    """{"sensitivity", "specificity"} of two boolean masks of one shape.

    The masks may be a crop that holds every foreground voxel of both; ``total_voxels`` is then the size of the whole
    grid (the voxels outside the crop are true negatives). None: the masks are the whole grid.
    """
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {truth.shape}")
    total = pred.size if total_voxels is None else int(total_voxels)
    if total < pred.size:
        raise ValueError(f"total_voxels ({total}) is smaller than the masks ({pred.size} voxels)")
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    tn = total - tp - fp - fn
    return {"sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "specificity": tn / (tn + fp) if tn + fp else float("nan")}
