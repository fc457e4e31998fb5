"""The attention study report: each study variant (a trained variant plus 3D attention modules) against its plain
reference, on the test split and the study's regions.

Reads what the pipeline writes: the study variants' evaluations (``<study_eval_dir>/<variant>.json`` and
``<variant>_cases.csv``, written by the evaluate_attention stage), the references' evaluations (the evaluate stage's
``<reference_eval_dir>/<reference>_cases.csv``) and every model's contract (``<models_dir>/<variant>/<region>.json``:
parameter count and training seconds). Differences are ``variant - reference`` (paired by case): for Dice a
positive difference favours the attention variant, for HD95 a negative one.

The metrics JSON holds no wall times (it stays bit-identical across identical runs, like every metrics file of the
project); the markdown report also shows the training seconds.
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

from agvq.config.variants import VariantSpec  # noqa: E402
from agvq.errors import ConfigError  # noqa: E402
from agvq.io.atomic import atomic_path  # noqa: E402
from agvq.metrics.ablation import DECIMALS, LABELS, bootstrap_ci, load_evaluation, paired_bootstrap  # noqa: E402
from agvq.metrics.tables import METRICS  # noqa: E402


@dataclass
class ModelCost:
    parameters: int
    train_seconds: dict[str, float]  # per region


def model_cost(models_dir: str | os.PathLike, variant: str, regions: Sequence[str], seed: int, joint: bool) -> ModelCost:
    """Parameter count and training seconds per region, from the model contracts of ``variant`` trained with
    ``seed`` (``<models_dir>/<variant>/seed<seed>/<region>.json``; a joint model's one ``joint.json``, whose cost is
    shown under every region)."""
    counts, seconds = set(), {}
    for region in regions:
        path = Path(models_dir) / variant / f"seed{seed}" / ("joint.json" if joint else f"{region}.json")
        if not path.is_file():
            raise ConfigError(f"model contract {path} of variant {variant} not found (run its training stage first)")
        try:
            contract = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read model contract {path} ({type(exc).__name__}: {exc})") from None
        if not isinstance(contract, dict) or not isinstance(contract.get("parameters"), int) \
                or not isinstance(contract.get("train_seconds"), (int, float)):
            raise ConfigError(f"model contract {path} lacks parameters / train_seconds (retrain the variant)")
        counts.add(contract["parameters"])
        seconds[region] = float(contract["train_seconds"])
    if len(counts) != 1:
        raise ConfigError(f"the region models of {variant} differ in parameter count {sorted(counts)}")
    return ModelCost(counts.pop(), seconds)


def _ci_text(cell: Mapping, metric: str, signed: bool = False) -> str:
    d, sign = DECIMALS[metric], "+" if signed else ""
    value = cell["mean_diff"] if signed else cell["mean"]
    mark = " †" if signed and (cell["ci_low"] > 0 or cell["ci_high"] < 0) else ""
    return f"{value:{sign}.{d}f} [{cell['ci_low']:{sign}.{d}f}, {cell['ci_high']:{sign}.{d}f}]{mark}"


@dataclass
class AttentionReport:
    order: list[str]          # rows: each reference followed by its study variants
    summary: dict             # the metrics JSON
    markdown: str
    seconds: dict[str, float]  # mean training seconds per region model


def _table(summary: dict, order: Sequence[str], labels: Mapping[str, str], seconds: Mapping[str, float],
           regions: Sequence[str]) -> str:
    header = ["Model", "Attention", "Parameters", "Train s / model"]
    header += [f"{LABELS[m]} {r} [CI]" for m in ("dice", "hd95") for r in regions] + ["Variant"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---", ":---", "---:", "---:"] + ["---:"] * (2 * len(regions)) + [":---"]) + "|"]
    for name in order:
        row = summary["variants"][name]
        ref = row["reference"]
        params = f"{row['parameters']:,}"
        if ref is not None:
            params += f" ({row['parameters'] - summary['variants'][ref]['parameters']:+,})"
        cells = [labels[name], row["attention"], params, f"{seconds[name]:.1f}"]
        cells += [_ci_text(row[m][r], m) for m in ("dice", "hd95") for r in regions]
        lines.append("| " + " | ".join(cells + [f"`{name}`"]) + " |")
    return "\n".join(lines) + "\n"


def _comparison_table(summary: dict, labels: Mapping[str, str], regions: Sequence[str], pct: str) -> str:
    header = ["Comparison", "Metric"] + [f"{r} Δ [{pct} CI]" for r in regions]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", ":---"] + ["---:"] * len(regions)) + "|"]
    for name, comp in summary["comparisons"].items():
        ref = summary["variants"][name]["reference"]
        for metric in ("dice", "hd95"):
            cells = [f"{labels[name]} − {labels[ref]} (`{name}` − `{ref}`)", LABELS[metric]]
            cells += [_ci_text(comp[metric][r], metric, signed=True) for r in regions]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def attention_report(study_eval_dir: str | os.PathLike, reference_eval_dir: str | os.PathLike,
                     models_dir: str | os.PathLike, variants: Mapping[str, VariantSpec],
                     references: Mapping[str, str], regions: Sequence[str], n_boot: int, seed: int,
                     confidence: float, model_seed: int) -> AttentionReport:
    """The study report. ``variants``: every study variant and reference by name; ``references``: study variant ->
    its reference (see agvq.config.Params.attention_reference). ConfigError names the file for a missing or
    unreadable input and for case sets that differ between a variant and its reference. The study's models are
    trained with seed ``model_seed``; a reference evaluated over several seeds is compared through its model of that
    seed."""
    if not references:
        raise ConfigError("the attention study has no variants (attention_study.variants is empty)")
    regions = list(regions)
    cases: dict[str, pd.DataFrame] = {}
    n_cases: dict[str, int] = {}
    for name in references:
        summary, table = load_evaluation(Path(study_eval_dir), name)
        cases[name], n_cases[name] = table, int(summary.get("n_cases", 0))
    for ref in dict.fromkeys(references.values()):
        summary, table = load_evaluation(Path(reference_eval_dir), ref)
        if "seed" in table.columns:
            if model_seed not in set(table["seed"].astype(int)):
                raise ConfigError(f"{Path(reference_eval_dir) / (ref + '_cases.csv')} has no rows of seed {model_seed} "
                                  f"(attention_study.model_seed); seeds there: {sorted(set(table['seed'].astype(int)))}")
            table = table[table["seed"].astype(int) == model_seed].drop(columns="seed")
        cases[ref], n_cases[ref] = table, int(table["case"].nunique())
    order = [v for ref in dict.fromkeys(references.values()) for v in [ref] + [s for s, r in references.items()
                                                                              if r == ref]]
    costs = {name: model_cost(models_dir, name, regions, model_seed, variants[name].joint) for name in order}
    out_variants, comparisons = {}, {}
    try:
        for name in order:
            row = {"reference": references.get(name), "label": variants[name].display_name,
                   "attention": variants[name].attention.describe(), "parameters": costs[name].parameters,
                   "n_cases": n_cases[name]}
            for metric in METRICS:
                row[metric] = {}
                for region in regions:
                    table = cases[name]
                    values = pd.to_numeric(table.loc[table["region"] == region, metric], errors="coerce")
                    ci = bootstrap_ci(values.to_numpy(dtype=np.float64), n_boot, seed, confidence)
                    row[metric][region] = {k: ci[k] for k in ("mean", "ci_low", "ci_high")}
            out_variants[name] = row
        for name, ref in references.items():
            comparisons[name] = {metric: {region: {
                k: v for k, v in paired_bootstrap(cases[name], cases[ref], metric, region, n_boot, seed, confidence,
                                                  names=(f"{name}_cases.csv", f"{ref}_cases.csv")).items()
                if k != "n_dropped"} for region in regions} for metric in METRICS}
    except ValueError as exc:
        raise ConfigError(f"attention study: {exc}") from None
    summary = {"regions": regions, "model_seed": int(model_seed),
               "bootstrap": {"resamples": int(n_boot), "seed": int(seed), "confidence": float(confidence)},
               "variants": out_variants, "comparisons": comparisons}
    labels = {name: variants[name].display_name for name in order}
    seconds = {name: float(np.mean(list(costs[name].train_seconds.values()))) for name in order}
    pct = f"{100 * confidence:g}%"
    n = sorted(set(n_cases.values()))
    markdown = "\n".join([
        "# Attention study", "",
        f"Test split, {' / '.join(map(str, n))} cases, region{'s' if len(regions) > 1 else ''} "
        f"{', '.join(regions)}. Each attention variant is its reference (the row above it, no attention) with 3D "
        f"attention modules added, trained with the same settings, budget and seed ({int(model_seed)}; one training "
        "seed per model, so the intervals show the case-to-case spread only, not the seed-to-seed one). Means with "
        f"{pct} percentile bootstrap CIs over cases ({int(n_boot)} resamples, seed {int(seed)}); Dice (higher is "
        "better), HD95 in mm (lower is better). Parameters: trainable parameters of one region model (difference "
        "from the reference in brackets). Train s: wall seconds per region model, from the model contracts "
        "(machine-dependent, not in the metrics JSON).", "",
        _table(summary, order, labels, seconds, regions),
        "## Paired difference with the plain model", "",
        f"Per-case differences attention variant minus its reference (paired by case id), mean and {pct} "
        "percentile bootstrap CI. Dice: > 0 favours the attention variant; HD95: < 0 favours it. † the CI excludes 0 "
        "(otherwise: no measurable difference).", "",
        _comparison_table(summary, labels, regions, pct),
    ])
    return AttentionReport(order, summary, markdown, seconds)


def difference_plot(report: AttentionReport, path: str | os.PathLike) -> None:
    """PNG: per study variant, the paired difference with its reference and its CI, one marker per region; Dice
    and HD95 panels, with a line at 0 (no difference)."""
    summary = report.summary
    names = list(summary["comparisons"])
    regions = summary["regions"]
    markers = dict(zip(regions, ("o", "s", "^")))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.6 * len(names) + 1.8), sharey=True)
    for ax, metric in zip(axes, ("dice", "hd95")):
        for j, region in enumerate(regions):
            offset = (j - (len(regions) - 1) / 2) * 0.2
            y = np.arange(len(names)) + offset
            cells = [summary["comparisons"][n][metric][region] for n in names]
            mean = np.array([c["mean_diff"] for c in cells])
            err = np.vstack([mean - [c["ci_low"] for c in cells], [c["ci_high"] for c in cells] - mean]).clip(min=0)
            ax.errorbar(mean, y, xerr=err, fmt=markers[region], capsize=3, label=region)
        ax.axvline(0.0, color="black", linewidth=0.8)
        better = "right" if metric == "dice" else "left"
        ax.set_title(f"{LABELS[metric]} difference with the plain model (better: {better})", fontsize=10)
        ax.set_xlabel("Dice" if metric == "dice" else "HD95 (mm)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(np.arange(len(names)), [summary["variants"][n]["label"] for n in names])
    axes[0].invert_yaxis()
    if len(regions) > 1:
        axes[1].legend(loc="best", fontsize=8)
    pct = f"{100 * summary['bootstrap']['confidence']:g}%"
    fig.suptitle(f"Attention study on the test split (error bars: {pct} paired bootstrap CI)", fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
