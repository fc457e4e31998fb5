"""End to end: `dvc repro evaluate_tokenizer` on tiny params (synthesize, preprocess, train and evaluate the MRI
tokenizer), its metrics and plots as DVC sees them, a no-op second run, and an experiment that re-runs only the
tokenizer stages."""
import json

import pytest

from tests.dvc_project import dvc, git, make_project, stages_ran

pytestmark = pytest.mark.slow

MODS = ["flair", "t1", "t1ce", "t2"]


def test_dvc_repro_tokenizer_stages(tmp_path):
    repo = make_project(tmp_path / "repo")
    first = dvc(repo, "repro", "evaluate_tokenizer")
    assert stages_ran(first) == {"synthesize", "preprocess", "train_tokenizer", "evaluate_tokenizer"}
    report = json.loads((repo / "metrics/tokenizer/test.json").read_text())
    splits = json.loads((repo / "data/splits.json").read_text())
    assert report["cases"] == len(splits["test"]) and set(report["reconstruction"]) == set(MODS)
    assert len(report["synthesis"]) == 16 and set(report["targets"]) == set(MODS)  # 12 pairs + 4 "all others"
    for name in ("curves.png", "reconstruction_epochs.png", *[f"synthesis/{m}.png" for m in MODS]):
        assert (repo / "plots/tokenizer" / name).is_file(), name
    shown = dvc(repo, "metrics", "show").stdout
    assert "metrics/tokenizer/test.json" in shown and "metrics/tokenizer/train.json" in shown
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tokenizer run")
    assert stages_ran(dvc(repo, "repro", "evaluate_tokenizer")) == set()
    rerun = stages_ran(dvc(repo, "exp", "run", "-S", "tokenizer.evaluate.figure_slices=2", "evaluate_tokenizer"))
    assert rerun == {"evaluate_tokenizer"}
    rerun = stages_ran(dvc(repo, "exp", "run", "-S", "tokenizer.train.lr=0.001", "evaluate_tokenizer"))
    assert rerun == {"train_tokenizer", "evaluate_tokenizer"}
