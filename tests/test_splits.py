"""Stable splits: a case's split depends only on (seed, case id); user split files (ours and nnU-Net's)."""
import json

import numpy as np
import pytest

from agvq.data.splits import case_key, make_splits, splits_from_file
from agvq.errors import ConfigError

SPLITS = ("train", "val", "test")


def _where(splits: dict) -> dict[str, str]:
    return {c: k for k in SPLITS for c in splits[k]}


def test_adding_or_removing_a_case_moves_only_that_case():
    ids = [f"BraTS2021_{i:05d}" for i in range(1251)]
    full = _where(make_splits(ids, 0.2, 0.2, seed=0))
    rng = np.random.default_rng(0)
    for _ in range(20):
        drop = set(rng.choice(ids, size=int(rng.integers(1, 50)), replace=False))
        fewer = _where(make_splits([c for c in ids if c not in drop], 0.2, 0.2, seed=0))
        assert all(fewer[c] == full[c] for c in fewer)  # nobody else moved
    more = _where(make_splits(ids + ["BraTS2021_99999"], 0.2, 0.2, seed=0))
    assert all(more[c] == full[c] for c in full)
    # the old seeded shuffle moved 143 of 250 test cases when one case was removed; the sizes now follow the
    # fractions binomially: 1251 * 0.2 = 250.2 expected, sd 14.1
    sizes = [list(full.values()).count(k) for k in SPLITS]
    assert abs(sizes[2] - 250.2) < 4 * 14.1 and abs(sizes[1] - 250.2) < 4 * 14.1


def test_hash_scheme_is_the_documented_one():
    import hashlib

    assert case_key("C1", 7) == int.from_bytes(hashlib.sha256(b"7:C1").digest()[:8], "big") / 2**64
    keys = np.array([case_key(f"c{i}", 0) for i in range(20000)])
    assert 0 <= keys.min() and keys.max() < 1 and abs(keys.mean() - 0.5) < 0.01  # uniform on [0, 1)


def test_default_phantoms_get_the_rounded_sizes_with_the_params_seed():
    ids = [f"SYN_{i:04d}" for i in range(40)]
    s = make_splits(ids, 0.2, 0.2, seed=22)  # params.yaml preprocess.split.seed
    assert [len(s[k]) for k in SPLITS] == [24, 8, 8]


def test_minimum_one_case_per_nonempty_split_on_tiny_datasets():
    for seed in range(30):
        small = make_splits(["x", "y", "z"], 0.1, 0.1, seed=seed)
        assert sorted(len(small[k]) for k in SPLITS) == [1, 1, 1]
        two = make_splits(["x", "y"], 0.0, 0.5, seed=seed)
        assert two["val"] == [] and len(two["train"]) == 1 and len(two["test"]) == 1
    with pytest.raises(ConfigError, match="2 valid case"):
        make_splits(["x", "y"], 0.2, 0.2, seed=0)
    with pytest.raises(ConfigError, match="below 1"):
        make_splits(["a", "b", "c", "d"], 0.5, 0.5, seed=0)
    with pytest.raises(ConfigError, match="duplicate"):
        make_splits(["a", "a", "b", "c"], 0.2, 0.2, seed=0)


def test_nnunet_fold_file_and_our_format(tmp_path):
    folds = [{"train": ["a", "b", "c"], "val": ["d"]}, {"train": ["a", "d", "c"], "val": ["b"]}]
    path = tmp_path / "splits_final.json"
    path.write_text(json.dumps(folds))
    s, warnings = splits_from_file(path, 1, ["a", "b", "c", "d", "e"])
    assert (s["train"], s["val"], s["test"]) == (["a", "c", "d"], ["b"], ["e"])
    assert len(warnings) == 1 and "does not list 1 prepared case" in warnings[0] and s["method"].endswith("(fold 1)")
    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps({"train": ["a", "b"], "val": ["c"], "test": ["d", "x"]}))
    s, warnings = splits_from_file(ours, 0, ["a", "b", "c", "d"])
    assert s["test"] == ["d"] and "1 test case(s) were not prepared" in warnings[0]


@pytest.mark.parametrize("content, fold, message", [
    ("[]", 0, "lists no folds"),
    ('[{"train": ["a"], "val": ["b"]}]', 3, "has 1 fold"),
    ('{"train": ["a"], "val": ["a"]}', 0, "in both 'train' and 'val'"),
    ('{"train": "a"}', 0, "must be a list of case ids"),
    ('{"folds": 1}', 0, "must hold"),
    ("not json", 0, "cannot be read"),
    ('{"train": ["zz"], "val": ["a"]}', 0, "leaves no prepared case in train"),
])
def test_bad_split_files_are_one_line_errors(tmp_path, content, fold, message):
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        splits_from_file(path, fold, ["a", "b"])
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(ConfigError, match="not found"):
        splits_from_file(tmp_path / "missing.json", 0, ["a"])
