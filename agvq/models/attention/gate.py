"""``gate``: the additive attention gate of Attention U-Net (Oktay et al., MIDL 2018), as MONAI implements it."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets.attentionunet import AttentionBlock

from agvq.models.attention.base import FeatureAttention, check_feature_map


class AttentionGate(FeatureAttention):
    """``gate(x, g) = x * sigmoid(BN(psi(relu(BN(W_g g) + BN(W_x x)))))``: one coefficient per voxel of the skip
    ``x``, computed from ``x`` and the decoder's gating signal ``g`` (MONAI ``AttentionBlock``, the block of
    ``monai.networks.nets.AttentionUnet``, with its intermediate width ``F_int = C // 2``).

    As in MONAI's Attention U-Net, ``g`` is expected at the resolution of ``x`` (the decoder's upsampled features);
    a coarser ``g`` is trilinearly resampled to ``x`` (Oktay et al. instead resample the coefficients).
    ``module(x)`` is self-gating, ``gate(x, x)``, and needs ``gate_channels == channels``.

    Parameters: ``F_int (F_g + F_x + 7) + 3``: Oktay's ``F_int (F_g + F_x + 1) + F_int + 1`` (two 1x1x1 maps into
    ``F_int``, one out, biases on ``W_g`` and ``psi``) plus MONAI's bias on ``W_x`` and its three batch norms.
    """

    def __init__(self, channels: int, gate_channels: int | None = None):
        super().__init__()
        if channels < 2:
            raise ValueError(f"an attention gate needs at least 2 channels, got {channels}")
        self.channels = int(channels)
        self.gate_channels = int(channels if gate_channels is None else gate_channels)
        if self.gate_channels < 1:
            raise ValueError(f"gate_channels must be positive, got {gate_channels}")
        self.inter_channels = self.channels // 2
        self.block = AttentionBlock(spatial_dims=3, f_int=self.inter_channels, f_g=self.gate_channels,
                                    f_l=self.channels)

    def gate(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels)
        check_feature_map(g, self.gate_channels)
        if g.shape[0] != x.shape[0]:
            raise ValueError(f"gating signal batch {g.shape[0]} differs from the skip's {x.shape[0]}")
        if g.shape[2:] != x.shape[2:]:
            g = F.interpolate(g, size=tuple(x.shape[2:]), mode="trilinear", align_corners=False)
        return self.block(g=g, x=x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_channels != self.channels:
            raise ValueError(f"self-gating needs gate_channels ({self.gate_channels}) == channels ({self.channels})")
        return self.gate(x, x)
