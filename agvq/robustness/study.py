"""Predict test cases of one variant under every perturbation of the study and score them like the evaluate stage.

The chain is the inference chain (agvq.inference.predict): raw volumes -> [perturbation] -> crop + z-score ->
sliding-window prediction per region -> BraTS label map on the original grid -> Dice / HD95 against the raw ground
truth (agvq.metrics.segmentation.case_metrics, the conventions of the evaluate stage). The clean rows therefore equal
the evaluate stage's per-case table of the same models. Perturbed volumes live in memory only, unless a folder is
given to write them to.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from agvq.config import InferConfig, RobustnessConfig
from agvq.errors import CaseError, ConfigError
from agvq.inference.predict import CropSettings, load_region_models, predict_volumes, read_case
from agvq.io.outputs import atomic_dir
from agvq.io.nifti import NiftiReadError, read_volume, write_volume
from agvq.metrics.evaluate import ground_truth
from agvq.metrics.segmentation import LabelValueError, case_metrics
from agvq.robustness.conditions import COLUMNS
from agvq.robustness.perturb import Perturbation, perturb, study_plan


def select_cases(case_ids: Sequence[str], count: int) -> list[str]:
    """The first ``count`` of ``case_ids`` in sorted order (all of them when ``count`` is 0)."""
    ids = sorted(case_ids)
    if not ids:
        raise ConfigError("the split has no cases to study")
    return ids if count == 0 else ids[:count]


def _truth(case: str, path: Path, shape: tuple[int, ...]):
    try:
        volume = read_volume(path)
    except NiftiReadError as exc:
        raise CaseError(case, str(path), str(exc)) from None
    if tuple(volume.shape) != tuple(shape):
        raise CaseError(case, str(path), f"segmentation shape {volume.shape} differs from the images' {shape}")
    return volume


def _score(case: str, labels: np.ndarray, truth, convention: str, regions, empty_penalty: float,
           p: Perturbation, seg_path: Path) -> list[dict]:
    try:
        rows = case_metrics(labels, truth.data, convention, truth.spacing, regions, empty_penalty)
    except LabelValueError as exc:
        raise CaseError(case, str(seg_path), str(exc)) from None
    level = "" if p.level is None else p.level
    return [{"case": case, "perturbation": p.name, "kind": p.kind, "severity": p.severity, "level": level,
             **{k: row[k] for k in ("region", "dice", "hd95", "convention", "pred_voxels", "truth_voxels")}}
            for row in rows]


def _save(folder: Path, case: str, p: Perturbation, image: np.ndarray, modalities, affine, spacing) -> None:
    (folder / case).mkdir(exist_ok=True)
    for channel, modality in zip(image, modalities):
        write_volume(folder / case / f"{case}_{p.label.replace('@', '_s')}_{modality}.nii.gz", channel, affine,
                     spacing)


def _check_save_dir(save_dir: Path, raw_dir: Path) -> None:
    if save_dir.exists() and (not save_dir.is_dir() or any(save_dir.iterdir())):
        raise ConfigError(f"folder for perturbed volumes {save_dir} exists and is not empty; give a new one")
    raw, target = raw_dir.resolve(), save_dir.resolve()
    if target == raw or raw in target.parents or target in raw.parents:
        raise ConfigError(f"folder for perturbed volumes {save_dir} overlaps the raw data folder {raw_dir}")


def robustness_cases(model_dir: str | os.PathLike, raw_dir: str | os.PathLike, case_ids: Sequence[str],
                     regions: Sequence[str], study: RobustnessConfig, infer: InferConfig, crop: CropSettings,
                     empty_penalty: float, device: torch.device, precision: str,
                     save_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Per-case table (COLUMNS) of the variant in ``model_dir`` on ``case_ids`` under ``study_plan(study)``.

    ``save_dir`` (None: nothing written) receives every perturbed stack as ``<case>/<case>_<condition>_<seq>.nii.gz``.
    Raises CaseError naming the case for an unreadable case or segmentation, ConfigError for bad models or folders.
    """
    raw_dir = Path(raw_dir)
    models = load_region_models(model_dir, regions, device)
    modalities = list(next(iter(models.values())).contract["modalities"])
    plan = study_plan(study, modalities)
    files = ground_truth(raw_dir, list(case_ids))
    if save_dir is not None:
        _check_save_dir(Path(save_dir), raw_dir)
    rows: list[dict] = []
    bar = tqdm(total=len(case_ids) * len(plan), desc=f"robustness {Path(model_dir).name}", unit="input",
               dynamic_ncols=True, mininterval=2.0)
    with atomic_dir(save_dir, "robustness_predict") if save_dir is not None else contextlib.nullcontext() as folder:
        try:
            for case in case_ids:
                case_files = files[case]
                header, volumes = read_case(case_files, modalities, "error")
                truth = _truth(case, case_files.seg, header.shape)
                image = np.stack(volumes)
                for p in plan:
                    perturbed = perturb(image, p, study, case, header.affine, modalities)
                    if folder is not None and p.severity > 0:
                        _save(Path(folder), case, p, perturbed, modalities, header.affine, header.spacing)
                    labels, _ = predict_volumes(header, list(perturbed), models, modalities, infer, crop, device,
                                                precision)
                    rows += _score(case, labels, truth, header.convention, regions, empty_penalty, p,
                                   case_files.seg)
                    bar.update()
        finally:
            bar.close()
    return pd.DataFrame(rows, columns=list(COLUMNS))

