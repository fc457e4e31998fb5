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
    """Stable splits: each case goes by a hash of (seed, case id) against the fractions (agvq.data.splits), or, with
    ``file``, by a split file the user holds (ours, or nnU-Net's splits_final.json with its ``fold``)."""

    seed: int = value(0, ge=0)
    val_fraction: float = value(0.2, ge=0.0, lt=1.0)
    test_fraction: float = value(0.2, ge=0.0, lt=1.0)
    file: str | None = value(None, doc="split file to use instead of the hash split (fractions and seed unused)")
    fold: int = value(0, ge=0, doc="fold of an nnU-Net splits_final.json list of folds")

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
class UNETRConfig:
    """MONAI UNETR baseline (ViT encoder on 16^3 patches; its input size is the training patch size)."""

    feature_size: int = value(8, ge=1)
    hidden_size: int = value(96, ge=1)
    mlp_dim: int = value(192, ge=1)
    num_heads: int = value(4, ge=1)

    def check(self, where: str) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{where}: hidden_size ({self.hidden_size}) must be divisible by num_heads "
                              f"({self.num_heads})")


@dataclass(frozen=True)
class SwinUNETRConfig:
    """MONAI SwinUNETR baseline (shifted-window transformer encoder; inputs must be multiples of 32)."""

    feature_size: int = value(12, ge=12)
    depths: tuple[int, ...] = value((1, 1, 1, 1), ge=1)
    num_heads: tuple[int, ...] = value((3, 6, 12, 24), ge=1)
    window_size: int = value(4, ge=1)
    norm: Literal["instance", "group", "batch"] = value("group", doc="instance (MONAI's default) needs more than one "
                                                        "voxel at 1/32, i.e. patches of 64^3 or more")

    def check(self, where: str) -> None:
        if self.feature_size % 12:
            raise ConfigError(f"{where}.feature_size must be a multiple of 12, got {self.feature_size}")
        if len(self.depths) != 4 or len(self.num_heads) != 4:
            raise ConfigError(f"{where}: depths and num_heads need 4 stages each")


@dataclass(frozen=True)
class SegResNetConfig:
    """MONAI SegResNet baseline."""

    init_filters: int = value(8, ge=1)
    blocks_down: tuple[int, ...] = value((1, 2, 2, 4), ge=1)
    blocks_up: tuple[int, ...] = value((1, 1, 1), ge=1)

    def check(self, where: str) -> None:
        if len(self.blocks_up) != len(self.blocks_down) - 1:
            raise ConfigError(f"{where}: blocks_up needs one entry fewer than blocks_down")


@dataclass(frozen=True)
class VNetConfig:
    """MONAI VNet baseline (fixed widths 16-256, total stride 16); MONAI's defaults."""

    dropout_prob_down: float = value(0.5, ge=0.0, lt=1.0, doc="dropout of the two deepest down transitions")
    dropout_prob_up: tuple[float, float] = value((0.5, 0.5), ge=0.0, lt=1.0, doc="dropout of the up transitions")
    bias: bool = False


@dataclass(frozen=True)
class CondModelConfig:
    backbone: BackboneConfig = section(BackboneConfig)
    unet: UNetConfig = section(UNetConfig)
    unetr: UNETRConfig = section(UNETRConfig)
    swinunetr: SwinUNETRConfig = section(SwinUNETRConfig)
    segresnet: SegResNetConfig = section(SegResNetConfig)
    vnet: VNetConfig = section(VNetConfig)


@dataclass(frozen=True)
class CondLossConfig:
    focal_weight: float = value(1.0, ge=0.0, doc="two-stage: focal term over codes")
    ce_weight: float = value(1.0, ge=0.0, doc="cross-entropy (codes or mask)")
    gamma: float = value(2.0, ge=0.0)
    code_balance: float = value(0.0, ge=0.0, doc="weight a voxel's code loss by its code's frequency^-power")
    dice_weight: float = value(1.0, ge=0.0, doc="single-stage: soft Dice on the mask")
    align_weight: float = value(0.0, ge=0.0, doc="two-stage: MSE between the expected code embedding (softmax "
                                "of the code logits times the codebook) and the target code's embedding")
    decoded_dice_weight: float = value(0.0, ge=0.0, doc="two-stage: soft Dice of the frozen decoder's output on the "
                                       "expected code embedding against the true mask")

    def check(self, where: str) -> None:
        if self.focal_weight + self.ce_weight <= 0 or self.dice_weight + self.ce_weight <= 0:
            raise ConfigError(f"{where}: each loss needs a positive weight (focal or ce; dice or ce)")


@dataclass(frozen=True)
class CondConfig:
    """Stage 2 / single-stage settings of one variant and region (the training seed comes from ``seeds``)."""

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
    on_error: Literal["stop", "skip"] = value("stop", doc="infer stage: a bad case stops it, or is skipped and "
                                                          "listed in its report")
    missing_modality: Literal["error", "zero", "mean", "synthesize"] = value(
        "error", doc="a case lacking a sequence: stop (error), or fill it with a warning: zero / mean "
                     "(agvq.inference.missing), synthesize (the MRI tokenizer's synthesis, infer --tokenizer)")
    # Inference only (validation during training never reads them, and the training stages do not declare them):
    tta: Literal["none", "flip"] = value("none", doc="flip: mean probabilities of the 8 axis-flip combinations")
    save_probabilities: bool = value(False, doc="also write <case>_probabilities.npz (per-region maps, original grid)")

    PROTOCOL_KEYS = ("overlap", "blend", "sw_batch_size", "threshold")
    """The keys validation during training uses (and the training stages declare); the others are inference only."""

    def protocol_values(self) -> dict:
        """The validation-protocol settings, as a training run's identity records them."""
        return {k: getattr(self, k) for k in self.PROTOCOL_KEYS}


