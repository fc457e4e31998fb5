"""End to end on tiny params in temporary git repositories: the whole `dvc repro`, experiments that re-run only
what a parameter affects, `dvc metrics diff` across commits, and a no-op second `dvc repro`.

One module-scoped run of the full pipeline is made once; every test works on its own copy of that repository,
so the tests do not depend on their order.
"""
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from tests.dvc_project import dvc, git, make_project, stages_ran

pytestmark = pytest.mark.slow

VARIANTS = ["agvqvae", "agvqvae_no_as", "agvqvae_no_sm", "agunet", "agunet_no_as", "agunet_no_sm", "unet"]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    repo = make_project(tmp_path_factory.mktemp("pipeline") / "repo")
    proc = dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "reference run")
    return repo, proc


@pytest.fixture
def repo(reproduced, tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(reproduced[0], copy, symlinks=True)
    return copy


def test_full_pipeline_outputs(reproduced):
    repo, proc = reproduced
    ran = stages_ran(proc)
    assert {"synthesize", "preprocess", "ablate"} <= ran
    assert {f"train_vqvae@{r}" for r in ("WT", "TC", "ET")} <= ran
    assert {f"evaluate@{v}" for v in VARIANTS} <= ran
    splits = json.loads((repo / "data/splits.json").read_text())
    for variant in VARIANTS:
        summary = json.loads((repo / f"metrics/eval/{variant}.json").read_text())
        assert summary["n_cases"] == len(splits["test"])
        assert set(summary["regions"]) == {"WT", "TC", "ET"}
        for case in splits["test"]:
            pred = nib.load(repo / f"predictions/{variant}/{case}.nii.gz")
            raw = nib.load(repo / f"data/raw/synthetic/{case}/{case}_flair.nii.gz")
            assert pred.shape == raw.shape
            np.testing.assert_allclose(pred.affine, raw.affine)
            assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}
    ablation = json.loads((repo / "metrics/ablation.json").read_text())
    assert set(ablation["variants"]) == set(VARIANTS)
    assert "| Model |" in (repo / "metrics/ablation.md").read_text()
    for region in ("WT", "TC", "ET"):
        vq = json.loads((repo / f"metrics/vqvae/{region}.json").read_text())
        assert {"val_dice", "used_fraction", "perplexity"} <= set(vq)


def test_second_repro_does_nothing(repo):
    assert stages_ran(dvc(repo, "repro")) == set()


def test_exp_run_on_one_region_reruns_only_that_region(repo):
    proc = dvc(repo, "exp", "run", "-S", "vqvae.regions.ET.train.foreground_fraction=0.9", "train_vqvae")
    ran = stages_ran(proc)
    assert "train_vqvae@ET" in ran
    assert not {"train_vqvae@WT", "train_vqvae@TC", "preprocess", "synthesize"} & ran


def test_exp_run_on_a_variant_switch_reruns_only_that_variant(repo):
    proc = dvc(repo, "exp", "run", "-S", "variants.agunet_no_sm.soft_masking=true")
    ran = stages_ran(proc)
    assert {f"train_seg@agunet_no_sm-{r}" for r in ("WT", "TC", "ET")} <= ran
    assert {"infer@agunet_no_sm", "evaluate@agunet_no_sm", "ablate"} <= ran
    others = {s for s in ran if "@" in s and s.split("@")[1].split("-")[0] != "agunet_no_sm"}
    assert others == set(), others
    shown = dvc(repo, "exp", "show", "--json").stdout
    assert "metrics/eval/agunet_no_sm.json" in shown


def test_metrics_diff_between_commits_reports_the_change(repo):
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("confidence: 0.95", "confidence: 0.9", 1))  # ablate (first)
    ran = stages_ran(dvc(repo, "repro"))
    assert ran == {"ablate"}, ran
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "90% intervals")
    diff = json.loads(dvc(repo, "metrics", "diff", "HEAD~1", "--all", "--json").stdout)
    assert any(path.startswith("metrics/ablation") for path in diff), diff
    params_diff = json.loads(dvc(repo, "params", "diff", "HEAD~1", "--json").stdout)
    change = params_diff["params.yaml"]["ablate.confidence"]
    assert (change["old"], change["new"]) == (0.95, 0.9)


def test_validation_protocol_params_invalidate_the_trained_models(repo):
    """Checkpoints are chosen by the infer + evaluate protocol, so its params are deps of every training stage."""
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("empty_penalty: 373.13", "empty_penalty: 300.0"))
    status = json.loads(dvc(repo, "status", "--json").stdout)
    assert {f"train_vqvae@{r}" for r in ("WT", "TC", "ET")} <= set(status)
    assert {"train_cond@agvqvae-WT", "train_seg@unet-ET", "evaluate@unet", "evaluate_vqvae@WT"} <= set(status)
    assert not {"synthesize", "preprocess"} & set(status)
