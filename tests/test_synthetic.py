"""The embedded synthetic dataset: layout, determinism, label conventions, MRI-like contrasts, not-a-threshold."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from scipy import ndimage as ndi

from agvq.data import synthetic
from agvq.io.outputs import MANIFEST
from agvq.data.synthetic import (TISSUES, make_phantom, phantom_with_tissue, plan_cases, smooth_field, upsample,
                                 write_dataset)
from agvq.config import SynthesizeConfig, parse
from agvq.errors import ConfigError
from agvq.io.naming import MODALITIES, get_naming

ROOT = Path(__file__).resolve().parents[1]
SMALL = (32, 32, 24)
T = {name: i for i, name in enumerate(TISSUES)}


def best_threshold_dice(values: np.ndarray, target: np.ndarray) -> float:
    """Best Dice of {v >= t} or {v <= t} over every possible threshold, ties broken in the threshold's favour."""
    order = np.argsort(values, kind="stable")
    hits = target[order].astype(np.int64)
    k = np.arange(1, hits.size + 1)
    low = 2 * np.cumsum(hits) / (k + hits.sum())
    high = 2 * np.cumsum(hits[::-1]) / (k + hits.sum())
    return float(max(low.max(), high.max()))


@pytest.fixture(scope="module")
def cases():
    """Four default-size cases (the last without enhancing tumour), with their normal-tissue maps."""
    out = []
    for i, ss in enumerate(np.random.SeedSequence(11).spawn(4)):
        out.append(phantom_with_tissue((64, 64, 48), np.random.default_rng(ss), no_et=(i == 3)))
    return out


def regions(seg: np.ndarray) -> dict[str, np.ndarray]:
    return {"WT": seg > 0, "TC": (seg == 1) | (seg == 4), "ET": seg == 4}


def files_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_upsample_equals_scipy_zoom():
    coarse = np.random.default_rng(0).standard_normal((5, 7, 4))
    shape = (23, 31, 17)
    ref = ndi.zoom(coarse, [s / n for s, n in zip(shape, coarse.shape)], order=3, mode="grid-mirror", grid_mode=True)
    np.testing.assert_allclose(upsample(coarse, shape), ref, atol=1e-4)
    field = smooth_field(np.random.default_rng(1), shape, 6)
    assert field.shape == shape and field.dtype == np.float32 and 0.3 < field.std() < 1.5


def test_best_threshold_dice_matches_brute_force():
    rng = np.random.default_rng(3)
    values = rng.normal(size=500)
    target = values + rng.normal(scale=0.7, size=500) > 0.5
    brute = max(2 * (sel & target).sum() / (sel.sum() + target.sum())
                for t in np.unique(values) for sel in (values >= t, values <= t))
    assert best_threshold_dice(values, target) == pytest.approx(brute)


def test_phantom_arrays(cases):
    fractions = []
    for images, seg, tissue in cases:
        brain = tissue != 255
        assert seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 1, 2, 4}
        assert list(images) == list(MODALITIES)
        for img in images.values():
            assert img.dtype == np.int16 and img.shape == seg.shape
            assert np.array_equal(img > 0, brain)  # skull-stripped: 0 outside the brain, >= 1 inside
            assert img.max() < 5000
        wt = seg > 0
        assert wt.any() and not (wt & ~ndi.binary_erosion(brain)).any()  # the tumour lies inside the brain
        assert (seg == 1).any() and (seg == 2).any()
        fractions.append(wt.sum() / brain.sum())
    assert all(0.02 < f < 0.2 for f in fractions) and np.ptp(fractions) > 0.005
    assert all((seg == 4).any() for _, seg, _ in cases[:3]) and not (cases[3][1] == 4).any()


def test_rim_thickness_varies_between_cases():
    shares = []
    for ss in np.random.SeedSequence(12).spawn(3):
        _, seg = make_phantom((96, 96, 72), np.random.default_rng(ss))
        shares.append((seg == 4).sum() / ((seg == 1) | (seg == 4)).sum())  # enhancing share of the tumour core
    assert np.ptp(shares) > 0.2 and min(shares) > 0.2


def test_contrasts_follow_mri(cases):
    for images, seg, tissue in cases:
        normal_wm = (tissue == T["wm"]) & (seg == 0)
        csf = (tissue == T["csf"]) & (seg == 0)

        def mean(mod, mask):
            return float(images[mod][mask].mean())

        assert mean("flair", seg == 2) > 1.1 * mean("flair", normal_wm)  # oedema bright on FLAIR and T2
        assert mean("t2", seg == 2) > 1.1 * mean("t2", normal_wm)
        assert mean("flair", csf) < 0.7 * mean("flair", normal_wm)  # CSF dark on FLAIR, bright on T2
        assert mean("t2", csf) > 1.5 * mean("t2", normal_wm)
        if (seg == 1).sum() >= 100:  # a core large enough to escape the rim's partial volume is dark on T1ce
            assert mean("t1ce", seg == 1) < 0.9 * mean("t1ce", normal_wm)
        if (seg == 4).any():
            assert mean("t1ce", seg == 4) > 1.1 * mean("t1ce", seg == 1)  # enhancing rim bright on T1ce
            assert mean("t1ce", seg == 4) > 1.05 * mean("t1ce", normal_wm)


