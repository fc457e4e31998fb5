"""HD95 speed and agreement: agvq.metrics.surface.hd95 vs MONAI compute_hausdorff_distance on BraTS-size masks.

Cases are 240x240x155 grids with nested tumour-like regions (WT > TC > ET) for the ground truth and a perturbed
prediction (shifted, resized, other boundary noise, a false-positive satellite), plus random cases (speckled
predictions, tiny regions). Spacings are anisotropic. MONAI gets the case's three regions as one-hot tensors
(1, 3, X, Y, Z), as a user would call it; ours runs per region on the same boolean masks. Each timing is the
best of ``--repeats`` interleaved runs. Usage: ``python benchmarks/metrics.py [--repeats 3] [--out result.json]``.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.io.atomic import write_json  # noqa: E402
from agvq.metrics.segmentation import case_metrics  # noqa: E402
from agvq.metrics.surface import hd95  # noqa: E402
from agvq.regions import REGIONS, get_convention, labels_to_regions, regions_to_labels  # noqa: E402

SHAPE = (240, 240, 155)
SPACINGS = [(1.0, 1.0, 1.5), (0.9, 0.9, 3.0)]


def blob(center, radii, rng: np.random.Generator, wobble: float = 0.2) -> np.ndarray:
    """Ellipsoid with a random low-frequency boundary on the full grid."""
    grids = np.ogrid[tuple(slice(0, s) for s in SHAPE)]
    rel = [((g - c) / r).astype(np.float32) for g, c, r in zip(grids, center, radii)]
    radius = np.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2)
    bumps = sum(
        rng.uniform(-wobble, wobble) * np.sin(rng.uniform(1, 5) * r + rng.uniform(0, 6)) for r in rel for _ in range(3)
    )
    return radius < 1.0 + bumps


def tumour(center, size, rng, has_et=True) -> dict[str, np.ndarray]:
    wt = blob(center, size, rng)
    tc = blob(center + rng.normal(0, 2, 3), size * rng.uniform(0.45, 0.65, 3), rng) & wt
    et = tc & ~blob(center, size * rng.uniform(0.25, 0.4, 3), rng) if has_et else np.zeros(SHAPE, bool)
    return {"WT": wt, "TC": tc, "ET": et}


def make_case(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pred, truth) boolean region masks, each (3, *SHAPE) in WT, TC, ET order."""
    rng = np.random.default_rng(seed)
    center = np.asarray(SHAPE) * rng.uniform(0.35, 0.65, 3)
    size = np.asarray([rng.uniform(18, 40), rng.uniform(18, 40), rng.uniform(12, 28)])
    truth = tumour(center, size, rng)
    if kind == "blob":
        pred = tumour(center + rng.normal(0, 3, 3), size * rng.uniform(0.85, 1.15, 3), rng)
        far = np.asarray(SHAPE) * rng.uniform(0.1, 0.9, 3)
        pred["WT"] |= blob(far, np.full(3, 4.0), rng, wobble=0.0)
    elif kind == "speckle":  # a noisy prediction: the truth with random voxels flipped near the tumour
        flips = blob(center, size * 1.3, rng, wobble=0.0) & (rng.random(SHAPE, dtype=np.float32) < 0.02)
        pred = {r: m ^ flips for r, m in truth.items()}
    elif kind == "tiny":  # small tumour, ET of a few voxels in both
        truth = tumour(center, size * 0.3, rng)
        pred = tumour(center + rng.normal(0, 1, 3), size * 0.3, rng)
    else:
        raise ValueError(kind)
    conv = get_convention("brats2021")  # compose and split again: nesting as in real label maps
    pred_masks = labels_to_regions(regions_to_labels(pred, conv), conv)
    truth_masks = labels_to_regions(regions_to_labels(truth, conv), conv)
    return pred_masks, truth_masks


