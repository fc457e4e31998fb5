import json
import subprocess
import sys

import numpy as np
import pytest

from agvq.data.preprocess import preprocess_dataset
from agvq.errors import CaseError
from agvq.io.discovery import discover_cases
from agvq.io.outputs import MANIFEST
from agvq.io.validation import load_image, load_seg, validate_case
from helpers_nifti import AFFINE, SHAPE, phantom, write_case, truncate
from tests.helpers_config import preprocess_cfg

MODS = ["flair", "t1", "t1ce", "t2"]


def _prep(raw, out, **kw):
    kw.setdefault("workers", 1)
    return preprocess_dataset(raw, out, preprocess_cfg(modalities=MODS, margin=2, stride=8, **kw), progress=False)


def _check_error(raw, tmp_path, case, file, problem):
    """The stage stops with one CaseError naming case, file and problem, and leaves no output behind."""
    out = tmp_path / "prepared"
    with pytest.raises(CaseError) as info:
        _prep(raw, out)
    err = info.value
    assert (err.case, err.file) == (case, file)
    assert problem in err.problem
    assert str(err) == f"case {case}: " + (f"file {file}: " if file else "") + err.problem
    assert "\n" not in str(err)
    assert not out.exists() and not any(p.name.startswith(".prepared") for p in tmp_path.iterdir())


def test_missing_modality_file(tmp_path):
    raw = tmp_path / "raw"
    write_case(raw, "C1", modalities=("flair", "t1", "t2"))
    _check_error(raw, tmp_path, "C1", "C1_t1ce.nii.gz", "file for modality t1ce is missing")


def test_missing_segmentation_when_labels_required(tmp_path):
    raw = tmp_path / "raw"
    write_case(raw, "BraTS-GLI-00001-000", naming="brats2023", with_seg=False)
    _check_error(raw, tmp_path, "BraTS-GLI-00001-000", "BraTS-GLI-00001-000-seg.nii.gz",
                 "segmentation file is missing")
    header = validate_case(discover_cases(raw)[0], MODS, require_labels=False)  # fine for inference
    assert not header.has_labels and header.shape == SHAPE


def test_shape_mismatch(tmp_path):
    raw = tmp_path / "raw"
    images, _, _ = phantom()
    write_case(raw, "C1", overrides={"t2": images["t2"][:, :, :-1]})
    _check_error(raw, tmp_path, "C1", "C1_t2.nii.gz", "shape (24, 24, 15) differs from C1_flair.nii.gz (24, 24, 16)")


def test_affine_mismatch_and_tolerance(tmp_path):
    raw = tmp_path / "raw"
    folder = write_case(raw, "C1")
    shifted = AFFINE.copy()
    shifted[0, 3] += 5e-6  # float32 header rounding: accepted
    write_case(raw, "C1", affine=shifted, modalities=("t1",), with_seg=False)
    validate_case(discover_cases(raw)[0], MODS)
    shifted[0, 3] += 0.5
    write_case(raw, "C1", affine=shifted, modalities=(), with_seg=True)
    assert (folder / "C1_seg.nii.gz").is_file()
    _check_error(raw, tmp_path, "C1", "C1_seg.nii.gz", "affine differs from C1_flair.nii.gz")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path, bad):
    raw = tmp_path / "raw"
    images, _, _ = phantom()
    vol = images["t1ce"].astype(np.float32)
    vol[3, 4, 5] = bad
    vol[6, 7, 8] = bad
    write_case(raw, "C1", overrides={"t1ce": vol})
    _check_error(raw, tmp_path, "C1", "C1_t1ce.nii.gz", "2 voxels are NaN or infinite")


@pytest.mark.parametrize("naming, bad_label", [("brats2021", 3), ("brats2023", 4), ("brats2021", 7)])
def test_labels_outside_convention(tmp_path, naming, bad_label):
    raw = tmp_path / "raw"
    _, seg, _ = phantom(convention="brats2021" if naming == "brats2021" else "brats2023")
    seg[0, 0, 0] = bad_label
    case = "C1" if naming == "brats2021" else "C-1"
    write_case(raw, case, naming=naming, overrides={"seg": seg})
    sep = "_" if naming == "brats2021" else "-"
    _check_error(raw, tmp_path, case, f"{case}{sep}seg.nii.gz",
                 f"label values [{bad_label}] are outside the {naming} convention")


def test_non_integer_segmentation(tmp_path):
    raw = tmp_path / "raw"
    _, seg, _ = phantom()
    write_case(raw, "C1", overrides={"seg": seg.astype(np.float32) + 0.5})
    _check_error(raw, tmp_path, "C1", "C1_seg.nii.gz", "non-integer or non-finite values")


def test_truncated_gzip_data_and_header(tmp_path):
    raw = tmp_path / "raw"
    folder = write_case(raw, "C1")
    truncate(folder / "C1_flair.nii.gz", keep=0.6)  # header intact, data cut: found when the data is read
    header = validate_case(discover_cases(raw)[0], MODS)
    with pytest.raises(CaseError, match="file C1_flair.nii.gz: file is truncated or corrupt"):
        load_image(header, "flair")
    _check_error(raw, tmp_path, "C1", "C1_flair.nii.gz", "truncated or corrupt")
    truncate(folder / "C1_seg.nii.gz", keep=0.0)  # a 1-byte file: not even a header
    _check_error(raw, tmp_path, "C1", "C1_seg.nii.gz", "cannot read NIfTI header")


