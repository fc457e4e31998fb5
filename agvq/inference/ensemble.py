"""Ensembling variants: the (weighted) mean of their probability maps per case, thresholded and composed into a
BraTS label map in the case's convention (ET in TC in WT), on the original grid.

Reads the ``<case>_probabilities.npz`` files that inference writes with ``infer.save_probabilities: true``
(agvq.io.probabilities); every input folder must hold the same cases, with the same regions, grid and convention.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from agvq.errors import ConfigError
from agvq.io.nifti import write_volume
from agvq.io.outputs import atomic_dir, check_separate
from agvq.io.probabilities import (ProbabilityFileError, ProbabilityMaps, probability_cases, probability_path,
                                   read_probabilities, write_probabilities)
from agvq.regions import get_convention, regions_to_labels

AFFINE_TOLERANCE_MM = 1e-3


def _weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(f"ensemble weights must be {n} non-negative numbers with a positive sum, got {list(weights)}")
    return w / w.sum()


def average_maps(maps: Sequence[ProbabilityMaps], weights: Sequence[float] | None = None,
                 names: Sequence[str] | None = None) -> ProbabilityMaps:
    """The weighted mean of probability maps of one case; ValueError (naming the input) when they do not fit."""
    if not maps:
        raise ValueError("nothing to ensemble")
    names = list(names) if names is not None else [f"input {i}" for i in range(len(maps))]
    w = _weights(weights, len(maps))
    first = maps[0]
    for name, m in zip(names[1:], maps[1:]):
        if m.regions != first.regions:
            raise ValueError(f"{name} has regions {list(m.regions)}, {names[0]} has {list(first.regions)}")
        if m.shape != first.shape:
            raise ValueError(f"{name} has grid {m.shape}, {names[0]} has {first.shape}")
        if not np.allclose(m.affine, first.affine, rtol=0.0, atol=AFFINE_TOLERANCE_MM):
            raise ValueError(f"{name} has another affine than {names[0]}")
        if m.convention != first.convention:
            raise ValueError(f"{name} uses labels {m.convention}, {names[0]} uses {first.convention}")
    total = np.zeros(first.probabilities.shape, dtype=np.float32)
    for weight, m in zip(w, maps):
        total += np.float32(weight) * m.probabilities.astype(np.float32)
    return ProbabilityMaps(first.regions, np.clip(total, 0.0, 1.0), first.affine, first.spacing, first.convention)


def labels_from_maps(maps: ProbabilityMaps, threshold: float) -> np.ndarray:
    """Label map: each region's probability above ``threshold``, composed with ET in TC in WT."""
    masks = {region: maps.probabilities[i] > threshold for i, region in enumerate(maps.regions)}
    return regions_to_labels(masks, get_convention(maps.convention))


def ensemble_folders(folders: Sequence[str | os.PathLike], out_dir: str | os.PathLike, threshold: float,
                     weights: Sequence[float] | None = None, keep_probabilities: bool = False) -> list[str]:
    """Ensemble every case of ``folders`` into ``<out_dir>/<case>.nii.gz`` (and the averaged
    ``<case>_probabilities.npz`` with ``keep_probabilities``); ``out_dir`` is written whole or not at all."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise ConfigError(f"an ensemble needs at least two prediction folders, got {len(folders)}")
    _weights(weights, len(folders))
    check_separate({f"--inputs[{i}]": f for i, f in enumerate(folders)}, {"--out": out_dir})
    case_sets = {}
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"prediction folder {folder} does not exist")
        case_sets[folder] = probability_cases(folder)
        if not case_sets[folder]:
            raise ConfigError(f"{folder} holds no *_probabilities.npz files (predict with infer.save_probabilities: "
                              "true)")
    reference = set(case_sets[folders[0]])
    for folder in folders[1:]:
        other = set(case_sets[folder])
        if other != reference:
            only = sorted(reference ^ other)
            raise ConfigError(f"{folders[0]} and {folder} hold different cases (e.g. {only[:3]})")
    cases = case_sets[folders[0]]
    with atomic_dir(out_dir, "ensemble") as tmp:
        for case in tqdm(cases, desc="ensemble", unit="case", dynamic_ncols=True, mininterval=2.0):
            paths = [probability_path(f, case) for f in folders]
            try:
                maps = average_maps([read_probabilities(p) for p in paths], weights, [str(p) for p in paths])
            except (ProbabilityFileError, ValueError) as exc:
                raise ConfigError(f"case {case}: {exc}") from None
            write_volume(Path(tmp) / f"{case}.nii.gz", labels_from_maps(maps, threshold), maps.affine, maps.spacing)
            if keep_probabilities:
                write_probabilities(probability_path(tmp, case), maps)
    return cases
