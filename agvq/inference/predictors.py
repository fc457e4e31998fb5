"""Patch predictors shared by validation and inference, and whole-volume sliding-window prediction.

Every predictor maps a patch batch to 2-class probabilities at full resolution, so sliding-window blending is the
same for the two-stage model (codes -> frozen codebook -> frozen stage-1 decoder), the single-stage nets and the
stage-1 VQ-VAE itself (mask reconstruction).
"""
from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from agvq.config import InferConfig


class VQVAEReconstructor(nn.Module):
    """Mask -> reconstructed mask probabilities through encoder, quantizer and decoder (stage-1 validation)."""

    def __init__(self, vqvae: nn.Module):
        super().__init__()
        self.vqvae = vqvae
        # Local (batch/no norm) encoders can take a whole cropped volume at once: same codes, one pass.
        self.whole_volume = getattr(vqvae, "local", False)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.vqvae.decode_indices(self.vqvae.encode_indices(mask)).float(), dim=1)


class TwoStagePredictor(nn.Module):
    """MRI -> argmax code per latent position -> frozen codebook vector -> frozen stage-1 decoder -> probabilities.

    On a whole volume (``predict_volume``) the code logits are blended over windows at 1/4 resolution first; with
    a local stage-1 decoder (batch/no norm) the argmax codes are then decoded in one pass, which is several times
    cheaper than decoding every window, and the decoded mask has no window seams.
    """

    def __init__(self, code_predictor: nn.Module, vqvae: nn.Module):
        super().__init__()
        self.code_predictor, self.vqvae = code_predictor, vqvae

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        codes = self.code_predictor(image).argmax(dim=1)
        return torch.softmax(self.vqvae.decode_indices(codes).float(), dim=1)

    def predict_volume(self, volume: torch.Tensor, patch_size, overlap: float, sw_batch_size: int,
                       blend: str) -> torch.Tensor | None:
        """(1, C, X, Y, Z) -> (1, 2, X, Y, Z) probabilities, or None when the decoder is not local."""
        if not getattr(self.vqvae, "local", False):
            return None
        stride = self.vqvae.stride
        if any(s % stride for s in volume.shape[2:]):
            return None
        logits = self.code_logits(volume, patch_size, overlap, sw_batch_size, blend)
        return torch.softmax(self.vqvae.decode_indices(logits.argmax(dim=1)).float(), dim=1)

    def code_logits(self, volume: torch.Tensor, patch_size, overlap: float, sw_batch_size: int,
                    blend: str) -> torch.Tensor:
        """(1, C, X, Y, Z) -> (1, K, X/4, Y/4, Z/4) code logits, blended over sliding windows."""
        return sliding_window_inference(
            volume, roi_size=tuple(int(p) for p in patch_size), sw_batch_size=int(sw_batch_size),
            predictor=self.code_predictor, overlap=float(overlap), mode=blend, progress=False,
        )


class SingleStagePredictor(nn.Module):
    """MRI -> 2-class logits at full resolution (AG-UNet, U-Net baseline) -> probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(image).float(), dim=1)


class JointPredictor(nn.Module):
    """MRI -> one logit per region (a joint single-stage model) -> per-region foreground probabilities (sigmoid)."""

    joint = True

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(image).float())


def sliding_window_probabilities(predictor: nn.Module, volume: torch.Tensor, patch_size, overlap: float,
                                 sw_batch_size: int, blend: str) -> torch.Tensor:
    """(1, C, X, Y, Z) volume -> (1, 2, X, Y, Z) blended probabilities (MONAI sliding_window_inference).

    A volume smaller than the patch along an axis is padded by MONAI and cropped back. A predictor with its own
    ``predict_volume`` (the two-stage model) handles the whole volume itself when it can.
    """
    if hasattr(predictor, "predict_volume"):
        probs = predictor.predict_volume(volume, patch_size, overlap, sw_batch_size, blend)
        if probs is not None:
            return probs
    return sliding_window_inference(
        volume, roi_size=tuple(int(p) for p in patch_size), sw_batch_size=int(sw_batch_size),
        predictor=predictor, overlap=float(overlap), mode=blend, progress=False,
    )


def foreground_probabilities(predictor: nn.Module, volume: torch.Tensor, patch_size,
                             protocol: InferConfig) -> torch.Tensor:
    """(1, C, X, Y, Z) volume -> (R, X, Y, Z) foreground probabilities by the protocol's sliding window and
    blending: R is 1 for the 2-class predictors of one region, the number of regions for a joint predictor.

    A predictor with ``whole_volume = True`` (whose output does not depend on what else is in its input, like the
    stage-1 VQ-VAE with batch or no norm) sees the volume in one pass instead of windows.
    """
    roi = tuple(volume.shape[2:]) if getattr(predictor, "whole_volume", False) else tuple(patch_size)
    probs = sliding_window_probabilities(predictor, volume, roi, protocol.overlap, protocol.sw_batch_size,
                                         protocol.blend)
    return probs[0] if getattr(predictor, "joint", False) else probs[0, 1:2]


def predict_foreground(predictor: nn.Module, volume: torch.Tensor, patch_size, brain: np.ndarray,
                       protocol: InferConfig) -> np.ndarray:
    """The prediction protocol shared by inference and validation: (1, C, X, Y, Z) volume -> boolean masks
    (R, X, Y, Z), foreground probability above ``protocol.threshold`` and inside the ``brain``."""
    prob = foreground_probabilities(predictor, volume, patch_size, protocol)
    return (prob > protocol.threshold).cpu().numpy() & np.asarray(brain, dtype=bool)[None]


def predict_region(predictor: nn.Module, volume: torch.Tensor, patch_size, brain: np.ndarray,
                   protocol: InferConfig) -> np.ndarray:
    """:func:`predict_foreground` of a one-region predictor: a boolean mask (X, Y, Z)."""
    return predict_foreground(predictor, volume, patch_size, brain, protocol)[0]
