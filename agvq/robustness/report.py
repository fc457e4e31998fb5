"""The robustness report: per variant, condition and region the mean Dice / HD95 and its change against the clean
input, with bootstrap CIs; paired bootstrap CIs of the difference in that change between the main (two-stage)
variant and each other one; JSON, markdown and a plot of metric against severity.

Changes are ``perturbed - clean`` per case (Dice: < 0 is a loss; HD95: > 0 is a loss). The comparison is
``change(main) - change(other)`` paired by case: for Dice > 0, for HD95 < 0 means the main variant lost less.
``artefacts@s`` pools the artefact kinds (not the missing sequences) at severity s: each case's change averaged over
the kinds, then bootstrapped over cases like any other condition.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from agvq.config import RobustnessConfig, VariantSpec
from agvq.errors import ConfigError
from agvq.metrics.ablation import DECIMALS, LABELS, bootstrap_ci, paired_bootstrap
from agvq.metrics.tables import METRICS
from agvq.robustness.conditions import ARTEFACTS, CLEAN, COLUMNS, MISSING

POOLED = "artefacts"
KEYS = ["case", "region"]


def load_tables(cases_dir: str | os.PathLike, variants: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``<cases_dir>/<variant>_cases.csv`` of each variant; ConfigError names a missing or malformed file and
    tables that do not hold the same cases and conditions."""
    tables = {}
    for variant in variants:
        path = Path(cases_dir) / f"{variant}_cases.csv"
        if not path.is_file():
            raise ConfigError(f"robustness table {path} of variant {variant} not found (run robustness_predict)")
        try:
            table = pd.read_csv(path, dtype={"case": str, "region": str, "perturbation": str, "kind": str,
                                             "level": str})
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise ConfigError(f"robustness table {path} lacks columns {missing}")
        table["level"] = table["level"].fillna("")
        tables[variant] = table
    keys = {v: set(zip(t["case"], t["perturbation"], t["severity"], t["region"])) for v, t in tables.items()}
    first = variants[0]
    for variant in variants[1:]:
        if keys[variant] != keys[first]:
            diff = sorted(keys[variant] ^ keys[first])[:3]
            raise ConfigError(f"robustness tables of {first} and {variant} hold different cases or conditions "
                              f"(e.g. {diff})")
    return tables


def condition_label(perturbation: str, severity: int) -> str:
    return CLEAN if perturbation == CLEAN else f"{perturbation}@{int(severity)}"


def changes(table: pd.DataFrame) -> pd.DataFrame:
    """One row per case, region and perturbed condition (plus the pooled ``artefacts@s``): ``condition``, the
    metric values and ``<metric>_change`` = value - clean value of the same case and region."""
    clean = table[table["perturbation"] == CLEAN].set_index(KEYS)[list(METRICS)]
    if clean.empty:
        raise ValueError("the table has no clean rows")
    if clean.index.duplicated().any():
        raise ValueError("the table lists a case and region twice under the clean input")
    out = table[table["perturbation"] != CLEAN].copy()
    out["condition"] = [condition_label(p, s) for p, s in zip(out["perturbation"], out["severity"])]
    base = clean.reindex(pd.MultiIndex.from_frame(out[KEYS]))
    for metric in METRICS:
        out[f"{metric}_change"] = out[metric].to_numpy(dtype=np.float64) - base[metric].to_numpy(dtype=np.float64)
    art = out[out["kind"].isin(ARTEFACTS)]
    if not art.empty:
        cols = list(METRICS) + [f"{m}_change" for m in METRICS]
        pooled = art.groupby(KEYS + ["severity"], sort=False)[cols].mean().reset_index()
        pooled["perturbation"], pooled["kind"], pooled["level"] = POOLED, POOLED, ""
        pooled["condition"] = [condition_label(POOLED, s) for s in pooled["severity"]]
        out = pd.concat([out, pooled], ignore_index=True)
    return out


