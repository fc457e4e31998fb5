"""Whole-volume inference: crop as in preprocessing, sliding-window prediction per region, ET in TC in WT,
one BraTS label map in the case's own convention, pasted back onto the original grid with the input affine."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from agvq.config import InferConfig
from agvq.data.preprocess import prepare_case, uncrop
from agvq.device import autocast
from agvq.errors import ConfigError
from agvq.inference.predictors import SingleStagePredictor, TwoStagePredictor
from agvq.inference.tta import tta_probability
from agvq.io.atomic import atomic_dir
from agvq.io.discovery import discover_cases
from agvq.io.naming import check_modalities
from agvq.io.nifti import write_volume
from agvq.io.probabilities import ProbabilityMaps, probability_path, write_probabilities
from agvq.models.loading import load_predictor_parts
from agvq.regions import get_convention, regions_to_labels

@dataclass
class RegionModel:
    region: str
    predictor: nn.Module
    patch_size: tuple
    contract: dict


@dataclass(frozen=True)
class CropSettings:
    """The crop of preprocessing (params ``preprocess.margin`` / ``preprocess.stride``), redone at inference."""

    margin: int
    stride: int


def _check_contract(path: Path, region: str, net: nn.Module, vqvae, bundle: dict) -> tuple[int, ...]:
    """Raise a one-line ConfigError unless the model file fits ``region``; returns its patch size."""
    contract = bundle.get("contract") or {}
    if contract.get("region") != region:
        raise ConfigError(f"{path} was trained for region {contract.get('region')}, not {region}")
    try:
        modalities = check_modalities(contract.get("modalities") or ())
    except ValueError as exc:
        raise ConfigError(f"{path}: bad modalities in its contract ({exc})") from None
    if contract.get("in_channels", len(modalities)) != len(modalities):
        raise ConfigError(f"{path} takes {contract['in_channels']} input channels but lists modalities {modalities}")
    patch = contract.get("patch_size")
    if not isinstance(patch, (list, tuple)) or len(patch) != 3 or not all(isinstance(p, int) and p > 0 for p in patch):
        raise ConfigError(f"{path}: contract patch_size must be three positive integers, got {patch!r}")
    stride = int(getattr(net, "stride", 1))
    if any(p % stride for p in patch):
        raise ConfigError(f"{path}: patch_size {list(patch)} is not a multiple of the model stride {stride}")
    if vqvae is not None:
        vq_region = (bundle["extra"]["vqvae"].get("contract") or {}).get("region")
        if vq_region != region:
            raise ConfigError(f"{path} decodes through the VQ-VAE of region {vq_region}, not {region}")
        if getattr(net, "num_embeddings", None) != vqvae.quantizer.num_embeddings:
            raise ConfigError(f"{path} predicts {getattr(net, 'num_embeddings', None)} codes but its VQ-VAE "
                              f"codebook has {vqvae.quantizer.num_embeddings}")
        if any(p % vqvae.stride for p in patch):
            raise ConfigError(f"{path}: patch_size {list(patch)} is not a multiple of the VQ-VAE stride {vqvae.stride}")
    return tuple(int(p) for p in patch)


def load_region_models(model_dir: str | Path, regions, device: torch.device):
    """One model load per region: ``<model_dir>/<region>.pt`` -> an eval-mode predictor on ``device``.

    Raises ConfigError for a missing or unreadable file, a model of another region (or, two-stage, decoding
    through another region's VQ-VAE), and region models trained on different modalities.
    """
    models = {}
    for region in regions:
        path = Path(model_dir) / f"{region}.pt"
        net, vqvae, bundle = load_predictor_parts(path)
        patch = _check_contract(path, region, net, vqvae, bundle)
        predictor = TwoStagePredictor(net, vqvae) if vqvae is not None else SingleStagePredictor(net)
        models[region] = RegionModel(region, predictor.to(device).eval(), patch, bundle["contract"])
    if not models:
        raise ConfigError("no regions to predict (params regions is empty)")
    modalities = {tuple(m.contract["modalities"]) for m in models.values()}
    if len(modalities) > 1:
        raise ConfigError(f"the region models of {model_dir} were trained on different modalities: "
                          f"{sorted(list(m) for m in modalities)}")
    return models


@torch.inference_mode()
def predict_probabilities(image: np.ndarray, brain: np.ndarray, models: dict[str, RegionModel], cfg: InferConfig,
                          device: torch.device, precision: str) -> dict[str, np.ndarray]:
    """(C, X, Y, Z) prepared image -> {region: float32 foreground probability} on the cropped grid, 0 outside the
    brain: the sliding window of the validation protocol, averaged over the axis flips of ``cfg.tta``."""
    volume = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
    brain = np.asarray(brain, dtype=bool)
    probs = {}
    for region, m in models.items():
        with autocast(device, precision):
            prob = tta_probability(m.predictor, volume, m.patch_size, cfg)
        probs[region] = np.where(brain, prob.cpu().numpy(), np.float32(0)).astype(np.float32, copy=False)
    return probs


def predict_masks(image: np.ndarray, brain: np.ndarray, models: dict[str, RegionModel], cfg: InferConfig,
                  device: torch.device, precision: str) -> dict[str, np.ndarray]:
    """(C, X, Y, Z) prepared image -> {region: boolean mask} on the cropped grid (voxels outside the brain off):
    probability above ``cfg.threshold``. Without TTA this is the protocol validation uses during training
    (agvq.inference.predictors.predict_region)."""
    probs = predict_probabilities(image, brain, models, cfg, device, precision)
    return {region: prob > cfg.threshold for region, prob in probs.items()}


@dataclass
class CasePrediction:
    labels: np.ndarray  # uint8 label map on the original grid, in the case's convention
    props: dict  # the case properties (agvq.io.prepared)
    probabilities: ProbabilityMaps | None  # per-region maps on the original grid, when asked for


def predict_case_outputs(case_files, models: dict[str, RegionModel], modalities: list[str], cfg: InferConfig,
                         crop: CropSettings, device: torch.device, precision: str,
                         keep_probabilities: bool) -> CasePrediction:
    """Label map (and, with ``keep_probabilities``, the probability maps) on the original grid of one raw case;
    labels are never read."""
    unlabelled = dataclasses.replace(case_files, seg=None)  # no test-time access to labels, not even the crop
    arrays, props = prepare_case(unlabelled, modalities, crop.margin, crop.stride, require_labels=False)
    probs = predict_probabilities(arrays["image"], arrays["brain"].astype(bool), models, cfg, device, precision)
    masks = {region: prob > cfg.threshold for region, prob in probs.items()}
    labels = regions_to_labels(masks, get_convention(props["convention"]))
    box = props["crop_start"], props["crop_stop"], tuple(props["original_shape"])
    full = uncrop(labels, *box).astype(np.uint8)
    maps = None
    if keep_probabilities:
        maps = ProbabilityMaps(tuple(probs), uncrop(np.stack(list(probs.values())), *box),
                               np.asarray(props["affine"]), tuple(props["spacing"]), props["convention"])
    return CasePrediction(full, props, maps)


def predict_case(case_files, models: dict[str, RegionModel], modalities: list[str], cfg: InferConfig,
                 crop: CropSettings, device: torch.device, precision: str) -> tuple[np.ndarray, dict]:
    """Label map on the original grid of one raw case (labels are never read) and the case properties."""
    out = predict_case_outputs(case_files, models, modalities, cfg, crop, device, precision, keep_probabilities=False)
    return out.labels, out.props


def predict_cases(cases, models: dict[str, RegionModel], modalities: list[str], cfg: InferConfig,
                  crop: CropSettings, out_dir, device: torch.device, precision: str) -> list[str]:
    """Predict and write ``<out_dir>/<case>.nii.gz`` for every case (and ``<case>_probabilities.npz`` with
    ``cfg.save_probabilities``); returns the written case ids."""
    out_dir = Path(out_dir)
    written = []
    for case_files in tqdm(cases, desc="infer", unit="case", dynamic_ncols=True, mininterval=2.0):
        out = predict_case_outputs(case_files, models, modalities, cfg, crop, device, precision,
                                   keep_probabilities=cfg.save_probabilities)
        write_volume(out_dir / f"{case_files.case}.nii.gz", out.labels, np.asarray(out.props["affine"]),
                     out.props["spacing"])
        if out.probabilities is not None:
            write_probabilities(probability_path(out_dir, case_files.case), out.probabilities)
        written.append(case_files.case)
    return written


def run_inference(model_dir, raw_dir, out_dir, case_ids: list[str] | None, regions, cfg: InferConfig,
                  crop: CropSettings, device: torch.device, precision: str) -> list[str]:
    """Predict the cases ``case_ids`` of ``raw_dir`` (all discovered cases when None; labels not needed) into
    ``out_dir``, written whole or not at all."""
    cases = discover_cases(raw_dir, require_labels=False)
    if case_ids is not None:
        by_id = {c.case: c for c in cases}
        missing = [c for c in case_ids if c not in by_id]
        if missing:
            raise ConfigError(f"cases {missing[:5]} of the split are not under {raw_dir}")
        cases = [by_id[c] for c in case_ids]
    models = load_region_models(model_dir, regions, device)
    modalities = list(next(iter(models.values())).contract["modalities"])
    with atomic_dir(out_dir) as tmp:
        return predict_cases(cases, models, modalities, cfg, crop, tmp, device, precision)
