"""Baseline for the comparison table: a plain MONAI 3D U-Net trained by the same loop as the other models."""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from monai.networks.nets import UNet
from torch import nn

from agvq.models.conditional import check_spatial


class UNetBaseline(nn.Module):
    """Thin wrapper around ``monai.networks.nets.UNet`` exposing ``stride``, ``kind`` and ``config()``."""

    kind = "unet"

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int], strides: Sequence[int],
                 num_res_units: int):
        super().__init__()
        if len(channels) != len(strides) + 1:
            raise ValueError(f"unet needs one more channel width than strides, got channels {list(channels)} "
                             f"and strides {list(strides)}")
        self.net = UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, channels=channels,
                        strides=strides, num_res_units=num_res_units)
        self.stride = int(math.prod(int(s) for s in strides))
        self._config = dict(in_channels=int(in_channels), out_channels=int(out_channels),
                            channels=[int(c) for c in channels], strides=[int(s) for s in strides],
                            num_res_units=int(num_res_units))

    def config(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-friendly)."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_spatial(x, self.stride)
        return self.net(x)
