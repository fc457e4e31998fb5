"""The BraTS metric set beyond Dice / HD95: lesion-wise scores against the official package's own output, NSD and
sensitivity / specificity against MONAI, and their place in the per-case table and the summary."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.metrics import compute_surface_dice, get_confusion_matrix
from monai.metrics.confusion_matrix import compute_confusion_matrix_metric

from agvq.io.nifti import write_volume
from agvq.metrics.brats import brats_extra
from agvq.metrics.confusion import sensitivity_specificity
from agvq.metrics.evaluate import evaluate_predictions
from agvq.metrics.lesionwise import lesion_metrics, lesions, pooled_hd95
from agvq.metrics.segmentation import case_metrics
from agvq.metrics.surface_dice import normalized_surface_dice
from agvq.metrics.tables import EXTRA_COLUMNS, summarize
from agvq.regions import REGIONS, get_convention, labels_to_regions
from tests.reference.lesionwise.pairs import build_pairs, digest, tumour

REFERENCE = Path(__file__).parent / "reference" / "lesionwise" / "reference.json"
PENALTY = 373.13
TOL = 1e-4
PAIRS = build_pairs()
CONV23 = get_convention("brats2023")


def _reference() -> dict:
    # Never skipped: a missing or stale reference file fails with the command that regenerates it.
    assert REFERENCE.is_file(), f"{REFERENCE} is missing; run tests/reference/lesionwise/make_reference.py"
    return json.loads(REFERENCE.read_text())


def _masks(labels):
    return dict(zip(REGIONS, labels_to_regions(labels, CONV23, REGIONS)))


def test_reference_was_made_by_the_official_package_on_these_pairs():
    ref = _reference()
    assert ref["package"]["brats-evaluation"] == "0.0.10" and ref["package"]["panoptica"] == "2.1.7"
    assert ref["config"] == "gli" and set(ref["pairs"]) == set(PAIRS)
    for name, pair in PAIRS.items():
        assert ref["pairs"][name]["digest"] == digest(pair), f"pair {name} changed; regenerate reference.json"
    assert len(PAIRS) >= 6


def _expected(entry: dict, spacing_flip: bool = False) -> tuple[float, float, dict]:
    parsed = entry["parsed"]
    dsc, hd = parsed["lesionwise_dsc_mean"], parsed["lesionwise_hd95_mean"]
    counts = {k: int(parsed[f"all_instance_{k}"]) for k in ("tp", "fp", "fn")}
    dsc = np.nan if dsc in (None, "nan") else float(dsc)
    hd = np.nan if hd in (None, "nan") else (PENALTY if hd == "inf" else float(hd))
    return dsc, hd, counts


@pytest.mark.parametrize("name", [n for n in PAIRS if PAIRS[n]["spacing"] == (1.0, 1.0, 1.0)])
def test_lesionwise_equals_the_official_package(name):
    """Isotropic pairs: every region's lesion-wise Dice and HD95 and the lesion counts, within 1e-4 (the package's
    infinite HD95 of an unmatched case is our 373.13 penalty; its NaN of a lesion-free pair is ours)."""
    pair, entry = PAIRS[name], _reference()["pairs"][name]
    pred, truth = _masks(pair["pred"]), _masks(pair["truth"])
    for region in REGIONS:
        ours = lesion_metrics(pred[region], truth[region], pair["spacing"], PENALTY)
        dsc, hd, counts = _expected(entry["regions"][region])
        assert {k: ours[f"lesion_{k}"] for k in counts} == counts, (name, region)
        np.testing.assert_allclose([ours["lesion_dice"], ours["lesion_hd95"]], [dsc, hd], atol=TOL, rtol=0,
                                   equal_nan=True, err_msg=f"{name} {region}")


def test_anisotropic_pair_shows_the_packages_axis_order():
    """The package reads NIfTI with SimpleITK (array z, y, x) but takes the spacing in x, y, z order, so on an
    anisotropic grid its HD95 is ours with the spacing reversed; with the header's spacing ours differs."""
    pair, entry = PAIRS["anisotropic"], _reference()["pairs"]["anisotropic"]
    pred, truth = _masks(pair["pred"]), _masks(pair["truth"])
    for region in REGIONS:
        dsc, hd, _ = _expected(entry["regions"][region])
        swapped = lesion_metrics(pred[region], truth[region], pair["spacing"][::-1], PENALTY)
        ours = lesion_metrics(pred[region], truth[region], pair["spacing"], PENALTY)
        assert swapped["lesion_dice"] == pytest.approx(dsc, abs=TOL) and ours["lesion_dice"] == pytest.approx(dsc)
        assert swapped["lesion_hd95"] == pytest.approx(hd, abs=TOL)
        assert abs(ours["lesion_hd95"] - hd) > 0.1


