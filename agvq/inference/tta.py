"""Test-time augmentation (params ``infer.tta``): the mean foreground probability over the 8 combinations of flips
of the three spatial axes (the identity included), each flipped prediction flipped back before averaging.

Inference only: validation during training uses the plain protocol (agvq.inference.predictors.predict_foreground), so
TTA never changes which checkpoint is kept, and the training stages do not depend on ``infer.tta``.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from agvq.config import InferConfig
from agvq.inference.predictors import foreground_probabilities

SPATIAL_DIMS = (2, 3, 4)
FLIPS: tuple[tuple[int, ...], ...] = tuple(
    combo for r in range(len(SPATIAL_DIMS) + 1) for combo in itertools.combinations(SPATIAL_DIMS, r))
"""The tensor dims flipped by each of the 8 augmentations of (1, C, X, Y, Z) volumes; () is the identity."""


def flips_for(tta: str) -> tuple[tuple[int, ...], ...]:
    """The flips a ``tta`` setting averages over: ``none`` -> the identity only, ``flip`` -> all 8."""
    if tta == "none":
        return ((),)
    if tta == "flip":
        return FLIPS
    raise ValueError(f"unknown tta {tta!r}; expected 'none' or 'flip'")


def tta_probabilities(predictor: nn.Module, volume: torch.Tensor, patch_size, cfg: InferConfig) -> torch.Tensor:
    """(1, C, X, Y, Z) -> (R, X, Y, Z) float32 foreground probabilities (agvq.inference.predictors
    .foreground_probabilities), averaged over the flips of ``cfg.tta``."""
    total = None
    flips = flips_for(cfg.tta)
    for dims in flips:
        view = volume.flip(dims) if dims else volume
        prob = foreground_probabilities(predictor, view, patch_size, cfg).float()
        if dims:
            prob = prob.flip(tuple(d - 1 for d in dims))  # (R, X, Y, Z): spatial dims 1..3
        total = prob if total is None else total.add_(prob)
    return total / len(flips) if len(flips) > 1 else total
