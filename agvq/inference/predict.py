"""Whole-volume inference: crop as in preprocessing, sliding-window prediction per region, ET in TC in WT,
one BraTS label map in the case's own convention, pasted back onto the original grid with the input affine."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from agvq.config import InferConfig
from agvq.data.preprocess import prepare_volumes, uncrop
from agvq.device import autocast
from agvq.errors import CaseError, ConfigError
from agvq.inference.cases import CaseOutcomes, check_cases, select_cases
from agvq.inference.missing import fill_missing
from agvq.inference.predictors import JointPredictor, SingleStagePredictor, TwoStagePredictor
from agvq.inference.tta import tta_probabilities
from agvq.io.naming import check_modalities
from agvq.io.nifti import write_volume
from agvq.io.outputs import staged_outputs
from agvq.io.probabilities import ProbabilityMaps, probability_path, write_probabilities
from agvq.io.validation import CaseHeader, load_image, missing_modalities, validate_case
from agvq.models.loading import load_predictor_parts
from agvq.regions import get_convention, regions_to_labels
from agvq.tokenizer.model import load_tokenizer
from agvq.tokenizer.synthesis import prepare_with_synthesis

log = logging.getLogger("agvq.inference")


@dataclass
class RegionModel:
    """A loaded predictor and the regions its outputs are: one region (a per-region model: 2-class softmax), or
    several (a joint model: one sigmoid output per region, in ``regions`` order)."""

    regions: str | tuple[str, ...]
    predictor: nn.Module
    patch_size: tuple
    contract: dict

    def __post_init__(self) -> None:
        if isinstance(self.regions, str):
            self.regions = (self.regions,)
        self.regions = tuple(self.regions)


@dataclass(frozen=True)
class CropSettings:
    """The crop of preprocessing (params ``preprocess.margin`` / ``preprocess.stride``), redone at inference."""

    margin: int
    stride: int


def _check_contract(path: Path, region: str | None, net: nn.Module, vqvae, bundle: dict) -> tuple[int, ...]:
    """Raise a one-line ConfigError unless the model file fits ``region`` (None: a joint model); returns its patch
    size."""
    contract = bundle.get("contract") or {}
    if region is not None and contract.get("region") != region:
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


def _load_joint(path: Path, regions, device: torch.device) -> dict[str, RegionModel]:
    net, vqvae, bundle = load_predictor_parts(path)
    patch = _check_contract(path, None, net, vqvae, bundle)
    trained = list((bundle.get("contract") or {}).get("regions") or [])
    missing = [r for r in regions if r not in trained]
    if missing:
        raise ConfigError(f"{path} is a joint model of regions {trained}; it cannot predict {missing}")
    model = RegionModel(tuple(trained), JointPredictor(net).to(device).eval(), patch, bundle["contract"])
    return {region: model for region in regions}


def load_region_models(model_dir: str | Path, regions, device: torch.device):
    """Eval-mode predictors on ``device``: one model file per region (``<model_dir>/<region>.pt``), or one joint
    model of every region (``<model_dir>/joint.pt``), as {region: RegionModel} (a joint model under each of its
    regions).

    Raises ConfigError for a missing or unreadable file, a model of another region (or, two-stage, decoding
    through another region's VQ-VAE), and region models trained on different modalities.
    """
    models = {}
    joint = Path(model_dir) / "joint.pt"
    if joint.is_file():
        models = _load_joint(joint, list(regions), device)
    for region in regions if not models else ():
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
    for m in {id(m): m for m in models.values()}.values():  # a joint model predicts its regions in one pass
        with autocast(device, precision):
            prob = tta_probabilities(m.predictor, volume, m.patch_size, cfg).cpu().numpy()
        for i, region in enumerate(m.regions):
            if region in models:
                probs[region] = np.where(brain, prob[i], np.float32(0)).astype(np.float32, copy=False)
    return {region: probs[region] for region in models}


def predict_masks(image: np.ndarray, brain: np.ndarray, models: dict[str, RegionModel], cfg: InferConfig,
                  device: torch.device, precision: str) -> dict[str, np.ndarray]:
    """(C, X, Y, Z) prepared image -> {region: boolean mask} on the cropped grid (voxels outside the brain off):
    probability above ``cfg.threshold``. Without TTA this is the protocol validation uses during training
    (agvq.inference.predictors.predict_foreground)."""
    probs = predict_probabilities(image, brain, models, cfg, device, precision)
    return {region: prob > cfg.threshold for region, prob in probs.items()}


def read_case(case_files, modalities: list[str], missing: str) -> tuple[CaseHeader, list[np.ndarray]]:
    """Validated header and raw volumes (``modalities`` order) of one case, its segmentation never read.

    ``missing`` (params ``infer.missing_modality``): ``error`` stops on a missing sequence file with the CaseError of
    ``validate_case``; ``zero`` / ``mean`` fill it (agvq.inference.missing.fill_missing) and log one warning line
    naming the case and the filled sequence. A case with none of the sequences is a CaseError in every mode.
    """
    unlabelled = dataclasses.replace(case_files, seg=None)  # no test-time access to labels, not even the crop
    absent = missing_modalities(unlabelled, modalities) if missing != "error" else []
    present = [m for m in modalities if m not in absent]
    if not present:
        raise CaseError(case_files.case, None, f"none of the sequences {list(modalities)} is present")
    header = validate_case(unlabelled, present, require_labels=False)
    volumes = {m: load_image(header, m) for m in present}
    for m in absent:
        log.warning("case %s: sequence %s is missing (%s); filled: %s (infer.missing_modality: %s)",
                    case_files.case, m, unlabelled.expected_name(m),
                    "zeros" if missing == "zero" else "the brain mean of the other sequences", missing)
    return header, fill_missing(volumes, modalities, missing) if absent else [volumes[m] for m in modalities]


@dataclass
class CasePrediction:
    labels: np.ndarray  # uint8 label map on the original grid, in the case's convention
    props: dict  # the case properties (agvq.io.prepared)
    probabilities: ProbabilityMaps | None  # per-region maps on the original grid, when asked for


def volume_outputs(header: CaseHeader, volumes: list[np.ndarray], models: dict[str, RegionModel],
                   modalities: list[str], cfg: InferConfig, crop: CropSettings, device: torch.device,
                   precision: str, keep_probabilities: bool) -> CasePrediction:
    """Label map (and, with ``keep_probabilities``, the probability maps) on the original grid from the raw
    ``volumes`` of a case, cropped and z-scored as preprocessing does."""
    arrays, props = prepare_volumes(header, volumes, None, modalities, crop.margin, crop.stride)
    return arrays_outputs(arrays, props, models, cfg, device, precision, keep_probabilities)


def arrays_outputs(arrays: dict, props: dict, models: dict[str, RegionModel], cfg: InferConfig,
                   device: torch.device, precision: str, keep_probabilities: bool) -> CasePrediction:
    """:func:`volume_outputs` from an already prepared case (``arrays`` "image" and "brain", ``props``)."""
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


def predict_volumes(header: CaseHeader, volumes: list[np.ndarray], models: dict[str, RegionModel],
                    modalities: list[str], cfg: InferConfig, crop: CropSettings, device: torch.device,
                    precision: str) -> tuple[np.ndarray, dict]:
    """Label map on the original grid from the raw ``volumes`` of a case and the case properties; the robustness
    study calls it on perturbed volumes."""
    out = volume_outputs(header, volumes, models, modalities, cfg, crop, device, precision, False)
    return out.labels, out.props


def predict_case_outputs(case_files, models: dict[str, RegionModel], modalities: list[str], cfg: InferConfig,
                         crop: CropSettings, device: torch.device, precision: str,
                         keep_probabilities: bool, tokenizer: nn.Module | None = None) -> CasePrediction:
    """:func:`volume_outputs` of one raw case (labels are never read; a missing sequence as
    ``cfg.missing_modality`` says: ``synthesize`` fills it with ``tokenizer``'s synthesis from the others, on the
    cropped, z-scored grid)."""
    if cfg.missing_modality == "synthesize":
        unlabelled = dataclasses.replace(case_files, seg=None)  # no test-time access to labels, not even the crop
        absent = missing_modalities(unlabelled, modalities)
        if absent:
            if tokenizer is None:
                raise ConfigError("infer.missing_modality is synthesize but no tokenizer model was given")
            for m in absent:
                log.warning("case %s: sequence %s is missing (%s); filled: the MRI tokenizer's synthesis from the "
                            "others (infer.missing_modality: synthesize)", case_files.case, m,
                            unlabelled.expected_name(m))
            arrays, props = prepare_with_synthesis(unlabelled, modalities, crop.margin, crop.stride, tokenizer)
            return arrays_outputs(arrays, props, models, cfg, device, precision, keep_probabilities)
    header, volumes = read_case(case_files, modalities, "error" if cfg.missing_modality == "synthesize"
                                else cfg.missing_modality)
    return volume_outputs(header, volumes, models, modalities, cfg, crop, device, precision, keep_probabilities)


def predict_case(case_files, models: dict[str, RegionModel], modalities: list[str], cfg: InferConfig,
                 crop: CropSettings, device: torch.device, precision: str,
                 tokenizer: nn.Module | None = None) -> tuple[np.ndarray, dict]:
    """Label map on the original grid of one raw case (labels are never read) and the case properties."""
    out = predict_case_outputs(case_files, models, modalities, cfg, crop, device, precision, False, tokenizer)
    return out.labels, out.props


def predict_cases(cases, models: dict[str, RegionModel], modalities: list[str], cfg: InferConfig,
                  crop: CropSettings, out_dir, device: torch.device, precision: str,
                  outcomes: CaseOutcomes | None = None, tokenizer: nn.Module | None = None) -> list[str]:
    """Predict and write ``<out_dir>/<case>.nii.gz`` for every case (and ``<case>_probabilities.npz`` with
    ``cfg.save_probabilities``); returns the written case ids. With ``outcomes``, a case whose data turns out bad
    goes to ``outcomes.failed`` (skip or stop, ``infer.on_error``) and warnings about suspicious data to
    ``outcomes.warn``; without, its CaseError propagates. ``tokenizer``: the MRI tokenizer that
    ``infer.missing_modality: synthesize`` fills a missing sequence with."""
    out_dir = Path(out_dir)
    written = []
    for case_files in tqdm(cases, desc="infer", unit="case", dynamic_ncols=True, mininterval=2.0):
        try:
            out = predict_case_outputs(case_files, models, modalities, cfg, crop, device, precision,
                                       cfg.save_probabilities, tokenizer)
        except CaseError as exc:
            if outcomes is None:
                raise
            outcomes.failed(exc)
            continue
        if outcomes is not None:
            outcomes.warn(case_files.case, out.props.get("warnings", ()))
        write_volume(out_dir / f"{case_files.case}.nii.gz", out.labels, np.asarray(out.props["affine"]),
                     out.props["spacing"])
        if out.probabilities is not None:
            write_probabilities(probability_path(out_dir, case_files.case), out.probabilities)
        written.append(case_files.case)
    return written


def load_synthesis_tokenizer(cfg: InferConfig, tokenizer_path, device: torch.device) -> nn.Module | None:
    """The MRI tokenizer (eval mode, on ``device``) when ``cfg.missing_modality`` is ``synthesize``, else None."""
    if cfg.missing_modality != "synthesize":
        return None
    if tokenizer_path is None:
        raise ConfigError("infer.missing_modality is synthesize: give the tokenizer model file (--tokenizer)")
    return load_tokenizer(tokenizer_path)[0].to(device).eval()


def run_inference(model_dir, raw_dir, out_dir, case_ids: list[str] | None, regions, cfg: InferConfig,
                  crop: CropSettings, device: torch.device, precision: str, report=None,
                  tokenizer_path=None) -> list[str]:
    """Predict the cases ``case_ids`` of ``raw_dir`` (all discovered cases when None; labels not needed) into
    ``out_dir`` (replaced whole, only if infer wrote it), and write the JSON ``report`` (if given) with it, all or
    nothing. Every case's headers are checked before the first prediction; ``cfg.on_error`` stops at a bad case
    or skips it (agvq.inference.cases). ``tokenizer_path``: the MRI tokenizer model file that
    ``cfg.missing_modality == "synthesize"`` fills missing sequences with."""
    tokenizer = load_synthesis_tokenizer(cfg, tokenizer_path, device)
    cases, problems = select_cases(raw_dir, case_ids)
    models = load_region_models(model_dir, regions, device)
    modalities = list(next(iter(models.values())).contract["modalities"])
    outcomes = check_cases(cases, problems, modalities, cfg.on_error, raw_dir, cfg.missing_modality)
    with staged_outputs("infer") as staged:
        written = predict_cases(outcomes.cases, models, modalities, cfg, crop, staged.folder(out_dir), device,
                                precision, outcomes, tokenizer)
        if not written:
            raise CaseError(None, str(raw_dir), f"no case could be predicted ({len(outcomes.skipped)} skipped: "
                                                f"{outcomes.skipped[0]})")
        if report is not None:
            staged.write_json(report, outcomes.report(written, raw_dir, model_dir))
    return written


def run_inference_seeds(model_root, raw_dir, out_dir, seeds, case_ids: list[str] | None, regions, cfg: InferConfig,
                        crop: CropSettings, device: torch.device, precision: str, report=None,
                        tokenizer_path=None) -> dict[int, list[str]]:
    """:func:`run_inference` for every training seed: the models of ``<model_root>/seed<k>/`` predict into
    ``<out_dir>/seed<k>/``. One output folder (one manifest) and one report (an entry per seed), written together
    or not at all."""
    tokenizer = load_synthesis_tokenizer(cfg, tokenizer_path, device)
    cases, problems = select_cases(raw_dir, case_ids)
    written, reports = {}, {}
    with staged_outputs("infer") as staged:
        root = staged.folder(out_dir)
        for seed in seeds:
            model_dir = Path(model_root) / f"seed{seed}"
            models = load_region_models(model_dir, regions, device)
            modalities = list(next(iter(models.values())).contract["modalities"])
            outcomes = check_cases(cases, problems, modalities, cfg.on_error, raw_dir, cfg.missing_modality)
            (root / f"seed{seed}").mkdir()
            written[seed] = predict_cases(outcomes.cases, models, modalities, cfg, crop, root / f"seed{seed}",
                                          device, precision, outcomes, tokenizer)
            if not written[seed]:
                raise CaseError(None, str(raw_dir), f"no case could be predicted with {model_dir} "
                                                    f"({len(outcomes.skipped)} skipped: {outcomes.skipped[0]})")
            reports[f"seed{seed}"] = outcomes.report(written[seed], raw_dir, model_dir)
        if report is not None:
            staged.write_json(report, reports)
    return written
