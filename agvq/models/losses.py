"""Losses: soft Dice (+CE) for 2-class mask logits (stage 1) and focal + CE over code logits (stage 2)."""
from __future__ import annotations

import torch
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

from agvq.errors import ConfigError


def _as_label(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Binary target (B, X, ...) or (B, 1, X, ...) -> (B, 1, X, ...) float label map matching logits."""
    if target.dim() == logits.dim() - 1:
        target = target.unsqueeze(1)
    if target.shape[0] != logits.shape[0] or target.shape[1] != 1 or target.shape[2:] != logits.shape[2:]:
        raise ValueError(f"mask target {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
    return (target > 0.5).float() if torch.is_floating_point(target) else (target > 0).float()


class MaskLoss(nn.Module):
    """``dice_weight * soft Dice + ce_weight * cross-entropy`` of 2-class logits (B, 2, ...) vs a binary mask.

    The soft Dice covers both classes (background and foreground) and is pooled over the batch, so a batch
    whose masks are empty (e.g. cases without enhancing tumour) still gives a meaningful loss.
    """

    def __init__(self, dice_weight: float, ce_weight: float):
        super().__init__()
        if dice_weight < 0 or ce_weight < 0 or dice_weight + ce_weight <= 0:
            raise ConfigError(f"mask loss: weights must be >= 0 and not both 0, got dice_weight={dice_weight}, "
                              f"ce_weight={ce_weight}")
        self.loss = DiceCELoss(include_background=True, to_onehot_y=True, softmax=True, batch=True,
                               lambda_dice=float(dice_weight), lambda_ce=float(ce_weight))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() < 3 or logits.shape[1] != 2:
            raise ValueError(f"mask loss expects 2-class logits (B, 2, ...), got {tuple(logits.shape)}")
        return self.loss(logits.float(), _as_label(target, logits))


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Batch soft Dice loss (both classes) of 2-class logits vs a binary mask; MaskLoss(1, 0)."""
    return MaskLoss(1.0, 0.0)(logits, target)


class CodeLoss(nn.Module):
    """``focal_weight * focal + ce_weight * cross-entropy`` over code logits (B, K, ...) vs indices (B, ...).

    Focal loss per voxel is ``-(1 - p_t)^gamma * log p_t`` (softmax over the K codes), averaged over voxels;
    it is computed with a gather, so no (B, K, ...) one-hot target is materialised. With ``code_weights`` (one per
    code) both terms are weighted averages, each voxel weighted by the weight of its target code.
    """

    def __init__(self, focal_weight: float, ce_weight: float, gamma: float, code_weights: torch.Tensor | None = None):
        super().__init__()
        if focal_weight < 0 or ce_weight < 0 or focal_weight + ce_weight <= 0 or gamma < 0:
            raise ConfigError(f"code loss: weights must be >= 0 and not both 0 and gamma >= 0, got "
                              f"focal_weight={focal_weight}, ce_weight={ce_weight}, gamma={gamma}")
        self.focal_weight, self.ce_weight, self.gamma = float(focal_weight), float(ce_weight), float(gamma)
        if code_weights is not None:
            code_weights = torch.as_tensor(code_weights, dtype=torch.float32)
            if code_weights.dim() != 1 or not bool(torch.isfinite(code_weights).all()) or bool((code_weights < 0).any()):
                raise ConfigError("code loss: code_weights must be a finite, non-negative vector (one per code)")
        self.register_buffer("code_weights", code_weights)

    def forward(self, logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        if indices.dim() != logits.dim() - 1 or indices.shape[0] != logits.shape[0] \
                or indices.shape[1:] != logits.shape[2:]:
            raise ValueError(f"code targets {tuple(indices.shape)} do not match logits {tuple(logits.shape)}")
        log_p = torch.log_softmax(logits.float(), dim=1)
        log_pt = log_p.gather(1, indices.long().unsqueeze(1)).squeeze(1)
        focal_terms = (1.0 - log_pt.exp()).pow(self.gamma) * log_pt
        if self.code_weights is None:
            return -(self.focal_weight * focal_terms.mean() + self.ce_weight * log_pt.mean())
        if self.code_weights.numel() != logits.shape[1]:
            raise ValueError(f"{self.code_weights.numel()} code weights for {logits.shape[1]} codes")
        w = self.code_weights.to(logits.device)[indices.long()]
        norm = w.sum().clamp_min(1e-12)
        return -(self.focal_weight * (w * focal_terms).sum() + self.ce_weight * (w * log_pt).sum()) / norm


class MultiLabelMaskLoss(nn.Module):
    """``dice_weight * soft Dice + ce_weight * binary CE`` of R sigmoid logits (B, R, ...) vs R binary masks
    (B, R, ...): one independent foreground/background problem per region (the regions overlap). MONAI's DiceLoss
    with sigmoid (pooled over the batch, as in :class:`MaskLoss`) plus ``BCEWithLogitsLoss``; MONAI's DiceCELoss
    is not used because, for more than one channel, its CE term is a softmax over the channels even with
    ``sigmoid=True``, which is wrong for overlapping regions."""

    def __init__(self, dice_weight: float, ce_weight: float):
        super().__init__()
        if dice_weight < 0 or ce_weight < 0 or dice_weight + ce_weight <= 0:
            raise ConfigError(f"multi-label mask loss: weights must be >= 0 and not both 0, got "
                              f"dice_weight={dice_weight}, ce_weight={ce_weight}")
        self.dice_weight, self.ce_weight = float(dice_weight), float(ce_weight)
        self.dice = DiceLoss(include_background=True, sigmoid=True, batch=True)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"multi-label targets {tuple(target.shape)} do not match logits {tuple(logits.shape)}")
        logits, target = logits.float(), (target > 0.5).float()
        return self.dice_weight * self.dice(logits, target) + self.ce_weight * self.bce(logits, target)
