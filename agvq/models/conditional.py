"""Stage-2 networks: the attention backbone, the code predictor (AG-VQ-VAE) and AG-UNet (single stage).

Backbone: conv encoder (1/2, 1/4 skip, 1/8 skip) -> tokens at 1/16 with a learned 3D position embedding ->
post-norm transformer blocks with AS/SE/SM -> decoder (up + 1/8 skip, up + 1/4 skip) -> features at 1/4.
Any input whose spatial sizes are multiples of 16 works; the position embedding is stored on a reference token grid
and trilinearly resampled to the grid of the current patch.

The CNN encoder/decoder take optional 3D attention modules (the variant's ``attention`` params, see
agvq.models.attention): after each encoder block (1/2, 1/4, 1/8), after each decoder block, and on each skip
(``gate(skip, upsampled decoder features)``). Positions set to ``none`` own no parameters, so a network without
attention has the same state-dict keys as before attention existed.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks.dynunet_block import UnetOutBlock, UnetResBlock, UnetUpBlock
from torch import nn

from agvq.models.attention import FeatureAttention, attention_at, check_settings
from agvq.models.attention.tokens import TransformerBlock

NORM = ("instance", {"affine": True})


def check_spatial(x: torch.Tensor, stride: int) -> None:
    """Raise a one-line ValueError unless ``x`` is (B, C, X, Y, Z) with X, Y, Z multiples of ``stride``."""
    if x.ndim != 5:
        raise ValueError(f"expected a (B, C, X, Y, Z) tensor, got shape {tuple(x.shape)}")
    bad = [s for s in x.shape[2:] if s % stride or s == 0]
    if bad:
        raise ValueError(f"spatial size {tuple(x.shape[2:])} is not a multiple of {stride} in every axis")


class PositionEmbedding3D(nn.Module):
    """Learned position embedding on a reference token grid, trilinearly resampled to the current grid."""

    def __init__(self, dim: int, grid: Sequence[int]):
        super().__init__()
        if len(grid) != 3 or min(grid) < 1:
            raise ValueError(f"position grid must be three positive sizes, got {list(grid)}")
        self.weight = nn.Parameter(torch.empty(1, dim, *grid))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, grid: Sequence[int]) -> torch.Tensor:
        """Embedding for a token grid, shape (1, dim, *grid)."""
        if tuple(grid) == tuple(self.weight.shape[2:]):
            return self.weight
        return F.interpolate(self.weight, size=tuple(grid), mode="trilinear", align_corners=False)


class GatedUpBlock(UnetUpBlock):
    """MONAI's ``UnetUpBlock`` (transposed conv, concatenate the skip, conv block) with an attention module applied
    to the skip, gated by the upsampled features: ``cat(up, attention.gate(skip, up))``."""

    def __init__(self, *args: Any, skip_attention: FeatureAttention, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.skip_attention = skip_attention

    def forward(self, inp: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        out = self.transp_conv(inp)
        out = torch.cat((out, self.skip_attention.gate(skip, out)), dim=1)
        return self.conv_block(out)


def gated_up(attention: Mapping[str, Any] | None, in_channels: int, out_channels: int) -> GatedUpBlock:
    """The decoder's up block from ``in_channels`` to ``out_channels`` (= the skip's channels)."""
    gate = attention_at(attention, "skips", out_channels, gate_channels=out_channels)
    return GatedUpBlock(3, in_channels, out_channels, kernel_size=3, stride=1, upsample_kernel_size=2, norm_name=NORM,
                        skip_attention=gate)


class AttentionBackbone(nn.Module):
    """Shared encoder-transformer-decoder; ``forward`` returns (features at 1/4, encoder skips by stride)."""

    stride = 16

    def __init__(self, *, in_channels: int, channels: Sequence[int], dim: int, depth: int, heads: int,
                 mlp_ratio: float, dropout: float, attention_scaling: bool, squeeze_excitation: bool,
                 soft_mask_blocks: Sequence[int], se_reduction: int, pos_grid: Sequence[int],
                 attention: Mapping[str, Any] | None = None):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        if len(channels) != 3 or min(channels) < 1:
            raise ValueError(f"channels must be three positive widths (1/2, 1/4, 1/8), got {list(channels)}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        bad = [i for i in soft_mask_blocks if not 0 <= int(i) < depth]
        if bad:
            raise ValueError(f"soft_mask_blocks {list(soft_mask_blocks)} must be block indices in 0..{depth - 1}")
        c2, c4, c8 = (int(c) for c in channels)
        self.attention = check_settings(attention)
        self.enc2 = UnetResBlock(3, in_channels, c2, kernel_size=3, stride=2, norm_name=NORM)
        self.enc4 = UnetResBlock(3, c2, c4, kernel_size=3, stride=2, norm_name=NORM)
        self.enc8 = UnetResBlock(3, c4, c8, kernel_size=3, stride=2, norm_name=NORM)
        self.att_enc2 = attention_at(self.attention, "encoder", c2)
        self.att_enc4 = attention_at(self.attention, "encoder", c4)
        self.att_enc8 = attention_at(self.attention, "encoder", c8)
        self.to_tokens = nn.Conv3d(c8, dim, kernel_size=2, stride=2)
        self.pos = PositionEmbedding3D(dim, pos_grid)
        sm = {int(i) for i in soft_mask_blocks}
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_ratio=mlp_ratio, dropout=dropout, attention_scaling=attention_scaling,
                             squeeze_excitation=squeeze_excitation, soft_masking=i in sm, se_reduction=se_reduction)
            for i in range(depth))
        self.up8 = gated_up(self.attention, dim, c8)
        self.up4 = gated_up(self.attention, c8, c4)
        self.att_dec8 = attention_at(self.attention, "decoder", c8)
        self.att_dec4 = attention_at(self.attention, "decoder", c4)
        self.out_channels = c4
        self._config = dict(in_channels=int(in_channels), channels=[c2, c4, c8], dim=int(dim), depth=int(depth),
                            heads=int(heads), mlp_ratio=float(mlp_ratio), dropout=float(dropout),
                            attention_scaling=bool(attention_scaling), squeeze_excitation=bool(squeeze_excitation),
                            soft_mask_blocks=sorted(sm), se_reduction=int(se_reduction),
                            pos_grid=[int(g) for g in pos_grid])
        if self.attention is not None:
            self._config["attention"] = dict(self.attention)

    def config(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-friendly)."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        check_spatial(x, self.stride)
        s2 = self.att_enc2(self.enc2(x))
        s4 = self.att_enc4(self.enc4(s2))
        s8 = self.att_enc8(self.enc8(s4))
        t = self.to_tokens(s8)
        grid = t.shape[2:]
        t = (t + self.pos(grid)).flatten(2).transpose(1, 2)
        for block in self.blocks:
            t = block(t)
        t = t.transpose(1, 2).reshape(t.shape[0], -1, *grid)
        f4 = self.att_dec4(self.up4(self.att_dec8(self.up8(t, s8)), s4))
        return f4, {1: x, 2: s2, 4: s4, 8: s8}


class CodePredictor(nn.Module):
    """AG-VQ-VAE stage-2 network: MRI (B, C, X, Y, Z) -> code logits (B, K, X/4, Y/4, Z/4)."""

    kind = "code_predictor"
    stride = 16

    def __init__(self, num_embeddings: int, **backbone: Any):
        super().__init__()
        if num_embeddings < 2:
            raise ValueError(f"num_embeddings must be >= 2, got {num_embeddings}")
        self.num_embeddings = int(num_embeddings)
        self.backbone = AttentionBackbone(**backbone)
        self.head = UnetOutBlock(3, self.backbone.out_channels, self.num_embeddings)

    def config(self) -> dict[str, Any]:
        return {"num_embeddings": self.num_embeddings, **self.backbone.config()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[0])


class AGUNet(nn.Module):
    """AG-UNet (single stage): the same backbone, a head up to full resolution -> logits (B, out, X, Y, Z).

    The head goes 1/4 -> 1/2 (concatenating the encoder's 1/2 features), then to full resolution by a transposed
    conv straight to the logits, plus a 3x3x3 conv of the input image (full-resolution evidence for boundaries).
    Full-resolution feature maps would dominate the step time; the logits-level image skip costs almost nothing.
    """

    kind = "agunet"
    stride = 16

    def __init__(self, out_channels: int, **backbone: Any):
        super().__init__()
        if out_channels < 1:
            raise ValueError(f"out_channels must be positive, got {out_channels}")
        self.out_channels = int(out_channels)
        self.backbone = AttentionBackbone(**backbone)
        c2, c4 = self.backbone.config()["channels"][:2]
        cin = self.backbone.config()["in_channels"]
        self.up2 = gated_up(self.backbone.attention, c4, c2)
        self.att_dec2 = attention_at(self.backbone.attention, "decoder", c2)
        self.up1_trans = nn.ConvTranspose3d(c2, self.out_channels, kernel_size=2, stride=2)
        self.image_skip = nn.Conv3d(cin, self.out_channels, kernel_size=3, padding=1)

    def config(self) -> dict[str, Any]:
        return {"out_channels": self.out_channels, **self.backbone.config()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f4, skips = self.backbone(x)
        f2 = self.att_dec2(self.up2(f4, skips[2]))
        return self.up1_trans(f2) + self.image_skip(x)
