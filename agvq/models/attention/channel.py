"""Channel and channel-spatial recalibration of 3D feature maps: SE, CBAM, scSE and Project & Excite.

``se`` and the channel half of ``scse`` are MONAI's ``ChannelSELayer`` (Hu et al. 2018). CBAM, the spatial half of
scSE and Project & Excite have no MONAI implementation and are written here from their papers.
"""
from __future__ import annotations

import torch
from monai.networks.blocks import ChannelSELayer
from torch import nn

from agvq.models.attention.base import FeatureAttention, check_feature_map, hidden_width


class SqueezeExcite3D(FeatureAttention):
    """``se``: squeeze-and-excitation (Hu et al., CVPR 2018) as MONAI's ``ChannelSELayer``:
    ``y = x * sigmoid(W2 relu(W1 mean_xyz(x) + b1) + b2)`` per channel.

    Parameters: ``2 C h + h + C`` with ``h = C // reduction`` (the paper's ``2 C^2 / r`` plus MONAI's biases).
    """

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden_width(channels, reduction)
        self.channels = int(channels)
        self.se = ChannelSELayer(spatial_dims=3, in_channels=channels, r=reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels)
        return self.se(x)


class CBAM(FeatureAttention):
    """``cbam``: Convolutional Block Attention Module (Woo et al., ECCV 2018) in 3D, channel then spatial attention.

    Channel: ``Mc = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with one MLP ``C -> C // r -> C`` (ReLU) shared by
    both pooled descriptors; ``x' = Mc * x``. Spatial: ``Ms = sigmoid(conv_k([mean_c(x'); max_c(x')]))`` with a
    ``k x k x k`` convolution from 2 channels to 1 (zero padding keeps the size); ``y = Ms * x'``.
    As in the paper's equations the spatial convolution has a bias and no batch norm (the authors' code adds a
    batch norm there).

    Parameters: ``2 C h + h + C`` (MLP with biases) ``+ 2 k^3 + 1`` (spatial convolution).
    """

    def __init__(self, channels: int, reduction: int, spatial_kernel: int):
        super().__init__()
        hidden = hidden_width(channels, reduction)
        if spatial_kernel < 1 or spatial_kernel % 2 == 0:
            raise ValueError(f"CBAM spatial_kernel must be a positive odd size, got {spatial_kernel}")
        self.channels = int(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.spatial = nn.Conv3d(2, 1, kernel_size=spatial_kernel, padding=spatial_kernel // 2)

    def channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Mc, shape (B, C, 1, 1, 1)."""
        w = torch.sigmoid(self.mlp(x.mean(dim=(2, 3, 4))) + self.mlp(x.amax(dim=(2, 3, 4))))
        return w[:, :, None, None, None]

    def spatial_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Ms, shape (B, 1, X, Y, Z)."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.spatial(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels)
        x = x * self.channel_weights(x)
        return x * self.spatial_weights(x)


class ConcurrentSE(FeatureAttention):
    """``scse``: concurrent spatial and channel squeeze & excitation (Roy, Navab & Wachinger, MICCAI 2018).

    ``y = cSE(x) + sSE(x)``: cSE is the channel SE of Hu et al. (MONAI ``ChannelSELayer``), sSE a per-voxel gate
    ``x * sigmoid(conv_1x1x1(x))`` from C channels to 1. Addition is the aggregation of the MICCAI paper (its
    journal version also tried max-out). Parameters: ``2 C h + h + C`` (cSE) ``+ C + 1`` (sSE).
    """

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden_width(channels, reduction)
        self.channels = int(channels)
        self.cse = ChannelSELayer(spatial_dims=3, in_channels=channels, r=reduction)
        self.sse = nn.Conv3d(channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels)
        return self.cse(x) + x * torch.sigmoid(self.sse(x))


class ProjectExcite(FeatureAttention):
    """``pe``: Project & Excite (Rickmann, Roy, Sarasua, Navab & Wachinger, MICCAI 2019), the 3D SE that keeps
    spatial information.

    Project: average ``x`` over each pair of spatial axes, giving one profile per axis (C x X, C x Y, C x Z), and add
    the three profiles broadcast to a (C, X, Y, Z) tensor ``z``. Excite: ``y = x * sigmoid(V2 relu(V1 z))`` with
    1x1x1 convolutions ``C -> C // r -> C``. Parameters: ``2 C h + h + C``.
    """

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = hidden_width(channels, reduction)
        self.channels = int(channels)
        self.excite = nn.Sequential(nn.Conv3d(channels, hidden, kernel_size=1), nn.ReLU(),
                                    nn.Conv3d(hidden, channels, kernel_size=1), nn.Sigmoid())

    @staticmethod
    def project(x: torch.Tensor) -> torch.Tensor:
        """The summed axis profiles, shape (B, C, X, Y, Z)."""
        return x.mean(dim=(3, 4), keepdim=True) + x.mean(dim=(2, 4), keepdim=True) + x.mean(dim=(2, 3), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels)
        return x * self.excite(self.project(x))
