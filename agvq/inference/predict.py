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
from agvq.inference.predictors import SingleStagePredictor, TwoStagePredictor, predict_region
from agvq.io.atomic import atomic_dir
from agvq.io.discovery import discover_cases
from agvq.io.naming import check_modalities
from agvq.io.nifti import write_volume
from agvq.models.loading import load_predictor_parts
from agvq.regions import get_convention, regions_to_labels
from agvq.tokenizer.model import load_tokenizer
from agvq.tokenizer.synthesis import prepare_with_synthesis

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
def predict_masks(image: np.ndarray, brain: np.ndarray, models: dict[str, RegionModel], cfg: InferConfig,
                  device: torch.device, precision: str) -> dict[str, np.ndarray]:
    """(C, X, Y, Z) prepared image -> {region: boolean mask} on the cropped grid (voxels outside the brain off),
    by the protocol validation uses during training (agvq.inference.predictors.predict_region)."""
    volume = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
    masks = {}
    for region, m in models.items():
        with autocast(device, precision):
            masks[region] = predict_region(m.predictor, volume, m.patch_size, brain, cfg)
    return masks


def predict_case(case_files, models: dict[str, RegionModel], modalities: list[str], cfg: InferConfig,
                 crop: CropSettings, device: torch.device, precision: str,
                 tokenizer: nn.Module | None = None) -> tuple[np.ndarray, dict]:
    """Label map on the original grid of one raw case (labels are never read) and the case properties.

    With ``cfg.missing_modality == "synthesize"`` a modality whose file is absent is synthesized from the others
    by ``tokenizer`` (agvq.tokenizer) before segmenting; with "error" it is a CaseError naming the file.
    """
    unlabelled = dataclasses.replace(case_files, seg=None)  # no test-time access to labels, not even the crop
    if cfg.missing_modality == "synthesize" and any(m not in case_files.images for m in modalities):
        if tokenizer is None:
            raise ConfigError("infer.missing_modality is synthesize but no tokenizer model was given")
        arrays, props = prepare_with_synthesis(unlabelled, modalities, crop.margin, crop.stride, tokenizer)
    else:
        arrays, props = prepare_case(unlabelled, modalities, crop.margin, crop.stride, require_labels=False)
    masks = predict_masks(arrays["image"], arrays["brain"].astype(bool), models, cfg, device, precision)
    labels = regions_to_labels(masks, get_convention(props["convention"]))
    full = uncrop(labels, props["crop_start"], props["crop_stop"], tuple(props["original_shape"]))
    return full.astype(np.uint8), props


def predict_cases(cases, models: dict[str, RegionModel], modalities: list[str], cfg: InferConfig,
                  crop: CropSettings, out_dir, device: torch.device, precision: str,
                  tokenizer: nn.Module | None = None) -> list[str]:
    """Predict and write ``<out_dir>/<case>.nii.gz`` for every case; returns the written case ids."""
    out_dir = Path(out_dir)
    written = []
    for case_files in tqdm(cases, desc="infer", unit="case", dynamic_ncols=True, mininterval=2.0):
        labels, props = predict_case(case_files, models, modalities, cfg, crop, device, precision, tokenizer)
        write_volume(out_dir / f"{case_files.case}.nii.gz", labels, np.asarray(props["affine"]), props["spacing"])
        written.append(case_files.case)
    return written


def run_inference(model_dir, raw_dir, out_dir, case_ids: list[str] | None, regions, cfg: InferConfig,
                  crop: CropSettings, device: torch.device, precision: str, tokenizer_path=None) -> list[str]:
    """Predict the cases ``case_ids`` of ``raw_dir`` (all discovered cases when None; labels not needed) into
    ``out_dir``, written whole or not at all. ``tokenizer_path``: the MRI tokenizer model file that
    ``cfg.missing_modality == "synthesize"`` fills missing modalities with."""
    tokenizer = None
    if cfg.missing_modality == "synthesize":
        if tokenizer_path is None:
            raise ConfigError("infer.missing_modality is synthesize: give the tokenizer model file (--tokenizer)")
        tokenizer = load_tokenizer(tokenizer_path)[0].to(device)
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
        return predict_cases(cases, models, modalities, cfg, crop, tmp, device, precision, tokenizer)
