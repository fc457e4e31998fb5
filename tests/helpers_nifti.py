"""Tiny synthetic BraTS cases on disk for the discovery / validation / preprocessing tests."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from agvq.io.naming import MODALITIES, get_naming
from agvq.regions import get_convention

SHAPE = (24, 24, 16)
AFFINE = np.array([[-1.0, 0, 0, 23.0], [0, -1.0, 0, 23.0], [0, 0, 1.2, -8.0], [0, 0, 0, 1]])


def phantom(shape=SHAPE, seed: int = 0, convention: str = "brats2021", center=None):
    """(images: modality -> int16 volume, seg: uint8 label map, brain: bool) with an ellipsoid brain
    (every modality > 0 inside, 0 outside) and a tumour of ED around NCR around an ET ring."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    c = np.array(center if center is not None else [(s - 1) / 2 for s in shape], dtype=float)
    radii = np.array(shape) * 0.35
    brain = sum(((grid[i] - c[i]) / radii[i]) ** 2 for i in range(3)) <= 1
    t = c + np.array([2.0, -1.0, 0.0])
    dist = np.sqrt(sum((grid[i] - t[i]) ** 2 for i in range(3)))
    conv = get_convention(convention)
    seg = np.zeros(shape, np.uint8)
    seg[(dist <= 4.5) & brain] = conv.ed
    seg[(dist <= 3.0) & brain] = conv.et
    seg[(dist <= 1.8) & brain] = conv.ncr
    images = {}
    for k, m in enumerate(MODALITIES):
        vol = rng.integers(50, 400, size=shape) + 100 * k + 150 * (seg > 0)
        images[m] = (vol * brain).astype(np.int16)
    return images, seg, brain


def save(path: Path, data: np.ndarray, affine=AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.asarray(affine, float)), str(path))
    return path


def write_case(raw: Path, case: str, naming: str = "brats2021", shape=SHAPE, seed: int = 0,
               modalities=MODALITIES, with_seg: bool = True, affine=AFFINE, overrides: dict | None = None) -> Path:
    """Write one case folder ``raw/case`` in ``naming``; ``overrides`` maps a modality or 'seg' to the array
    written instead (e.g. with NaN, another shape or bad labels). Returns the case folder."""
    nm = get_naming(naming)
    images, seg, _ = phantom(shape, seed, nm.convention)
    overrides = overrides or {}
    folder = Path(raw) / case
    folder.mkdir(parents=True, exist_ok=True)
    for m in modalities:
        save(folder / nm.filename(case, m), overrides.get(m, images[m]), affine)
    if with_seg:
        save(folder / nm.filename(case, "seg"), overrides.get("seg", seg), affine)
    return folder


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its bytes (a broken download)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: max(1, int(len(data) * keep))])
