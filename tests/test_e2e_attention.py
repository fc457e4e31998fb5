"""End to end on tiny params: the attention study inside `dvc repro`, and `dvc exp run` on an attention param
re-running only the models it changes and what depends on them.

One module-scoped reproduction of a reduced project (region WT, the paper variants agvqvae and unet, three study
variants); every test works on its own copy, so the tests do not depend on their order.
"""
import json
import shutil

import pytest
import yaml

from tests.dvc_project import dvc, git, make_project, stages_ran

pytestmark = pytest.mark.slow

STUDY = ["unet_cbam", "unet_gate", "agvqvae_cbam"]


def _reduce(repo):
    """Keep two paper variants and three study variants (deep merges cannot remove keys, so edit the file)."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["regions"] = ["WT"]
    params["variants"] = {k: params["variants"][k] for k in ("agvqvae", "unet")}
    params["two_stage_variants"], params["single_stage_variants"] = ["agvqvae"], ["unet"]
    study = params["attention_study"]
    study["variants"] = {k: study["variants"][k] for k in STUDY}
    study["single_stage_variants"], study["two_stage_variants"] = ["unet_cbam", "unet_gate"], ["agvqvae_cbam"]
    study["regions"], study["bootstrap"] = ["WT"], 200
    params["ablate"]["bootstrap"] = 200
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "reduced project")


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    repo = make_project(tmp_path_factory.mktemp("attention") / "repo")
    _reduce(repo)
    proc = dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "reference run")
    return repo, proc


@pytest.fixture
def repo(reproduced, tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(reproduced[0], copy, symlinks=True)
    return copy


def test_study_runs_in_the_default_repro(reproduced):
    repo, proc = reproduced
    ran = stages_ran(proc)
    assert {"train_attention_seg@unet_cbam-WT", "train_attention_seg@unet_gate-WT",
            "train_attention_cond@agvqvae_cbam-WT", "attention_study"} <= ran
    assert {f"evaluate_attention@{v}" for v in STUDY} <= ran
    summary = json.loads((repo / "metrics/attention.json").read_text())
    assert set(summary["comparisons"]) == set(STUDY) and summary["regions"] == ["WT"]
    assert summary["variants"]["agvqvae_cbam"]["reference"] == "agvqvae"
    assert summary["variants"]["unet_gate"]["reference"] == "unet"
    assert summary["variants"]["unet_cbam"]["parameters"] > summary["variants"]["unet"]["parameters"]
    for variant in STUDY:
        evaluation = json.loads((repo / f"metrics/attention/{variant}.json").read_text())
        assert set(evaluation["regions"]) == {"WT"}
        contract = json.loads((repo / f"models/{variant}/WT.json").read_text())
        assert contract["attention"] != "none" and contract["parameters"] > 0
    assert "| Model | Attention | Parameters |" in (repo / "metrics/attention.md").read_text()
    assert (repo / "plots/attention.png").read_bytes()[:4] == b"\x89PNG"
    # the paper's ablation table shows only the paper's variants
    assert set(json.loads((repo / "metrics/ablation.json").read_text())["variants"]) == {"agvqvae", "unet"}
    assert not (repo / "metrics/eval/unet_cbam.json").exists()
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}


def test_exp_run_on_the_unet_attention_reruns_only_the_unet_and_its_dependents(repo):
    proc = dvc(repo, "exp", "run", "-S", "variants.unet.attention.encoder=cbam")
    ran = stages_ran(proc)
    assert ran == {"train_seg@unet-WT", "infer@unet", "evaluate@unet", "ablate", "attention_study"}, ran
    shown = dvc(repo, "exp", "show", "--json").stdout
    assert "metrics/attention.json" in shown


def test_exp_run_on_a_study_variant_reruns_only_that_variant(repo):
    proc = dvc(repo, "exp", "run", "-S", "attention_study.variants.unet_cbam.attention.decoder=se")
    ran = stages_ran(proc)
    assert ran == {"train_attention_seg@unet_cbam-WT", "evaluate_attention@unet_cbam", "attention_study"}, ran
