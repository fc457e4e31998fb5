"""The MRI tokenizer: an image VQ-VAE with one encoder, one codebook and one decoder shared by every MRI sequence.

The encoder maps a single-sequence image (any sequence, not told which) to a grid of latent vectors at 1/stride
resolution, quantized by the project's EMA codebook (agvq.models.quantizer: k-means init, dead-code re-seeding,
usage and perplexity). The decoder renders the sequence it is asked for: a learned embedding of the target sequence
modulates every decoder block (FiLM: per-channel scale and shift). Because the codes are common to all sequences
(seed 002's common latent space), decoding the codes of one sequence with another sequence's embedding
synthesizes that sequence; the latents of several available sequences can be averaged before quantization.

Images are on the [0, 1] scale of agvq.tokenizer.data (0 outside the brain); the output is a sigmoid, multiplied by
the brain mask when one is given. Inputs of any size are zero-padded to a multiple of the stride and the output is
cropped back, so odd slice sizes round-trip. ``dims`` 2 works on slices (B, 1, H, W), 3 on volumes (B, 1, X, Y, Z).
"""
from __future__ import annotations

import inspect
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from agvq.errors import ConfigError
from agvq.io.model_file import load_model_file
from agvq.models.quantizer import EMAVectorQuantizer

_QUANTIZER_KEYS = [n for n, p in inspect.signature(EMAVectorQuantizer.__init__).parameters.items()
                   if p.kind is inspect.Parameter.KEYWORD_ONLY]


class TokenizerOutput(NamedTuple):
    image: torch.Tensor  # (B, 1, *spatial) in [0, 1]
    indices: torch.Tensor  # (B, *latent spatial) long
    latent: torch.Tensor  # (B, D, *latent spatial) encoder output before quantization
    commitment_loss: torch.Tensor
    perplexity: torch.Tensor
    used_fraction: torch.Tensor


def _conv(dims: int):
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _groups(channels: int, groups: int) -> int:
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


class ResBlock(nn.Module):
    """norm -> SiLU -> conv -> norm (-> FiLM by the condition) -> SiLU -> conv, plus the input."""

    def __init__(self, dims: int, channels: int, groups: int, cond_dim: int | None):
        super().__init__()
        conv = _conv(dims)
        self.norm1 = nn.GroupNorm(_groups(channels, groups), channels)
        self.conv1 = conv(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(channels, groups), channels)
        self.conv2 = conv(channels, channels, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * channels) if cond_dim else None
        if self.film is not None:  # start as the identity modulation
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = self.film(cond).view(cond.shape[0], 2, -1, *([1] * (x.dim() - 2))).unbind(1)
            h = h * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


