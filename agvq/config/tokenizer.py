"""The ``tokenizer`` section: the MRI image VQ-VAE (one encoder/decoder and one codebook common to every sequence,
a learned sequence embedding that tells the decoder which sequence to render), its training and its evaluation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agvq.config.schema import section, value
from agvq.config.sections import QuantizerConfig
from agvq.errors import ConfigError


@dataclass(frozen=True)
class TokenizerModelConfig:
    channels: tuple[int, ...] = value((32, 64), ge=1, doc="widths of the stride-2 levels (total stride 2**levels)")
    res_blocks: int = value(1, ge=0, doc="residual blocks per level, encoder and decoder")
    latent_dim: int = value(16, ge=1)
    num_embeddings: int = value(256, ge=2, doc="codebook size, shared by every sequence")
    sequence_embedding: int = value(16, ge=1, doc="size of the learned sequence embedding fed to the decoder")
    groups: int = value(8, ge=1, doc="group-norm groups (reduced to a divisor of each width)")


@dataclass(frozen=True)
class IntensityConfig:
    """z-scored prepared images -> [0, 1]: per case and sequence, the brain's ``low``/``high`` percentiles map to 0/1
    (clipped), 0 outside the brain. SSIM and PSNR are computed on this scale (data range 1)."""

    low_percentile: float = value(0.5, ge=0.0, lt=100.0)
    high_percentile: float = value(99.5, gt=0.0, le=100.0)

    def check(self, where: str) -> None:
        if self.low_percentile >= self.high_percentile:
            raise ConfigError(f"{where}: low_percentile ({self.low_percentile:g}) must be below high_percentile "
                              f"({self.high_percentile:g})")


@dataclass(frozen=True)
class TokenizerLossConfig:
    """L1 inside the brain, per kind of output, plus the quantizer's commitment loss."""

    reconstruction_weight: float = value(1.0, ge=0.0, doc="sequence s -> s")
    translation_weight: float = value(1.0, ge=0.0, doc="sequence s -> another sequence t")
    fused_weight: float = value(1.0, ge=0.0, doc="the other sequences together -> t")
    consistency_weight: float = value(0.0, ge=0.0, doc="MSE pulling the latents of one slice's sequences together")
    ssim_weight: float = value(0.0, ge=0.0, doc="adds (1 - SSIM) of every output to its L1")

    def check(self, where: str) -> None:
        if self.reconstruction_weight + self.translation_weight + self.fused_weight <= 0:
            raise ConfigError(f"{where}: reconstruction_weight, translation_weight and fused_weight cannot all be 0")


@dataclass(frozen=True)
class TokenizerTrainConfig:
    """Training through the shared loop (agvq.training.loop.fit) on random slices (dims 2) or patches (dims 3)."""

    epochs: int = value(30, ge=1)
    batch_size: int = value(16, ge=1, doc="global batch of slices (each carries every sequence)")
    patch_size: tuple[int, ...] = value((64, 64), ge=1, doc="2 sizes (dims 2) or 3 (dims 3); zero-padded where larger")
    samples_per_epoch: int = value(256, ge=1)
    samples_per_case: int = value(1, ge=1, doc="consecutive samples drawn from one case (reads fewer files when "
                                              "cache is off)")
    min_brain_fraction: float = value(0.1, ge=0.0, le=1.0, doc="slices drawn: brain share of the slice at least this")
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = value(2e-3, gt=0.0)
    lr_floor: float = value(0.05, ge=0.0, le=1.0)
    weight_decay: float = value(0.0, ge=0.0)
    grad_clip: float = value(1.0, ge=0.0)
    warmup_epochs: int = value(0, ge=0)
    val_metric: Literal["ssim", "psnr", "synthesis_ssim"] = "ssim"
    val_every: int = value(3, ge=1)
    val_slices: int = value(0, ge=0, doc="validation slices per case and sequence (0: every slice that qualifies)")
    figure_epochs: tuple[int, ...] = value((3, 9, 30), ge=1, doc="validation epochs shown in the reconstruction grid")
    num_workers: int = value(0, ge=0)
    flip: bool = True
    cache: bool = True

    def check(self, where: str) -> None:
        if self.samples_per_epoch < self.batch_size:
            raise ConfigError(f"{where}.samples_per_epoch ({self.samples_per_epoch}) must be at least "
                              f"batch_size ({self.batch_size})")
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"{where}.warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})")
        bad = [e for e in self.figure_epochs if e > self.epochs or (e % self.val_every and e != self.epochs)]
        if bad:
            raise ConfigError(f"{where}.figure_epochs {list(bad)} are not validation epochs (multiples of val_every "
                              f"{self.val_every}, or the last epoch {self.epochs})")


@dataclass(frozen=True)
class TokenizerEvalConfig:
    min_brain_fraction: float = value(0.1, ge=0.0, le=1.0, doc="test slices scored: brain share at least this")
    figure_slices: int = value(3, ge=1, doc="rows of the source / synthesized / real grids")
    bootstrap: int = value(2000, ge=1, doc="case-level bootstrap resamples of the confidence intervals")
    confidence: float = value(0.95, gt=0.0, lt=1.0)
    seed: int = value(0, ge=0)


@dataclass(frozen=True)
class TokenizerConfig:
    seed: int = value(0, ge=0)
    dims: Literal[2, 3] = value(2, doc="2: axial slices (as in seeds 001-003); 3: volumes")
    model: TokenizerModelConfig = section(TokenizerModelConfig)
    quantizer: QuantizerConfig = section(QuantizerConfig)
    intensity: IntensityConfig = section(IntensityConfig)
    loss: TokenizerLossConfig = section(TokenizerLossConfig)
    train: TokenizerTrainConfig = section(TokenizerTrainConfig)
    evaluate: TokenizerEvalConfig = section(TokenizerEvalConfig)

    def check(self, where: str) -> None:
        if len(self.train.patch_size) != self.dims:
            raise ConfigError(f"{where}.train.patch_size must list {self.dims} sizes for dims {self.dims}, "
                              f"got {list(self.train.patch_size)}")
