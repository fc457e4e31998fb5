"""The ``postprocess`` section: candidate postprocessing steps, chosen per variant on the validation split."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agvq.config.schema import value
from agvq.errors import ConfigError

Step = Literal["largest_wt", "largest_tc", "small_et"]
SelectionMetric = Literal["dice", "hd95", "nsd", "lesion_dice", "lesion_hd95"]


@dataclass(frozen=True)
class PostprocessConfig:
    """nnU-Net style: each candidate of ``steps`` (in order) is kept only if, added to the steps kept so far, it
    improves the validation mean of ``metric`` (over cases and regions) by more than ``min_gain``.

    Steps: ``largest_wt`` keeps the largest 26-connected whole-tumour component (and every other of at least
    ``wt_min_voxels``) and restricts TC / ET to it; ``largest_tc`` does the same for the tumour core inside WT (a
    removed core becomes oedema, ET is restricted to the kept core); ``small_et`` relabels a predicted enhancing
    tumour of fewer than ``et_min_voxels`` voxels in all as necrosis (the BraTS convention for ET-free cases).
    """

    steps: tuple[Step, ...] = ("largest_wt", "largest_tc", "small_et")
    metric: SelectionMetric = "dice"
    min_gain: float = value(0.0, ge=0.0, doc="smallest improvement of the validation mean that keeps a step")
    wt_min_voxels: int | None = value(None, ge=1, doc="also keep WT components of at least this size (null: none)")
    tc_min_voxels: int | None = value(None, ge=1, doc="also keep TC components of at least this size (null: none)")
    et_min_voxels: int = value(50, ge=1, doc="a predicted ET smaller than this (voxels) becomes necrosis")

    def check(self, where: str) -> None:
        if len(set(self.steps)) != len(self.steps):
            raise ConfigError(f"{where}.steps must list distinct steps, got {list(self.steps)}")
