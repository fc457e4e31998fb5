"""The sections of params.yaml as typed dataclasses: every default of the project lives here and nowhere else.

Each field's default is what a missing key means; params.yaml states the values of the reference run explicitly.
Bounds are checked when a section is parsed (agvq.config.schema), relations between fields by ``check``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agvq.config.schema import mapping, section, value
from agvq.errors import ConfigError

Region = Literal["WT", "TC", "ET"]
Modality = Literal["t1", "t1ce", "t2", "flair"]
Naming = Literal["brats2021", "brats2023"]


def _positive(where: str, **sizes: tuple[int, ...]) -> None:
    for name, values in sizes.items():
        if not values or min(values) < 1:
            raise ConfigError(f"{where}.{name} must list positive integers, got {list(values)}")


@dataclass(frozen=True)
class DataConfig:
    raw: str = value("data/raw/synthetic", doc="raw BraTS-style case folders (either naming)")


@dataclass(frozen=True)
class SynthesizeConfig:
    count: int = value(40, ge=1)
    shape: tuple[int, int, int] = value((96, 96, 64), ge=16)
    seed: int = value(2025, ge=0)
    naming: Naming = "brats2021"
    no_et_fraction: float = value(0.15, ge=0.0, le=1.0)
    workers: int = value(1, ge=1, doc="processes; the output does not depend on it")


@dataclass(frozen=True)
class SplitConfig:
    seed: int = value(0, ge=0)
    val_fraction: float = value(0.2, ge=0.0, lt=1.0)
    test_fraction: float = value(0.2, ge=0.0, lt=1.0)

    def check(self, where: str) -> None:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(f"{where}: val_fraction + test_fraction must be below 1, "
                              f"got {self.val_fraction + self.test_fraction:g}")


@dataclass(frozen=True)
class PreprocessConfig:
    modalities: tuple[Modality, ...] = ("flair", "t1", "t1ce", "t2")
    margin: int = value(2, ge=0)
    stride: int = value(16, ge=1)
    on_error: Literal["stop", "skip"] = "stop"
    workers: int = value(1, ge=0, doc="processes (0: all available cores)")
    require_labels: bool = True
    compress_level: int = value(1, ge=0, le=9)
    split: SplitConfig = section(SplitConfig)

    def check(self, where: str) -> None:
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"{where}.modalities must list distinct modalities, got {list(self.modalities)}")


@dataclass(frozen=True)
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    threads: int = value(0, ge=0, doc="torch CPU threads (0: torch's default)")
    deterministic: bool = True
    launcher: str = "python"


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` settings of any model (stage 1, stage 2, single-stage)."""

    epochs: int = value(30, ge=1)
    batch_size: int = value(4, ge=1, doc="global batch (split over DDP processes)")
    patch_size: tuple[int, int, int] = value((32, 32, 32), ge=1)
    patches_per_epoch: int = value(64, ge=1)
    foreground_fraction: float = value(0.7, ge=0.0, le=1.0)
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = value(1e-3, gt=0.0)
    lr_floor: float = value(0.05, ge=0.0, le=1.0, doc="cosine schedule ends at lr * lr_floor")
    weight_decay: float = value(0.0, ge=0.0)
    grad_clip: float = value(1.0, ge=0.0, doc="max gradient norm (0: off)")
    warmup_epochs: int = value(0, ge=0)
    val_metric: Literal["dice", "hd95"] = "dice"
    val_every: int = value(1, ge=1)
    num_workers: int = value(0, ge=0)
    flip: bool = value(True, doc="random axis flips of training patches")
    cache: bool = value(True, doc="hold the training cases in memory")

    def check(self, where: str) -> None:
        if self.patches_per_epoch < self.batch_size:
            raise ConfigError(f"{where}.patches_per_epoch ({self.patches_per_epoch}) must be at least "
                              f"batch_size ({self.batch_size})")
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"{where}.warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})")


@dataclass(frozen=True)
class VQVAEModelConfig:
    channels: tuple[int, int] = value((32, 64), ge=1, doc="widths at 1/2 and 1/4 resolution")
    res_blocks: int = value(1, ge=0)
    latent_dim: int = value(32, ge=1)
    num_embeddings: int = value(128, ge=2)
    norm: Literal["none", "batch", "instance", "group"] = "batch"


@dataclass(frozen=True)
class QuantizerConfig:
    commitment: float = value(0.25, ge=0.0)
    decay: float = value(0.99, ge=0.0, lt=1.0)
    epsilon: float = value(1e-5, gt=0.0)
    dead_code_threshold: float = value(1.0, ge=0.0)
    reseed: Literal["error", "uniform"] = "error"
    kmeans_init: bool = True
    kmeans_iters: int = value(10, ge=0)
    kmeans_max_vectors: int = value(16384, ge=1)


@dataclass(frozen=True)
class MaskLossConfig:
    dice_weight: float = value(1.0, ge=0.0)
    ce_weight: float = value(1.0, ge=0.0)

    def check(self, where: str) -> None:
        if self.dice_weight + self.ce_weight <= 0:
            raise ConfigError(f"{where}: dice_weight and ce_weight cannot both be 0")


