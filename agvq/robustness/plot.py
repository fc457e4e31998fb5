"""Figure of the robustness study: mean Dice and HD95 (averaged over the regions) against severity, one line per
variant and one panel per perturbation kind; the missing sequences share one panel. Error bars: bootstrap CI of the
mean over cases."""
from __future__ import annotations

import os
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from agvq.config import RobustnessConfig, VariantSpec  # noqa: E402
from agvq.io.atomic import atomic_path  # noqa: E402
from agvq.metrics.ablation import LABELS, bootstrap_ci  # noqa: E402
from agvq.metrics.ablation_plot import variant_colours  # noqa: E402
from agvq.robustness.conditions import CLEAN, MISSING, SEVERITIES  # noqa: E402


def _case_means(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per case and condition: ``metric`` averaged over the regions."""
    return table.groupby(["perturbation", "severity", "case"], sort=False)[metric].mean().reset_index()


def _point(means: pd.DataFrame, perturbation: str, severity: int, metric: str, study: RobustnessConfig):
    values = means[(means["perturbation"] == perturbation) & (means["severity"] == severity)][metric]
    res = bootstrap_ci(values.to_numpy(dtype=np.float64), study.bootstrap, study.seed, study.confidence)
    return res["mean"], res["ci_low"], res["ci_high"]


def _panel(ax, xs, points, colour, label, offset, joined: bool):
    mean = np.array([p[0] for p in points])
    err = np.vstack([mean - [p[1] for p in points], [p[2] for p in points] - mean]).clip(min=0)
    ax.errorbar(np.asarray(xs, dtype=float) + offset, mean, yerr=err, marker="o", markersize=3.5, capsize=2,
                linewidth=1.2, linestyle="-" if joined else "none", color=colour, label=label)


def robustness_plot(tables: Mapping[str, pd.DataFrame], variants: Mapping[str, VariantSpec],
                    study: RobustnessConfig, path: str | os.PathLike) -> None:
    """Write the PNG (rows: Dice, HD95; columns: the artefact kinds, then the missing sequences)."""
    names = list(tables)
    frame = pd.DataFrame([{"variant": v, "model": variants[v].family} for v in names])
    colours = variant_colours(frame)
    kinds = [k for k in study.perturbations if k != MISSING]
    first = tables[names[0]]
    missing = list(dict.fromkeys(first.loc[first["kind"] == MISSING, "perturbation"]))
    columns = kinds + ([MISSING] if missing else [])
    fig, axes = plt.subplots(2, len(columns), figsize=(max(2.7 * len(columns) + 0.6, 7.5), 5.8), squeeze=False)
    width = 0.08  # horizontal offset between the variants' points
    for row, metric in enumerate(("dice", "hd95")):
        for i, name in enumerate(names):
            means = _case_means(tables[name], metric)
            offset = (i - (len(names) - 1) / 2) * width
            for col, kind in enumerate(columns):
                ax = axes[row, col]
                if kind == MISSING:
                    xs = range(len(missing) + 1)
                    points = [_point(means, CLEAN, 0, metric, study)] + [
                        _point(means, m, 1, metric, study) for m in missing]
                else:
                    xs = [0, *SEVERITIES]
                    points = [_point(means, CLEAN, 0, metric, study)] + [
                        _point(means, kind, s, metric, study) for s in SEVERITIES]
                _panel(ax, xs, points, colours[name], variants[name].display_name, offset, kind != MISSING)
        for col, kind in enumerate(columns):
            ax = axes[row, col]
            if kind == MISSING:
                ax.set_xticks(range(len(missing) + 1), ["clean"] + [m.split("_", 1)[1] for m in missing])
                ax.set_xlabel("missing sequence", fontsize=8)
            else:
                levels = getattr(study.levels, kind)
                ax.set_xticks([0, *SEVERITIES], ["0"] + [f"{s}\n{levels[s - 1]:g}" for s in SEVERITIES])
                ax.set_xlabel("severity (level)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(kind, fontsize=10)
            if col == 0:
                ax.set_ylabel(f"{LABELS[metric]}{' (mm)' if metric == 'hd95' else ''}, mean of regions")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(names), frameon=False, fontsize=9)
    fig.suptitle(f"Robustness on the test split\n(error bars: {100 * study.confidence:g}% bootstrap CI of the mean "
                 "over cases)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

