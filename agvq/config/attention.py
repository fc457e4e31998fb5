"""The ``attention_study`` section (seed 004's question: which 3D attention helps the U-Net or the conditional net
on this data?). A variant's own ``attention`` params are ``AttentionSpec`` in agvq.config.variants."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agvq.config.schema import mapping, value
from agvq.config.variants import VariantSpec
from agvq.errors import ConfigError
from agvq.regions import REGIONS


@dataclass(frozen=True)
class AttentionStudyConfig:
    """``attention_study``: variants that add attention to a trained variant of ``variants``, at its budget.

    ``variants`` defines them (a mapping like params ``variants``, kept apart so the paper's ablation table and the
    infer/evaluate stages of the paper's variants do not see them); ``single_stage_variants`` /
    ``two_stage_variants`` / ``joint_variants`` list them for the training matrices. Each is trained once, with
    seed ``model_seed``. Each is compared with its reference: the trained
    variant of params ``variants`` that equals it apart from ``attention`` (same model, switches and overrides,
    hence the same training budget). They are evaluated on ``regions`` only, and per-region ones are trained on them
    only (a joint model trains every params region at once, as its reference does) (a subset of params
    ``regions`` that keeps the region hierarchy: TC needs WT, ET needs TC), to bound the study's time.
    """

    regions: tuple[Literal["WT", "TC", "ET"], ...] = value(("WT",), doc="regions the study trains and evaluates")
    variants: dict[str, VariantSpec] = mapping("the study's variants, defined like params variants")
    single_stage_variants: tuple[str, ...] = ()
    two_stage_variants: tuple[str, ...] = ()
    joint_variants: tuple[str, ...] = value((), doc="single-stage variants with joint: true (one model of all "
                                                    "params regions, like the joint baselines)")
    model_seed: int = value(0, ge=0, doc="the training seed of the study's models; each is compared with its "
                                         "reference's model of this seed (one of params seeds)")
    bootstrap: int = value(2000, ge=1, doc="paired bootstrap resamples")
    seed: int = value(0, ge=0)
    confidence: float = value(0.95, gt=0.0, lt=1.0)

    def check(self, where: str) -> None:
        if not self.regions or len(set(self.regions)) != len(self.regions):
            raise ConfigError(f"{where}.regions must list distinct regions, got {list(self.regions)}")
        for inner, outer in (("TC", "WT"), ("ET", "TC")):
            if inner in self.regions and outer not in self.regions:
                raise ConfigError(f"{where}.regions lists {inner} without {outer}: a predicted {inner} is kept inside "
                                  f"{outer} (ET in TC in WT), so {outer} must be predicted too")
        order = [r for r in REGIONS if r in self.regions]
        if list(self.regions) != order:
            raise ConfigError(f"{where}.regions must follow the order {order}, got {list(self.regions)}")
