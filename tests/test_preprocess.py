import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from monai.transforms import CropForeground, NormalizeIntensity

from agvq.io.prepared import list_cases, load_case, load_props
from agvq.data.preprocess import (brain_mask, constant_channels, crop, crop_box, prepare_case, preprocess_dataset,
                                  uncrop, zscore)
from agvq.data.splits import make_splits
from agvq.errors import ConfigError
from agvq.io.discovery import discover_cases
from agvq.io.outputs import MANIFEST
from agvq.regions import REGIONS, get_convention, labels_to_regions
from helpers_nifti import AFFINE, SHAPE, phantom, write_case
from tests.helpers_config import preprocess_cfg

MODS = ["flair", "t1", "t1ce", "t2"]


def _random_mask(rng, shape):
    mask = np.zeros(shape, bool)
    lo = [int(rng.integers(0, s)) for s in shape]
    hi = [int(rng.integers(a + 1, s + 1)) for a, s in zip(lo, shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    mask[box] = rng.random(tuple(b - a for a, b in zip(lo, hi))) > 0.4
    mask[tuple(rng.integers(a, b) for a, b in zip(lo, hi))] = True
    return mask


def test_crop_box_and_crop_match_monai_crop_foreground():
    rng = np.random.default_rng(0)
    for _ in range(40):
        shape = tuple(int(s) for s in rng.integers(4, 26, 3))
        mask = _random_mask(rng, shape)
        margin, stride = int(rng.integers(0, 4)), int(rng.integers(1, 17))
        start, stop = crop_box(mask, margin, stride)
        image = (rng.random((2,) + shape).astype(np.float32) + 0.5) * mask
        ref = CropForeground(select_fn=lambda x: x > 0, margin=margin, k_divisible=stride, allow_smaller=True)
        ref_start, ref_stop = ref.compute_bounding_box(torch.as_tensor(image))
        assert (start, stop) == (tuple(map(int, ref_start)), tuple(map(int, ref_stop)))
        assert all((b - a) % stride == 0 for a, b in zip(start, stop))
        np.testing.assert_array_equal(crop(image, start, stop), np.asarray(ref(torch.as_tensor(image))))


def test_crop_then_uncrop_restores_the_grid_exactly():
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(3, 10, 9, 7)).astype(np.float32)
    for start, stop in [((2, 1, 0), (8, 9, 7)), ((-3, -2, -5), (13, 14, 11)), ((-4, 5, 2), (4, 21, 6))]:
        box = crop(volume, start, stop, fill=-1)
        assert box.shape == (3,) + tuple(b - a for a, b in zip(start, stop)) and box.flags["C_CONTIGUOUS"]
        back = uncrop(box, start, stop, volume.shape[1:], fill=np.nan)
        covered = np.zeros(volume.shape[1:], bool)
        covered[tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(start, stop, volume.shape[1:]))] = True
        np.testing.assert_array_equal(back[:, covered], volume[:, covered])  # exact on the covered region
        assert np.isnan(back[:, ~covered]).all()
        outside = np.ones(box.shape[1:], bool)
        outside[tuple(slice(max(-a, 0), max(-a, 0) + min(b, n) - max(a, 0))
                      for a, b, n in zip(start, stop, volume.shape[1:]))] = False
        assert (box[:, outside] == -1).all()  # the part of the box outside the volume is filled
    mask = _random_mask(rng, (20, 18, 12))
    start, stop = crop_box(mask, 3, 16)  # a brain crop covers the mask: round trip is lossless
    np.testing.assert_array_equal(uncrop(crop(mask, start, stop), start, stop, mask.shape), mask)
    with pytest.raises(ValueError, match="does not match crop box"):
        uncrop(np.zeros((2, 2, 2)), (0, 0, 0), (3, 3, 3), (5, 5, 5))


def test_brain_mask_and_crop_box_errors():
    a = np.zeros((4, 4, 4), np.int16)
    b = a.copy()
    a[1, 1, 1], b[2, 3, 0] = 5, -2
    np.testing.assert_array_equal(brain_mask([a, b]), (a != 0) | (b != 0))
    np.testing.assert_array_equal(brain_mask(np.stack([a, b])), (a != 0) | (b != 0))
    with pytest.raises(ValueError, match="non-empty"):
        crop_box(np.zeros((3, 3, 3), bool), 1, 4)


