"""The ``<variant>+pp`` rows of the ablation (each variant after its chosen postprocessing, beside the raw one) and
the paired effect of postprocessing on the test split.

The evaluate stage writes ``<variant>+pp.json`` / ``<variant>+pp_cases.csv`` for the postprocessed test predictions
next to ``<variant>.json``; :func:`with_postprocessed` adds those rows to the variants the ablation reads, and
:func:`postprocessing_effect` gives, per variant, the paired bootstrap of ``+pp`` minus the raw predictions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from agvq.config.variants import VariantSpec
from agvq.errors import ConfigError
from agvq.metrics.ablation import DECIMALS, LABELS, paired_bootstrap
from agvq.metrics.tables import METRICS

SUFFIX = "+pp"


@dataclass(frozen=True)
class PostprocessedVariant(VariantSpec):
    """A variant's row after postprocessing: the same model, labelled ``<display name> +pp``."""

    @property
    def display_name(self) -> str:
        return super().display_name + " " + SUFFIX


def postprocessed_name(variant: str) -> str:
    return variant + SUFFIX


def with_postprocessed(variants: Mapping[str, VariantSpec]) -> dict[str, VariantSpec]:
    """The variants with a ``<name>+pp`` entry right after each (so the tables show the two rows together)."""
    out: dict[str, VariantSpec] = {}
    for name, spec in variants.items():
        out[name] = spec
        fields = {k: getattr(spec, k) for k in spec.__dataclass_fields__}
        out[postprocessed_name(name)] = PostprocessedVariant(**fields)
    return out


def _cases(eval_dir: Path, name: str) -> pd.DataFrame:
    path = eval_dir / f"{name}_cases.csv"
    if not path.is_file():
        raise ConfigError(f"per-case table {path} not found (run the evaluate stages first)")
    try:
        return pd.read_csv(path, dtype={"case": str, "region": str})
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None


def postprocessing_effect(eval_dir: str | os.PathLike, variants: Sequence[str], regions: Sequence[str], n_boot: int,
                          seed: int, confidence: float) -> pd.DataFrame:
    """Per variant, metric and region: paired bootstrap of ``<variant>+pp`` minus ``<variant>`` over the test
    cases (Dice: > 0 means postprocessing helped; HD95: < 0 means it helped)."""
    eval_dir = Path(eval_dir)
    rows = []
    for variant in variants:
        raw, post = _cases(eval_dir, variant), _cases(eval_dir, postprocessed_name(variant))
        for metric in METRICS:
            for region in regions:
                try:
                    res = paired_bootstrap(post, raw, metric, region, n_boot, seed, confidence,
                                           names=(f"{variant}{SUFFIX}_cases.csv", f"{variant}_cases.csv"))
                except ValueError as exc:
                    raise ConfigError(f"postprocessing effect of {variant}: {exc}") from None
                rows.append({"variant": variant, "metric": metric, "region": region, **res})
    return pd.DataFrame(rows)


def effect_summary(effect: pd.DataFrame) -> dict:
    """{variant: {metric: {region: {mean_diff, ci_low, ci_high, p_value, n_cases}}}} for the ablation JSON."""
    out: dict = {}
    for row in effect.to_dict("records"):
        cell = {k: row[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value", "n_cases")}
        out.setdefault(row["variant"], {}).setdefault(row["metric"], {})[row["region"]] = cell
    return out


def effect_markdown(effect: pd.DataFrame, regions: Sequence[str], confidence: float, n_boot: int, seed: int,
                    choices: Mapping[str, Sequence[str]] | None = None) -> str:
    """A markdown section: per variant and metric, ``+pp`` minus raw, mean [CI] per region (then the chosen steps)."""
    pct = f"{100 * confidence:g}%"
    lines = ["## Effect of postprocessing (chosen on the validation split)", "",
             f"Per-case differences `<variant>+pp` minus `<variant>` on the test split (paired by case id), mean and "
             f"{pct} percentile bootstrap CI ({int(n_boot)} resamples, seed {int(seed)}). Dice: > 0 means "
             "postprocessing helped; HD95: < 0 means it helped. † the CI excludes 0.", ""]
    header = ["Variant", "Steps", "Metric"] + [f"{r} Δ [{pct} CI]" for r in regions]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join([":---", ":---", ":---"] + ["---:"] * len(regions)) + "|"]
    for (variant, metric), rows in effect.groupby(["variant", "metric"], sort=False):
        steps = ", ".join(choices.get(variant, [])) if choices else ""
        cells = [f"`{variant}`", steps or "none", LABELS[metric]]
        for region in regions:
            r = rows[rows["region"] == region].iloc[0]
            d = DECIMALS[metric]
            mark = " †" if r["ci_low"] > 0 or r["ci_high"] < 0 else ""
            cells.append(f"{r['mean_diff']:+.{d}f} [{r['ci_low']:+.{d}f}, {r['ci_high']:+.{d}f}]{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
