"""BraTS file-naming schemes. Modalities are named canonically by their 2021 names everywhere in the code.

* ``brats2021``: ``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``
* ``brats2023``: ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``
"""
from __future__ import annotations

from dataclasses import dataclass

MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
"""Canonical modality names (BraTS 2021 spelling)."""


@dataclass(frozen=True)
class Naming:
    name: str
    separator: str
    modality_suffix: dict[str, str]  # canonical modality -> file suffix
    seg_suffix: str
    convention: str  # label convention name in agvq.regions

    def filename(self, case: str, modality: str) -> str:
        """File name of ``modality`` (canonical name or 'seg') for ``case``."""
        suffix = self.seg_suffix if modality == "seg" else self.modality_suffix[modality]
        return f"{case}{self.separator}{suffix}.nii.gz"


NAMINGS: dict[str, Naming] = {
    "brats2021": Naming(
        "brats2021", "_", {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"}, "seg", "brats2021"
    ),
    "brats2023": Naming(
        "brats2023", "-", {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}, "seg", "brats2023"
    ),
}


def get_naming(name: str) -> Naming:
    try:
        return NAMINGS[name]
    except KeyError:
        raise ValueError(f"unknown naming {name!r}; expected one of {sorted(NAMINGS)}") from None


def check_modalities(modalities) -> list[str]:
    mods = list(modalities)
    if not mods:
        raise ValueError("at least one modality is required")
    bad = [m for m in mods if m not in MODALITIES]
    if bad:
        raise ValueError(f"unknown modalities {bad}; expected names from {list(MODALITIES)}")
    if len(set(mods)) != len(mods):
        raise ValueError(f"duplicate modalities in {mods}")
    return mods
