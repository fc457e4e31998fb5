"""The one interface of the 3D feature-map attention modules, and the module that does nothing.

Every module maps a feature map ``x`` of shape (B, C, X, Y, Z) to a tensor of the same shape (``module(x)``).
``module.gate(x, g)`` is the gated form used on U-Net skip connections: ``x`` is the skip (encoder) feature map and
``g`` the gating signal from the decoder. Only the attention gate reads ``g``; every other module ignores it and
returns ``module(x)``, so any module can be placed on a skip.
"""
from __future__ import annotations

import torch
from torch import nn


def check_feature_map(x: torch.Tensor, channels: int) -> None:
    """Raise a one-line ValueError unless ``x`` is (B, ``channels``, X, Y, Z)."""
    if x.ndim != 5 or x.shape[1] != channels:
        raise ValueError(f"expected a (B, {channels}, X, Y, Z) feature map, got shape {tuple(x.shape)}")


def hidden_width(channels: int, reduction: int) -> int:
    """Bottleneck width ``channels // reduction`` (MONAI ChannelSELayer's rule); ValueError when it would be 0."""
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    if reduction < 1 or channels // reduction < 1:
        raise ValueError(f"reduction ({reduction}) must be in 1..channels ({channels})")
    return channels // reduction


class FeatureAttention(nn.Module):
    """Base class: ``forward(x)`` re-weights a (B, C, X, Y, Z) feature map; ``gate(x, g)`` defaults to it."""

    channels: int

    def gate(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 - g unused by design
        return self(x)


class NoAttention(FeatureAttention):
    """``none``: returns its input unchanged and owns no parameters (so a model without attention keeps the
    state-dict keys it had before attention existed)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = int(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
