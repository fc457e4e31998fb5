"""Dice / HD95 (against MONAI and a brute-force reference), BraTS conventions, summaries and the evaluate stage."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.distance import cdist

from agvq.errors import CaseError
from agvq.io.naming import get_naming
from agvq.io.nifti import write_volume
from agvq.metrics.evaluate import evaluate_predictions
from agvq.metrics.segmentation import LabelValueError, dice
from agvq.metrics.segmentation import case_metrics as _case_metrics
from agvq.regions import REGIONS


def case_metrics(pred, truth, convention, spacing, regions=REGIONS, empty_penalty=373.13):
    return _case_metrics(pred, truth, convention, spacing, regions, empty_penalty)
from agvq.metrics.surface import bounding_box, hd95, surface_distances
from agvq.metrics.tables import summarize, write_summary
from agvq.regions import get_convention, labels_to_regions

SPACINGS = [(1.0, 1.0, 1.5), (0.9, 0.9, 3.0), (1.2, 0.7, 1.0)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def monai_hd95(pred: np.ndarray, truth: np.ndarray, spacing) -> float:
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None], torch.from_numpy(truth)[None, None],
            include_background=True, percentile=95, spacing=list(spacing),
        )
    return float(out.item())


def brute_force_hd95(pred: np.ndarray, truth: np.ndarray, spacing) -> float:
    """Surface = mask voxels with a 6-neighbour outside the mask (or the array); all pairwise distances."""

    def surface_points(mask):
        padded = np.pad(mask, 1)
        points = []
        for idx in np.argwhere(mask):
            p = idx + 1
            neighbours = [padded[tuple(p + d)] for d in np.vstack([np.eye(3, dtype=int), -np.eye(3, dtype=int)])]
            if not all(neighbours):
                points.append(idx)
        return np.asarray(points, dtype=np.float64) * np.asarray(spacing)

    sp, st = surface_points(pred), surface_points(truth)
    pairwise = cdist(sp, st)
    return float(max(np.percentile(pairwise.min(axis=1), 95), np.percentile(pairwise.min(axis=0), 95)))


def blob(shape, center, radii, rng, wobble=0.25) -> np.ndarray:
    """Tumour-like blob: an ellipsoid with a random low-frequency boundary."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    rel = [(g - c) / r for g, c, r in zip(grids, center, radii)]
    radius = np.sqrt(sum(r**2 for r in rel))
    bumps = sum(
        rng.uniform(-wobble, wobble) * np.sin(rng.uniform(1, 4) * r + rng.uniform(0, 6)) for r in rel for _ in range(2)
    )
    return radius < 1.0 + bumps


def blob_pair(shape, seed):
    rng = np.random.default_rng(seed)
    center = np.asarray(shape) * rng.uniform(0.35, 0.65, 3)
    radii = np.asarray(shape) * rng.uniform(0.12, 0.25, 3)
    truth = blob(shape, center, radii, rng)
    pred = blob(shape, center + rng.normal(0, 2, 3), radii * rng.uniform(0.8, 1.2, 3), rng)
    far = np.asarray(shape) * rng.uniform(0.05, 0.95, 3)
    pred |= blob(shape, far, np.full(3, 2.5), rng, wobble=0.0)  # a false-positive satellite
    return pred, truth


