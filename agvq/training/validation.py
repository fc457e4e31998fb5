"""Validation on whole cropped volumes with sliding-window prediction; Dice and HD95 under BraTS conventions."""
from __future__ import annotations

import numpy as np
import torch

from agvq.data.dataset import CaseStore
from agvq.inference.predictors import sliding_window_probabilities
from agvq.metrics.segmentation import region_metrics


@torch.inference_mode()
def validate(predictor: torch.nn.Module, store: CaseStore, val_input, cfg, rt) -> dict:
    """Mean Dice and HD95 (mm) of the thresholded prediction over the cases of ``store``.

    A predictor with ``whole_volume = True`` (a fully convolutional net whose output does not depend on what else is
    in its input, like the stage-1 VQ-VAE with batch or no norm) sees each volume in one pass instead of windows.
    """
    predictor.eval()
    dices, hds = [], []
    for i in range(len(store)):
        case = store[i]
        volume = rt.to_device(val_input(case)[None])
        with rt.autocast():
            roi = volume.shape[2:] if getattr(predictor, "whole_volume", False) else cfg.patch_size
            probs = sliding_window_probabilities(predictor, volume, roi, cfg.sw_overlap, cfg.sw_batch_size)
        pred = (probs[0, 1] > 0.5).cpu().numpy()
        scores = region_metrics(pred, case.mask.astype(bool), case.spacing, cfg.empty_penalty)
        dices.append(scores["dice"])
        hds.append(scores["hd95"])
    return {"dice": float(np.mean(dices)), "hd95": float(np.mean(hds))}
