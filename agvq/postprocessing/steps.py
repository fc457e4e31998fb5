"""The postprocessing steps: pure functions on nested region masks {WT, TC, ET} and on label maps.

* ``largest_wt``: keep the largest 26-connected whole-tumour component (and every other one of at least
  ``wt_min_voxels`` voxels); TC and ET are restricted to the kept WT, so a removed component leaves no label.
* ``largest_tc``: the same for the tumour core inside WT; a removed core component stays tumour as oedema, and ET is
  restricted to the kept core.
* ``small_et``: a predicted enhancing tumour of fewer than ``et_min_voxels`` voxels in all is relabelled necrosis
  (it stays tumour core), the BraTS convention for cases without enhancing tumour.

Components are 26-connected, as the lesions of agvq.metrics.lesionwise. A tie for the largest keeps the first in
array order. Every step leaves a mask unchanged when nothing qualifies.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from agvq.config import PostprocessConfig
from agvq.metrics.lesionwise import lesions
from agvq.metrics.surface import bounding_box
from agvq.regions import REGIONS, LabelConvention, labels_to_regions, regions_to_labels

Masks = dict[str, np.ndarray]


def keep_components(mask: np.ndarray, min_voxels: int | None) -> np.ndarray:
    """The largest 26-connected component of ``mask`` and every other of at least ``min_voxels`` (None: none)."""
    mask = np.asarray(mask, dtype=bool)
    labels, count = lesions(mask)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.zeros(count + 1, dtype=bool)
    keep[1 + int(np.argmax(sizes))] = True
    if min_voxels is not None:
        keep[1:] |= sizes >= int(min_voxels)
    return keep[labels]


def largest_wt(masks: Masks, cfg: PostprocessConfig) -> Masks:
    wt = keep_components(masks["WT"], cfg.wt_min_voxels)
    return {"WT": wt, "TC": masks["TC"] & wt, "ET": masks["ET"] & wt}


def largest_tc(masks: Masks, cfg: PostprocessConfig) -> Masks:
    tc = keep_components(masks["TC"] & masks["WT"], cfg.tc_min_voxels)
    return {"WT": masks["WT"], "TC": tc, "ET": masks["ET"] & tc}


def small_et(masks: Masks, cfg: PostprocessConfig) -> Masks:
    n_et = int(np.count_nonzero(masks["ET"]))
    if 0 < n_et < cfg.et_min_voxels:
        return {"WT": masks["WT"], "TC": masks["TC"] | masks["ET"], "ET": np.zeros_like(masks["ET"])}
    return dict(masks)


STEPS: dict[str, Callable[[Masks, PostprocessConfig], Masks]] = {
    "largest_wt": largest_wt, "largest_tc": largest_tc, "small_et": small_et,
}


def apply_to_masks(masks: Masks, steps: Sequence[str], cfg: PostprocessConfig) -> Masks:
    """Apply ``steps`` in order to the region masks (every region of agvq.regions.REGIONS must be given)."""
    missing = [r for r in REGIONS if r not in masks]
    if missing:
        raise ValueError(f"postprocessing needs the masks of every region; missing {missing}")
    out = {r: np.asarray(masks[r], dtype=bool) for r in REGIONS}
    for step in steps:
        if step not in STEPS:
            raise ValueError(f"unknown postprocessing step {step!r}; expected one of {sorted(STEPS)}")
        out = STEPS[step](out, cfg)
    return out


def apply_to_labels(labels: np.ndarray, convention: LabelConvention, steps: Sequence[str],
                    cfg: PostprocessConfig) -> np.ndarray:
    """A label map with ``steps`` applied (same shape, dtype and convention); computed on the tumour's bounding box
    (every step is local to the tumour voxels, so nothing outside it can change)."""
    labels = np.asarray(labels)
    box = bounding_box(labels)
    if box is None or not steps:
        return labels.copy()
    regions = labels_to_regions(labels[box], convention, REGIONS)
    masks = apply_to_masks(dict(zip(REGIONS, regions)), steps, cfg)
    out = labels.copy()
    out[box] = regions_to_labels(masks, convention, dtype=labels.dtype)
    return out
