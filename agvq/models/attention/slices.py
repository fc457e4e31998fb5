"""``slice`` and ``pam``: Slice Attention and the Progressive Attention Module of seed 004 (Zhang et al., "Progressive
attention module for segmentation of volumetric medical images", Medical Physics 2022; code Puzzled-Hui/AttentionBasedMIS).

The paper describes PAM as three blocks in sequence: Slice Attention (SA) weighs each slice of a 3D feature map from
the correlation among slices; Key-Slice-Selection (KSS) works with SA to emphasise the slices that carry rich
structure and suppress the others; Channel Attention (CA) recalibrates the channels of the KSS output. Its public
summary does not give the slice axis, the form of the slice correlation or how KSS selects, and the authors' code
was not available to us, so this is OUR version; where it departs from (or fills in) the paper:

* Slice axis: a parameter (``slice_axis`` 0/1/2 = the X/Y/Z axis of (B, C, X, Y, Z)); the default in params is the
  last axis (axial slices of a BraTS volume in RAS order).
* SA: each slice is summarised by its mean feature vector ``z_s`` (C values); the slice correlation is scaled
  dot-product attention between slices, ``A = softmax(Q K^T / sqrt(h))`` with ``Q = z W_q``, ``K = z W_k``
  (C -> h = C // reduction); each slice's context ``u_s = sum_t A_st z_t`` gives one logit ``e_s = w . u_s + b``, and
  the slice is scaled by ``2 sigmoid(e_s)`` (between 0 and 2, 1 when neutral).
* KSS: a slice is "key" when its SA logit and its structural richness (the in-plane standard deviation of its
  features, averaged over channels) are high relative to the other slices of the same map: both are standardised over
  the slices and combined by two learned scalars, ``m_s = alpha e~_s + beta r~_s``; the slice is scaled by
  ``2 sigmoid(m_s)``. This is a soft, differentiable selection (no hard top-k).
* CA: MONAI's ``ChannelSELayer`` (squeeze-and-excitation) on the KSS output.
* Initialisation (ours; the paper states none): the SA logit layer and the KSS scalars start at zero, so SA and KSS
  are exactly the identity at initialisation and PAM starts as plain SE; the slice weighting is learned from there.
"""
from __future__ import annotations

import math

import torch
from monai.networks.blocks import ChannelSELayer
from torch import nn

from agvq.models.attention.base import FeatureAttention, check_feature_map, hidden_width

EPS = 1e-5


def _check_axis(slice_axis: int) -> int:
    if slice_axis not in (0, 1, 2):
        raise ValueError(f"slice_axis must be 0, 1 or 2 (X, Y or Z), got {slice_axis}")
    return int(slice_axis)


def _in_plane_dims(slice_axis: int) -> tuple[int, int]:
    return tuple(d for d in (2, 3, 4) if d != 2 + slice_axis)  # type: ignore[return-value]


def _along_slices(w: torch.Tensor, slice_axis: int) -> torch.Tensor:
    """Per-slice weights (B, S) -> a tensor broadcasting over (B, C, X, Y, Z) along the slice axis."""
    shape = [w.shape[0], 1, 1, 1, 1]
    shape[2 + slice_axis] = w.shape[1]
    return w.reshape(shape)


def _standardise(v: torch.Tensor) -> torch.Tensor:
    """(B, S) -> zero mean, unit variance over the slices (0 where all slices are equal, e.g. S = 1)."""
    centred = v - v.mean(dim=1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(dim=1, keepdim=True) + EPS)


class SliceAttention(FeatureAttention):
    """``slice``: SA alone, ``y = x * 2 sigmoid(e_s)`` per slice (see the module docstring).

    Parameters: ``2 (C h + h)`` (query and key maps) ``+ C + 1`` (slice logit), ``h = C // reduction``.
    """

    def __init__(self, channels: int, reduction: int, slice_axis: int):
        super().__init__()
        hidden = hidden_width(channels, reduction)
        self.channels, self.slice_axis, self.hidden = int(channels), _check_axis(slice_axis), hidden
        self.query = nn.Linear(channels, hidden)
        self.key = nn.Linear(channels, hidden)
        self.score = nn.Linear(channels, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def correlation(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(slice descriptors z (B, S, C), slice-to-slice attention A (B, S, S), rows summing to 1)."""
        z = x.mean(dim=_in_plane_dims(self.slice_axis)).transpose(1, 2)
        logits = self.query(z) @ self.key(z).transpose(1, 2) / math.sqrt(self.hidden)
        return z, torch.softmax(logits, dim=-1)

    def slice_logits(self, x: torch.Tensor) -> torch.Tensor:
        """e, shape (B, S): one logit per slice from its correlation-weighted context."""
        check_feature_map(x, self.channels)
        z, attn = self.correlation(x)
        return self.score(attn @ z).squeeze(-1)

    def reweight(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return x * _along_slices(2.0 * torch.sigmoid(logits), self.slice_axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reweight(x, self.slice_logits(x))


class KeySliceSelection(nn.Module):
    """KSS: ``y = x * 2 sigmoid(alpha e~_s + beta r~_s)`` per slice, from the SA logits ``e`` and the structural
    richness ``r`` of each slice of ``x`` (both standardised over the slices). Parameters: 2."""

    def __init__(self, slice_axis: int):
        super().__init__()
        self.slice_axis = _check_axis(slice_axis)
        self.alpha = nn.Parameter(torch.zeros(1))
        self.beta = nn.Parameter(torch.zeros(1))

    def richness(self, x: torch.Tensor) -> torch.Tensor:
        """r, shape (B, S): in-plane standard deviation of each channel, averaged over channels."""
        var = x.var(dim=_in_plane_dims(self.slice_axis), unbiased=False)
        return torch.sqrt(var + EPS).mean(dim=1)

    def forward(self, x: torch.Tensor, slice_logits: torch.Tensor) -> torch.Tensor:
        key = self.alpha * _standardise(slice_logits) + self.beta * _standardise(self.richness(x))
        return x * _along_slices(2.0 * torch.sigmoid(key), self.slice_axis)


class ProgressiveAttention(FeatureAttention):
    """``pam``: SA -> KSS -> CA (see the module docstring).

    Parameters: SA ``2 (C h + h) + C + 1``, KSS ``2``, CA ``2 C h + h + C`` (MONAI ChannelSELayer).
    """

    def __init__(self, channels: int, reduction: int, slice_axis: int):
        super().__init__()
        self.channels = int(channels)
        self.slice_attention = SliceAttention(channels, reduction, slice_axis)
        self.key_slices = KeySliceSelection(slice_axis)
        self.channel_attention = ChannelSELayer(spatial_dims=3, in_channels=channels, r=reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.slice_attention.slice_logits(x)
        y = self.key_slices(self.slice_attention.reweight(x, logits), logits)
        return self.channel_attention(y)
