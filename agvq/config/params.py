"""params.yaml as one typed object, built once per stage: :func:`load_params`.

Per-region and per-variant overrides are validated against the schema where they are written (so an error names
``vqvae.regions.ET.train.lr`` or ``variants.unet.overrides.train.lr``), and every (variant, region) combination the
pipeline trains is resolved once at load time, so a bad combination fails before any stage does work.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agvq.config.schema import deep_merge, mapping, parse, section, to_dict, value
from agvq.config.sections import (AblateConfig, CondConfig, CondSection, DataConfig, EvaluateConfig, InferConfig,
                                  PreprocessConfig, Region, RuntimeConfig, SynthesizeConfig, VQVAEConfig,
                                  VQVAESection)
from agvq.config.tokenizer import TokenizerConfig
from agvq.config.variants import VariantSpec, paper_order
from agvq.errors import ConfigError
from agvq.regions import REGIONS


@dataclass(frozen=True)
class Params:
    regions: tuple[Region, ...] = value(REGIONS, doc="regions trained, predicted and evaluated")
    data: DataConfig = section(DataConfig)
    synthesize: SynthesizeConfig = section(SynthesizeConfig)
    preprocess: PreprocessConfig = section(PreprocessConfig)
    runtime: RuntimeConfig = section(RuntimeConfig)
    vqvae: VQVAESection = section(VQVAESection)
    cond: CondSection = section(CondSection)
    variants: dict[str, VariantSpec] = mapping()
    two_stage_variants: tuple[str, ...] = ()
    single_stage_variants: tuple[str, ...] = ()
    infer: InferConfig = section(InferConfig)
    evaluate: EvaluateConfig = section(EvaluateConfig)
    ablate: AblateConfig = section(AblateConfig)
    tokenizer: TokenizerConfig = section(TokenizerConfig)

    def check(self, where: str) -> None:
        if not self.regions or len(set(self.regions)) != len(self.regions):
            raise ConfigError(f"regions must list distinct regions of {list(REGIONS)}, got {list(self.regions)}")
        for region, override in self.vqvae.regions.items():
            parse(VQVAEConfig, override, f"vqvae.regions.{region}", partial=True)
        for region, override in self.cond.regions.items():
            parse(CondConfig, override, f"cond.regions.{region}", partial=True)
        for name, spec in self.variants.items():
            parse(CondConfig, spec.overrides, f"variants.{name}.overrides", partial=True)
        for key, two_stage in (("two_stage_variants", True), ("single_stage_variants", False)):
            for name in getattr(self, key):
                spec = self.variants.get(name)
                if spec is None:
                    raise ConfigError(f"{key} lists {name!r}, which params variants does not define")
                if spec.two_stage != two_stage:
                    raise ConfigError(f"{key} lists {name!r}, which is {'single' if two_stage else 'two'}-stage")
        both = sorted(set(self.two_stage_variants) & set(self.single_stage_variants))
        if both:
            raise ConfigError(f"variants {both} are listed as both two-stage and single-stage")
        if self.variants and self.ablate.main_variant not in self.variants:
            raise ConfigError(f"ablate.main_variant {self.ablate.main_variant!r} is not among the variants "
                              f"{sorted(self.variants)}")
        for region in REGIONS:
            self.vqvae_for(region)
            for name in self.trained_variants:
                self.cond_for(name, region)

    # -- resolution of the layered settings ---------------------------------------------------------------
    @property
    def trained_variants(self) -> tuple[str, ...]:
        return tuple(self.two_stage_variants) + tuple(self.single_stage_variants)

    def check_region(self, region: str) -> Region:
        if region not in REGIONS:
            raise ConfigError(f"unknown region {region!r}; regions are {list(REGIONS)}")
        return region  # type: ignore[return-value]

    def variant(self, name: str) -> VariantSpec:
        if name not in self.variants:
            raise ConfigError(f"unknown variant {name!r}; params.yaml defines {sorted(self.variants)}")
        return self.variants[name]

    def vqvae_for(self, region: str) -> VQVAEConfig:
        """The ``vqvae`` settings with ``vqvae.regions.<region>`` merged in."""
        region = self.check_region(region)
        base = {k: v for k, v in to_dict(self.vqvae).items() if k != "regions"}
        return parse(VQVAEConfig, deep_merge(base, self.vqvae.regions.get(region)), f"vqvae (region {region})")

    def cond_for(self, name: str, region: str) -> CondConfig:
        """``cond``, then ``cond.regions.<region>`` (one region, every variant), then the variant's ``overrides``
        (one variant, every region) merged in: the settings that train variant ``name`` for ``region``."""
        region, spec = self.check_region(region), self.variant(name)
        base = {k: v for k, v in to_dict(self.cond).items() if k != "regions"}
        merged = deep_merge(deep_merge(base, self.cond.regions.get(region)), spec.overrides)
        return parse(CondConfig, merged, f"cond (variant {name}, region {region})")

    def ordered_variants(self) -> list[str]:
        """Variant names in the paper's table order."""
        return paper_order(self.variants)


def parse_params(data: Any, source: str = "params") -> Params:
    """Params from already-loaded YAML data; ``source`` names it in errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of params sections, got {type(data).__name__}")
    return parse(Params, data, "")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; every problem is one ConfigError line naming the file and the key path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        return parse_params(data, f"params file {path}")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
