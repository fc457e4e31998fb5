"""MONAI's U-Net with 3D attention modules at its encoder, decoder and skip connections.

``AttentionUNet`` subclasses ``monai.networks.nets.UNet`` and only overrides the hooks MONAI builds the network with
(``_get_down_layer``, ``_get_up_layer``, ``_get_connection_block``), so the widths, strides, residual units, norms
and activations are MONAI's. A position set to ``none`` adds nothing: with no attention anywhere the module tree,
parameter count and state-dict keys are exactly those of ``UNet`` (tested, including equal outputs).

Where the modules go (``attention`` settings, see agvq.models.attention.registry):
* encoder: after every down layer and after the bottom layer;
* decoder: after every up layer except the top one, whose output is the logits;
* skips: on each skip connection, ``cat(module.gate(skip, up), up)`` where ``up`` is the deeper level's output at
  the skip's resolution, i.e. the gating signal of MONAI's ``AttentionUnet``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from monai.networks.nets import UNet
from torch import nn

from agvq.models.attention import FeatureAttention, NoAttention, attention_at, check_settings


def out_channels_of(module: nn.Module) -> int:
    """Channels a (sequence of) MONAI block(s) or attention module(s) outputs."""
    for attr in ("out_channels", "channels"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    if isinstance(module, nn.Sequential):
        for child in reversed(list(module)):
            try:
                return out_channels_of(child)
            except TypeError:
                continue
    raise TypeError(f"cannot tell the output channels of {type(module).__name__}")


class GatedSkipConnection(nn.Module):
    """``cat([attention.gate(x, y), y])`` with ``y = submodule(x)`` (MONAI's ``SkipConnection`` with a gate on x)."""

    def __init__(self, submodule: nn.Module, attention: FeatureAttention):
        super().__init__()
        self.submodule = submodule
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.submodule(x)
        return torch.cat([self.attention.gate(x, y), y], dim=1)


class AttentionUNet(UNet):
    """3D ``monai.networks.nets.UNet`` (MONAI's defaults for kernel sizes, norm, activation) with attention modules."""

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int], strides: Sequence[int],
                 num_res_units: int, attention: Mapping[str, Any] | None):
        # The hooks below run inside UNet.__init__, so the settings must be in place before it.
        object.__setattr__(self, "_attention_settings", check_settings(attention))
        super().__init__(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, channels=channels,
                         strides=strides, num_res_units=num_res_units)

    @staticmethod
    def _with(layer: nn.Module, attention: FeatureAttention) -> nn.Module:
        return layer if isinstance(attention, NoAttention) else nn.Sequential(layer, attention)

    def _get_down_layer(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        layer = super()._get_down_layer(in_channels, out_channels, strides, is_top)
        return self._with(layer, attention_at(self._attention_settings, "encoder", out_channels))

    def _get_up_layer(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        layer = super()._get_up_layer(in_channels, out_channels, strides, is_top)
        if is_top:
            return layer
        return self._with(layer, attention_at(self._attention_settings, "decoder", out_channels))

    def _get_connection_block(self, down_path: nn.Module, up_path: nn.Module, subblock: nn.Module) -> nn.Module:
        gate = attention_at(self._attention_settings, "skips", out_channels_of(down_path),
                            gate_channels=out_channels_of(subblock))
        if isinstance(gate, NoAttention):
            return super()._get_connection_block(down_path, up_path, subblock)
        return nn.Sequential(down_path, GatedSkipConnection(subblock, gate), up_path)