def test_no_single_threshold_recovers_a_region(cases):
    for images, seg, tissue in cases:
        brain = tissue != 255
        for region, mask in regions(seg).items():
            if not mask.any():
                continue
            for mod, img in images.items():
                dice = best_threshold_dice(img[brain].astype(np.float32), mask[brain])
                assert dice < 0.85, (region, mod, dice)


def test_full_brats_size_case():
    images, seg = make_phantom((240, 240, 155), np.random.default_rng(5))
    assert seg.shape == (240, 240, 155) and set(np.unique(seg)) == {0, 1, 2, 4}
    assert all(img.shape == seg.shape and img.dtype == np.int16 for img in images.values())
    assert 0.005 < (seg > 0).sum() / (images["t1"] > 0).sum() < 0.1


def test_plan_no_et_share_and_per_case_seeds():
    plan = plan_cases(40, 2025, 0.15)
    assert [c for c, _, _ in plan][:2] == ["SYN_0000", "SYN_0001"]
    assert sum(flag for _, _, flag in plan) == 6
    assert all(flag for _, _, flag in plan_cases(3, 0, 1.0))
    assert not any(flag for _, _, flag in plan_cases(3, 0, 0.0))
    # A case's generator depends on (seed, index) only, not on how many cases are planned.
    a, b = plan_cases(2, 9, 0.0)[1][1], plan_cases(5, 9, 0.0)[1][1]
    assert np.random.default_rng(a).random() == np.random.default_rng(b).random()


def write(out, count, shape, seed=0, naming="brats2021", no_et_fraction=0.15, workers=1, progress=False):
    return write_dataset(out, count, shape, seed, naming, no_et_fraction, workers, progress=progress)


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    write(tmp_path / "a", 3, SMALL, seed=4, progress=False)
    write(tmp_path / "b", 3, SMALL, seed=4, workers=2, progress=False)
    write(tmp_path / "c", 3, SMALL, seed=5, progress=False)
    a, b, c = (files_bytes(tmp_path / x) for x in "abc")
    assert len(a) == 16 and a == b  # 15 NIfTI files and the stage's manifest
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if k != MANIFEST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporary folders left


@pytest.mark.parametrize("naming, et_label", [("brats2021", 4), ("brats2023", 3)])
def test_naming_and_labels_on_disk(tmp_path, naming, et_label):
    cases = write(tmp_path / "raw", 2, SMALL, seed=1, naming=naming, no_et_fraction=0.0, progress=False)
    scheme = get_naming(naming)
    for case in cases:
        expected = {scheme.filename(case, m) for m in (*MODALITIES, "seg")}
        assert {p.name for p in (tmp_path / "raw" / case).iterdir()} == expected
        seg_img = nib.load(tmp_path / "raw" / case / scheme.filename(case, "seg"))
        labels = set(np.unique(np.asarray(seg_img.dataobj)).tolist())
        assert labels == {0, 1, 2, et_label}
        img = nib.load(tmp_path / "raw" / case / scheme.filename(case, "flair"))
        assert img.get_data_dtype() == np.int16 and img.header.get_zooms() == (1.0, 1.0, 1.0)
        np.testing.assert_array_equal(np.abs(np.diag(img.affine)), 1.0)


def test_no_et_fraction_one_writes_no_enhancing_tumour(tmp_path):
    write(tmp_path / "raw", 2, SMALL, seed=2, no_et_fraction=1.0, progress=False)
    for seg_file in (tmp_path / "raw").rglob("*_seg.nii.gz"):
        assert set(np.unique(np.asarray(nib.load(seg_file).dataobj)).tolist()) == {0, 1, 2}


def test_crash_leaves_nothing_half_written(tmp_path, monkeypatch):
    real = synthetic._write_case

    def flaky(out_dir, case, *args):
        if case == "SYN_0001":
            raise RuntimeError("disk full")
        return real(out_dir, case, *args)

    monkeypatch.setattr(synthetic, "_write_case", flaky)
    with pytest.raises(RuntimeError):
        write(tmp_path / "raw", 3, SMALL, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, word", [({"count": 0}, "count"), ({"shape": [8, 64, 64]}, "shape"),
                                          ({"naming": "brats2019"}, "naming"), ({"no_et_fraction": 1.5}, "no_et"),
                                          ({"seed": -1}, "seed"), ({"workers": 0}, "workers")])
def test_bad_params_raise_config_error(kwargs, word):
    args = dict(count=2, shape=list(SMALL), seed=0, naming="brats2021", no_et_fraction=0.0) | kwargs
    with pytest.raises(ConfigError, match=f"synthesize.{word}"):
        parse(SynthesizeConfig, args, "synthesize")


def run_stage(tmp_path: Path, section: dict) -> subprocess.CompletedProcess:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"synthesize": section}))
    cmd = [sys.executable, str(ROOT / "stages" / "synthesize.py"), "--out", str(tmp_path / "raw"),
           "--params", str(params)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)


def test_stage_script(tmp_path):
    section = {"count": 2, "shape": list(SMALL), "seed": 3, "naming": "brats2023", "no_et_fraction": 0.5}
    done = run_stage(tmp_path, section)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [MANIFEST, "SYN_0000", "SYN_0001"]
    assert (tmp_path / "raw" / "SYN_0001" / "SYN_0001-t2f.nii.gz").is_file()
    bad = run_stage(tmp_path, section | {"naming": "nifti"})
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2 and last.startswith("error: ") and "params.yaml: synthesize.naming must be one of" in last
