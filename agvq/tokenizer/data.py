"""Tokenizer data: prepared cases on the [0, 1] intensity scale, the axial slices that are scored, and seeded
random slices (dims 2) or patches (dims 3) carrying every sequence of one location.

The scale: per case and sequence, the brain's low/high percentiles of the z-scored prepared image map to 0 and 1
(clipped), everything outside the brain is 0. SSIM and PSNR are computed on it with data range 1. Sampling is a
pure function of (seed, epoch, index), like agvq.data.dataset, so resumed runs see the same samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from agvq.errors import ConfigError
from agvq.io.prepared import load_case


def to_unit_range(image: np.ndarray, brain: np.ndarray, percentiles) -> np.ndarray:
    """(C, *spatial) images -> float32 on [0, 1]: channel-wise, the brain's ``percentiles`` (low, high) map to 0 and 1
    (clipped); 0 outside the brain. A channel that is constant in the brain maps to 0."""
    image = np.asarray(image, dtype=np.float32)
    brain = np.asarray(brain, dtype=bool)
    out = np.zeros(image.shape, dtype=np.float32)
    if not brain.any():
        return out
    for c in range(image.shape[0]):
        values = image[c][brain]
        lo, hi = np.percentile(values, percentiles)
        if hi > lo:
            out[c][brain] = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    return out


def to_zscore(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """(C, *spatial) -> per channel (x - mean) / std over the brain, 0 outside (the prepared images' scale)."""
    image = np.asarray(image, dtype=np.float64)
    brain = np.asarray(brain, dtype=bool)
    out = np.zeros(image.shape, dtype=np.float32)
    for c in range(image.shape[0]):
        values = image[c][brain]
        if values.size == 0:
            continue
        std = values.std()
        out[c][brain] = (values - values.mean()) / (std if std > 0 else 1.0)
    return out


def scored_slices(brain: np.ndarray, min_brain_fraction: float) -> np.ndarray:
    """Indices of the axial (last-axis) slices whose brain covers at least ``min_brain_fraction`` of the slice
    (and at least one voxel)."""
    brain = np.asarray(brain, dtype=bool)
    area = brain.reshape(-1, brain.shape[-1]).mean(axis=0)
    return np.flatnonzero((area >= min_brain_fraction) & (area > 0))


@dataclass
class TokenizerCase:
    case: str
    image: np.ndarray  # (C, X, Y, Z) float32 on [0, 1]
    brain: np.ndarray  # (X, Y, Z) bool
    modalities: list[str]


class TokenizerStore:
    """The prepared cases ``case_ids`` on the [0, 1] scale, held in memory (``cache``) or loaded on demand (the
    last loaded case is kept, so samples drawn from one case in a row load it once)."""

    def __init__(self, prepared_dir: str | Path, case_ids: list[str], percentiles, cache: bool):
        if not case_ids:
            raise ConfigError("no cases given to the tokenizer")
        self.prepared_dir, self.case_ids, self.percentiles = Path(prepared_dir), list(case_ids), tuple(percentiles)
        self._last: tuple[int, TokenizerCase] | None = None
        self._cases = [self._load(c) for c in self.case_ids] if cache else None
        first = self._cases[0] if self._cases else self._load(self.case_ids[0])
        self.modalities = list(first.modalities)

    def _load(self, case: str) -> TokenizerCase:
        prepared = load_case(self.prepared_dir, case)
        brain = prepared.brain.astype(bool)
        modalities = list(prepared.props.get("modalities") or [])
        if len(modalities) != prepared.image.shape[0]:
            raise ConfigError(f"prepared case {case} lists modalities {modalities} for {prepared.image.shape[0]} "
                              "image channels")
        return TokenizerCase(case, to_unit_range(prepared.image, brain, self.percentiles), brain, modalities)

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, i: int) -> TokenizerCase:
        if self._cases is not None:
            case = self._cases[i]
        elif self._last is not None and self._last[0] == i:
            case = self._last[1]
        else:
            case = self._load(self.case_ids[i])
            self._last = (i, case)
        if case.modalities != self.modalities:
            raise ConfigError(f"prepared case {case.case} has modalities {case.modalities}, the others "
                              f"{self.modalities}")
        return case


