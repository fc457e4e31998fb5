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

from agvq.config.postprocess import PostprocessConfig
from agvq.config.attention import AttentionStudyConfig
from agvq.config.schema import deep_merge, mapping, parse, section, to_dict, value
from agvq.config.sections import (AblateConfig, CondConfig, CondSection, DataConfig, DiagnoseConfig, EvaluateConfig,
                                  InferConfig, PreprocessConfig, Region, RobustnessConfig, RuntimeConfig,
                                  SynthesizeConfig, VQVAEConfig, VQVAESection)
from agvq.config.tokenizer import TokenizerConfig
from agvq.config.variants import VariantSpec, paper_order
from agvq.errors import ConfigError
from agvq.regions import REGIONS


LIST_KINDS = {"two_stage_variants": "two_stage", "single_stage_variants": "per_region", "joint_variants": "joint"}
KIND_LISTS = {kind: key for key, kind in LIST_KINDS.items()}


@dataclass(frozen=True)
class Params:
    regions: tuple[Region, ...] = value(REGIONS, doc="regions trained, predicted and evaluated")
    data: DataConfig = section(DataConfig)
    synthesize: SynthesizeConfig = section(SynthesizeConfig)
    preprocess: PreprocessConfig = section(PreprocessConfig)
    runtime: RuntimeConfig = section(RuntimeConfig)
    vqvae: VQVAESection = section(VQVAESection)
    cond: CondSection = section(CondSection)
    seeds: tuple[int, ...] = value((0,), ge=0, doc="training seeds of the stage-2 and single-stage models")
    variants: dict[str, VariantSpec] = mapping()
    two_stage_variants: tuple[str, ...] = ()
    single_stage_variants: tuple[str, ...] = ()
    joint_variants: tuple[str, ...] = ()
    infer: InferConfig = section(InferConfig)
    evaluate: EvaluateConfig = section(EvaluateConfig)
    postprocess: PostprocessConfig = section(PostprocessConfig)
    ablate: AblateConfig = section(AblateConfig)
    diagnose: DiagnoseConfig = section(DiagnoseConfig)
    robustness: RobustnessConfig = section(RobustnessConfig)
    attention_study: AttentionStudyConfig = section(AttentionStudyConfig)
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
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must list distinct non-negative integers, got {list(self.seeds)}")
        listed: dict[str, str] = {}
        for key, kind in LIST_KINDS.items():
            for name in getattr(self, key):
                spec = self.variants.get(name)
                if spec is None:
                    raise ConfigError(f"{key} lists {name!r}, which params variants does not define")
                if spec.kind != kind:
                    raise ConfigError(f"{key} lists {name!r}, which is a {spec.kind.replace('_', '-')} variant "
                                      f"(it belongs in {KIND_LISTS[spec.kind]})")
                if name in listed:
                    raise ConfigError(f"variant {name!r} is listed in both {listed[name]} and {key}")
                listed[name] = key
        unlisted = sorted(set(self.variants) - set(listed))
        if unlisted:
            raise ConfigError(f"variants {unlisted} are in no training list (two_stage_variants, "
                              "single_stage_variants or joint_variants): add them, or remove them from variants")
        if self.variants and self.ablate.main_variant not in self.variants:
            raise ConfigError(f"ablate.main_variant {self.ablate.main_variant!r} is not among the variants "
                              f"{sorted(self.variants)}")
        d = self.diagnose  # names checked here when defined; the diagnose stage itself rejects unknown ones
        if d.variant in self.variants and not self.variants[d.variant].two_stage:
            raise ConfigError(f"diagnose.variant {d.variant!r} must name a two-stage variant")
        if d.compare in self.variants and self.variants[d.compare].two_stage:
            raise ConfigError(f"diagnose.compare {d.compare!r} must name a single-stage variant")
        if d.seed not in self.seeds:
            raise ConfigError(f"diagnose.seed {d.seed} is not one of seeds {list(self.seeds)}")
        for key in ("comparison", "ablation"):
            names = getattr(self.ablate, key)
            unknown = [n for n in names if n not in self.variants]
            if unknown:
                raise ConfigError(f"ablate.{key} lists {unknown}, which params variants does not define")
            if names and self.ablate.main_variant not in names:
                raise ConfigError(f"ablate.{key} must include the main variant {self.ablate.main_variant!r}")
        if self.variants:
            self._check_robustness()
        self._check_attention_study()
        for region in REGIONS:
            self.vqvae_for(region)
            for name in self.trained_variants + self.attention_variants:
                self.cond_for(name, region)

    def _check_robustness(self) -> None:
        study = self.robustness  # as for diagnose: names are checked where defined; the stage rejects unknown ones
        if not any(name in self.variants for name in study.variants):
            return
        for name in study.variants:
            if name not in self.trained_variants:
                raise ConfigError(f"robustness.variants lists {name!r}, which is not a trained variant "
                                  f"(two_stage_variants / single_stage_variants / joint_variants: {list(self.trained_variants)})")
        if study.model_seed not in self.seeds:
            raise ConfigError(f"robustness.model_seed {study.model_seed} is not one of seeds {list(self.seeds)}")
        if not self.variant(study.main_variant).two_stage:
            raise ConfigError(f"robustness.main_variant {study.main_variant!r} must be a two-stage variant (the "
                              "study compares the shape-codebook model with the single-stage ones)")

    def _check_attention_study(self) -> None:
        study, where = self.attention_study, "attention_study"
        clash = sorted(set(study.variants) & set(self.variants))
        if clash:
            raise ConfigError(f"{where}.variants {clash} are also defined in params variants; use other names")
        for name, spec in study.variants.items():
            parse(CondConfig, spec.overrides, f"{where}.variants.{name}.overrides", partial=True)
        kinds = {"two_stage_variants": "two_stage", "single_stage_variants": "per_region", "joint_variants": "joint"}
        for key, kind in kinds.items():
            for name in getattr(study, key):
                spec = study.variants.get(name)
                if spec is None:
                    raise ConfigError(f"{where}.{key} lists {name!r}, which {where}.variants does not define")
                if spec.kind != kind:
                    raise ConfigError(f"{where}.{key} lists {name!r}, which is a {spec.kind.replace('_', '-')} "
                                      f"variant (two_stage_variants: two-stage; single_stage_variants: single-stage "
                                      f"per region; joint_variants: single-stage with joint: true)")
        if study.variants and study.model_seed not in self.seeds:
            raise ConfigError(f"{where}.model_seed {study.model_seed} is not one of seeds {list(self.seeds)}")
        listed = set(self.attention_variants)
        unlisted = sorted(set(study.variants) - listed)
        if unlisted:
            raise ConfigError(f"{where}.variants {unlisted} are in none of {where}.single_stage_variants, "
                              f"two_stage_variants, joint_variants (they would never be trained)")
        if len(listed) != len(self.attention_variants):
            raise ConfigError(f"{where}: a variant is listed twice in single_stage_variants / two_stage_variants / "
                              "joint_variants")
        missing = [r for r in study.regions if r not in self.regions]
        if study.variants and missing:
            raise ConfigError(f"{where}.regions {missing} are not in params regions {list(self.regions)} (the "
                              f"reference variants are trained on those)")
        for name in study.variants:
            self.attention_reference(name)

    # -- resolution of the layered settings ---------------------------------------------------------------
    @property
    def trained_variants(self) -> tuple[str, ...]:
        return tuple(self.two_stage_variants) + tuple(self.single_stage_variants) + tuple(self.joint_variants)

    def check_region(self, region: str) -> Region:
        if region not in REGIONS:
            raise ConfigError(f"unknown region {region!r}; regions are {list(REGIONS)}")
        return region  # type: ignore[return-value]

    @property
    def attention_variants(self) -> tuple[str, ...]:
        """The attention study's variants (trained on ``attention_study.regions`` only)."""
        study = self.attention_study
        return tuple(study.two_stage_variants) + tuple(study.single_stage_variants) + tuple(study.joint_variants)

    def variant(self, name: str) -> VariantSpec:
        """A variant of params ``variants`` or of ``attention_study.variants``."""
        if name in self.variants:
            return self.variants[name]
        if name in self.attention_study.variants:
            return self.attention_study.variants[name]
        raise ConfigError(f"unknown variant {name!r}; params.yaml defines {sorted(self.variants)} and the attention "
                          f"study {sorted(self.attention_study.variants)}")

    def attention_reference(self, name: str) -> str:
        """The trained variant of params ``variants`` that the study variant ``name`` is compared with: the one
        equal to it apart from ``attention`` (same model and overrides, hence the same budget)."""
        spec = self.attention_study.variants.get(name)
        if spec is None:
            raise ConfigError(f"{name!r} is not a variant of attention_study.variants")
        found = [v for v in self.trained_variants if spec.same_model_apart_from_attention(self.variants[v])]
        if len(found) != 1:
            what = "no trained variant" if not found else f"several trained variants {found}"
            raise ConfigError(f"attention_study.variants.{name}: {what} of params variants (two_stage_variants, "
                              f"single_stage_variants) equal it apart from `attention`; the study compares each "
                              f"variant with exactly one such reference, trained at the same budget")
        return found[0]

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