class MRITokenizer(nn.Module):
    """Single-sequence MRI image <-> grid of codes of a codebook common to all ``sequences``.

    Args:
        dims: 2 (slices) or 3 (volumes).
        sequences: names of the sequences the decoder can render (the rows of the sequence embedding).
        channels: widths of the stride-2 levels; the total stride is ``2 ** len(channels)``.
        res_blocks: residual blocks per level in the encoder and in the decoder.
        latent_dim, num_embeddings: code dimension and codebook size.
        sequence_embedding: size of the learned sequence embedding.
        groups: group-norm groups (reduced to a divisor of each width).
        quantizer: every EMAVectorQuantizer keyword.
        percentiles: the (low, high) brain percentiles of the [0, 1] intensity scale the model was trained on
            (stored with the model so that inference maps intensities the same way).
    """

    kind = "tokenizer"

    def __init__(self, *, dims: int, sequences: Sequence[str], channels: Sequence[int], res_blocks: int,
                 latent_dim: int, num_embeddings: int, sequence_embedding: int, groups: int,
                 quantizer: dict[str, Any], percentiles: Sequence[float]):
        super().__init__()
        channels = [int(c) for c in channels]
        sequences = [str(s) for s in sequences]
        quantizer = dict(quantizer)
        if dims not in (2, 3):
            raise ConfigError(f"tokenizer: dims must be 2 or 3, got {dims!r}")
        if not channels or min(channels) < 1:
            raise ConfigError(f"tokenizer: channels must list positive widths, got {channels}")
        if not sequences or len(set(sequences)) != len(sequences):
            raise ConfigError(f"tokenizer: sequences must be distinct names, got {sequences}")
        if res_blocks < 0 or latent_dim < 1 or num_embeddings < 2 or sequence_embedding < 1 or groups < 1:
            raise ConfigError("tokenizer: res_blocks must be >= 0; latent_dim, sequence_embedding, groups >= 1; "
                              "num_embeddings >= 2")
        unknown = sorted(set(quantizer) - set(_QUANTIZER_KEYS))
        missing = sorted(set(_QUANTIZER_KEYS) - set(quantizer))
        if unknown or missing:
            raise ConfigError(f"tokenizer: quantizer keys unknown {unknown} / missing {missing}")
        low, high = (float(p) for p in percentiles)
        if not 0.0 <= low < high <= 100.0:
            raise ConfigError(f"tokenizer: percentiles must satisfy 0 <= low < high <= 100, got {[low, high]}")
        self._config = {"dims": int(dims), "sequences": sequences, "channels": channels, "res_blocks": int(res_blocks),
                        "latent_dim": int(latent_dim), "num_embeddings": int(num_embeddings),
                        "sequence_embedding": int(sequence_embedding), "groups": int(groups),
                        "quantizer": quantizer, "percentiles": [low, high]}
        self.dims, self.sequences, self.stride = int(dims), sequences, 2 ** len(channels)
        self.percentiles = (low, high)
        conv = _conv(dims)
        convT = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d

        # encoder: per level a stride-2 conv (the first straight from the image) and residual blocks
        self.down = nn.ModuleList()
        self.enc_blocks = nn.ModuleList()
        prev = 1
        for c in channels:
            self.down.append(conv(prev, c, 4, stride=2, padding=1))
            self.enc_blocks.append(nn.ModuleList(ResBlock(dims, c, groups, None) for _ in range(res_blocks)))
            prev = c
        self.enc_out = nn.Sequential(nn.GroupNorm(_groups(prev, groups), prev), nn.SiLU(), conv(prev, latent_dim, 1))
        self.quantizer = EMAVectorQuantizer(num_embeddings, latent_dim, **quantizer)

        # decoder: told the target sequence through its embedding (FiLM in every residual block); the last
        # transposed conv renders the image
        self.embedding = nn.Embedding(len(sequences), sequence_embedding)
        self.dec_in = conv(latent_dim, channels[-1], 3, padding=1)
        self.dec_blocks = nn.ModuleList()
        self.up = nn.ModuleList()
        widths = channels[::-1]
        for i, c in enumerate(widths):
            nxt = widths[i + 1] if i + 1 < len(widths) else 1
            self.dec_blocks.append(nn.ModuleList(ResBlock(dims, c, groups, sequence_embedding)
                                                 for _ in range(max(res_blocks, 1))))
            self.up.append(nn.Sequential(nn.GroupNorm(_groups(c, groups), c), nn.SiLU(),
                                         convT(c, nxt, 4, stride=2, padding=1)))

    def config(self) -> dict[str, Any]:
        """Constructor keywords that rebuild this model (stored next to the state_dict)."""
        return {**self._config, "sequences": list(self.sequences), "channels": list(self._config["channels"]),
                "quantizer": dict(self._config["quantizer"]), "percentiles": list(self.percentiles)}

    # ---------------------------------------------------------------------------------------------- helpers
    def sequence_index(self, names: Sequence[str] | str, device=None) -> torch.Tensor:
        """Embedding rows of sequence ``names`` (long tensor); ConfigError for a sequence the model cannot render."""
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.sequences]
        if unknown:
            raise ConfigError(f"the tokenizer renders {self.sequences}, not {unknown}")
        return torch.tensor([self.sequences.index(n) for n in names], dtype=torch.long, device=device)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != self.dims + 2 or x.shape[1] != 1:
            shape = "(B, 1, H, W)" if self.dims == 2 else "(B, 1, X, Y, Z)"
            raise ValueError(f"the {self.dims}D tokenizer expects images {shape}, got {tuple(x.shape)}")

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        pad = []
        for size in reversed(x.shape[2:]):
            pad += [0, (-size) % self.stride]
        return F.pad(x, pad) if any(pad) else x

    # ----------------------------------------------------------------------------------------- the network
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent z_e (B, D, *ceil(spatial / stride)) of single-sequence images (B, 1, *spatial)."""
        self._check(x)
        h = self._pad(x.float())
        for down, blocks in zip(self.down, self.enc_blocks):
            h = down(h)
            for block in blocks:
                h = block(h)
        return self.enc_out(h)

    def decode(self, z: torch.Tensor, target: torch.Tensor, size: Sequence[int],
               brain: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, 1, *size) in [0, 1] of sequences ``target`` (B,) long from (quantized) latents z."""
        cond = self.embedding(target.to(z.device).long())
        h = self.dec_in(z)
        for blocks, up in zip(self.dec_blocks, self.up):
            for block in blocks:
                h = block(h, cond)
            h = up(h)
        out = torch.sigmoid(h.float())
        out = out[(..., *(slice(0, int(s)) for s in size))]
        return out * brain.to(out.dtype) if brain is not None else out

    def forward(self, x: torch.Tensor, target: torch.Tensor, brain: torch.Tensor | None = None,
                mix: torch.Tensor | None = None) -> TokenizerOutput:
        """Encode the single-sequence images ``x`` (N, 1, *spatial) and quantize them (training mode updates the
        codebook); decode as sequences ``target`` (M,).

        Without ``mix`` output i decodes the codes of input i (M = N). With ``mix`` (M, N) output i decodes the
        nearest codes of the latent ``sum_j mix[i, j] z_j`` (a one-hot row: input j's codes; equal weights over
        several inputs: their fused latent), so reconstruction, translation and fusion of one batch go through one
        forward call (as DistributedDataParallel needs). ``brain`` (M, 1, *spatial) masks the outputs.
        """
        z = self.encode(x)
        q = self.quantizer(z)
        if mix is None:
            zq, indices = q.quantized, q.indices
        else:
            zq, indices = self.quantize_frozen(torch.einsum("mn,n...->m...", mix.to(z.dtype), z))
        out = self.decode(zq, target, x.shape[2:], brain)
        return TokenizerOutput(out, indices, z, q.commitment_loss, q.perplexity, q.used_fraction)

    def quantize_frozen(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codes of z without touching the codebook: (straight-through quantized z, indices)."""
        idx = self.quantizer.quantize_indices(z)
        q = self.quantizer.lookup(idx).to(z.dtype)
        return z + (q - z).detach(), idx

    def fuse(self, x: torch.Tensor, target: torch.Tensor, brain: torch.Tensor | None = None) -> torch.Tensor:
        """Synthesize ``target`` (B,) from several sequences at once: x (B, K, *spatial) -> (B, 1, *spatial).

        The K latents are averaged before quantization (one common code grid), without updating the codebook."""
        b, k = x.shape[:2]
        z = self.encode(x.reshape(b * k, 1, *x.shape[2:]))
        z = z.view(b, k, *z.shape[1:]).mean(1)
        q, _ = self.quantize_frozen(z)
        return self.decode(q, target, x.shape[2:], brain)

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices (B, *latent spatial) of images (B, 1, *spatial); never changes the codebook."""
        return self.quantizer.quantize_indices(self.encode(x))


def load_tokenizer(path) -> tuple[MRITokenizer, dict]:
    """The trained tokenizer of a model file (kind "tokenizer") in eval mode, and the file's contents; one-line
    ConfigError for a missing, unreadable or other kind of file."""
    bundle = load_model_file(path, "tokenizer")
    try:
        model = MRITokenizer(**bundle["config"])
        model.load_state_dict(bundle["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"{path}: cannot rebuild the tokenizer ({type(exc).__name__}: {exc})") from None
    return model.eval(), bundle
