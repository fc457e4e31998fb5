"""The variant spec: what a named model of the ablation is. Read here and nowhere else.

A variant is a small mapping in ``params.variants``: ``two_stage`` (code predictor through the frozen stage-1
VQ-VAE, or a mask net), ``arch`` (``transformer``: the attention backbone of AG-VQ-VAE / AG-UNet; ``unet``,
``unetr``, ``swinunetr``, ``segresnet``, ``vnet``: MONAI baselines), ``joint`` (single-stage only: one model with one
output per region instead of one model per region), the transformer switches ``attention_scaling`` /
``soft_masking`` / ``squeeze_excitation`` (missing = on), ``attention`` (3D attention modules in the CNN
encoder/decoder/skips, see :class:`AttentionSpec`; missing = none), ``published`` (the method whose published BraTS
2021 numbers are shown beside this variant) and optional ``overrides`` deep-merged into the ``cond`` settings of
that variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agvq.config.schema import mapping, section, value
from agvq.errors import ConfigError

SWITCHES: dict[str, str] = {"attention_scaling": "AS", "soft_masking": "SM", "squeeze_excitation": "SE"}
BASELINES: dict[str, str] = {"unet": "3D U-Net", "unetr": "UNETR", "swinunetr": "SwinUNETR", "segresnet": "SegResNet",
                             "vnet": "V-Net"}
FAMILIES: tuple[str, ...] = tuple(BASELINES.values()) + ("AG-UNet", "AG-VQ-VAE")
Arch = Literal["transformer", "unet", "unetr", "swinunetr", "segresnet", "vnet"]
AttentionName = Literal["none", "se", "cbam", "scse", "pe", "gate", "slice", "pam"]
ATTENTION_POSITIONS: tuple[str, ...] = ("encoder", "decoder", "skips")
ATTENTION_LABELS: dict[str, str] = {"se": "SE", "cbam": "CBAM", "scse": "scSE", "pe": "PE", "gate": "AG",
                                    "slice": "SA", "pam": "PAM"}


@dataclass(frozen=True)
class AttentionSpec:
    """``variants.<name>.attention``: a module per position of the variant's CNN, and the modules' settings.

    encoder: after every encoder block (U-Net: each down layer and the bottom; conditional net: its 1/2, 1/4, 1/8
    blocks). decoder: after every decoder block but the output layer. skips: on every skip connection, as
    ``gate(skip, decoder features)`` (only ``gate`` reads the decoder signal; other modules act on the skip alone).
    """

    encoder: AttentionName = "none"
    decoder: AttentionName = "none"
    skips: AttentionName = "none"
    reduction: int = value(4, ge=1, doc="channel bottleneck C // reduction of se, cbam, scse, pe and pam/slice")
    spatial_kernel: int = value(7, ge=1, doc="cbam: size of the spatial attention convolution (odd)")
    slice_axis: int = value(2, ge=0, le=2, doc="slice, pam: the spatial axis (0, 1, 2 = X, Y, Z) whose slices are "
                                                 "weighed")

    def check(self, where: str) -> None:
        if self.spatial_kernel % 2 == 0:
            raise ConfigError(f"{where}.spatial_kernel must be odd (the map keeps its size), got {self.spatial_kernel}")

    @property
    def active(self) -> bool:
        return any(getattr(self, p) != "none" for p in ATTENTION_POSITIONS)

    def describe(self) -> str:
        """E.g. "encoder cbam, skips gate"; "none" when no module is placed."""
        placed = [f"{p} {getattr(self, p)}" for p in ATTENTION_POSITIONS if getattr(self, p) != "none"]
        return ", ".join(placed) if placed else "none"

    def label(self) -> str:
        """Suffix for tables, e.g. " +CBAM (encoder)" or " +CBAM (encoder), AG (skips)"; "" when none is placed."""
        placed = [f"{ATTENTION_LABELS[m]} ({p})" for p in ATTENTION_POSITIONS if (m := getattr(self, p)) != "none"]
        return " +" + ", ".join(placed) if placed else ""


@dataclass(frozen=True)
class VariantSpec:
    two_stage: bool = True
    arch: Arch = "transformer"
    joint: bool = False
    attention_scaling: bool | None = None
    soft_masking: bool | None = None
    squeeze_excitation: bool | None = None
    attention: AttentionSpec = section(AttentionSpec, "3D attention modules in the CNN (none by default)")
    published: str | None = None
    overrides: dict[str, Any] = mapping("deep-merged into cond for this variant (every region)")

    def check(self, where: str) -> None:
        if self.arch != "transformer":
            if self.two_stage:
                raise ConfigError(f"{where}: arch {self.arch!r} is a single-stage baseline; set two_stage: false")
            on = [k for k in SWITCHES if getattr(self, k)]
            if on:
                raise ConfigError(f"{where}: arch {self.arch!r} has no attention blocks; remove {on}")
        if self.joint and self.two_stage:
            raise ConfigError(f"{where}: joint (one model for all regions) is for single-stage variants; the "
                              "two-stage method trains one VQ-VAE and one code predictor per region")
        if self.arch in ("unetr", "swinunetr", "segresnet", "vnet") and self.attention.active:
            raise ConfigError(f"{where}.attention: arch {self.arch!r} (a MONAI network) takes no attention modules; "
                              f"got {self.attention.describe()}")

    @property
    def has_attention_blocks(self) -> bool:
        return self.arch == "transformer"

    def switch(self, name: str) -> bool | None:
        """A transformer switch: its value, True when missing, None where the model has no attention blocks."""
        if name not in SWITCHES:
            raise KeyError(name)
        if not self.has_attention_blocks:
            return None
        setting = getattr(self, name)
        return True if setting is None else bool(setting)

    @property
    def stages(self) -> int:
        return 2 if self.two_stage else 1

    @property
    def family(self) -> str:
        """"3D U-Net", "UNETR", "SwinUNETR", "SegResNet", "AG-UNet" (single-stage transformer) or "AG-VQ-VAE"."""
        if self.arch in BASELINES:
            return BASELINES[self.arch]
        return "AG-VQ-VAE" if self.two_stage else "AG-UNet"

    @property
    def kind(self) -> str:
        """How the pipeline trains it: "two_stage" and "per_region" (one model per region) or "joint"."""
        return "two_stage" if self.two_stage else ("joint" if self.joint else "per_region")

    @property
    def display_name(self) -> str:
        """Family plus the switched-off blocks and any attention modules, e.g. "AG-VQ-VAE w/o AS", "U-Net +CBAM"."""
        off = [abbrev for key, abbrev in SWITCHES.items() if self.switch(key) is False]
        return self.family + (" w/o " + ", ".join(off) if off else "") + self.attention.label()

    def same_model_apart_from_attention(self, other: "VariantSpec") -> bool:
        """True when ``other`` is this variant with (possibly) other attention modules: same stages, arch, joint,
        transformer switches and overrides (so the same training budget)."""
        return (self.two_stage == other.two_stage and self.arch == other.arch and self.joint == other.joint
                and self.switch_values() == other.switch_values() and self.overrides == other.overrides)

    @property
    def switches_on(self) -> int:
        return sum(self.switch(k) is True for k in SWITCHES)

    def switch_values(self) -> dict[str, bool]:
        """The switches as the model file records them (transformer variants only)."""
        return {k: bool(self.switch(k)) for k in SWITCHES} if self.has_attention_blocks else {}


def paper_order(variants: dict[str, VariantSpec]) -> list[str]:
    """Paper order: U-Net, then each family with its ablations first and the full model last."""
    def key(item):
        pos, (name, spec) = item
        rank = FAMILIES.index(spec.family) if spec.family in FAMILIES else len(FAMILIES)
        return rank, spec.switches_on, pos
    return [name for _, (name, _) in sorted(enumerate(variants.items()), key=key)]
