"""Where the two-stage model loses against single-stage nets, measured on the VALIDATION split (never on test):

* the stage-1 reconstruction ceiling: the Dice of masks passed through the frozen VQ-VAE (what stage 2 could reach
  with every code right);
* code accuracy at the latent positions of boundary blocks (4^3 blocks that hold both tumour and background) versus
  interior blocks (all tumour) and background blocks (no tumour);
* where a region's false positives sit: inside the next outer true region (e.g. ET predicted on necrosis or on
  oedema), outside the whole tumour, and how far from the true region.

Every prediction uses the inference protocol (agvq.inference.predictors), on the prepared (cropped) validation
cases, which the validation-equals-evaluation test shows give the same masks as infer + evaluate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from agvq.config import InferConfig
from agvq.data.dataset import CaseStore
from agvq.inference.predictors import TwoStagePredictor, predict_region
from agvq.metrics.reconstruction import reconstruction_report
from agvq.regions import REGIONS

POSITIONS = ("background", "boundary", "interior")


@dataclass
class CodeAccuracy:
    correct: dict[str, int]
    total: dict[str, int]
    same_decoding: dict[str, int]  # wrong codes whose decoded 4^3 block equals the target's block (thresholded)

    def as_dict(self) -> dict:
        return {pos: {"positions": self.total[pos],
                      "accuracy": self.correct[pos] / self.total[pos] if self.total[pos] else None,
                      "wrong_but_same_block": (self.same_decoding[pos] / (self.total[pos] - self.correct[pos])
                                               if self.total[pos] > self.correct[pos] else None)}
                for pos in POSITIONS}


def block_positions(mask: np.ndarray, stride: int) -> np.ndarray:
    """Latent-grid label of each ``stride``^3 block of a binary mask: 0 background, 1 boundary, 2 interior."""
    x, y, z = (s // stride for s in mask.shape)
    blocks = mask[:x * stride, :y * stride, :z * stride].reshape(x, stride, y, stride, z, stride)
    frac = blocks.mean(axis=(1, 3, 5))
    return np.where(frac == 0, 0, np.where(frac == 1, 2, 1)).astype(np.int8)


@torch.inference_mode()
def code_accuracy(predictor: TwoStagePredictor, store: CaseStore, patch_size, protocol: InferConfig) -> CodeAccuracy:
    """Accuracy of the predicted codes (argmax of the window-blended logits) against the codes the frozen
    encoder gives the true mask, by latent position class."""
    vqvae, stride = predictor.vqvae, predictor.vqvae.stride
    correct = dict.fromkeys(POSITIONS, 0)
    total = dict.fromkeys(POSITIONS, 0)
    same = dict.fromkeys(POSITIONS, 0)
    for i in tqdm(range(len(store)), desc="code accuracy", unit="case", mininterval=2.0):
        case = store[i]
        image = torch.from_numpy(case.image)[None]
        mask = torch.from_numpy(case.mask[None, None].astype(np.float32))
        target = vqvae.encode_indices(mask)[0].numpy()
        logits = predictor.code_logits(image, patch_size, protocol.overlap, protocol.sw_batch_size, protocol.blend)
        pred = logits.argmax(dim=1)[0].numpy()
        decoded_pred = torch.softmax(vqvae.decode_indices(torch.from_numpy(pred)[None]), 1)[0, 1].numpy() > 0.5
        decoded_true = torch.softmax(vqvae.decode_indices(torch.from_numpy(target)[None]), 1)[0, 1].numpy() > 0.5
        same_block = block_positions(decoded_pred != decoded_true, stride) == 0  # no voxel of the block differs
        positions = block_positions(case.mask.astype(bool), stride)
        for k, name in enumerate(POSITIONS):
            at = positions == k
            hit = pred[at] == target[at]
            correct[name] += int(hit.sum())
            total[name] += int(at.sum())
            same[name] += int((~hit & same_block[at]).sum())
    return CodeAccuracy(correct, total, same)


def false_positive_locations(pred: np.ndarray, truth_masks: np.ndarray, region: str, spacing) -> dict:
    """Where ``pred``'s false-positive voxels of ``region`` sit, as shares of all its false positives: inside each
    outer true region (``in_TC`` = inside the true tumour core but outside the true region, ``in_WT`` = in the true
    whole tumour but outside the core, ``outside_WT``), and their median distance (mm) to the true region.
    ``truth_masks`` is (3, X, Y, Z) in REGIONS order."""
    truth = {r: truth_masks[i].astype(bool) for i, r in enumerate(REGIONS)}
    fp = pred & ~truth[region]
    n = int(fp.sum())
    out = {"false_positive_voxels": n, "predicted_voxels": int(pred.sum()), "true_voxels": int(truth[region].sum())}
    if n == 0:
        return {**out, "in_TC": None, "in_WT": None, "outside_WT": None, "median_distance_mm": None}
    in_tc = fp & truth["TC"] if region == "ET" else np.zeros_like(fp)
    in_wt = fp & truth["WT"] & ~in_tc
    outside = fp & ~truth["WT"]
    if truth[region].any():
        dist = ndi.distance_transform_edt(~truth[region], sampling=spacing)[fp]
        median = float(np.median(dist))
    else:
        median = None
    return {**out, "in_TC": float(in_tc.sum() / n), "in_WT": float(in_wt.sum() / n),
            "outside_WT": float(outside.sum() / n), "median_distance_mm": median}


@torch.inference_mode()
def region_false_positives(predictor: torch.nn.Module, store: CaseStore, prepared_masks, patch_size,
                           protocol: InferConfig, region: str) -> dict:
    """False-positive locations of ``region`` summed over the cases of ``store`` (its masks: ``prepared_masks``,
    case id -> (3, X, Y, Z)), plus the share of cases whose prediction is larger than the truth."""
    totals = {"in_TC": 0.0, "in_WT": 0.0, "outside_WT": 0.0}
    fp_all, over, distances, cases = 0, 0, [], []
    for i in tqdm(range(len(store)), desc=f"{region} false positives", unit="case", mininterval=2.0):
        case = store[i]
        pred = predict_region(predictor, torch.from_numpy(case.image)[None], patch_size, case.brain, protocol)
        loc = false_positive_locations(pred, prepared_masks[case.case], region, case.spacing)
        cases.append({"case": case.case, **loc})
        over += loc["predicted_voxels"] > loc["true_voxels"]
        n = loc["false_positive_voxels"]
        fp_all += n
        if n:
            for key in totals:
                totals[key] += loc[key] * n
            if loc["median_distance_mm"] is not None:
                distances.append(loc["median_distance_mm"])
    shares = {k: (v / fp_all if fp_all else None) for k, v in totals.items()}
    return {"region": region, "cases": len(cases), "false_positive_voxels": fp_all,
            "cases_predicting_more_than_truth": int(over), **shares,
            "median_of_case_median_distance_mm": float(np.median(distances)) if distances else None,
            "per_case": cases}


def reconstruction_ceiling(vqvae: torch.nn.Module, store: CaseStore, patch_size, protocol: InferConfig,
                           empty_penalty: float) -> dict:
    """Stage-1 reconstruction Dice/HD95 of the validation masks (the best stage 2 can do)."""
    report = reconstruction_report(vqvae, store, patch_size, protocol, empty_penalty)
    return {k: report[k] for k in ("cases", "dice", "dice_median", "dice_min", "hd95", "used_codes",
                                   "num_embeddings", "perplexity")}