def _window(array: np.ndarray, start, size) -> np.ndarray:
    """Window of the last len(size) axes of ``array`` at ``start``, zero-padded where it leaves the array."""
    k = len(size)
    sl = tuple(slice(int(s), int(s) + int(n)) for s, n in zip(start, size))
    out = array[(...,) + sl]
    if out.shape[-k:] != tuple(size):
        out = np.pad(out, [(0, 0)] * (array.ndim - k) + [(0, n - o) for n, o in zip(size, out.shape[-k:])])
    return out


class TokenizerSamples(Dataset):
    """``length`` samples per epoch, each {"image": (C, *patch) on [0, 1], "brain": (1, *patch)}: an axial slice
    (a random ``patch``-sized window of it, dims 2) or a patch centred on a random brain voxel (dims 3).

    Runs of ``per_case`` consecutive samples come from one case (1: every sample draws its case), so that a store
    that loads cases on demand reads each case once per run rather than once per sample."""

    def __init__(self, store: TokenizerStore, dims: int, patch_size, length: int, min_brain_fraction: float,
                 seed: int, flip: bool, per_case: int):
        if len(patch_size) != dims:
            raise ConfigError(f"patch_size {list(patch_size)} does not have {dims} sizes")
        self.store, self.dims, self.patch = store, int(dims), tuple(int(p) for p in patch_size)
        self.length, self.seed, self.flip, self.epoch = int(length), int(seed), bool(flip), 0
        if per_case < 1:
            raise ConfigError(f"samples per case must be at least 1, got {per_case}")
        self.per_case = int(per_case)
        self.slices = [scored_slices(store[i].brain, min_brain_fraction) for i in range(len(store))]
        if not any(len(s) for s in self.slices):
            raise ConfigError(f"no training slice has a brain share of at least {min_brain_fraction:g}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        usable = [i for i, s in enumerate(self.slices) if len(s)]
        pick = np.random.default_rng([self.seed, self.epoch, int(index) // self.per_case, 1])
        i = usable[int(pick.integers(len(usable)))]
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        case = self.store[i]
        if self.dims == 2:
            z = int(self.slices[i][rng.integers(len(self.slices[i]))])
            image, brain = case.image[..., z], case.brain[..., z]
        else:
            image, brain = case.image, case.brain
        shape = np.asarray(brain.shape)
        # a window inside the slice/volume where it fits; centred (with a random offset) where it does not
        slack = shape - np.asarray(self.patch)
        start = np.array([rng.integers(0, s + 1) if s >= 0 else -int(rng.integers(0, -s + 1)) for s in slack])
        if self.dims == 3:
            voxels = np.argwhere(brain)
            centre = voxels[rng.integers(len(voxels))]
            start = np.clip(centre - np.asarray(self.patch) // 2, np.minimum(slack, 0), np.maximum(slack, 0))
        image = _shifted_window(image, start, self.patch)
        brain = _shifted_window(brain[None], start, self.patch)
        if self.flip:
            axes = tuple(a + 1 for a in range(self.dims) if rng.random() < 0.5)
            if axes:
                image, brain = np.flip(image, axes), np.flip(brain, axes)
        return {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                "brain": torch.from_numpy(np.ascontiguousarray(brain, dtype=np.float32))}


def _shifted_window(array: np.ndarray, start, size) -> np.ndarray:
    """Like ``_window`` but a negative start pads zeros before the array (a small slice centred in the window)."""
    start = np.asarray(start)
    before = np.maximum(-start, 0)
    if before.any():
        k = len(size)
        array = np.pad(array, [(0, 0)] * (array.ndim - k) + [(int(b), 0) for b in before])
        start = start + before
    return _window(array, start, size)