@pytest.mark.parametrize("seed", range(4))
def test_hd95_matches_monai_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    shape = (22, 19, 15)
    pred = rng.random(shape) < rng.uniform(0.02, 0.4)
    truth = rng.random(shape) < rng.uniform(0.02, 0.4)
    spacing = SPACINGS[seed % len(SPACINGS)]
    assert hd95(pred, truth, spacing) == pytest.approx(monai_hd95(pred, truth, spacing), abs=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_hd95_matches_monai_on_blobs(seed):
    pred, truth = blob_pair((64, 60, 44), seed)
    spacing = SPACINGS[seed % len(SPACINGS)]
    assert hd95(pred, truth, spacing) == pytest.approx(monai_hd95(pred, truth, spacing), abs=1e-4)


def test_hd95_matches_monai_at_brats_size():
    pred, truth = blob_pair((240, 240, 155), seed=11)
    assert hd95(pred, truth, (0.9, 0.9, 3.0)) == pytest.approx(monai_hd95(pred, truth, (0.9, 0.9, 3.0)), abs=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_hd95_matches_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    shape = (12, 10, 9)
    pred = rng.random(shape) < 0.3
    truth = np.zeros(shape, bool)
    truth[2:9, 1:7, rng.integers(0, 3):8] = True  # touches the array border in some seeds
    spacing = SPACINGS[seed % len(SPACINGS)]
    assert hd95(pred, truth, spacing) == pytest.approx(brute_force_hd95(pred, truth, spacing), abs=1e-9)
    assert hd95(truth, pred, spacing) == pytest.approx(brute_force_hd95(truth, pred, spacing), abs=1e-9)


def test_hd95_is_max_of_directed_percentiles_not_pooled():
    truth = np.zeros((30, 30, 30), bool)
    truth[3:15, 3:15, 3:15] = True  # 728 surface voxels
    pred = truth.copy()
    pred[22:26, 22:26, 22:26] = True  # 56 far surface voxels: 7% of one direction, under 5% of both pooled
    spacing = (1.0, 1.0, 2.0)
    to_truth, to_pred = surface_distances(pred, truth, spacing)
    directed = max(np.percentile(to_truth, 95), np.percentile(to_pred, 95))
    pooled = np.percentile(np.concatenate([to_truth, to_pred]), 95)
    assert directed > 10.0 and pooled < 1.0
    assert hd95(pred, truth, spacing) == pytest.approx(directed)
    assert hd95(pred, truth, spacing) == pytest.approx(brute_force_hd95(pred, truth, spacing))


def test_hd95_identical_is_zero_and_empty_is_rejected():
    pred, _ = blob_pair((32, 30, 24), seed=3)
    assert hd95(pred, pred, (1.0, 1.0, 1.5)) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        hd95(np.zeros_like(pred), pred, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        hd95(pred, pred, (1.0, 1.0))


@pytest.mark.parametrize("seed", range(3))
def test_bounding_box_from_projections(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((17, 13, 11), bool)
    idx = rng.integers(0, (17, 13, 11), size=(5, 3))
    mask[tuple(idx.T)] = True
    box = bounding_box(mask)
    assert box == tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(idx.min(0), idx.max(0)))
    assert bounding_box(np.zeros((4, 5, 6), np.uint8)) is None


def test_dice_values():
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    assert dice(a, b) == 1.0  # both empty
    a[0, 0, :2] = True
    assert dice(a, b) == 0.0
    b[0, 0, 1:4] = True
    assert dice(a, b) == pytest.approx(2 * 1 / (2 + 3))


def _label_map(shape, seed, naming="brats2021"):
    conv = get_convention(get_naming(naming).convention)
    rng = np.random.default_rng(seed)
    wt = blob(shape, np.asarray(shape) / 2, np.asarray(shape) * 0.3, rng)
    tc = blob(shape, np.asarray(shape) / 2, np.asarray(shape) * 0.18, rng) & wt
    et = tc & ~blob(shape, np.asarray(shape) / 2, np.asarray(shape) * 0.1, rng)
    seg = np.zeros(shape, np.uint8)
    seg[wt], seg[tc], seg[et] = conv.ed, conv.ncr, conv.et
    return seg, conv


def test_case_metrics_conventions():
    seg, conv = _label_map((40, 36, 30), seed=0)
    spacing = (1.0, 1.0, 1.5)
    rows = case_metrics(seg, seg, conv, spacing)
    assert [r["region"] for r in rows] == ["WT", "TC", "ET"]
    assert all(r["dice"] == 1.0 and r["hd95"] == 0.0 and r["convention"] == "" for r in rows)

    no_et = np.where(seg == conv.et, conv.ncr, seg).astype(np.uint8)
    by_region = {r["region"]: r for r in case_metrics(no_et, seg, conv, spacing, empty_penalty=373.13)}
    assert by_region["ET"]["convention"] == "pred_empty" and by_region["ET"]["pred_empty"]
    assert by_region["ET"]["dice"] == 0.0 and by_region["ET"]["hd95"] == 373.13
    by_region = {r["region"]: r for r in case_metrics(seg, no_et, "brats2021", spacing, empty_penalty=100.0)}
    assert by_region["ET"]["convention"] == "truth_empty" and by_region["ET"]["hd95"] == 100.0
    by_region = {r["region"]: r for r in case_metrics(no_et, no_et, conv, spacing)}
    assert by_region["ET"]["convention"] == "both_empty"
    assert by_region["ET"]["dice"] == 1.0 and by_region["ET"]["hd95"] == 0.0
    empty = np.zeros_like(seg)
    rows = case_metrics(empty, empty, conv, spacing)
    assert all(r["convention"] == "both_empty" for r in rows)


def test_case_metrics_equals_full_volume_metrics():
    truth, conv = _label_map((48, 44, 32), seed=1, naming="brats2023")
    pred, _ = _label_map((48, 44, 32), seed=2, naming="brats2023")
    pred = np.roll(pred, 2, axis=0)
    spacing = (0.9, 0.9, 3.0)
    rows = case_metrics(pred, truth, "brats2023", spacing)
    pm, tm = labels_to_regions(pred, conv), labels_to_regions(truth, conv)
    for i, row in enumerate(rows):
        assert row["dice"] == pytest.approx(dice(pm[i], tm[i]))
        assert row["hd95"] == pytest.approx(monai_hd95(pm[i], tm[i], spacing), abs=1e-4)


def test_case_metrics_rejects_bad_labels():
    seg, conv = _label_map((20, 20, 16), seed=0)
    bad = seg.copy()
    bad[bad == conv.et] = 3  # a 2023 label in a 2021 map
    with pytest.raises(LabelValueError, match="prediction") as info:
        case_metrics(bad, seg, conv, (1.0, 1.0, 1.0))
    assert info.value.source == "prediction"
    with pytest.raises(LabelValueError, match="non-integer"):
        case_metrics(seg, seg.astype(np.float32) + 0.5 * (seg > 0), conv, (1.0, 1.0, 1.0))


def _table(n_cases=4):
    rows = []
    for i in range(n_cases):
        rows += [
            {"case": f"c{i}", "region": "WT", "dice": 0.8 + 0.01 * i, "hd95": 3.0 + i, "convention": ""},
            {"case": f"c{i}", "region": "TC", "dice": 0.7, "hd95": 5.0, "convention": ""},
        ]
        et = {"case": f"c{i}", "region": "ET", "dice": 0.6, "hd95": 2.0, "convention": ""}
        if i == 0:
            et.update(dice=1.0, hd95=0.0, convention="both_empty")
        if i == 1:
            et.update(dice=0.0, hd95=373.13, convention="pred_empty")
        rows.append(et)
    return pd.DataFrame(rows)


def test_summary_counts_and_is_finite(tmp_path):
    table = _table()
    table.loc[4, "hd95"] = np.nan  # a stray NaN (TC of c1) is counted, not propagated
    summary = summarize(table, ["WT", "TC", "ET"], 373.13)
    assert summary["n_cases"] == 4
    et = summary["regions"]["ET"]
    assert et["count"] == 4 and et["conventions"] == {"both_empty": 1, "pred_empty": 1, "truth_empty": 0}
    assert et["dice"]["mean"] == pytest.approx((1.0 + 0.0 + 0.6 + 0.6) / 4)
    assert et["hd95"]["max"] == pytest.approx(373.13) and et["hd95"]["median"] == pytest.approx(2.0)
    assert summary["regions"]["TC"]["nonfinite"]["hd95"] == 1
    region_means = [summary["regions"][r]["dice"]["mean"] for r in ("WT", "TC", "ET")]
    assert summary["mean"]["dice"] == pytest.approx(np.mean(region_means))
    assert summary["conventions"]["one_empty"] == {"dice": 0.0, "hd95": 373.13}
    out = tmp_path / "s.json"
    write_summary(summary, out)

    def reject(token):
        raise AssertionError(f"non-finite {token} in JSON")

    assert json.loads(out.read_text(), parse_constant=reject)["regions"]["WT"]["count"] == 4
    with pytest.raises(ValueError, match="no finite"):
        summarize(table.assign(dice=np.inf), ["WT"], 373.13)


def _write_case(raw, pred_dir, case, naming, seed, spacing, pred=None):
    seg, _ = _label_map((24, 22, 18), seed=seed, naming=naming)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 2.0]
    nm = get_naming(naming)
    write_volume(raw / case / nm.filename(case, "seg"), seg, affine)
    write_volume(raw / case / nm.filename(case, "flair"), seg.astype(np.float32), affine)
    write_volume(pred_dir / f"{case}.nii.gz", seg if pred is None else pred, affine)
    return seg


@pytest.mark.parametrize("workers", [1, 2])
def test_evaluate_both_namings(tmp_path, workers):
    raw, pred_dir = tmp_path / "raw", tmp_path / "pred"
    spacing = (1.0, 1.0, 2.5)
    other, _ = _label_map((24, 22, 18), seed=7, naming="brats2023")
    truth23 = _write_case(raw, pred_dir, "BraTS-GLI-00001-000", "brats2023", 3, spacing, pred=np.roll(other, 1, 2))
    _write_case(raw, pred_dir, "BraTS2021_00002", "brats2021", 4, spacing)
    ids = ["BraTS-GLI-00001-000", "BraTS2021_00002"]
    table = evaluate_predictions(pred_dir, raw, ids, ["WT", "TC", "ET"], 373.13, workers)
    assert list(table["case"]) == [ids[0]] * 3 + [ids[1]] * 3
    same = table[table["case"] == ids[1]]
    assert (same["dice"] == 1.0).all() and (same["hd95"] == 0.0).all()
    expected = case_metrics(np.roll(other, 1, 2), truth23, "brats2023", spacing)
    first = table[table["case"] == ids[0]]
    assert np.allclose(first["hd95"], [r["hd95"] for r in expected])
    assert np.allclose(first["dice"], [r["dice"] for r in expected])


def test_evaluate_errors(tmp_path):
    raw, pred_dir = tmp_path / "raw", tmp_path / "pred"
    spacing = (1.0, 1.0, 1.0)
    _write_case(raw, pred_dir, "A_1", "brats2021", 1, spacing)
    _write_case(raw, tmp_path / "elsewhere", "B_2", "brats2021", 2, spacing)
    with pytest.raises(CaseError, match="case B_2.*prediction is missing"):
        evaluate_predictions(pred_dir, raw, ["A_1", "B_2"], ["WT"], 373.13, 1)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 2.0]
    write_volume(pred_dir / "A_1.nii.gz", np.zeros((24, 22, 17), np.uint8), affine)
    with pytest.raises(CaseError, match="case A_1.*shape"):
        evaluate_predictions(pred_dir, raw, ["A_1"], ["WT"], 373.13, 1)
    seg = np.full((24, 22, 18), 3, np.uint8)
    shifted = affine.copy()
    shifted[2, 3] += 2.0
    write_volume(pred_dir / "A_1.nii.gz", seg, shifted)
    with pytest.raises(CaseError, match="case A_1.*affine"):
        evaluate_predictions(pred_dir, raw, ["A_1"], ["WT"], 373.13, 1)
    write_volume(pred_dir / "A_1.nii.gz", seg, affine)
    with pytest.raises(CaseError, match=r"A_1\.nii\.gz.*labels \[3\]"):
        evaluate_predictions(pred_dir, raw, ["A_1"], ["WT"], 373.13, 2)
    (pred_dir / "Z_9.nii.gz").touch()
    with pytest.raises(CaseError, match="case Z_9.*no ground-truth"):
        evaluate_predictions(pred_dir, raw, ["Z_9"], ["WT"], 373.13, 1)
    (raw / "B_2" / "B_2_seg.nii.gz").unlink()
    write_volume(pred_dir / "B_2.nii.gz", seg, affine)
    with pytest.raises(CaseError, match="case B_2.*B_2_seg.nii.gz.*segmentation file is missing"):
        evaluate_predictions(pred_dir, raw, ["B_2"], ["WT"], 373.13, 1)


def test_evaluate_stage_script(tmp_path, project_root):
    raw, pred_dir = tmp_path / "raw", tmp_path / "pred"
    _write_case(raw, pred_dir, "C_1", "brats2021", 5, (1.0, 1.0, 1.0))
    (tmp_path / "splits.json").write_text(json.dumps({"seed": 0, "train": [], "val": [], "test": ["C_1"]}))
    (tmp_path / "params.yaml").write_text("regions: [WT, TC, ET]\nevaluate: {empty_penalty: 373.13, workers: 2}\n")
    cmd = [
        sys.executable, str(project_root / "stages" / "evaluate.py"), "--pred", str(pred_dir), "--raw", str(raw),
        "--splits", str(tmp_path / "splits.json"), "--out-csv", str(tmp_path / "m" / "v_cases.csv"),
        "--out-json", str(tmp_path / "m" / "v.json"), "--params", str(tmp_path / "params.yaml"),
    ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    summary = json.loads((tmp_path / "m" / "v.json").read_text())
    assert summary["mean"]["dice"] == 1.0 and summary["n_cases"] == 1
    assert len(pd.read_csv(tmp_path / "m" / "v_cases.csv")) == 3
    (tmp_path / "splits.json").write_text(json.dumps({"test": ["C_2"]}))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "case C_2" in proc.stderr and "missing" in proc.stderr
