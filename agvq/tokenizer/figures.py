"""Figures of the tokenizer study, written as PNG for ``dvc plots``: loss and SSIM per epoch, reconstructions of one
validation slice at a few epochs (as seed 001 shows its training), and a source / synthesized / real grid per
target sequence."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from agvq.io.atomic import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _show(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(np.asarray(image, dtype=np.float32).T, cmap="gray", vmin=0.0, vmax=1.0, origin="lower")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def curves_figure(history: Sequence[dict], path: str | Path) -> None:
    """Training loss (and its parts) and validation SSIM (reconstruction and synthesis) per epoch."""
    df = pd.DataFrame(list(history))
    fig, (ax_loss, ax_ssim) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key, label in (("train_loss", "total"), ("reconstruction_l1", "reconstruction L1"),
                       ("translation_l1", "translation L1"), ("fused_l1", "fused L1")):
        if key in df:
            ax_loss.plot(df["epoch"], df[key], label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=7)
    for key, label in (("val_ssim", "reconstruction"), ("val_synthesis_ssim", "synthesis (others together)")):
        if key in df:
            rows = df[df[key].notna()]
            ax_ssim.plot(rows["epoch"], rows[key], marker="o", label=label)
    ax_ssim.set_xlabel("epoch")
    ax_ssim.set_ylabel("validation SSIM")
    ax_ssim.legend(fontsize=7)
    _save(fig, path)


def epochs_figure(real: np.ndarray, snapshots: dict[int, np.ndarray], sequences: Sequence[str], caption: str,
                  path: str | Path) -> None:
    """Rows: the real slice, then its reconstruction at each epoch of ``snapshots``; columns: the sequences.
    ``real`` and every snapshot are (C, X, Y) on [0, 1]."""
    epochs = sorted(snapshots)
    rows = [("real", real)] + [(f"epoch {e}", snapshots[e]) for e in epochs]
    fig, axes = plt.subplots(len(rows), len(sequences), figsize=(1.9 * len(sequences), 1.9 * len(rows)),
                             squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, name in enumerate(sequences):
            _show(axes[r][c], images[c], f"{name} {label}")
    fig.suptitle(caption, fontsize=9)
    _save(fig, path)


def synthesis_figure(rows: Sequence[dict], target: str, path: str | Path) -> None:
    """One row per slice: each source sequence, the target synthesized from them together, the histogram-matched
    baseline, and the real target. ``rows``: dicts with caption, sources {name: (X, Y)}, synthesized, baseline,
    real."""
    if not rows:
        raise ValueError("no slices to draw")
    n_src = len(rows[0]["sources"])
    cols = n_src + 3
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.9 * cols, 2.0 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        for c, (name, image) in enumerate(row["sources"].items()):
            _show(ax_row[c], image, f"source {name}")
        _show(ax_row[n_src], row["synthesized"], f"synthesized {target}")
        _show(ax_row[n_src + 1], row["baseline"], "histogram baseline")
        _show(ax_row[n_src + 2], row["real"], f"real {target}\n{row['caption']}")
    _save(fig, path)
