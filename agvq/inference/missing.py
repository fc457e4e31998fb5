"""Filling a missing MRI sequence so that models trained on all sequences can still predict a case.

``fill_missing`` is the one place a fill mode is interpreted (params ``infer.missing_modality`` and the missing-
sequence perturbation of the robustness study use it); a mode that synthesizes the sequence from the others plugs in
here. The modes act on raw intensities, before the crop and the per-case z-score of preprocessing:

* ``zero``: the sequence is 0 everywhere;
* ``mean``: the sequence is the brain mean of the sequences present inside the brain (nonzero in any of them), 0
  outside.

Both leave a channel that is constant inside the brain, which the per-modality z-score over brain voxels
(agvq.data.preprocess.zscore) maps to exactly 0: under that normalisation the two modes give the network the same
input (tested); they differ only in the raw intensities.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

FILL_MODES = ("zero", "mean")
"""Fill modes of ``fill_missing`` (params ``infer.missing_modality`` adds ``error``: stop instead of filling)."""


def fill_missing(present: Mapping[str, np.ndarray], modalities: Sequence[str], mode: str) -> list[np.ndarray]:
    """The volumes of ``modalities`` in that order: those in ``present`` as given, the others filled by ``mode``.

    Raises ValueError for an unknown mode, when no sequence is present, or when the present volumes differ in shape.
    """
    if mode not in FILL_MODES:
        raise ValueError(f"unknown fill mode {mode!r}; choose one of {list(FILL_MODES)}")
    available = [present[m] for m in modalities if m in present]
    if not available:
        raise ValueError(f"none of the sequences {list(modalities)} is present: nothing to fill from")
    shapes = {np.shape(v) for v in available}
    if len(shapes) > 1:
        raise ValueError(f"present sequences differ in shape: {sorted(shapes)}")
    shape = shapes.pop()
    brain = np.zeros(shape, dtype=bool)
    for volume in available:
        brain |= np.asarray(volume) != 0
    dtype = np.result_type(*[np.asarray(v).dtype for v in available], np.float32)
    fill = None
    if mode == "mean":
        means = [np.asarray(v)[brain].mean(dtype=np.float64) for v in available] if brain.any() else [0.0]
        fill = np.zeros(shape, dtype=dtype)
        fill[brain] = np.float64(np.mean(means))
    out = []
    for m in modalities:
        if m in present:
            out.append(present[m])
        else:
            out.append(np.zeros(shape, dtype=dtype) if fill is None else fill.copy())
    return out
