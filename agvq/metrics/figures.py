"""Qualitative figure like the paper's: per case, an axial slice through the tumour of the first modality with the
ground truth and the prediction overlaid (NCR red, ED green, ET yellow)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from agvq.io.atomic import atomic_path  # noqa: E402
from agvq.regions import LabelConvention  # noqa: E402

COLOURS = {"ncr": (0.9, 0.1, 0.1), "ed": (0.1, 0.8, 0.2), "et": (1.0, 0.85, 0.0)}


def tumour_slice(truth: np.ndarray, pred: np.ndarray) -> int:
    """Axial (last-axis) index with the most tumour in the truth, else in the prediction, else the middle."""
    for seg in (truth, pred):
        area = (seg > 0).sum(axis=(0, 1))
        if area.any():
            return int(area.argmax())
    return truth.shape[2] // 2


def _overlay(ax, image: np.ndarray, seg: np.ndarray, convention: LabelConvention, title: str) -> None:
    ax.imshow(image.T, cmap="gray", origin="lower")
    classes = np.zeros(seg.shape, dtype=np.uint8)
    for k, (name, label) in enumerate((("ncr", convention.ncr), ("ed", convention.ed), ("et", convention.et)), 1):
        classes[seg == label] = k
    cmap = ListedColormap([(0, 0, 0, 0)] + [(*COLOURS[n], 0.55) for n in ("ncr", "ed", "et")])
    ax.imshow(classes.T, cmap=cmap, vmin=0, vmax=3, origin="lower", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def qualitative_figure(rows: list[dict], path: str | Path) -> None:
    """``rows``: dicts with case, modality (the name of the drawn image), image (3D), truth and pred (3D label
    maps), convention, and an optional caption."""
    if not rows:
        raise ValueError("no cases to draw")
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        z = tumour_slice(row["truth"], row["pred"])
        image = row["image"][:, :, z]
        ax_row[0].imshow(image.T, cmap="gray", origin="lower")
        ax_row[0].set_title(f"{row['case']} {row['modality']} z={z}", fontsize=9)
        ax_row[0].axis("off")
        _overlay(ax_row[1], image, row["truth"][:, :, z], row["convention"], "ground truth")
        _overlay(ax_row[2], image, row["pred"][:, :, z], row["convention"], f"prediction {row.get('caption', '')}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def pick_cases(cases_df, n: int) -> list[str]:
    """Up to ``n`` cases spread over the quality range: best, median and worst mean Dice first, then the rest."""
    order = cases_df.groupby("case")["dice"].mean().sort_values(ascending=False)
    ids = list(order.index)
    if not ids or n <= 0:
        return []
    picks = [ids[0], ids[len(ids) // 2], ids[-1]]
    picks += [c for c in ids if c not in picks]
    return list(dict.fromkeys(picks))[:n]


def draw_evaluation(cases_df, pred_dir, truth_files: dict, path, n: int) -> None:
    """Draw ``n`` evaluated cases (``truth_files``: case -> CaseFiles) into one PNG at ``path``."""
    from agvq.io.nifti import read_volume
    from agvq.regions import get_convention

    rows = []
    for case in pick_cases(cases_df, n):
        files = truth_files[case]
        modality = "flair" if "flair" in files.images else sorted(files.images)[0]
        mean_dice = cases_df.loc[cases_df["case"] == case, "dice"].mean()
        rows.append({
            "case": case, "modality": modality, "image": read_volume(files.images[modality]).data.astype(np.float32),
            "truth": read_volume(files.seg).data, "pred": read_volume(Path(pred_dir) / f"{case}.nii.gz").data,
            "convention": get_convention(files.convention), "caption": f"(mean Dice {mean_dice:.2f})",
        })
    qualitative_figure(rows, path)
