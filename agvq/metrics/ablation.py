"""The paper's two tables from this pipeline's evaluations: the method comparison and the AS x SM ablation, each
in the paper's layout (per-region HD95 and Dice plus their averages), with the published BraTS 2021 numbers in
separate columns beside ours, the seed-to-seed spread of every cell, and paired bootstrap comparisons of the main
variant with every other variant (over cases and seeds: agvq.metrics.bootstrap).

Reads what the evaluate stage writes (``<eval_dir>/<variant>.json`` summaries and ``<variant>_cases.csv`` per-case
tables, see agvq.metrics.tables). Differences are ``main - other``: for Dice a positive difference favours the main
variant, for HD95 a negative one.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from agvq.config.variants import VariantSpec
from agvq.errors import ConfigError
from agvq.metrics.bootstrap import bootstrap_ci, paired_bootstrap, variant_ci  # noqa: F401  (re-exported)
from agvq.metrics.published import Published, PublishedRow
from agvq.metrics.tables import METRICS

LABELS = {"hd95": "HD95", "dice": "Dice"}
HIGHER_IS_BETTER = {"dice": True, "hd95": False}
DECIMALS = {"dice": 3, "hd95": 2}
YES, NO, NA = "✓", "✗", "–"
TABLES = ("comparison", "ablation")


def table_rows(names: Sequence[str], variants: Mapping[str, VariantSpec], cases: Mapping[str, pd.DataFrame],
               regions: Sequence[str], published: Published | None, table: str) -> pd.DataFrame:
    """One row per variant of ``names`` (in that order): variant, model, label, stages, AS, SM, joint, n_cases,
    seeds, ``<metric>_<region>`` (mean over cases and seeds), ``<metric>_avg`` (mean of the region means),
    ``<metric>_<region>_sd`` / ``<metric>_avg_sd`` (standard deviation over seeds of the per-seed means) and
    ``paper_<metric>_<region>`` / ``paper_<metric>_avg`` (the published row, NaN where there is none)."""
    rows = []
    for name in names:
        spec, table_cases = variants[name], cases[name]
        seeds = sorted(int(s) for s in table_cases["seed"].unique()) if "seed" in table_cases else [0]
        row = {"variant": name, "model": spec.family, "label": spec.display_name, "stages": spec.stages,
               "AS": spec.switch("attention_scaling"), "SM": spec.switch("soft_masking"), "joint": spec.joint,
               "n_cases": int(table_cases["case"].nunique()), "seeds": len(seeds)}
        for metric in METRICS:
            per_seed = []
            for region in regions:
                values = table_cases[table_cases["region"] == region]
                if values.empty:
                    raise ValueError(f"evaluation of variant {name} has no rows for region {region}")
                by_seed = (values.groupby("seed")[metric] if "seed" in values else values.groupby(lambda _: 0)[metric])
                means = by_seed.apply(lambda v: pd.to_numeric(v, errors="coerce").mean())
                per_seed.append(means.to_numpy(dtype=np.float64))
                row[f"{metric}_{region}"] = float(pd.to_numeric(values[metric], errors="coerce").mean())
                row[f"{metric}_{region}_sd"] = float(np.std(means, ddof=1)) if len(means) > 1 else 0.0
            avg = np.mean(np.stack(per_seed), axis=0)  # the average over regions, per seed
            row[f"{metric}_avg"] = float(np.mean([row[f"{metric}_{r}"] for r in regions]))
            row[f"{metric}_avg_sd"] = float(np.std(avg, ddof=1)) if len(avg) > 1 else 0.0
        paper = published_row(spec, published, table)
        for metric in METRICS:
            for region in list(regions) + ["avg"]:
                row[f"paper_{metric}_{region}"] = _paper_value(paper, metric, region, regions)
        row["paper_name"] = paper.name if paper is not None else ""
        rows.append(row)
    return pd.DataFrame(rows)


def published_row(spec: VariantSpec, published: Published | None, table: str) -> PublishedRow | None:
    """The published row shown beside a variant: in the comparison table the method ``spec.published`` names (or,
    when unset, its family's name); in the ablation table the row with the variant's display name."""
    if published is None:
        return None
    if table == "comparison":
        return published.comparison.get(spec.published or spec.family)
    return published.ablation.get(spec.display_name)


def _paper_value(paper: PublishedRow | None, metric: str, region: str, regions: Sequence[str]) -> float:
    if paper is None:
        return float("nan")
    values = getattr(paper, metric)
    if region != "avg":
        return float(values.get(region, float("nan")))
    given = getattr(paper, f"{metric}_avg")
    if given is not None and list(regions) == list(values):
        return float(given)
    return float(np.mean([values[r] for r in regions])) if all(r in values for r in regions) else float("nan")


def compare_to_main(cases: Mapping[str, pd.DataFrame], order: Sequence[str], main: str, regions: Sequence[str],
                    n_boot: int, seed: int, confidence: float) -> pd.DataFrame:
    """Paired bootstrap of ``main`` against each other variant in ``order``: one row per variant, metric, region."""
    rows = []
    for other in (v for v in order if v != main):
        for metric in METRICS:
            for region in regions:
                try:
                    res = paired_bootstrap(cases[main], cases[other], metric, region, n_boot, seed, confidence,
                                           names=(f"{main}_cases.csv", f"{other}_cases.csv"))
                except ValueError as exc:
                    raise ValueError(f"{main} vs {other}: {exc}") from None
                rows.append({"variant": other, "metric": metric, "region": region, **res})
    return pd.DataFrame(rows)


def variant_intervals(cases: Mapping[str, pd.DataFrame], order: Sequence[str], regions: Sequence[str], n_boot: int,
                      seed: int, confidence: float) -> pd.DataFrame:
    """Mean and bootstrap CI (cases and seeds) of each variant, metric and region (the bar plot's error bars)."""
    rows = []
    for variant in order:
        for metric in METRICS:
            for region in regions:
                try:
                    res = variant_ci(cases[variant], metric, region, n_boot, seed, confidence)
                except ValueError as exc:
                    raise ValueError(f"variant {variant}, region {region}, {metric}: {exc}") from None
                rows.append({"variant": variant, "metric": metric, "region": region, **res})
    return pd.DataFrame(rows)


def _fmt(value: float, metric: str) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{DECIMALS[metric]}f}"


def _mark(value) -> str:
    return NA if value is None or (isinstance(value, float) and np.isnan(value)) else (YES if value else NO)


def markdown_table(table: pd.DataFrame, regions: Sequence[str], with_switches: bool,
                   extra_published: Sequence[PublishedRow] = ()) -> str:
    """The paper-style table: our HD95 and Dice per region and their average (mean ± seed spread when there are
    several seeds; the best of each of our columns in bold, compared as printed), then the published BraTS 2021
    values in their own columns, then the variant. ``extra_published`` rows (methods not retrained here) show the
    published values only."""
    cols = [(m, r) for m in ("hd95", "dice") for r in list(regions) + ["avg"]]
    name = lambda r: "AVG" if r == "avg" else r  # noqa: E731
    header = ["Model"] + (["Stages", "AS", "SM"] if with_switches else []) \
        + [f"{LABELS[m]} {name(r)}" for m, r in cols] + [f"paper {LABELS[m]} {name(r)}" for m, r in cols] \
        + ["Variant"]
    align = [":---"] + ([":---:"] * 3 if with_switches else []) + ["---:"] * (2 * len(cols)) + [":---"]
    best = {}
    for metric, region in cols:
        shown = table[f"{metric}_{region}"].round(DECIMALS[metric])
        best[(metric, region)] = shown.max() if HIGHER_IS_BETTER[metric] else shown.min()
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in table.to_dict("records"):
        model = row["label"] + (" (joint)" if row["joint"] else "")
        cells = [model] + ([str(row["stages"]), _mark(row["AS"]), _mark(row["SM"])] if with_switches else [])
        for metric, region in cols:
            value, sd = row[f"{metric}_{region}"], row[f"{metric}_{region}_sd"]
            text = _fmt(value, metric) + (f" ± {sd:.{DECIMALS[metric]}f}" if row["seeds"] > 1 else "")
            bold = round(value, DECIMALS[metric]) == best[(metric, region)]
            cells.append(f"**{text}**" if bold else text)
        cells += [_fmt(row[f"paper_{metric}_{region}"], metric) for metric, region in cols]
        cells.append(f"`{row['variant']}`")
        lines.append("| " + " | ".join(cells) + " |")
    for paper in extra_published:
        cells = [f"{paper.name} (not retrained)"] + ([str(paper.stages or "–"), _mark(paper.AS), _mark(paper.SM)]
                                                     if with_switches else [])
        cells += ["–"] * len(cols)
        for metric, region in cols:
            cells.append(_fmt(_paper_value(paper, metric, region, regions), metric))
        cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_markdown(comparisons: pd.DataFrame, labels: Mapping[str, str], main: str, regions: Sequence[str],
                        confidence: float) -> str:
    """Main minus each other variant: mean difference [CI] per region, one row per variant and metric; "†" marks an
    interval that excludes 0."""
    pct = f"{100 * confidence:g}%"
    header = ["Comparison", "Metric"] + [f"{r} Δ [{pct} CI]" for r in regions]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", ":---"] + ["---:"] * len(regions)) + "|"]
    for (variant, metric), rows in comparisons.groupby(["variant", "metric"], sort=False):
        cells = [f"{labels[main]} − {labels[variant]} (`{variant}`)", LABELS[metric]]
        for region in regions:
            r = rows[rows["region"] == region].iloc[0]
            d = DECIMALS[metric]
            mark = " †" if r["ci_low"] > 0 or r["ci_high"] < 0 else ""
            cells.append(f"{r['mean_diff']:+.{d}f} [{r['ci_low']:+.{d}f}, {r['ci_high']:+.{d}f}]{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def count_excluding_zero(comparisons: pd.DataFrame) -> tuple[int, int]:
    """(cells whose interval excludes 0, all cells) of a comparison table."""
    excl = ((comparisons["ci_low"] > 0) | (comparisons["ci_high"] < 0)).sum()
    return int(excl), int(len(comparisons))


@dataclass
class AblationReport:
    tables: dict[str, pd.DataFrame]
    comparisons: pd.DataFrame
    intervals: pd.DataFrame
    summary: dict
    markdown: str


def load_evaluation(eval_dir: Path, variant: str) -> tuple[dict, pd.DataFrame]:
    json_path, csv_path = eval_dir / f"{variant}.json", eval_dir / f"{variant}_cases.csv"
    for path in (json_path, csv_path):
        if not path.is_file():
            raise ConfigError(f"evaluation file {path} of variant {variant} not found (run the evaluate stage first)")
    try:
        summary = json.loads(json_path.read_text())
        cases = pd.read_csv(csv_path, dtype={"case": str, "region": str})
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read evaluation of variant {variant} ({type(exc).__name__}: {exc})") from None
    missing = [c for c in ("case", "region", *METRICS) if c not in cases.columns]
    if missing:
        raise ConfigError(f"per-case table {csv_path} lacks columns {missing}")
    return summary, cases


def _nest_comparisons(comparisons: pd.DataFrame, main: str) -> dict:
    """{"<main>_vs_<other>": {metric: {region: {mean_diff, ci_low, ci_high, p_value, n_cases}}}}."""
    out: dict = {}
    for row in comparisons.to_dict("records"):
        cell = {k: row[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value", "n_cases")}
        out.setdefault(f"{main}_vs_{row['variant']}", {}).setdefault(row["metric"], {})[row["region"]] = cell
    return out


def _json_rows(table: pd.DataFrame, regions: Sequence[str]) -> dict:
    out = {}
    for row in table.to_dict("records"):
        entry = {"n_cases": row["n_cases"], "seeds": row["seeds"]}
        for metric in METRICS:
            keys = list(regions) + ["avg"]
            entry[metric] = {("mean" if k == "avg" else k): row[f"{metric}_{k}"] for k in keys}
            entry[f"{metric}_seed_sd"] = {("mean" if k == "avg" else k): row[f"{metric}_{k}_sd"] for k in keys}
        out[row["variant"]] = entry
    return out


def ablation_report(eval_dir: str | os.PathLike, variants: Mapping[str, VariantSpec], lists: Mapping[str, list],
                    regions: Sequence[str], main: str, n_boot: int, seed: int, confidence: float,
                    published: Published | None) -> AblationReport:
    """Read the evaluations of every variant in ``lists`` ({"comparison": [...], "ablation": [...]}) from
    ``eval_dir``; build both tables, the paired comparisons with ``main``, the intervals, JSON and markdown.

    Raises ConfigError naming the file for a missing or unreadable evaluation, and for mismatched case sets."""
    names = list(dict.fromkeys(n for key in TABLES for n in lists.get(key, ())))
    if main not in names:
        raise ConfigError(f"main variant {main!r} is in neither table {dict(lists)}")
    eval_dir = Path(eval_dir)
    loaded = {v: load_evaluation(eval_dir, v) for v in names}
    cases = {v: c for v, (_, c) in loaded.items()}
    try:
        tables = {key: table_rows(list(lists.get(key, ())), variants, cases, regions, published, key)
                  for key in TABLES if lists.get(key)}
        comparisons = compare_to_main(cases, names, main, regions, n_boot, seed, confidence)
        intervals = variant_intervals(cases, names, regions, n_boot, seed, confidence)
    except ValueError as exc:
        raise ConfigError(f"evaluations in {eval_dir}: {exc}") from None
    seeds = sorted({int(r) for t in tables.values() for r in t["seeds"]})
    summary = {
        "main_variant": main,
        "bootstrap": {"resamples": int(n_boot), "seed": int(seed), "confidence": float(confidence),
                      "resampled": "cases (paired) and, within each variant, training seeds"},
        "variants": {k: v for t in tables.values() for k, v in _json_rows(t, regions).items()},
        "tables": {key: list(t["variant"]) for key, t in tables.items()},
        "comparisons": _nest_comparisons(comparisons, main),
        "published": {"source": published.source, "dataset": published.dataset} if published else None,
    }
    markdown = report_markdown(tables, comparisons, main, regions, n_boot, seed, confidence, published, seeds,
                               {v: variants[v].display_name for v in names})
    return AblationReport(tables, comparisons, intervals, summary, markdown)


def report_markdown(tables: Mapping[str, pd.DataFrame], comparisons: pd.DataFrame, main: str,
                    regions: Sequence[str], n_boot: int, seed: int, confidence: float, published: Published | None,
                    seeds: Sequence[int], labels: Mapping[str, str]) -> str:
    n = sorted({int(x) for t in tables.values() for x in t["n_cases"]})
    k = sorted({int(x) for t in tables.values() for x in t["seeds"]})
    pct = f"{100 * confidence:g}%"
    spread = (" Cells show the mean over cases and seeds ± the standard deviation over seeds of the per-seed mean."
              if max(k) > 1 else " One training seed per model: no seed spread is shown.")
    paper = (f" The `paper` columns are the PUBLISHED numbers ({published.source}) on real {published.dataset}, "
             "with the paper's models and budget: they are not comparable with ours, which come from this run."
             if published else "")
    head = [
        "# The paper's tables, reproduced by this pipeline", "",
        f"Test split, {' / '.join(map(str, n))} cases, {' / '.join(map(str, k))} training seed(s) per model. "
        "HD95 in mm (lower is better), Dice (higher is better), AVG = mean of the three regions; the best of each "
        f"of our columns in bold.{spread}{paper} (joint) marks a single-stage model trained once for all regions "
        "(one sigmoid output per region) instead of once per region.", "",
    ]
    parts = []
    if "comparison" in tables:
        extra = [row for name, row in (published.comparison.items() if published else ())
                 if name not in set(tables["comparison"]["paper_name"])]
        parts += ["## Comparison with other methods", "", markdown_table(tables["comparison"], regions, False, extra)]
    if "ablation" in tables:
        parts += ["## Ablation of attention scaling (AS) and soft masking (SM)", "",
                  "Stages: 2 = two-stage (VQ-VAE shape codebook + code predictor), 1 = single-stage.", "",
                  markdown_table(tables["ablation"], regions, True)]
    excl, total = count_excluding_zero(comparisons)
    parts += [
        "## Paired comparison with the main variant", "",
        f"Differences `{main}` minus the other variant, paired by case; {pct} percentile bootstrap CI "
        f"({int(n_boot)} resamples, seed {int(seed)}) resampling the cases and, within each variant, its training "
        f"seeds. Dice: > 0 favours `{main}`; HD95: < 0 favours `{main}`. † the CI excludes 0 ({excl} of {total} "
        "cells).", "",
        comparison_markdown(comparisons, labels, main, regions, confidence),
    ]
    return "\n".join(head + parts)