def test_zscore_statistics_and_monai_cross_check():
    rng = np.random.default_rng(2)
    brain = np.zeros((12, 10, 8), bool)
    brain[2:10, 1:9, 2:7] = True
    image = np.stack([rng.normal(300 + 50 * c, 20 + 5 * c, brain.shape) * brain for c in range(3)])
    out = zscore(image, brain)
    assert out.dtype == np.float32 and out.shape == image.shape
    for c in range(3):
        assert abs(out[c][brain].mean()) < 1e-5 and abs(out[c][brain].std() - 1) < 1e-5
        assert (out[c][~brain] == 0).all()
    ref = NormalizeIntensity(nonzero=True, channel_wise=True)(torch.as_tensor(image, dtype=torch.float32))
    np.testing.assert_allclose(out, np.asarray(ref), atol=1e-5)
    flat = np.where(brain, 7.0, 0.0)[None]  # std 0: centred, not divided
    assert (zscore(flat, brain) == 0).all() and np.isfinite(zscore(flat, brain)).all()


def test_prepare_case_two_modalities_and_no_labels(tmp_path):
    write_case(tmp_path, "U1", modalities=("flair", "t1ce"), with_seg=False)
    arrays, props = prepare_case(discover_cases(tmp_path)[0], ["t1ce", "flair"], margin=1, stride=16,
                                 require_labels=False)
    assert arrays["image"].shape[0] == 2 and "masks" not in arrays
    assert all(s % 16 == 0 for s in arrays["image"].shape[1:])
    assert props["modalities"] == ["t1ce", "flair"] and props["has_labels"] is False
    assert props["files"] == {"t1ce": "U1_t1ce.nii.gz", "flair": "U1_flair.nii.gz"}
    images, _, brain = phantom()
    start, stop = props["crop_start"], props["crop_stop"]
    # channel order follows the modality list, and the z-scored image is exact on the original grid
    np.testing.assert_allclose(uncrop(arrays["image"], start, stop, SHAPE),
                               zscore([images["t1ce"], images["flair"]], brain), atol=1e-6)


@pytest.mark.parametrize("naming, et_label", [("brats2021", 4), ("brats2023", 3)])
def test_both_namings_end_to_end_and_et_label(tmp_path, naming, et_label):
    raw = tmp_path / "raw"
    names = ["C0", "C1", "C2"] if naming == "brats2021" else ["BraTS-GLI-00000-000", "BraTS-GLI-00001-000",
                                                               "BraTS-GLI-00002-000"]
    for i, case in enumerate(names):
        write_case(raw / "Archive", case, naming=naming, seed=i)
    out = tmp_path / "prepared"
    report = preprocess_dataset(raw, out, preprocess_cfg(modalities=MODS, margin=2, stride=16, workers=2),
                                progress=False)
    assert list_cases(out) == sorted(names) and report["counts"]["prepared"] == 3
    case = load_case(out, names[1])
    images, seg, brain = phantom(seed=1, convention=naming)
    assert (seg == et_label).any()
    props = case.props
    assert props["naming"] == naming and props["convention"] == naming and props["has_labels"]
    assert props["original_shape"] == list(SHAPE) and np.allclose(props["affine"], AFFINE)
    assert np.allclose(props["spacing"], [1.0, 1.0, 1.2])
    assert case.image.dtype == np.float32 and case.brain.dtype == bool and case.masks.dtype == np.uint8
    assert case.masks.shape == (3,) + case.brain.shape and all(s % 16 == 0 for s in case.brain.shape)
    start, stop = props["crop_start"], props["crop_stop"]
    masks = uncrop(case.masks, start, stop, SHAPE)
    np.testing.assert_array_equal(masks[REGIONS.index("ET")], seg == et_label)  # 2021 label 4 / 2023 label 3
    np.testing.assert_array_equal(masks, labels_to_regions(seg, get_convention(naming)).astype(np.uint8))
    np.testing.assert_array_equal(uncrop(case.brain, start, stop, SHAPE), brain)
    np.testing.assert_allclose(uncrop(case.image, start, stop, SHAPE),
                               zscore([images[m] for m in MODS], brain), atol=1e-6)
    with np.load(out / f"{names[1]}.npz") as npz:  # a plain npz: no pickle, the contract's keys
        assert sorted(npz.files) == ["brain", "image", "masks"]
    assert load_props(out, names[1]) == json.loads((out / f"{names[1]}.json").read_text())


