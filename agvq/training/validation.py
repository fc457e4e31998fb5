"""Validation during training, by the protocol that infer + evaluate apply to the final model: sliding window,
blending and threshold of params ``infer``, the prediction masked to the brain, and Dice/HD95 under the BraTS
empty-mask conventions with ``evaluate.empty_penalty``. The checkpoint is therefore chosen by what is evaluated."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agvq.config import InferConfig
from agvq.data.dataset import CaseStore
from agvq.inference.predictors import predict_region
from agvq.metrics.segmentation import region_metrics


@dataclass(frozen=True)
class ValidationProtocol:
    infer: InferConfig
    empty_penalty: float
    patch_size: tuple[int, int, int]


@torch.inference_mode()
def validate(predictor: torch.nn.Module, store: CaseStore, val_input, protocol: ValidationProtocol, rt) -> dict:
    """Mean Dice and HD95 (mm) over the cases of ``store``."""
    predictor.eval()
    dices, hds = [], []
    for i in range(len(store)):
        case = store[i]
        volume = rt.to_device(val_input(case)[None])
        with rt.autocast():
            pred = predict_region(predictor, volume, protocol.patch_size, case.brain, protocol.infer)
        scores = region_metrics(pred, case.mask.astype(bool), case.spacing, protocol.empty_penalty)
        dices.append(scores["dice"])
        hds.append(scores["hd95"])
    return {"dice": float(np.mean(dices)), "hd95": float(np.mean(hds))}