def test_empty_case_folder_and_raw_without_cases(tmp_path):
    raw = tmp_path / "raw"
    (raw / "C9").mkdir(parents=True)
    _check_error(raw, tmp_path, "C9", None, "is empty")
    (raw / "C9").rmdir()
    with pytest.raises(CaseError, match="no cases found"):
        _prep(raw, tmp_path / "prepared")


def test_duplicate_case_ids(tmp_path):
    raw = tmp_path / "raw"
    write_case(raw / "a", "C1")
    write_case(raw / "b", "C1")
    _check_error(raw, tmp_path, "C1", None, "duplicate case id")


def test_all_zero_case(tmp_path):
    raw = tmp_path / "raw"
    zero = np.zeros(SHAPE, np.int16)
    write_case(raw, "C1", overrides={m: zero for m in MODS} | {"seg": zero.astype(np.uint8)})
    _check_error(raw, tmp_path, "C1", None, "no brain voxels")


def test_load_seg_returns_checked_integers(tmp_path):
    _, seg, _ = phantom(convention="brats2023")
    write_case(tmp_path, "C-2", naming="brats2023", overrides={"seg": seg.astype(np.float64)})
    header = validate_case(discover_cases(tmp_path)[0], MODS)
    out = load_seg(header)
    assert np.issubdtype(out.dtype, np.integer)
    np.testing.assert_array_equal(out, seg)


def test_stop_reports_first_failing_case_in_sorted_order(tmp_path):
    raw = tmp_path / "raw"
    images, _, _ = phantom()
    nan = images["t2"].astype(np.float32)
    nan[1, 1, 1] = np.nan
    for i in range(5):
        write_case(raw, f"C{i}", seed=i, overrides={"t2": nan} if i in (2, 4) else None)
    for _ in range(2):  # parallel workers, same answer every time
        with pytest.raises(CaseError, match="^case C2: file C2_t2.nii.gz"):
            _prep(raw, tmp_path / "prepared", workers=2)


def test_skip_mode_lists_bad_cases_and_prepares_the_rest(tmp_path):
    raw = tmp_path / "raw"
    write_case(raw, "A1")
    write_case(raw, "A2", modalities=("flair",))
    (raw / "A3").mkdir()
    write_case(raw, "A4", seed=4)
    out = tmp_path / "prepared"
    report = _prep(raw, out, on_error="skip", workers=2)
    assert report["counts"] == {"found": 4, "prepared": 2, "skipped": 2}
    assert [s["case"] for s in report["skipped"]] == ["A2", "A3"]
    assert report["skipped"][0]["file"] == "A2_t1.nii.gz" and "missing" in report["skipped"][0]["problem"]
    assert sorted(report["cases"]) == ["A1", "A4"]
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "A1.json", "A1.npz", "A4.json", "A4.npz"]
    for c in ("A2", "A3"):
        (raw / c).rename(tmp_path / c)
    (raw / "A1").rename(tmp_path / "A1")
    write_case(raw, "A1", modalities=("t1",))
    (raw / "A4" / "A4_t1.nii.gz").unlink()
    with pytest.raises(CaseError, match="no valid cases to prepare"):  # everything skipped is an error
        _prep(raw, tmp_path / "prepared2", on_error="skip")
    assert not (tmp_path / "prepared2").exists()


def _run_stage(project_root, tmp_path, raw, on_error):
    params = tmp_path / "params.yaml"
    params.write_text(
        "preprocess:\n  modalities: [flair, t1, t1ce, t2]\n  margin: 2\n  stride: 8\n"
        f"  on_error: {on_error}\n  workers: 1\n  split: {{seed: 0, val_fraction: 0.2, test_fraction: 0.2}}\n")
    paths = {k: tmp_path / v for k, v in
             (("out", "prepared"), ("splits", "splits.json"), ("report", "report.json"))}
    cmd = [sys.executable, str(project_root / "stages" / "preprocess.py"), "--raw", str(raw), "--params",
           str(params)] + [a for k, v in paths.items() for a in (f"--{k}", str(v))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120), paths


def test_stage_bad_case_one_line_no_traceback_no_output(project_root, tmp_path):
    raw = tmp_path / "raw"
    for i in range(4):
        write_case(raw, f"B{i}", seed=i)
    truncate(raw / "B1" / "B1_t2.nii.gz", keep=0.6)
    proc, paths = _run_stage(project_root, tmp_path, raw, "stop")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("error: case B1: file B1_t2.nii.gz: file is truncated or corrupt")
    assert not any(p.exists() for p in paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "raw"]

    proc, paths = _run_stage(project_root, tmp_path, raw, "skip")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(paths["report"].read_text())
    assert [s["case"] for s in report["skipped"]] == ["B1"] and report["counts"]["prepared"] == 3
    splits = json.loads(paths["splits"].read_text())
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == ["B0", "B2", "B3"]
    assert "skipped B1: B1_t2.nii.gz" in proc.stdout