@dataclass(frozen=True)
class VQVAEConfig:
    """Stage 1 of one region (``vqvae`` with ``vqvae.regions.<region>`` merged in)."""

    seed: int = value(0, ge=0)
    model: VQVAEModelConfig = section(VQVAEModelConfig)
    quantizer: QuantizerConfig = section(QuantizerConfig)
    loss: MaskLossConfig = section(MaskLossConfig)
    train: TrainConfig = section(TrainConfig)


@dataclass(frozen=True)
class VQVAESection(VQVAEConfig):
    regions: dict[Region, dict[str, Any]] = mapping("per-region overrides, deep-merged into the settings above")


@dataclass(frozen=True)
class BackboneConfig:
    """Encoder (1/2, 1/4, 1/8) -> tokens at 1/16 -> transformer -> decoder at 1/4 (AG-VQ-VAE and AG-UNet)."""

    channels: tuple[int, int, int] = value((16, 32, 64), ge=1)
    dim: int = value(64, ge=1)
    depth: int = value(4, ge=0)
    heads: int = value(4, ge=1)
    mlp_ratio: float = value(4.0, gt=0.0)
    dropout: float = value(0.0, ge=0.0, lt=1.0)
    soft_mask_blocks: tuple[int, ...] = value((2, 3), ge=0, doc="0-based indices of the blocks with SM")
    se_reduction: int = value(4, ge=1)
    pos_grid: tuple[int, int, int] = value((2, 2, 2), ge=1)

    def check(self, where: str) -> None:
        bad = [i for i in self.soft_mask_blocks if i >= self.depth]
        if bad:
            raise ConfigError(f"{where}.soft_mask_blocks {list(self.soft_mask_blocks)} must be block indices "
                              f"below depth {self.depth}")
        if self.dim % self.heads:
            raise ConfigError(f"{where}.dim ({self.dim}) must be divisible by heads ({self.heads})")


@dataclass(frozen=True)
class UNetConfig:
    """MONAI UNet baseline."""

    channels: tuple[int, ...] = value((16, 32, 64, 128), ge=1)
    strides: tuple[int, ...] = value((2, 2, 2), ge=1)
    num_res_units: int = value(1, ge=0)

    def check(self, where: str) -> None:
        if len(self.channels) != len(self.strides) + 1:
            raise ConfigError(f"{where}: channels needs one more width than strides, got {list(self.channels)} "
                              f"and {list(self.strides)}")


@dataclass(frozen=True)
class CondModelConfig:
    backbone: BackboneConfig = section(BackboneConfig)
    unet: UNetConfig = section(UNetConfig)


@dataclass(frozen=True)
class CondLossConfig:
    focal_weight: float = value(1.0, ge=0.0, doc="two-stage: focal term over codes")
    ce_weight: float = value(1.0, ge=0.0, doc="cross-entropy (codes or mask)")
    gamma: float = value(2.0, ge=0.0)
    code_balance: float = value(0.0, ge=0.0, doc="weight a voxel's code loss by its code's frequency^-power")
    dice_weight: float = value(1.0, ge=0.0, doc="single-stage: soft Dice on the mask")

    def check(self, where: str) -> None:
        if self.focal_weight + self.ce_weight <= 0 or self.dice_weight + self.ce_weight <= 0:
            raise ConfigError(f"{where}: each loss needs a positive weight (focal or ce; dice or ce)")


@dataclass(frozen=True)
class CondConfig:
    """Stage 2 / single-stage settings of one variant and region."""

    seed: int = value(0, ge=0)
    model: CondModelConfig = section(CondModelConfig)
    loss: CondLossConfig = section(CondLossConfig)
    train: TrainConfig = section(TrainConfig)


@dataclass(frozen=True)
class CondSection(CondConfig):
    regions: dict[Region, dict[str, Any]] = mapping("per-region overrides, deep-merged for every variant")


@dataclass(frozen=True)
class InferConfig:
    """The prediction protocol of inference AND of validation during training (so the checkpoint is chosen by
    what is evaluated): sliding window, blending and the foreground threshold."""

    overlap: float = value(0.5, ge=0.0, lt=1.0)
    blend: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = value(2, ge=1)
    threshold: float = value(0.5, ge=0.0, lt=1.0)
    missing_modality: Literal["error", "synthesize"] = value(
        "error", doc="a case lacking a modality file: error, or synthesize it with the MRI tokenizer (--tokenizer)")


@dataclass(frozen=True)
class EvaluateConfig:
    empty_penalty: float = value(373.13, ge=0.0, doc="HD95 (mm) when exactly one of prediction/truth is empty")
    workers: int = value(1, ge=1)
    figure_cases: int = value(3, ge=1)


@dataclass(frozen=True)
class AblateConfig:
    main_variant: str = "agvqvae"
    bootstrap: int = value(2000, ge=1)
    seed: int = value(0, ge=0)
    confidence: float = value(0.95, gt=0.0, lt=1.0)
