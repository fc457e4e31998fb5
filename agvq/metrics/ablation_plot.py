"""Bar plot of the ablation report: HD95 and Dice per region for every variant of the two tables, error bars the
bootstrap CI (cases and seeds) of each mean."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from agvq.io.atomic import atomic_path  # noqa: E402
from agvq.metrics.ablation import HIGHER_IS_BETTER, LABELS  # noqa: E402

FAMILY_COLOURS = {"3D U-Net": "Greys", "UNETR": "Purples", "SwinUNETR": "Oranges", "SegResNet": "Greens",
                  "AG-UNet": "Blues", "AG-VQ-VAE": "Reds"}


def variant_colours(table: pd.DataFrame) -> dict[str, tuple]:
    """One colour per variant: a colour map per model family, shaded light to dark in table order so the full
    model of each family is the darkest."""
    out = {}
    for family, rows in table.groupby("model", sort=False):
        cmap = plt.get_cmap(FAMILY_COLOURS.get(family, "YlGn"))
        names = list(dict.fromkeys(rows["variant"]))
        for j, name in enumerate(names):
            out[name] = cmap(0.75 if len(names) == 1 else 0.35 + 0.5 * j / (len(names) - 1))
    return out


def bar_plot(intervals: pd.DataFrame, table: pd.DataFrame, path: str | os.PathLike, confidence: float) -> None:
    """PNG of ``variant_intervals`` output: two panels (HD95, Dice), bars grouped by region, one colour per variant
    (legend names and colours from ``table``, the rows of both tables), error bars the bootstrap CI of the mean."""
    table = table.drop_duplicates("variant")
    labels, colours = dict(zip(table["variant"], table["label"])), variant_colours(table)
    variants = list(dict.fromkeys(intervals["variant"]))
    regions = list(dict.fromkeys(intervals["region"]))
    width = 0.8 / max(len(variants), 1)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
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
    ncol = min(len(variants), 6)
    fig.legend(handles, names, loc="lower center", ncol=ncol, frameon=False, fontsize=9)
    fig.suptitle(f"Test split (error bars: {100 * confidence:g}% bootstrap CI of the mean over cases and seeds)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * ((len(variants) - 1) // ncol), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