def test_lesions_are_26_connected_and_matching_is_one_to_one():
    mask = np.zeros((6, 6, 6), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # corner neighbours: one lesion
    mask[4, 4, 4] = True
    assert lesions(mask)[1] == 2
    truth = np.zeros((20, 10, 10), bool)
    truth[2:18, 2:8, 2:8] = True
    pred = truth.copy()
    pred[9:11] = False  # one truth lesion, two predicted halves: one matches, the other is spurious
    out = lesion_metrics(pred, truth, (1.0, 1.0, 1.0), PENALTY)
    assert (out["lesion_tp"], out["lesion_fp"], out["lesion_fn"]) == (1, 1, 0)
    half = pred.copy()
    half[9:] = False
    assert out["lesion_dice"] == pytest.approx(2 * half.sum() / (half.sum() + truth.sum()))
    assert out["lesion_hd95"] == pytest.approx(pooled_hd95(half, truth, 1.0))


def _monai_nsd(pred, truth, spacing, tol):
    y_pred = torch.from_numpy(np.stack([~pred, pred]))[None].float()
    y = torch.from_numpy(np.stack([~truth, truth]))[None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(compute_surface_dice(y_pred, y, class_thresholds=[tol], spacing=list(spacing))[0, 0])


@pytest.mark.parametrize("seed", range(4))
def test_nsd_equals_monai(seed):
    rng = np.random.default_rng(seed)
    shape = (30, 28, 20)
    spacing = [(1.0, 1.0, 1.0), (0.9, 1.1, 2.5), (1.2, 0.8, 1.0), (1.0, 1.0, 3.0)][seed]
    truth = labels_to_regions(tumour(shape, (15, 14, 10), 7 + seed % 2), CONV23, REGIONS)[0]
    pred = labels_to_regions(tumour(shape, (15 + rng.integers(-2, 3), 14 + rng.integers(-2, 3), 10), 6),
                             CONV23, REGIONS)[0]
    pred |= rng.random(shape) < 0.01  # scattered false positives
    for tol in (0.0, 1.0, 2.0, 3.5):
        assert normalized_surface_dice(pred, truth, spacing, tol) == pytest.approx(
            _monai_nsd(pred, truth, spacing, tol), abs=1e-6)
    empty = np.zeros(shape, bool)
    assert normalized_surface_dice(empty, truth, spacing, 1.0) == 0.0 == pytest.approx(
        _monai_nsd(empty, truth, spacing, 1.0))
    assert normalized_surface_dice(empty, empty, spacing, 1.0) == 1.0  # MONAI: NaN; our convention, as Dice
    with pytest.raises(ValueError, match="tolerance"):
        normalized_surface_dice(pred, truth, spacing, -1.0)


@pytest.mark.parametrize("seed", range(3))
def test_sensitivity_specificity_equal_monai(seed):
    rng = np.random.default_rng(seed)
    pred, truth = rng.random((12, 10, 8)) < 0.3, rng.random((12, 10, 8)) < 0.2
    cm = get_confusion_matrix(torch.from_numpy(pred[None, None]).float(), torch.from_numpy(truth[None, None]).float())
    ours = sensitivity_specificity(pred, truth)
    assert ours["sensitivity"] == pytest.approx(float(compute_confusion_matrix_metric("sensitivity", cm)[0, 0]))
    assert ours["specificity"] == pytest.approx(float(compute_confusion_matrix_metric("specificity", cm)[0, 0]))
    crop = (slice(2, 9), slice(1, 8), slice(0, 8))  # a crop holding every foreground voxel, the rest counted TN
    p, t = np.zeros_like(pred), np.zeros_like(truth)
    p[crop], t[crop] = pred[crop], truth[crop]
    assert sensitivity_specificity(p[crop], t[crop], p.size) == pytest.approx(sensitivity_specificity(p, t))
    assert np.isnan(sensitivity_specificity(pred, np.zeros_like(truth))["sensitivity"])


def test_case_metrics_with_the_brats_set_equal_the_functions_on_full_masks():
    pair = PAIRS["spurious_lesion"]
    rows = case_metrics(pair["pred"], pair["truth"], CONV23, pair["spacing"], REGIONS, PENALTY,
                        brats_extra(1.0, PENALTY))
    pred, truth = _masks(pair["pred"]), _masks(pair["truth"])
    for row in rows:
        p, t = pred[row["region"]], truth[row["region"]]
        assert set(EXTRA_COLUMNS) <= set(row)
        assert row["nsd"] == pytest.approx(normalized_surface_dice(p, t, pair["spacing"], 1.0))
        assert row["specificity"] == pytest.approx(sensitivity_specificity(p, t)["specificity"])
        full = lesion_metrics(p, t, pair["spacing"], PENALTY)
        assert row["lesion_dice"] == pytest.approx(full["lesion_dice"])
        assert row["lesion_fp"] == full["lesion_fp"]
    plain = case_metrics(pair["pred"], pair["truth"], CONV23, pair["spacing"], REGIONS, PENALTY)
    assert "nsd" not in plain[0] and plain[0]["dice"] == rows[0]["dice"]


def test_evaluate_table_and_summary_hold_the_brats_set(tmp_path):
    raw, pred_dir = tmp_path / "raw", tmp_path / "pred"
    for i, name in enumerate(("multiple_lesions", "both_empty", "et_only_predicted")):
        case = f"BraTS-GLI-{i:05d}-000"
        pair = PAIRS[name]
        write_volume(raw / case / f"{case}-seg.nii.gz", pair["truth"], np.eye(4))
        write_volume(raw / case / f"{case}-t2f.nii.gz", pair["truth"].astype(np.float32), np.eye(4))
        write_volume(pred_dir / f"{case}.nii.gz", pair["pred"], np.eye(4))
    ids = [f"BraTS-GLI-{i:05d}-000" for i in range(3)]
    table = evaluate_predictions(pred_dir, raw, ids, REGIONS, PENALTY, 1, 1.0)
    assert set(EXTRA_COLUMNS) <= set(table.columns)
    summary = summarize(table, REGIONS, PENALTY)
    et = summary["regions"]["ET"]
    assert et["nonfinite"]["lesion_dice"] == 1  # both_empty: no lesion anywhere, left out as the package does
    assert et["lesions"]["fp"] == int(table.loc[table["region"] == "ET", "lesion_fp"].sum())
    assert summary["mean"]["nsd"] == pytest.approx(np.mean([summary["regions"][r]["nsd"]["mean"] for r in REGIONS]))
    assert summary["conventions"]["lesion_no_match"] == {"lesion_dice": 0.0, "lesion_hd95": PENALTY}
    table_plain = evaluate_predictions(pred_dir, raw, ids, REGIONS, PENALTY, 1)
    assert "nsd" not in table_plain.columns and "nsd" not in summarize(table_plain, REGIONS, PENALTY)["mean"]
