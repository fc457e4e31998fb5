"""Choosing the postprocessing steps on the validation split, nnU-Net style.

Starting from no step, each candidate of ``postprocess.steps`` (in order) is tried on top of the steps kept so far;
it is kept only if the validation mean of ``postprocess.metric`` improves by more than ``postprocess.min_gain``.
The validation mean is the mean over regions of the per-region means over cases (as the evaluation summary's
``mean``); lesion-wise scores that are undefined for a case (no lesion in either mask) are left out, as the official
package does. Only the validation cases given are read: the test split never takes part in the choice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from agvq.config import PostprocessConfig
from agvq.metrics.brats import brats_extra
from agvq.metrics.segmentation import case_metrics
from agvq.postprocessing.steps import apply_to_labels
from agvq.regions import get_convention

LOWER_IS_BETTER = ("hd95", "lesion_hd95")
NEEDS_EXTENDED = ("nsd", "lesion_dice", "lesion_hd95")
"""Selection metrics outside Dice / HD95, computed by agvq.metrics.brats."""


@dataclass(frozen=True)
class ValidationCase:
    case: str
    pred: np.ndarray  # predicted label map
    truth: np.ndarray  # ground-truth label map (same grid)
    convention: str
    spacing: tuple[float, ...]


@dataclass
class Trial:
    step: str
    steps: list[str]  # the steps scored: those kept before, plus this one
    score: float
    regions: dict[str, float]
    gain: float  # improvement over the best score so far (> 0 is better, whatever the metric's direction)
    kept: bool


@dataclass
class Choice:
    metric: str
    n_cases: int
    baseline: float  # validation mean without postprocessing
    baseline_regions: dict[str, float]
    score: float  # validation mean with the chosen steps
    steps: list[str] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def validation_score(cases: Sequence[ValidationCase], steps: Sequence[str], cfg: PostprocessConfig,
                     regions: Sequence[str], empty_penalty: float, nsd_tolerance: float) -> tuple[float, dict]:
    """(mean over regions of the per-region case means of ``cfg.metric``, {region: mean}) with ``steps`` applied."""
    extra = brats_extra(nsd_tolerance, empty_penalty) if cfg.metric in NEEDS_EXTENDED else None
    values: dict[str, list[float]] = {r: [] for r in regions}
    for case in cases:
        conv = get_convention(case.convention)
        labels = apply_to_labels(case.pred, conv, steps, cfg)
        for row in case_metrics(labels, case.truth, conv, case.spacing, regions, empty_penalty, extra):
            values[row["region"]].append(float(row[cfg.metric]))
    per_region = {}
    for region, vals in values.items():
        arr = np.asarray(vals, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size:
            per_region[region] = float(arr.mean())
    if not per_region:
        raise ValueError(f"no validation case has a finite {cfg.metric} in any region")
    return float(np.mean(list(per_region.values()))), per_region


def choose_steps(cases: Sequence[ValidationCase], cfg: PostprocessConfig, regions: Sequence[str],
                 empty_penalty: float, nsd_tolerance: float) -> Choice:
    """Greedy forward selection of ``cfg.steps`` on the validation ``cases`` (see the module docstring)."""
    if not cases:
        raise ValueError("postprocessing is chosen on validation cases, and there are none")
    sign = -1.0 if cfg.metric in LOWER_IS_BETTER else 1.0
    best, best_regions = validation_score(cases, [], cfg, regions, empty_penalty, nsd_tolerance)
    choice = Choice(cfg.metric, len(cases), best, best_regions, best)
    for step in cfg.steps:
        steps = choice.steps + [step]
        score, per_region = validation_score(cases, steps, cfg, regions, empty_penalty, nsd_tolerance)
        gain = sign * (score - best) + 0.0  # + 0.0: no -0.0 in the report
        kept = gain > cfg.min_gain
        choice.trials.append(Trial(step, steps, score, per_region, gain, kept))
        if kept:
            choice.steps, best = steps, score
    choice.score = best
    return choice
