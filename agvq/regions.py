"""Label conventions and tumour regions: the one source of truth.

BraTS label maps use NCR (necrotic core), ED (peritumoural oedema) and ET (enhancing tumour):

* BraTS 2021 (``brats2021``): NCR = 1, ED = 2, ET = 4
* BraTS 2023 (``brats2023``): NCR = 1, ED = 2, ET = 3

The evaluated regions are nested: WT (whole tumour) = NCR + ED + ET, TC (tumour core) = NCR + ET, ET = ET.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
"""Region names in their canonical order (outermost first); arrays of masks follow this order."""


@dataclass(frozen=True)
class LabelConvention:
    name: str
    ncr: int
    ed: int
    et: int

    @property
    def labels(self) -> tuple[int, ...]:
        """Every value allowed in a segmentation (background included)."""
        return (0, self.ncr, self.ed, self.et)

    @property
    def region_labels(self) -> dict[str, tuple[int, ...]]:
        return {"WT": (self.ncr, self.ed, self.et), "TC": (self.ncr, self.et), "ET": (self.et,)}


CONVENTIONS: dict[str, LabelConvention] = {
    "brats2021": LabelConvention("brats2021", ncr=1, ed=2, et=4),
    "brats2023": LabelConvention("brats2023", ncr=1, ed=2, et=3),
}


def get_convention(name: str) -> LabelConvention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown label convention {name!r}; expected one of {sorted(CONVENTIONS)}") from None


def check_region(region: str) -> str:
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {list(REGIONS)}")
    return region


def unknown_labels(seg: np.ndarray, convention: LabelConvention) -> list[int]:
    """Label values present in ``seg`` that the convention does not define (empty list when valid)."""
    values = np.unique(seg)
    return [int(v) for v in values if int(v) not in convention.labels]


def labels_to_regions(seg: np.ndarray, convention: LabelConvention, regions=REGIONS) -> np.ndarray:
    """Label map (D, H, W) -> boolean masks (len(regions), D, H, W) in the order of ``regions``."""
    seg = np.asarray(seg)
    bad = unknown_labels(seg, convention)
    if bad:
        raise ValueError(f"labels {bad} are not in the {convention.name} convention {list(convention.labels)}")
    out = np.empty((len(regions),) + seg.shape, dtype=bool)
    for i, region in enumerate(regions):
        out[i] = np.isin(seg, convention.region_labels[check_region(region)])
    return out


def enforce_hierarchy(masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return masks with ET subset-of TC subset-of WT (an inner voxel outside its parent is dropped)."""
    out = {k: np.asarray(v, dtype=bool) for k, v in masks.items()}
    if "WT" in out and "TC" in out:
        out["TC"] = out["TC"] & out["WT"]
    if "TC" in out and "ET" in out:
        out["ET"] = out["ET"] & out["TC"]
    elif "WT" in out and "ET" in out:
        out["ET"] = out["ET"] & out["WT"]
    return out


def regions_to_labels(masks: dict[str, np.ndarray], convention: LabelConvention, dtype=np.uint8) -> np.ndarray:
    """Compose nested region masks {WT, TC, ET} into one label map in ``convention``.

    The hierarchy is enforced first; WT-only voxels become ED, TC-not-ET voxels NCR, ET voxels ET.
    Missing regions are treated as empty.
    """
    if not masks:
        raise ValueError("no region masks given")
    shape = next(iter(masks.values())).shape
    full = {r: np.asarray(masks.get(r, np.zeros(shape, bool)), dtype=bool) for r in REGIONS}
    full = enforce_hierarchy(full)
    seg = np.zeros(shape, dtype=dtype)
    seg[full["WT"]] = convention.ed
    seg[full["TC"]] = convention.ncr
    seg[full["ET"]] = convention.et
    return seg
