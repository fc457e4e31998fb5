"""Validation during training, by the protocol that infer + evaluate apply to the final model: sliding window,
blending and threshold of params ``infer``, the prediction masked to the brain, and Dice/HD95 under the BraTS
empty-mask conventions with ``evaluate.empty_penalty``. The checkpoint is therefore chosen by what is evaluated."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agvq.config import InferConfig
from agvq.data.dataset import CaseStore
from agvq.inference.predictors import predict_foreground
from agvq.metrics.segmentation import region_metrics
from agvq.regions import enforce_hierarchy


@dataclass(frozen=True)
class ValidationProtocol:
    infer: InferConfig
    empty_penalty: float
    patch_size: tuple[int, int, int]


def case_scores(pred: np.ndarray, truth: np.ndarray, regions, spacing, empty_penalty: float) -> dict:
    """Dice/HD95 of one validation case. ``regions`` a str: one region, ``pred`` and ``truth`` (X, Y, Z). A tuple of
    R regions (a joint model): ``pred`` and ``truth`` (R, X, Y, Z); the prediction's regions are nested as
    inference nests them (ET in TC in WT); the scores are the means over regions, plus ``dice_<R>`` /
    ``hd95_<R>`` per region."""
    if isinstance(regions, str):
        scores = region_metrics(pred, truth.astype(bool), spacing, empty_penalty)
        return {"dice": scores["dice"], "hd95": scores["hd95"]}
    masks = enforce_hierarchy(dict(zip(regions, pred)))
    out: dict[str, float] = {}
    for i, region in enumerate(regions):
        scores = region_metrics(masks[region], truth[i].astype(bool), spacing, empty_penalty)
        out[f"dice_{region}"], out[f"hd95_{region}"] = scores["dice"], scores["hd95"]
    out["dice"] = float(np.mean([out[f"dice_{r}"] for r in regions]))
    out["hd95"] = float(np.mean([out[f"hd95_{r}"] for r in regions]))
    return out


@torch.inference_mode()
def validate(predictor: torch.nn.Module, store: CaseStore, val_input, protocol: ValidationProtocol, rt) -> dict:
    """Mean Dice and HD95 (mm) over the cases of ``store`` (and per region, for a joint model)."""
    predictor.eval()
    rows = []
    for i in range(len(store)):
        case = store[i]
        volume = rt.to_device(val_input(case)[None])
        with rt.autocast():
            pred = predict_foreground(predictor, volume, protocol.patch_size, case.brain, protocol.infer)
        rows.append(case_scores(pred[0] if isinstance(store.region, str) else pred, case.mask, store.region,
                                case.spacing, protocol.empty_penalty))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