def monai_hd95(pred: np.ndarray, truth: np.ndarray, spacing) -> np.ndarray:
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = compute_hausdorff_distance(
            torch.from_numpy(pred)[None], torch.from_numpy(truth)[None],
            include_background=True, percentile=95, spacing=list(spacing),
        )
    return out[0].numpy().astype(np.float64)


def ours_hd95(pred: np.ndarray, truth: np.ndarray, spacing) -> np.ndarray:
    return np.asarray([hd95(p, t, spacing) for p, t in zip(pred, truth)])


def best_time(fn, repeats: int):
    best, out = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="optional JSON file for the figures")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [("blob", s) for s in range(4)] + [("speckle", 10), ("speckle", 11), ("tiny", 20), ("tiny", 21)]
    conv = get_convention("brats2021")
    rows, t_monai, t_ours, t_case, max_diff = [], 0.0, 0.0, 0.0, 0.0
    print(f"{'case':<12}{'spacing':<18}{'voxels WT/TC/ET (truth)':<26}{'MONAI ms':>10}{'ours ms':>9}{'ratio':>7}"
          f"{'case ms':>9}{'max |diff| mm':>15}")
    for i, (kind, seed) in enumerate(cases):
        pred, truth = make_case(kind, seed)
        spacing = SPACINGS[i % len(SPACINGS)]
        if not (pred.any(axis=(1, 2, 3)).all() and truth.any(axis=(1, 2, 3)).all()):
            raise RuntimeError(f"case {kind}-{seed} has an empty region; pick another seed")
        pred_labels, truth_labels = (regions_to_labels(dict(zip(("WT", "TC", "ET"), m)), conv) for m in (pred, truth))
        tm, tu, tc = 0.0, 0.0, 0.0
        for _ in range(args.repeats):  # interleaved so that load changes hit both alike
            dt, ref = best_time(lambda: monai_hd95(pred, truth, spacing), 1)
            tm = dt if tm == 0 else min(tm, dt)
            dt, mine = best_time(lambda: ours_hd95(pred, truth, spacing), 1)
            tu = dt if tu == 0 else min(tu, dt)
            dt, full = best_time(lambda: case_metrics(pred_labels, truth_labels, conv, spacing, REGIONS, 373.13), 1)
            tc = dt if tc == 0 else min(tc, dt)
        diff = float(np.max(np.abs(ref - mine)))
        assert np.allclose([r["hd95"] for r in full], mine), "case_metrics disagrees with hd95 on full masks"
        t_monai, t_ours, t_case, max_diff = t_monai + tm, t_ours + tu, t_case + tc, max(max_diff, diff)
        counts = "/".join(str(int(n)) for n in truth.sum(axis=(1, 2, 3)))
        print(f"{kind + '-' + str(seed):<12}{str(spacing):<18}{counts:<26}{tm * 1e3:>10.1f}{tu * 1e3:>9.1f}"
              f"{tm / tu:>7.2f}{tc * 1e3:>9.1f}{diff:>15.2e}")
        rows.append({"case": f"{kind}-{seed}", "spacing": list(spacing), "monai_s": tm, "ours_s": tu,
                     "case_metrics_s": tc, "ratio": tm / tu, "max_abs_diff_mm": diff,
                     "hd95_monai": ref.tolist(), "hd95_ours": mine.tolist()})
    ratio = t_monai / t_ours
    print(f"total: MONAI {t_monai:.3f} s, ours {t_ours:.3f} s (case_metrics with Dice and region masks from label maps "
          f"{t_case:.3f} s); speed-up {ratio:.2f}x (goal >= 1.5x), max |diff| {max_diff:.2e} mm (goal <= 1e-4)")
    if args.out:
        write_json(args.out, {"cases": rows, "total_monai_s": t_monai, "total_ours_s": t_ours,
                              "total_case_metrics_s": t_case, "speedup": ratio, "max_abs_diff_mm": max_diff})
    if ratio < 1.5 or max_diff > 1e-4:
        sys.exit(1)


if __name__ == "__main__":
    main()