def conditions(table: pd.DataFrame) -> list[tuple[str, str, int, str]]:
    """(condition, perturbation, severity, level) in table order: clean, the pooled artefacts, then the table's."""
    seen = {CLEAN: (CLEAN, CLEAN, 0, "")}
    pooled = sorted({int(s) for s, k in zip(table["severity"], table["kind"]) if k in ARTEFACTS})
    for s in pooled:
        seen[condition_label(POOLED, s)] = (condition_label(POOLED, s), POOLED, s, "")
    for p, s, lv in zip(table["perturbation"], table["severity"], table["level"]):
        label = condition_label(p, s)
        if label not in seen:
            seen[label] = (label, p, int(s), "" if lv is None else str(lv))
    return list(seen.values())


def _cell(values: np.ndarray, study: RobustnessConfig) -> dict:
    res = bootstrap_ci(values, study.bootstrap, study.seed, study.confidence)
    return {"mean": res["mean"], "ci_low": res["ci_low"], "ci_high": res["ci_high"], "n": res["n"]}


def summarise(tables: Mapping[str, pd.DataFrame], regions: Sequence[str], study: RobustnessConfig) -> dict:
    """{variant: {condition: {region: {metric: {mean, change, change_ci_low, change_ci_high, n}}}}} (the clean
    condition has no change)."""
    out: dict = {}
    for variant, table in tables.items():
        delta = changes(table)
        entry: dict = {}
        for condition, perturbation, severity, _ in conditions(table):
            rows = table[table["perturbation"] == CLEAN] if perturbation == CLEAN else \
                delta[delta["condition"] == condition]
            cell: dict = {}
            for region in regions:
                sub = rows[rows["region"] == region]
                cell[region] = {}
                for metric in METRICS:
                    value = _cell(sub[metric].to_numpy(dtype=np.float64), study)
                    metric_cell = {"mean": value["mean"], "n": value["n"]}
                    if perturbation != CLEAN:
                        change = _cell(sub[f"{metric}_change"].to_numpy(dtype=np.float64), study)
                        metric_cell.update(change=change["mean"], change_ci_low=change["ci_low"],
                                           change_ci_high=change["ci_high"])
                    cell[region][metric] = metric_cell
            entry[condition] = cell
        out[variant] = entry
    return out


def compare(tables: Mapping[str, pd.DataFrame], main: str, regions: Sequence[str],
            study: RobustnessConfig) -> pd.DataFrame:
    """Paired bootstrap of change(main) - change(other) for each other variant, condition, metric and region."""
    deltas = {v: changes(t) for v, t in tables.items()}
    rows = []
    for other in (v for v in tables if v != main):
        for condition, *_ in conditions(tables[main])[1:]:
            a = deltas[main][deltas[main]["condition"] == condition]
            b = deltas[other][deltas[other]["condition"] == condition]
            for metric in METRICS:
                for region in regions:
                    res = paired_bootstrap(a, b, f"{metric}_change", region, study.bootstrap, study.seed,
                                           study.confidence, names=(main, other))
                    rows.append({"other": other, "condition": condition, "metric": metric, "region": region, **res})
    return pd.DataFrame(rows)


def _fmt(value: float, metric: str, signed: bool = False) -> str:
    return f"{value:{'+' if signed else ''}.{DECIMALS[metric]}f}"


