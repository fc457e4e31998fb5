"""Stage-1 model: a 3D VQ-VAE that compresses a binary region mask to a 1/4-resolution grid of code indices."""
from __future__ import annotations

import inspect
from typing import Any, NamedTuple, Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from agvq.errors import ConfigError
from agvq.models.quantizer import EMAVectorQuantizer

_QUANTIZER_KEYS = [n for n, p in inspect.signature(EMAVectorQuantizer.__init__).parameters.items()
                   if p.kind is inspect.Parameter.KEYWORD_ONLY]
_NORMS = ("none", "batch", "instance", "group")


class VQVAEOutput(NamedTuple):
    """Result of a MaskVQVAE forward pass."""

    logits: torch.Tensor  # (B, 2, X, Y, Z)
    indices: torch.Tensor  # (B, X/4, Y/4, Z/4) long
    commitment_loss: torch.Tensor
    perplexity: torch.Tensor
    used_fraction: torch.Tensor


def _norm(kind: str, channels: int) -> tuple | None:
    if kind == "none":
        return None
    if kind == "batch":
        return ("batch", {})
    if kind == "instance":
        return ("instance", {"affine": True})
    groups = max(g for g in (8, 4, 2, 1) if channels % g == 0)
    return ("group", {"num_groups": groups})


class MaskVQVAE(nn.Module):
    """Binary mask (B, 1, X, Y, Z) -> 2-class logits through a vector-quantized 1/4-resolution latent.

    Args:
        channels: widths of the two levels (1/2 and 1/4 resolution); the total stride is always 4.
        res_blocks: residual units per level, in the encoder and in the decoder.
        latent_dim: code dimension.
        num_embeddings: codebook size.
        quantizer: every EMAVectorQuantizer keyword (commitment, decay, epsilon, dead_code_threshold,
            kmeans_iters, kmeans_init, kmeans_max_vectors, reseed).
        norm: "none", "batch", "instance" or "group". "none" and "batch" (running statistics at eval) keep the
            encoder local, so a region's codes do not depend on what else is in the patch or volume; instance and
            group norm make them depend on the whole input.
    """

    stride = 4

    def __init__(
        self,
        *,
        channels: Sequence[int],
        res_blocks: int,
        latent_dim: int,
        num_embeddings: int,
        quantizer: dict[str, Any],
        norm: str,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        quantizer = dict(quantizer)
        if len(channels) != 2 or min(channels) < 1:
            raise ConfigError(f"stage1 model: channels must list two positive widths (1/2 and 1/4 resolution), "
                              f"got {list(channels)}")
        if res_blocks < 0 or latent_dim < 1 or num_embeddings < 1:
            raise ConfigError("stage1 model: res_blocks must be >= 0, latent_dim and num_embeddings >= 1")
        if norm not in _NORMS:
            raise ConfigError(f"stage1 model: norm must be one of {list(_NORMS)}, got {norm!r}")
        unknown = sorted(set(quantizer) - set(_QUANTIZER_KEYS))
        if unknown:
            raise ConfigError(f"stage1 model: unknown quantizer keys {unknown}; allowed: {_QUANTIZER_KEYS}")
        missing = sorted(set(_QUANTIZER_KEYS) - set(quantizer))
        if missing:
            raise ConfigError(f"stage1 model: quantizer settings {missing} are missing")
        self._config = {"channels": list(channels), "res_blocks": int(res_blocks), "latent_dim": int(latent_dim),
                        "num_embeddings": int(num_embeddings), "quantizer": quantizer, "norm": norm}
        c1, c2 = channels

        def conv(cin: int, cout: int, **kw: Any) -> Convolution:
            return Convolution(3, cin, cout, act="leakyrelu", norm=_norm(norm, cout), **kw)

        def res(c: int) -> list[nn.Module]:
            return [ResidualUnit(3, c, c, subunits=2, act="leakyrelu", norm=_norm(norm, c))
                    for _ in range(res_blocks)]

        self.encoder = nn.Sequential(
            conv(1, c1, strides=2),
            *res(c1),
            conv(c1, c2, strides=2),
            *res(c2),
            Convolution(3, c2, latent_dim, kernel_size=1, conv_only=True),
        )
        self.quantizer = EMAVectorQuantizer(num_embeddings, latent_dim, **quantizer)
        self.decoder = nn.Sequential(
            conv(latent_dim, c2),
            *res(c2),
            conv(c2, c1, strides=2, is_transposed=True),
            *res(c1),
            Convolution(3, c1, 2, strides=2, is_transposed=True, conv_only=True),
        )

    @property
    def local(self) -> bool:
        """True when a voxel's code depends only on its neighbourhood (no instance/group statistics)."""
        return self._config["norm"] in ("none", "batch")

    def config(self) -> dict[str, Any]:
        """Constructor keywords that rebuild this model (store next to the state_dict)."""
        return {**self._config, "quantizer": dict(self._config["quantizer"])}

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != 1:
            raise ValueError(f"MaskVQVAE expects a mask of shape (B, 1, X, Y, Z), got {tuple(x.shape)}")
        bad = [s for s in x.shape[2:] if s % self.stride]
        if bad:
            raise ConfigError(f"MaskVQVAE: input size {tuple(x.shape[2:])} is not a multiple of the model "
                              f"stride {self.stride} in every axis; choose crop/patch sizes divisible by {self.stride}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous latent z_e (B, latent_dim, X/4, Y/4, Z/4) of a mask (B, 1, X, Y, Z)."""
        self._check_input(x)
        return self.encoder(x.float() if not torch.is_floating_point(x) else x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """2-class logits at full resolution from a (quantized) latent (B, latent_dim, ...)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        q = self.quantizer(self.encode(x))
        return VQVAEOutput(self.decode(q.quantized), q.indices, q.commitment_loss, q.perplexity, q.used_fraction)

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices (B, X/4, Y/4, Z/4) of a mask; never changes the codebook (stage-2 targets)."""
        return self.quantizer.quantize_indices(self.encode(x))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """2-class logits (B, 2, 4*x, 4*y, 4*z) from code indices (B, x, y, z)."""
        z = self.quantizer.lookup(indices)
        w = next(self.decoder.parameters())
        return self.decode(z.to(w.dtype))