@dataclass(frozen=True)
class EvaluateConfig:
    empty_penalty: float = value(373.13, ge=0.0, doc="HD95 (mm) when exactly one of prediction/truth is empty")
    nsd_tolerance: float = value(1.0, ge=0.0, doc="normalised surface Dice tolerance (mm)")
    workers: int = value(1, ge=1)
    figure_cases: int = value(3, ge=1)


@dataclass(frozen=True)
class AblateConfig:
    """The paper's two tables: ``comparison`` (methods) and ``ablation`` (AS x SM x single/two-stage) list the
    variants of each, in row order; every other variant is compared with ``main_variant``."""

    main_variant: str = "agvqvae"
    comparison: tuple[str, ...] = ()
    ablation: tuple[str, ...] = ()
    bootstrap: int = value(2000, ge=1)
    seed: int = value(0, ge=0)
    confidence: float = value(0.95, gt=0.0, lt=1.0)


@dataclass(frozen=True)
class DiagnoseConfig:
    """Validation-split diagnosis of one two-stage variant (stages/diagnose.py), beside a single-stage one."""

    variant: str = "agvqvae"
    compare: str = "agunet"
    seed: int = value(0, ge=0, doc="which training seed's models are diagnosed (one of seeds)")
Artefact = Literal["noise", "bias", "gibbs", "spike", "ghosting", "motion", "missing"]


@dataclass(frozen=True)
class SeverityLevels:
    """The parameter of each perturbation at severities 1, 2, 3 (agvq.robustness.perturb); severity 0 is clean."""

    noise: tuple[float, float, float] = value((20.0, 10.0, 5.0), gt=0.0, doc="SNR: brain mean / Rician sigma")
    bias: tuple[float, float, float] = value((0.1, 0.2, 0.3), gt=0.0, doc="Legendre coefficients from U(-c, c)")
    gibbs: tuple[float, float, float] = value((0.3, 0.45, 0.6), gt=0.0, lt=1.0, doc="MONAI GibbsNoise alpha")
    spike: tuple[float, float, float] = value((0.1, 0.2, 0.4), gt=0.0, doc="stripe amplitude / brain mean")
    ghosting: tuple[float, float, float] = value((0.3, 0.6, 0.9), gt=0.0, le=1.0, doc="TorchIO ghost intensity")
    motion: tuple[float, float, float] = value((2.0, 4.0, 8.0), gt=0.0, doc="max rotation (deg) = translation (mm)")

    def check(self, where: str) -> None:
        for name in ("bias", "gibbs", "spike", "ghosting", "motion"):
            levels = getattr(self, name)
            if not levels[0] < levels[1] < levels[2]:
                raise ConfigError(f"{where}.{name} must increase with severity, got {list(levels)}")
        if not self.noise[0] > self.noise[1] > self.noise[2]:
            raise ConfigError(f"{where}.noise (SNR) must decrease with severity, got {list(self.noise)}")


@dataclass(frozen=True)
class RobustnessConfig:
    """The robustness study: test cases under seeded perturbations, drop against the clean input per variant."""

    variants: tuple[str, ...] = value(("agvqvae", "agunet", "unet"), doc="trained variants the study predicts with")
    main_variant: str = value("agvqvae", doc="the two-stage variant compared with each other one")
    perturbations: tuple[Artefact, ...] = ("noise", "bias", "gibbs", "spike", "ghosting", "motion", "missing")
    model_seed: int = value(0, ge=0, doc="the training seed whose models the study uses (one of seeds)")
    cases: int = value(0, ge=0, doc="test cases studied, the first in sorted order (0: all)")
    seed: int = value(0, ge=0, doc="seed of the perturbations (with the case id and kind) and of the bootstrap")
    levels: SeverityLevels = section(SeverityLevels)
    bias_degree: int = value(3, ge=1, doc="degree of the Legendre bias field")
    ghosts: int = value(4, ge=2, doc="TorchIO num_ghosts: every n-th k-space plane is scaled")
    ghost_restore: float = value(0.02, ge=0.0, le=1.0, doc="central fraction of k-space kept by Ghosting")
    motion_transforms: int = value(2, ge=1, doc="movements during the acquisition")
    missing_fill: Literal["zero", "mean"] = "zero"
    bootstrap: int = value(2000, ge=1)
    confidence: float = value(0.95, gt=0.0, lt=1.0)

    def check(self, where: str) -> None:
        for key in ("variants", "perturbations"):
            items = getattr(self, key)
            if not items or len(set(items)) != len(items):
                raise ConfigError(f"{where}.{key} must list distinct names, got {list(items)}")
        if self.main_variant not in self.variants:
            raise ConfigError(f"{where}.main_variant {self.main_variant!r} is not in {where}.variants "
                              f"{list(self.variants)}")
        if len(self.variants) < 2:
            raise ConfigError(f"{where}.variants needs the main variant and at least one to compare it with")