def test_crop_covers_labels_outside_the_brain_and_output_is_replaced(tmp_path):
    _, seg, _ = phantom()
    seg[0, 0, 0] = 2  # a labelled voxel where every modality is zero
    write_case(tmp_path / "raw", "C1", overrides={"seg": seg})
    write_case(tmp_path / "raw", "C2", seed=2)
    out = tmp_path / "prepared"
    cfg = preprocess_cfg(modalities=MODS, margin=0, stride=8)
    preprocess_dataset(tmp_path / "raw", out, cfg, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "C1.json", "C1.npz", "C2.json", "C2.npz"]
    shutil.rmtree(tmp_path / "raw" / "C2")
    preprocess_dataset(tmp_path / "raw", out, cfg, progress=False)  # a folder this stage wrote is replaced whole
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "C1.json", "C1.npz"]
    case = load_case(out, "C1")
    assert all(s <= 0 for s in case.props["crop_start"])
    back = uncrop(case.masks, case.props["crop_start"], case.props["crop_stop"], SHAPE)
    assert back[0, 0, 0, 0] == 1  # WT keeps the voxel


def test_bad_params_are_config_errors(tmp_path):
    write_case(tmp_path / "raw", "C1")
    for kw in ({"modalities": ["t1", "dwi"]}, {"on_error": "ignore"}, {"stride": 0}, {"margin": -1},
               {"workers": "two"}, {"compress_level": 12}):
        args = {"modalities": MODS, "margin": 1, "stride": 8} | kw
        with pytest.raises(ConfigError, match="preprocess"):
            preprocess_dataset(tmp_path / "raw", tmp_path / "out", preprocess_cfg(**args), progress=False)
        assert not (tmp_path / "out").exists()


def test_splits_seeded_disjoint_and_complete():
    ids = [f"case{i:03d}" for i in range(23)]
    a = make_splits(ids, 0.2, 0.2, seed=3)
    assert a == make_splits(list(reversed(ids)), 0.2, 0.2, seed=3)  # order of the input does not matter
    assert a != make_splits(ids, 0.2, 0.2, seed=4)
    parts = [set(a[k]) for k in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == len(ids) and set.union(*parts) == set(ids)
    assert a["seed"] == 3 and all(a[k] == sorted(a[k]) for k in ("train", "val", "test"))
    for case in ids:  # the documented scheme: sha256("seed:case"), first 8 bytes big-endian / 2**64
        u = int.from_bytes(hashlib.sha256(f"3:{case}".encode()).digest()[:8], "big") / 2**64
        assert case in a["test" if u < 0.2 else "val" if u < 0.4 else "train"]
    small = make_splits(["x", "y", "z"], 0.1, 0.1, seed=0)
    assert [len(small[k]) for k in ("train", "val", "test")] == [1, 1, 1]
    assert make_splits(["x", "y"], 0.0, 0.5, seed=0)["val"] == []
    with pytest.raises(ConfigError, match="2 valid case"):
        make_splits(["x", "y"], 0.2, 0.2, seed=0)
    with pytest.raises(ConfigError, match="below 1"):
        make_splits(ids, 0.5, 0.5, seed=0)


def test_constant_channels_fast_path_equals_the_direct_check():
    rng = np.random.default_rng(5)
    brain = np.zeros((20, 20, 10), bool)
    brain[3:15, 2:18, 1:9] = True
    for _ in range(100):
        kinds = rng.integers(0, 4, 4)
        chans = [np.zeros(brain.shape, np.int16) if k == 0 else
                 np.where(brain, int(rng.integers(1, 500)), 0).astype(np.int16) if k == 1 else
                 np.where(brain, rng.integers(0, 500, brain.shape), 0).astype(np.int16) if k == 2 else
                 np.where(brain, rng.normal(100, 1e-3, brain.shape), 0).astype(np.float32) for k in kinds]
        expected = [(c, float(chans[c][brain][0])) for c, k in enumerate(kinds) if k in (0, 1)]
        assert constant_channels(chans, brain) == expected
        assert constant_channels(chans, brain, zscore(chans, brain)) == expected
