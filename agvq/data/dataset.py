"""Training data: tumour-biased random patches from prepared cases.

Sampling is a pure function of (seed, epoch, index), so a run gives the same patches whatever the number of
DataLoader workers or DDP ranks, and a resumed run continues with exactly the patches it would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from agvq.io.prepared import PreparedCase, load_case
from agvq.errors import ConfigError
from agvq.regions import REGIONS, check_region


@dataclass
class CaseArrays:
    case: str
    image: np.ndarray  # (C, X, Y, Z) float32
    mask: np.ndarray  # (X, Y, Z) uint8, the trained region; (R, X, Y, Z) for a joint model of R regions
    brain: np.ndarray  # (X, Y, Z) bool, the brain mask predictions are restricted to
    foreground: np.ndarray  # (N, 3) int32 coordinates of (any region's) mask voxels (may be empty)
    spacing: tuple  # voxel size in mm


def region_arrays(case: PreparedCase, region: str | tuple[str, ...]) -> CaseArrays:
    """The arrays of one case for one region (mask (X, Y, Z)) or, given a tuple of regions, for a joint model
    (masks (R, X, Y, Z) in that order; patches are centred on voxels of their union)."""
    if case.masks is None:
        raise ConfigError(f"prepared case {case.case} has no labels; it cannot be used for training")
    if isinstance(region, str):
        mask = np.ascontiguousarray(case.masks[REGIONS.index(check_region(region))]).astype(np.uint8)
        union = mask
    else:
        mask = np.ascontiguousarray(case.masks[[REGIONS.index(check_region(r)) for r in region]]).astype(np.uint8)
        union = mask.max(axis=0)
    spacing = tuple(float(s) for s in case.props["spacing"])
    return CaseArrays(case.case, case.image, mask, case.brain.astype(bool), np.argwhere(union).astype(np.int32),
                      spacing)


class CaseStore:
    """The cases of one split for one region (or a tuple of regions: a joint model), held in memory
    (``cache=True``) or loaded on demand."""

    def __init__(self, prepared_dir: str | Path, case_ids: list[str], region: str | tuple[str, ...], cache: bool):
        if not case_ids:
            raise ConfigError("no cases given to train or validate on")
        self.prepared_dir, self.case_ids, self.region, self.cache = Path(prepared_dir), list(case_ids), region, cache
        self._arrays = [self._load(c) for c in self.case_ids] if cache else None

    def _load(self, case: str) -> CaseArrays:
        return region_arrays(load_case(self.prepared_dir, case), self.region)

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, i: int) -> CaseArrays:
        return self._arrays[i] if self._arrays is not None else self._load(self.case_ids[i])

    @property
    def in_channels(self) -> int:
        return int(self[0].image.shape[0])


def patch_start(center: np.ndarray, shape: tuple[int, ...], patch: tuple[int, ...]) -> np.ndarray:
    """Start of a ``patch``-sized window centred near ``center`` and clamped inside ``shape`` (or 0 when larger)."""
    start = np.asarray(center) - np.asarray(patch) // 2
    return np.clip(start, 0, np.maximum(np.asarray(shape) - np.asarray(patch), 0))


def extract(array: np.ndarray, start: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """Spatial window of ``array`` (leading channel axes kept), zero-padded where the volume is smaller."""
    spatial = array.shape[-3:]
    sl = tuple(slice(int(s), int(s) + p) for s, p in zip(start, patch))
    out = array[(...,) + sl]
    if out.shape[-3:] != tuple(patch):
        pad = [(0, 0)] * (array.ndim - 3) + [(0, p - o) for p, o in zip(patch, out.shape[-3:])]
        out = np.pad(out, pad)
    assert out.shape[-3:] == tuple(patch), (spatial, start, patch)
    return out


class PatchDataset(Dataset):
    """``patches_per_epoch`` patches; a share ``foreground_fraction`` is centred on a voxel of the region."""

    def __init__(self, store: CaseStore, patch_size, patches_per_epoch: int, foreground_fraction: float,
                 seed: int, flip: bool):
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ConfigError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        self.store, self.patch = store, tuple(int(p) for p in patch_size)
        self.length, self.fg, self.seed, self.flip = int(patches_per_epoch), float(foreground_fraction), seed, flip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        case = self.store[int(rng.integers(len(self.store)))]
        shape = case.mask.shape[-3:]
        if len(case.foreground) and rng.random() < self.fg:
            center = case.foreground[rng.integers(len(case.foreground))]
        else:
            center = np.array([rng.integers(s) for s in shape])
        start = patch_start(center, shape, self.patch)
        image = extract(case.image, start, self.patch)
        mask = extract(case.mask, start, self.patch)
        mask = mask[None] if mask.ndim == 3 else mask
        if self.flip:
            axes = tuple(a + 1 for a in range(3) if rng.random() < 0.5)
            if axes:
                image, mask = np.flip(image, axes), np.flip(mask, axes)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)),
        }
