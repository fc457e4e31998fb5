"""Published results (the paper's tables on real BraTS 2021) read from a small YAML data file in the repository
(references/agvqvae_miccai2025_brats2021.yaml), to be shown beside this pipeline's own numbers, never mixed in."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from agvq.errors import ConfigError

REGIONS_PUBLISHED = ("WT", "TC", "ET")


@dataclass(frozen=True)
class PublishedRow:
    """One published row: HD95 (mm) and Dice (fraction) per region, and the published averages when given."""

    name: str
    hd95: dict[str, float]
    dice: dict[str, float]
    hd95_avg: float | None = None
    dice_avg: float | None = None
    stages: int | None = None
    AS: bool | None = None
    SM: bool | None = None


@dataclass(frozen=True)
class Published:
    source: str
    dataset: str
    comparison: dict[str, PublishedRow]
    ablation: dict[str, PublishedRow]


def _row(name: str, entry: dict, path: Path, with_avg: bool) -> PublishedRow:
    try:
        hd, dice = [float(v) for v in entry["hd95"]], [float(v) for v in entry["dice"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"published results {path}: row {name!r} needs hd95 and dice lists ({exc})") from None
    n = len(REGIONS_PUBLISHED) + (1 if with_avg else 0)
    if len(hd) != n or len(dice) != n:
        raise ConfigError(f"published results {path}: row {name!r} needs {n} values per metric "
                          f"({'WT, TC, ET, AVG' if with_avg else 'WT, TC, ET'})")
    return PublishedRow(name, dict(zip(REGIONS_PUBLISHED, hd)), {r: v / 100.0 for r, v in zip(REGIONS_PUBLISHED, dice)},
                        hd[3] if with_avg else None, dice[3] / 100.0 if with_avg else None,
                        entry.get("stages"), entry.get("AS"), entry.get("SM"))


def load_published(path: str | Path) -> Published:
    """The published tables of ``path``; Dice converted from percent to fractions (as this pipeline reports)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"published results file {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"published results file {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("dice_unit") != "percent":
        raise ConfigError(f"published results file {path} must be a mapping with dice_unit: percent")
    comparison = {name: _row(name, entry, path, True) for name, entry in (data.get("comparison") or {}).items()}
    ablation = {name: _row(name, entry, path, False) for name, entry in (data.get("ablation") or {}).items()}
    return Published(str(data.get("source", "")), str(data.get("dataset", "")), comparison, ablation)
