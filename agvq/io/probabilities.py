"""The probability-map format: ``<folder>/<case>_probabilities.npz`` beside the label map ``<case>.nii.gz``.

A deflate-compressed NumPy archive (no pickle) with ``probabilities`` float16 (R, X, Y, Z): the foreground
probability of each region on the case's ORIGINAL grid (0 outside the brain and outside the crop), ``regions``
(R names in that order), ``affine`` float64 (4, 4), ``spacing`` float64 (3,) and ``convention`` (the label
convention of the case, so a map built from it, e.g. by the ensemble helper, uses the case's own labels).
float16 keeps about 3 significant digits (a step of 2^-11 near 0.5): thresholding the stored map reproduces the
label map except for voxels within that step of the threshold.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agvq.io.prepared import save_npz
from agvq.regions import CONVENTIONS, REGIONS

SUFFIX = "_probabilities.npz"
COMPRESS_LEVEL = 1
"""Deflate level of the archives (1: fast; the maps are mostly exact zeros outside the brain)."""
KEYS = ("probabilities", "regions", "affine", "spacing", "convention")


class ProbabilityFileError(ValueError):
    """A probability file that cannot be read or does not hold the format above (the message names the file)."""


@dataclass
class ProbabilityMaps:
    regions: tuple[str, ...]
    probabilities: np.ndarray  # (R, X, Y, Z) float, in [0, 1]
    affine: np.ndarray  # (4, 4)
    spacing: tuple[float, ...]
    convention: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.probabilities.shape[1:])


def probability_path(folder: str | Path, case: str) -> Path:
    return Path(folder) / f"{case}{SUFFIX}"


def probability_cases(folder: str | Path) -> list[str]:
    """Sorted case ids of the probability files in ``folder``."""
    return sorted(p.name[: -len(SUFFIX)] for p in Path(folder).glob(f"*{SUFFIX}") if not p.name.startswith("."))


def write_probabilities(path: str | Path, maps: ProbabilityMaps) -> None:
    """Write ``maps`` atomically (probabilities stored as float16)."""
    probs = np.asarray(maps.probabilities)
    if probs.ndim != 4 or probs.shape[0] != len(maps.regions):
        raise ValueError(f"probabilities must be (regions, X, Y, Z) for {len(maps.regions)} regions, "
                         f"got shape {probs.shape}")
    save_npz(path, {"probabilities": np.clip(probs, 0.0, 1.0).astype(np.float16),
                    "regions": np.asarray(maps.regions, dtype=str),
                    "affine": np.asarray(maps.affine, dtype=np.float64),
                    "spacing": np.asarray(maps.spacing, dtype=np.float64),
                    "convention": np.asarray(maps.convention, dtype=str)}, COMPRESS_LEVEL)


def read_probabilities(path: str | Path) -> ProbabilityMaps:
    """Read one probability file; ProbabilityFileError names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ProbabilityFileError(f"{path}: probability file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in KEYS if k not in data.files]
            if missing:
                raise ProbabilityFileError(f"{path}: not a probability file (lacks {missing})")
            arrays = {k: data[k] for k in KEYS}
    except ProbabilityFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ProbabilityFileError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    probs, regions = arrays["probabilities"], tuple(str(r) for r in arrays["regions"].reshape(-1))
    convention = str(arrays["convention"])
    if probs.ndim != 4 or probs.shape[0] != len(regions) or not regions or any(r not in REGIONS for r in regions):
        raise ProbabilityFileError(f"{path}: probabilities of shape {probs.shape} do not fit regions {list(regions)}")
    if arrays["affine"].shape != (4, 4) or arrays["spacing"].shape != (3,) or convention not in CONVENTIONS:
        raise ProbabilityFileError(f"{path}: bad affine, spacing or label convention {convention!r}")
    probs = probs.astype(np.float32)
    if not np.all(np.isfinite(probs)) or probs.min(initial=0.0) < 0 or probs.max(initial=0.0) > 1:
        raise ProbabilityFileError(f"{path}: probabilities must be finite values in [0, 1]")
    return ProbabilityMaps(regions, probs, arrays["affine"], tuple(float(s) for s in arrays["spacing"]), convention)
