"""Baselines for the comparison table: MONAI's 3D U-Net (with optional attention modules,
agvq.models.attention_unet), UNETR, SwinUNETR, SegResNet and V-Net, trained by the same loop as the other models.
Each wrapper exposes ``kind``, ``stride`` (what input sizes must be multiples of) and ``config()`` (constructor
keywords, stored in the model file so the network can be rebuilt)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from monai.networks.nets import UNETR, SegResNet, SwinUNETR, UNet, VNet
from torch import nn

from agvq.models.attention.registry import check_settings, uses_attention
from agvq.models.attention_unet import AttentionUNet
from agvq.models.conditional import check_spatial


class _Baseline(nn.Module):
    kind = ""
    stride = 1

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self._config = config

    def config(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-friendly)."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_spatial(x, self.stride)
        return self.net(x)


class UNetBaseline(_Baseline):
    """``monai.networks.nets.UNet`` (residual units; total stride = product of ``strides``). With ``attention``
    settings that place a module anywhere, the network is :class:`AttentionUNet` (MONAI's UNet with the modules
    inserted); without (None, or every position ``none``) it is MONAI's UNet itself."""

    kind = "unet"

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int], strides: Sequence[int],
                 num_res_units: int, attention: dict[str, Any] | None = None):
        if len(channels) != len(strides) + 1:
            raise ValueError(f"unet needs one more channel width than strides, got channels {list(channels)} "
                             f"and strides {list(strides)}")
        attention = check_settings(attention)
        config = dict(in_channels=int(in_channels), out_channels=int(out_channels),
                      channels=[int(c) for c in channels], strides=[int(s) for s in strides],
                      num_res_units=int(num_res_units))
        if attention is not None:
            config["attention"] = attention
        super().__init__(config)
        kwargs = dict(in_channels=in_channels, out_channels=out_channels, channels=channels, strides=strides,
                      num_res_units=num_res_units)
        if uses_attention(attention):
            self.net: nn.Module = AttentionUNet(**kwargs, attention=attention)
        else:
            self.net = UNet(spatial_dims=3, **kwargs)
        self.stride = int(math.prod(int(s) for s in strides))


class UNETRBaseline(_Baseline):
    """``monai.networks.nets.UNETR``: a ViT on 16^3 patches of an input of exactly ``img_size`` (the training
    patch, so sliding windows of that size are what it sees at validation and inference)."""

    kind = "unetr"
    stride = 16

    def __init__(self, in_channels: int, out_channels: int, img_size: Sequence[int], feature_size: int,
                 hidden_size: int, mlp_dim: int, num_heads: int):
        img_size = [int(s) for s in img_size]
        if any(s % self.stride for s in img_size):
            raise ValueError(f"unetr img_size {img_size} must be multiples of 16")
        super().__init__(dict(in_channels=int(in_channels), out_channels=int(out_channels), img_size=img_size,
                              feature_size=int(feature_size), hidden_size=int(hidden_size), mlp_dim=int(mlp_dim),
                              num_heads=int(num_heads)))
        self.net = UNETR(in_channels=in_channels, out_channels=out_channels, img_size=tuple(img_size),
                         feature_size=feature_size, hidden_size=hidden_size, mlp_dim=mlp_dim, num_heads=num_heads,
                         norm_name="instance", res_block=True)
        self.img_size = tuple(img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.img_size:
            raise ValueError(f"UNETR takes inputs of exactly {list(self.img_size)}, got {list(x.shape[2:])}")
        return self.net(x)


class SwinUNETRBaseline(_Baseline):
    """``monai.networks.nets.SwinUNETR`` (any input whose sizes are multiples of 32)."""

    kind = "swinunetr"
    stride = 32

    def __init__(self, in_channels: int, out_channels: int, feature_size: int, depths: Sequence[int],
                 num_heads: Sequence[int], window_size: int, norm: str):
        super().__init__(dict(in_channels=int(in_channels), out_channels=int(out_channels),
                              feature_size=int(feature_size), depths=[int(d) for d in depths],
                              num_heads=[int(h) for h in num_heads], window_size=int(window_size), norm=str(norm)))
        # group norm over 4 groups (feature_size is a multiple of 12, so every width divides): unlike instance norm
        # it is defined on the 1^3 bottleneck of a 32^3 patch
        norm_name = ("group", {"num_groups": 4}) if norm == "group" else norm
        self.net = SwinUNETR(in_channels=in_channels, out_channels=out_channels, feature_size=feature_size,
                             depths=tuple(depths), num_heads=tuple(num_heads), window_size=window_size,
                             norm_name=norm_name)


class SegResNetBaseline(_Baseline):
    """``monai.networks.nets.SegResNet`` (total stride 2^(levels - 1))."""

    kind = "segresnet"

    def __init__(self, in_channels: int, out_channels: int, init_filters: int, blocks_down: Sequence[int],
                 blocks_up: Sequence[int]):
        super().__init__(dict(in_channels=int(in_channels), out_channels=int(out_channels),
                              init_filters=int(init_filters), blocks_down=[int(b) for b in blocks_down],
                              blocks_up=[int(b) for b in blocks_up]))
        groups = math.gcd(int(init_filters), 8)
        self.net = SegResNet(spatial_dims=3, init_filters=init_filters, in_channels=in_channels,
                             out_channels=out_channels, blocks_down=tuple(blocks_down), blocks_up=tuple(blocks_up),
                             norm=("GROUP", {"num_groups": groups}))
        self.stride = 2 ** (len(blocks_down) - 1)


class VNetBaseline(_Baseline):
    """``monai.networks.nets.VNet`` (widths 16 to 256, four stride-2 down transitions: total stride 16)."""

    kind = "vnet"
    stride = 16

    def __init__(self, in_channels: int, out_channels: int, dropout_prob_down: float,
                 dropout_prob_up: Sequence[float], bias: bool):
        if in_channels < 1 or 16 % in_channels:
            raise ValueError(f"V-Net repeats its input to 16 channels, so in_channels must divide 16 (1, 2, 4, 8 or "
                             f"16 modalities), got {in_channels}")
        if len(dropout_prob_up) != 2:
            raise ValueError(f"dropout_prob_up must be two probabilities, got {list(dropout_prob_up)}")
        super().__init__(dict(in_channels=int(in_channels), out_channels=int(out_channels),
                              dropout_prob_down=float(dropout_prob_down),
                              dropout_prob_up=[float(p) for p in dropout_prob_up], bias=bool(bias)))
        self.net = VNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                        dropout_prob_down=float(dropout_prob_down),
                        dropout_prob_up=tuple(float(p) for p in dropout_prob_up), bias=bool(bias))


BASELINE_KINDS: dict[str, type[_Baseline]] = {cls.kind: cls for cls in (UNetBaseline, UNETRBaseline, SwinUNETRBaseline,
                                                                  SegResNetBaseline, VNetBaseline)}
