import numpy as np
import pytest

from agvq.regions import (CONVENTIONS, REGIONS, enforce_hierarchy, get_convention, labels_to_regions,
                          regions_to_labels, unknown_labels)


def _label_map(conv, seed=0, shape=(6, 7, 5)):
    return np.random.default_rng(seed).choice(np.array(conv.labels, dtype=np.uint8), size=shape)


def test_conventions_define_brats_labels():
    assert get_convention("brats2021").labels == (0, 1, 2, 4)
    assert get_convention("brats2023").labels == (0, 1, 2, 3)
    assert REGIONS == ("WT", "TC", "ET")
    with pytest.raises(ValueError, match="unknown label convention"):
        get_convention("brats2019")


@pytest.mark.parametrize("name, et", [("brats2021", 4), ("brats2023", 3)])
def test_labels_to_regions_per_convention(name, et):
    conv = CONVENTIONS[name]
    seg = np.array([0, 1, 2, et], dtype=np.uint8).reshape(1, 1, 4)
    masks = labels_to_regions(seg, conv)
    assert masks.shape == (3, 1, 1, 4) and masks.dtype == bool
    wt, tc, en = (m.ravel().tolist() for m in masks)
    assert wt == [False, True, True, True]  # NCR + ED + ET
    assert tc == [False, True, False, True]  # NCR + ET
    assert en == [False, False, False, True]  # ET only: label 4 in 2021, label 3 in 2023


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_derived_regions_are_nested_and_round_trip(name):
    conv = CONVENTIONS[name]
    seg = _label_map(conv)
    masks = labels_to_regions(seg, conv)
    wt, tc, et = masks
    assert not (tc & ~wt).any() and not (et & ~tc).any()
    back = regions_to_labels(dict(zip(REGIONS, masks)), conv)
    np.testing.assert_array_equal(back, seg)


def test_region_order_follows_argument():
    conv = CONVENTIONS["brats2021"]
    seg = _label_map(conv, seed=1)
    full = labels_to_regions(seg, conv)
    sub = labels_to_regions(seg, conv, regions=("ET", "WT"))
    np.testing.assert_array_equal(sub[0], full[2])
    np.testing.assert_array_equal(sub[1], full[0])
    with pytest.raises(ValueError, match="unknown region"):
        labels_to_regions(seg, conv, regions=("XX",))


@pytest.mark.parametrize("name, foreign", [("brats2021", 3), ("brats2023", 4)])
def test_labels_of_the_other_convention_are_rejected(name, foreign):
    conv = CONVENTIONS[name]
    seg = np.array([0, 1, foreign], dtype=np.uint8).reshape(1, 1, 3)
    assert unknown_labels(seg, conv) == [foreign]
    with pytest.raises(ValueError, match=f"labels \\[{foreign}\\]"):
        labels_to_regions(seg, conv)


def test_enforce_hierarchy_drops_orphans_and_compose_uses_it():
    wt = np.array([1, 1, 0, 0], bool)
    tc = np.array([1, 0, 1, 0], bool)  # third voxel outside WT
    et = np.array([1, 1, 0, 1], bool)  # second voxel outside TC, fourth outside all
    out = enforce_hierarchy({"WT": wt, "TC": tc, "ET": et})
    assert out["TC"].tolist() == [True, False, False, False]
    assert out["ET"].tolist() == [True, False, False, False]
    conv = CONVENTIONS["brats2023"]
    labels = regions_to_labels({"WT": wt, "TC": tc, "ET": et}, conv)
    assert labels.tolist() == [conv.et, conv.ed, 0, 0]
    only_wt = regions_to_labels({"WT": wt}, conv)  # missing regions are empty
    assert only_wt.tolist() == [conv.ed, conv.ed, 0, 0]