def values_markdown(summary: dict, table: pd.DataFrame, variants: Mapping[str, VariantSpec], metric: str,
                    regions: Sequence[str]) -> str:
    """Mean ``metric`` per region and variant, with the change against clean in parentheses."""
    header = ["Condition", "Level"] + [f"{variants[v].display_name} {r}" for v in summary for r in regions]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", "---:"] + ["---:"] * (len(header) - 2)) + "|"]
    for condition, _, _, level in conditions(table):
        cells = [f"`{condition}`", level]
        for variant in summary:
            for region in regions:
                c = summary[variant][condition][region][metric]
                text = _fmt(c["mean"], metric)
                cells.append(text if "change" not in c else f"{text} ({_fmt(c['change'], metric, True)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_markdown(comparisons: pd.DataFrame, variants: Mapping[str, VariantSpec], main: str,
                        regions: Sequence[str]) -> str:
    """change(main) - change(other), mean [CI] per metric and region; † marks an interval that excludes 0."""
    header = ["Condition", "Compared with"] + [f"{LABELS[m]} {r}" for m in METRICS for r in regions]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", ":---"] + ["---:"] * (len(header) - 2)) + "|"]
    for (condition, other), rows in comparisons.groupby(["condition", "other"], sort=False):
        cells = [f"`{condition}`", f"{variants[other].display_name} (`{other}`)"]
        for metric in METRICS:
            for region in regions:
                r = rows[(rows["metric"] == metric) & (rows["region"] == region)].iloc[0]
                mark = " †" if r["ci_low"] > 0 or r["ci_high"] < 0 else ""
                cells.append(f"{_fmt(r['mean_diff'], metric, True)} [{_fmt(r['ci_low'], metric, True)}, "
                             f"{_fmt(r['ci_high'], metric, True)}]{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass
class RobustnessReport:
    summary: dict
    comparisons: pd.DataFrame
    markdown: str
    tables: dict


def _nest(comparisons: pd.DataFrame, main: str) -> dict:
    out: dict = {}
    for row in comparisons.to_dict("records"):
        cell = {k: row[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value", "n_cases")}
        out.setdefault(f"{main}_vs_{row['other']}", {}).setdefault(row["condition"], {}) \
            .setdefault(row["metric"], {})[row["region"]] = cell
    return out


def _settings_text(study: RobustnessConfig, table: pd.DataFrame) -> str:
    kinds = [k for k in study.perturbations if k != MISSING]
    parts = [f"{k} {list(getattr(study.levels, k))}" for k in kinds]
    if MISSING in study.perturbations:
        parts.append(f"missing sequence filled with `{study.missing_fill}`")
    return ", ".join(parts)


def robustness_report(cases_dir: str | os.PathLike, variants: Mapping[str, VariantSpec], regions: Sequence[str],
                      study: RobustnessConfig) -> RobustnessReport:
    """Read the per-case tables of ``study.variants`` and build the summary JSON, comparisons and markdown."""
    names = list(study.variants)
    unknown = [v for v in names if v not in variants]
    if unknown:
        raise ConfigError(f"robustness variants {unknown} are not defined in params variants")
    tables = load_tables(cases_dir, names)
    try:
        summary = summarise(tables, regions, study)
        comparisons = compare(tables, study.main_variant, regions, study)
    except ValueError as exc:
        raise ConfigError(f"robustness tables in {cases_dir}: {exc}") from None
    main = study.main_variant
    table = tables[main]
    n_cases = int(table["case"].nunique())
    pct = f"{100 * study.confidence:g}%"
    result = {
        "n_cases": n_cases,
        "main_variant": main,
        "bootstrap": {"resamples": int(study.bootstrap), "seed": int(study.seed), "confidence": float(study.confidence)},
        "variants": summary,
        "comparisons": _nest(comparisons, main),
    }
    boot = f"{pct} percentile bootstrap CI over cases ({int(study.bootstrap)} resamples, seed {int(study.seed)})"
    sections = [
        "# Robustness", "",
        f"Test split, {n_cases} cases, each predicted clean and under every perturbation (severity 1..3: "
        f"{_settings_text(study, table)}; see README). `{POOLED}@s` averages each case's change over the artefact "
        "kinds at severity s. Conventions of the evaluate stage (both empty: Dice 1, HD95 0; one empty: Dice 0, "
        "HD95 = the penalty).", "",
    ]
    for metric in METRICS:
        better = "higher" if metric == "dice" else "lower"
        sections += [f"## {LABELS[metric]} per region ({better} is better; change against clean in parentheses)", "",
                     values_markdown(summary, table, variants, metric, regions)]
    sections += [
        f"## Difference in change: `{main}` minus each other variant", "",
        f"Per case, change = perturbed - clean; the table gives mean of change(`{main}`) - change(other), paired by "
        f"case, with its {boot}. Dice > 0 and HD95 < 0: `{main}` loses less than the other variant. † the CI "
        "excludes 0; otherwise there is no measurable difference.", "",
        comparison_markdown(comparisons, variants, main, regions),
    ]
    return RobustnessReport(result, comparisons, "\n".join(sections), tables)
