"""End to end: `dvc repro preprocess` in a temporary git repository on tiny params, then a no-op second run."""
import json

import numpy as np
import pytest

from tests.dvc_project import dvc, make_project, stages_ran

pytestmark = pytest.mark.slow


def test_dvc_repro_preprocess_then_nothing_to_do(tmp_path):
    repo = make_project(tmp_path / "repo")
    first = dvc(repo, "repro", "preprocess")
    assert stages_ran(first) == {"synthesize", "preprocess"}

    splits = json.loads((repo / "data/splits.json").read_text())
    ids = sorted(splits["train"] + splits["val"] + splits["test"])
    assert ids == [f"SYN_{i:04d}" for i in range(8)]
    assert not set(splits["train"]) & set(splits["test"])
    for case in ids:
        arrays = np.load(repo / "data/prepared" / f"{case}.npz")
        props = json.loads((repo / "data/prepared" / f"{case}.json").read_text())
        assert arrays["image"].shape[0] == 4 and arrays["image"].dtype == np.float32
        assert all(s % 16 == 0 for s in arrays["image"].shape[1:])
        assert arrays["masks"].shape == (3,) + arrays["image"].shape[1:]
        assert props["original_shape"] == [48, 48, 32] and props["convention"] == "brats2021"
    report = json.loads((repo / "data/preprocess_report.json").read_text())
    assert report["counts"] == {"found": 8, "prepared": 8, "skipped": 0}
    assert report["splits"]["train"] == len(splits["train"]) and report["warnings"] == []
    manifest = json.loads((repo / "data/prepared/.agvq-output.json").read_text())  # DVC tracks it with the folder
    assert manifest["stage"] == "preprocess" and len(manifest["files"]) == 16

    second = dvc(repo, "repro", "preprocess")
    assert stages_ran(second) == set()
    status = dvc(repo, "status", "preprocess")
    assert "up to date" in status.stdout.lower()
