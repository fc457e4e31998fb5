"""The ablation report: per-variant means laid out like the paper's table, paired bootstrap comparisons of the main
variant against every other one, a markdown report and a bar plot.

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

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from agvq.config.variants import VariantSpec, paper_order  # noqa: E402
from agvq.errors import ConfigError  # noqa: E402
from agvq.io.atomic import atomic_path  # noqa: E402
from agvq.metrics.tables import METRICS  # noqa: E402

LABELS = {"hd95": "HD95", "dice": "Dice"}
HIGHER_IS_BETTER = {"dice": True, "hd95": False}
DECIMALS = {"dice": 3, "hd95": 2}
YES, NO, NA = "✓", "✗", "–"


def ablation_table(summaries: Mapping[str, dict], variants: Mapping[str, VariantSpec],
                   regions: Sequence[str]) -> pd.DataFrame:
    """One row per variant (paper order) with variant, model, label, stages, AS, SM, n_cases, ``<metric>_<region>``
    (the region means of the evaluate summary) and ``<metric>_mean`` (their average)."""
    rows = []
    for name in paper_order(dict(variants)):
        spec = variants[name]
        if name not in summaries:
            raise ValueError(f"no evaluation summary for variant {name}")
        summary = summaries[name]
        row = {"variant": name, "model": spec.family, "label": spec.display_name, "stages": spec.stages,
               "AS": spec.switch("attention_scaling"), "SM": spec.switch("soft_masking"),
               "n_cases": int(summary.get("n_cases", 0))}
        for metric in METRICS:
            for region in regions:
                try:
                    row[f"{metric}_{region}"] = float(summary["regions"][region][metric]["mean"])
                except (KeyError, TypeError):
                    raise ValueError(f"evaluation summary of variant {name} has no {metric} mean "
                                     f"for region {region}") from None
            row[f"{metric}_mean"] = float(np.mean([row[f"{metric}_{r}"] for r in regions]))
        rows.append(row)
    return pd.DataFrame(rows)


def _check_bootstrap(n_boot: int, confidence: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"bootstrap resamples must be at least 1, got {n_boot}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``values``; all case indices drawn at once."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(int(n_boot), len(values)))
    return values[idx].mean(axis=1)


def bootstrap_ci(values, n_boot: int, seed: int, confidence: float) -> dict:
    """Mean of the finite ``values`` and its percentile bootstrap confidence interval: {mean, ci_low, ci_high, n}."""
    _check_bootstrap(n_boot, confidence)
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError("no finite values to bootstrap")
    alpha = 1.0 - float(confidence)
    low, high = np.quantile(_bootstrap_means(arr, n_boot, seed), [alpha / 2, 1 - alpha / 2])
    return {"mean": float(arr.mean()), "ci_low": float(low), "ci_high": float(high), "n": int(arr.size)}


def _region_values(cases: pd.DataFrame, metric: str, region: str, side: str) -> pd.Series:
    rows = cases[cases["region"] == region]
    if rows.empty:
        raise ValueError(f"per-case table {side} has no rows for region {region}")
    ids = rows["case"].astype(str)
    if ids.duplicated().any():
        raise ValueError(f"per-case table {side} lists case {ids[ids.duplicated()].iloc[0]} twice for region {region}")
    return pd.Series(pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=np.float64), index=ids.to_numpy())


def paired_bootstrap(cases_a: pd.DataFrame, cases_b: pd.DataFrame, metric: str, region: str, n_boot: int,
                     seed: int, confidence: float, names: tuple[str, str] = ("A", "B")) -> dict:
    """Paired bootstrap of the mean per-case difference ``a - b`` of ``metric`` in ``region`` (paired by case id).

    Returns {mean_diff, ci_low, ci_high (percentile interval at ``confidence``), p_value (two-sided: twice the
    smaller share of bootstrap means on either side of 0, at most 1), n_cases (pairs used), n_dropped (pairs with a
    non-finite value)}. Raises ValueError when the two tables do not hold the same cases (``names`` label them).
    """
    _check_bootstrap(n_boot, confidence)
    a, b = _region_values(cases_a, metric, region, names[0]), _region_values(cases_b, metric, region, names[1])
    only_a, only_b = sorted(set(a.index) - set(b.index)), sorted(set(b.index) - set(a.index))
    if only_a or only_b:
        raise ValueError(f"case sets differ for region {region}: {len(only_a)} only in {names[0]} {only_a[:3]}, "
                         f"{len(only_b)} only in {names[1]} {only_b[:3]}")
    diff = (a - b.reindex(a.index)).to_numpy()
    finite = np.isfinite(diff)
    if not finite.any():
        raise ValueError(f"no case has finite {metric} in both tables for region {region}")
    diff = diff[finite]
    boot = _bootstrap_means(diff, n_boot, seed)
    alpha = 1.0 - float(confidence)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    p_value = min(1.0, 2.0 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0))))
    return {"mean_diff": float(diff.mean()), "ci_low": float(low), "ci_high": float(high), "p_value": p_value,
            "n_cases": int(diff.size), "n_dropped": int((~finite).sum())}


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
    """Mean and bootstrap CI of each variant, metric and region (the bar plot's bars and error bars)."""
    rows = []
    for variant in order:
        table = cases[variant]
        for metric in METRICS:
            for region in regions:
                values = pd.to_numeric(table.loc[table["region"] == region, metric], errors="coerce")
                try:
                    res = bootstrap_ci(values.to_numpy(dtype=np.float64), n_boot, seed, confidence)
                except ValueError as exc:
                    raise ValueError(f"variant {variant}, region {region}, {metric}: {exc}") from None
                rows.append({"variant": variant, "metric": metric, "region": region, **res})
    return pd.DataFrame(rows)


def _fmt(value: float, metric: str) -> str:
    return f"{value:.{DECIMALS[metric]}f}"


def _mark(value: bool | None) -> str:
    return NA if value is None else (YES if value else NO)


def markdown_table(table: pd.DataFrame, regions: Sequence[str]) -> str:
    """The paper-style table (Model, Stages, AS, SM, HD95 per region, Dice per region, Variant); the best value of
    each metric column (max Dice, min HD95, compared as printed; ties all marked) in bold."""
    columns = [(m, r) for m in ("hd95", "dice") for r in regions]
    header = ["Model", "Stages", "AS", "SM"] + [f"{LABELS[m]} {r}" for m, r in columns] + ["Variant"]
    best = {}
    for metric, region in columns:
        shown = table[f"{metric}_{region}"].round(DECIMALS[metric])
        best[(metric, region)] = shown.max() if HIGHER_IS_BETTER[metric] else shown.min()
    align = [":---"] + [":---:"] * 3 + ["---:"] * len(columns) + [":---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in table.to_dict("records"):
        cells = [row["model"], str(row["stages"]), _mark(row["AS"]), _mark(row["SM"])]
        for metric, region in columns:
            value = row[f"{metric}_{region}"]
            text = _fmt(value, metric)
            cells.append(f"**{text}**" if round(value, DECIMALS[metric]) == best[(metric, region)] else text)
        cells.append(f"`{row['variant']}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_markdown(comparisons: pd.DataFrame, table: pd.DataFrame, main: str, regions: Sequence[str],
                        confidence: float) -> str:
    """Main minus each other variant: mean difference [CI] per region, one row per variant and metric; "†" marks an
    interval that excludes 0."""
    labels = dict(zip(table["variant"], table["label"]))
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


def variant_colours(table: pd.DataFrame) -> dict[str, tuple]:
    """One colour per variant: a colour map per model family (U-Net grey, AG-UNet blue, AG-VQ-VAE red, others
    green), shaded light to dark in table order so the full model of each family is the darkest."""
    maps = {"U-Net": "Greys", "AG-UNet": "Blues", "AG-VQ-VAE": "Reds"}
    out = {}
    for family, rows in table.groupby("model", sort=False):
        cmap = plt.get_cmap(maps.get(family, "Greens"))
        names = list(rows["variant"])
        for j, name in enumerate(names):
            out[name] = cmap(0.75 if len(names) == 1 else 0.35 + 0.5 * j / (len(names) - 1))
    return out


def bar_plot(intervals: pd.DataFrame, table: pd.DataFrame, path: str | os.PathLike, confidence: float) -> None:
    """PNG of ``variant_intervals`` output: two panels (HD95, Dice), bars grouped by region, one colour per variant
    (legend names and colours from the ablation ``table``), error bars = the bootstrap CI of the mean."""
    labels, colours = dict(zip(table["variant"], table["label"])), variant_colours(table)
    variants = list(dict.fromkeys(intervals["variant"]))
    regions = list(dict.fromkeys(intervals["region"]))
    width = 0.8 / max(len(variants), 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for ax, metric in zip(axes, ("hd95", "dice")):
        for i, variant in enumerate(variants):
            sub = intervals[(intervals["variant"] == variant) & (intervals["metric"] == metric)].set_index("region")
            sub = sub.loc[regions]
            x = np.arange(len(regions)) + (i - (len(variants) - 1) / 2) * width
            err = np.vstack([sub["mean"] - sub["ci_low"], sub["ci_high"] - sub["mean"]]).clip(min=0)
            ax.bar(x, sub["mean"], width, yerr=err, capsize=2, color=colours[variant], edgecolor="black",
                   linewidth=0.4, error_kw={"elinewidth": 0.8}, label=labels.get(variant, variant))
        ax.set_xticks(np.arange(len(regions)), regions)
        better = "higher" if HIGHER_IS_BETTER[metric] else "lower"
        ax.set_title(f"{LABELS[metric]} ({better} is better)")
        ax.set_ylabel("HD95 (mm)" if metric == "hd95" else "Dice")
        if metric == "dice":
            ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(variants), 7), frameon=False, fontsize=9)
    fig.suptitle(f"Ablation on the test split (error bars: {100 * confidence:g}% bootstrap CI of the mean)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * ((len(variants) - 1) // 7), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


@dataclass
class AblationReport:
    table: pd.DataFrame
    comparisons: pd.DataFrame
    intervals: pd.DataFrame
    summary: dict
    markdown: str


def _nest_comparisons(comparisons: pd.DataFrame, main: str) -> dict:
    """{"<main>_vs_<other>": {metric: {region: {mean_diff, ci_low, ci_high, p_value, n_cases}}}}."""
    out: dict = {}
    for row in comparisons.to_dict("records"):
        cell = {k: row[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value", "n_cases")}
        out.setdefault(f"{main}_vs_{row['variant']}", {}).setdefault(row["metric"], {})[row["region"]] = cell
    return out


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


def ablation_report(eval_dir: str | os.PathLike, variants: Mapping[str, VariantSpec], regions: Sequence[str],
                    main: str, n_boot: int, seed: int, confidence: float) -> AblationReport:
    """Read every variant's evaluation from ``eval_dir``; build the table, comparisons, intervals, JSON and markdown.

    Raises ConfigError naming the file for a missing or unreadable evaluation, and for mismatched case sets."""
    if main not in variants:
        raise ConfigError(f"main variant {main!r} is not among the variants {list(variants)}")
    eval_dir = Path(eval_dir)
    loaded = {v: load_evaluation(eval_dir, v) for v in variants}
    summaries, cases = {v: s for v, (s, _) in loaded.items()}, {v: c for v, (_, c) in loaded.items()}
    try:
        table = ablation_table(summaries, variants, regions)
        order = list(table["variant"])
        comparisons = compare_to_main(cases, order, main, regions, n_boot, seed, confidence)
        intervals = variant_intervals(cases, order, regions, n_boot, seed, confidence)
    except ValueError as exc:
        raise ConfigError(f"evaluations in {eval_dir}: {exc}") from None
    summary = {
        "main_variant": main,
        "bootstrap": {"resamples": int(n_boot), "seed": int(seed), "confidence": float(confidence)},
        "variants": {row["variant"]: {"n_cases": row["n_cases"], **{
            m: {**{r: row[f"{m}_{r}"] for r in regions}, "mean": row[f"{m}_mean"]} for m in METRICS}}
            for row in table.to_dict("records")},
        "comparisons": _nest_comparisons(comparisons, main),
    }
    n = sorted(set(table["n_cases"]))
    pct = f"{100 * confidence:g}%"
    markdown = "\n".join([
        "# Ablation", "",
        f"Test split, {' / '.join(map(str, n))} cases. Means per region; HD95 in mm (lower is better), Dice (higher is "
        "better); the best value of each column in bold. Stages: 2 = two-stage (VQ-VAE shape codebook + code "
        "predictor), 1 = single-stage. AS = attention scaling, SM = soft masking (– : not applicable).", "",
        markdown_table(table, regions),
        "## Paired comparison with the main variant", "",
        f"Per-case differences `{main}` minus the other variant (paired by case id), mean and {pct} percentile "
        f"bootstrap CI ({int(n_boot)} resamples, seed {int(seed)}). Dice: > 0 favours `{main}`; HD95: < 0 favours "
        f"`{main}`. † the CI excludes 0.", "",
        comparison_markdown(comparisons, table, main, regions, confidence),
    ])
    return AblationReport(table, comparisons, intervals, summary, markdown)
