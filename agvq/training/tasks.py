"""What differs between models in the one training loop: the loss on a patch batch and the patch predictor.

* ``VQVAETask``: stage 1, mask -> mask through the codebook; loss soft Dice (+CE) + commitment.
* ``CodeTask``: stage 2, MRI -> code indices of the frozen stage-1 encoder; loss focal + CE over codes.
* ``SegmentationTask``: single-stage nets (AG-UNet, U-Net baseline), MRI -> mask; loss Dice + CE.
"""
from __future__ import annotations

import torch
from torch import nn

from agvq.config import CondLossConfig, MaskLossConfig
from agvq.errors import ConfigError
from agvq.inference.predictors import JointPredictor, SingleStagePredictor, TwoStagePredictor, VQVAEReconstructor
from agvq.models.losses import CodeLoss, MaskLoss, MultiLabelMaskLoss


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients: the module (and its codebook buffers) never changes."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class VQVAETask:
    kind = "vqvae"

    def __init__(self, model: nn.Module, loss: MaskLossConfig):
        self.model = model
        self.loss = MaskLoss(dice_weight=loss.dice_weight, ce_weight=loss.ce_weight)

    def forward_loss(self, model: nn.Module, batch: dict):
        out = model(batch["mask"])
        recon = self.loss(out.logits.float(), batch["mask"])
        loss = recon + out.commitment_loss
        return loss, {"recon_loss": recon.detach(), "commitment": out.commitment_loss.detach(),
                      "perplexity": out.perplexity.detach(), "used_fraction": out.used_fraction.detach()}

    def predictor(self, model: nn.Module) -> nn.Module:
        return VQVAEReconstructor(model)

    @staticmethod
    def val_input(case) -> torch.Tensor:
        return torch.from_numpy(case.mask[None].astype("float32"))


def code_balance_weights(usage: torch.Tensor, power: float) -> torch.Tensor:
    """Per-code loss weights ``frequency ** -power`` from the stage-1 codebook's EMA usage, normalised to mean 1
    over the code distribution. The empty-background code dominates every mask; without weights stage 2 learns to
    fall back on it wherever the boundary is uncertain, which shrinks the decoded mask. Unused codes get weight 0
    (they are never a target)."""
    if power < 0:
        raise ConfigError(f"code_balance must be >= 0, got {power}")
    freq = usage.detach().float().clamp_min(0)
    freq = freq / freq.sum().clamp_min(1e-12)
    used = freq > 0
    weights = torch.zeros_like(freq)
    weights[used] = freq[used].pow(-float(power))
    return weights / (weights * freq).sum().clamp_min(1e-12)


class CodeTask:
    kind = "code_predictor"

    def __init__(self, model: nn.Module, vqvae: nn.Module, loss: CondLossConfig):
        self.model, self.vqvae = model, freeze(vqvae)
        weights = code_balance_weights(vqvae.quantizer.cluster_size, loss.code_balance) if loss.code_balance else None
        self.loss = CodeLoss(focal_weight=loss.focal_weight, ce_weight=loss.ce_weight, gamma=loss.gamma,
                             code_weights=weights)
        self.align_weight, self.decoded_dice_weight = float(loss.align_weight), float(loss.decoded_dice_weight)
        self.decoded_loss = MaskLoss(dice_weight=1.0, ce_weight=0.0)

    def expected_embedding(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of the code logits (B, K, ...) times the frozen codebook (K, D) -> (B, D, ...): a differentiable
        stand-in for the argmax code's embedding."""
        codebook = self.vqvae.quantizer.embedding.detach()
        return torch.einsum("bk...,kd->bd...", torch.softmax(logits, dim=1), codebook)

    def auxiliary_losses(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict:
        """The optional alignment and decoded-mask losses (each only when its weight is positive)."""
        out = {}
        if self.align_weight <= 0 and self.decoded_dice_weight <= 0:
            return out
        emb = self.expected_embedding(logits)
        if self.align_weight > 0:
            goal = self.vqvae.quantizer.lookup(target).detach().to(emb.dtype)
            out["align_loss"] = self.align_weight * torch.mean((emb - goal) ** 2)
        if self.decoded_dice_weight > 0:
            with torch.autocast(device_type=emb.device.type, enabled=False):
                decoded = self.vqvae.decode(emb.float())
            out["decoded_dice_loss"] = self.decoded_dice_weight * self.decoded_loss(decoded.float(), mask)
        return out

    @torch.no_grad()
    def targets(self, mask: torch.Tensor) -> torch.Tensor:
        """Code indices of the frozen stage-1 encoder + quantizer, always computed in float32."""
        self.vqvae.eval()
        with torch.autocast(device_type=mask.device.type, enabled=False):
            return self.vqvae.encode_indices(mask.float())

    def forward_loss(self, model: nn.Module, batch: dict):
        target = self.targets(batch["mask"])
        logits = model(batch["image"]).float()
        loss = self.loss(logits, target)
        accuracy = (logits.detach().argmax(1) == target).float().mean()
        logs = {"code_accuracy": accuracy}
        for name, value in self.auxiliary_losses(logits, target, batch["mask"]).items():
            loss = loss + value
            logs[name] = value.detach()
        return loss, logs

    def predictor(self, model: nn.Module) -> nn.Module:
        return TwoStagePredictor(model, self.vqvae)

    @staticmethod
    def val_input(case) -> torch.Tensor:
        return torch.from_numpy(case.image)


class SegmentationTask:
    kind = "segmentation"

    def __init__(self, model: nn.Module, loss: CondLossConfig):
        self.model = model
        self.loss = MaskLoss(dice_weight=loss.dice_weight, ce_weight=loss.ce_weight)

    def forward_loss(self, model: nn.Module, batch: dict):
        return self.loss(model(batch["image"]).float(), batch["mask"]), {}

    def predictor(self, model: nn.Module) -> nn.Module:
        return SingleStagePredictor(model)

    @staticmethod
    def val_input(case) -> torch.Tensor:
        return torch.from_numpy(case.image)


class JointSegmentationTask:
    """A joint single-stage model: MRI -> one logit per region; loss soft Dice + binary CE on every region (the
    regions overlap, WT containing TC containing ET, so each output is its own sigmoid)."""

    kind = "joint_segmentation"

    def __init__(self, model: nn.Module, loss: CondLossConfig):
        self.model = model
        self.loss = MultiLabelMaskLoss(dice_weight=loss.dice_weight, ce_weight=loss.ce_weight)

    def forward_loss(self, model: nn.Module, batch: dict):
        return self.loss(model(batch["image"]).float(), batch["mask"]), {}

    def predictor(self, model: nn.Module) -> nn.Module:
        return JointPredictor(model)

    @staticmethod
    def val_input(case) -> torch.Tensor:
        return torch.from_numpy(case.image)
