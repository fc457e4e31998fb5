"""What differs between models in the one training loop: the loss on a patch batch and the patch predictor.

* ``VQVAETask``: stage 1, mask -> mask through the codebook; loss soft Dice (+CE) + commitment.
* ``CodeTask``: stage 2, MRI -> code indices of the frozen stage-1 encoder; loss focal + CE over codes.
* ``SegmentationTask``: single-stage nets (AG-UNet, U-Net baseline), MRI -> mask; loss Dice + CE.
"""
from __future__ import annotations

import torch
from torch import nn

from agvq.inference.predictors import SingleStagePredictor, TwoStagePredictor, VQVAEReconstructor
from agvq.models.losses import CodeLoss, MaskLoss


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients: the module (and its codebook buffers) never changes."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class VQVAETask:
    kind = "vqvae"

    def __init__(self, model: nn.Module, dice_weight: float = 1.0, ce_weight: float = 1.0):
        self.model = model
        self.loss = MaskLoss(dice_weight=dice_weight, ce_weight=ce_weight)

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


class CodeTask:
    kind = "code_predictor"

    def __init__(self, model: nn.Module, vqvae: nn.Module, focal_weight: float = 1.0, ce_weight: float = 1.0,
                 gamma: float = 2.0):
        self.model, self.vqvae = model, freeze(vqvae)
        self.loss = CodeLoss(focal_weight=focal_weight, ce_weight=ce_weight, gamma=gamma)

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
        return loss, {"code_accuracy": accuracy}

    def predictor(self, model: nn.Module) -> nn.Module:
        return TwoStagePredictor(model, self.vqvae)

    @staticmethod
    def val_input(case) -> torch.Tensor:
        return torch.from_numpy(case.image)


class SegmentationTask:
    kind = "segmentation"

    def __init__(self, model: nn.Module, dice_weight: float = 1.0, ce_weight: float = 1.0):
        self.model = model
        self.loss = MaskLoss(dice_weight=dice_weight, ce_weight=ce_weight)

    def forward_loss(self, model: nn.Module, batch: dict):
        return self.loss(model(batch["image"]).float(), batch["mask"]), {}

    def predictor(self, model: nn.Module) -> nn.Module:
        return SingleStagePredictor(model)

    @staticmethod
    def val_input(case) -> torch.Tensor:
        return torch.from_numpy(case.image)
