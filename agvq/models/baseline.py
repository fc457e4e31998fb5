"""Baselines for the comparison table, trained by the same loop as the other models: MONAI's 3D U-Net (with optional
attention modules, agvq.models.attention_unet) and MONAI's V-Net."""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from monai.networks.nets import UNet, VNet
from torch import nn

from agvq.models.attention.registry import check_settings, uses_attention
from agvq.models.attention_unet import AttentionUNet
from agvq.models.conditional import check_spatial


class UNetBaseline(nn.Module):
    """Thin wrapper around ``monai.networks.nets.UNet`` exposing ``stride``, ``kind`` and ``config()``.

    With ``attention`` settings that place a module anywhere, the network is :class:`AttentionUNet` (MONAI's UNet
    with the modules inserted); without (None, or every position ``none``) it is MONAI's UNet itself.
    """

    kind = "unet"

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int], strides: Sequence[int],
                 num_res_units: int, attention: dict[str, Any] | None = None):
        super().__init__()
        if len(channels) != len(strides) + 1:
            raise ValueError(f"unet needs one more channel width than strides, got channels {list(channels)} "
                             f"and strides {list(strides)}")
        attention = check_settings(attention)
        kwargs = dict(in_channels=in_channels, out_channels=out_channels, channels=channels, strides=strides,
                      num_res_units=num_res_units)
        if uses_attention(attention):
            self.net: nn.Module = AttentionUNet(**kwargs, attention=attention)
        else:
            self.net = UNet(spatial_dims=3, **kwargs)
        self.stride = int(math.prod(int(s) for s in strides))
        self._config = dict(in_channels=int(in_channels), out_channels=int(out_channels),
                            channels=[int(c) for c in channels], strides=[int(s) for s in strides],
                            num_res_units=int(num_res_units))
        if attention is not None:
            self._config["attention"] = attention

    def config(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-friendly)."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_spatial(x, self.stride)
        return self.net(x)


class VNetBaseline(nn.Module):
    """``monai.networks.nets.VNet`` (widths 16 to 256, four stride-2 down transitions: total stride 16)."""

    kind = "vnet"
    stride = 16

    def __init__(self, in_channels: int, out_channels: int, dropout_prob_down: float,
                 dropout_prob_up: Sequence[float], bias: bool):
        super().__init__()
        if in_channels < 1 or 16 % in_channels:
            raise ValueError(f"V-Net repeats its input to 16 channels, so in_channels must divide 16 (1, 2, 4, 8 or "
                             f"16 modalities), got {in_channels}")
        if len(dropout_prob_up) != 2:
            raise ValueError(f"dropout_prob_up must be two probabilities, got {list(dropout_prob_up)}")
        self.net = VNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                        dropout_prob_down=float(dropout_prob_down),
                        dropout_prob_up=tuple(float(p) for p in dropout_prob_up), bias=bool(bias))
        self._config = dict(in_channels=int(in_channels), out_channels=int(out_channels),
                            dropout_prob_down=float(dropout_prob_down),
                            dropout_prob_up=[float(p) for p in dropout_prob_up], bias=bool(bias))

    def config(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-friendly)."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_spatial(x, self.stride)
        return self.net(x)
