"""End to end on tiny params in temporary git repositories: the whole `dvc repro`, experiments that re-run only
what a parameter affects, `dvc metrics diff` across commits, and a no-op second `dvc repro`.

One module-scoped run of the full pipeline is made once; every test works on its own copy of that repository,
so the tests do not depend on their order.
"""
import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.dvc_project import TINY_STUDY, TINY_VARIANTS, dvc, git, make_project, stages_ran

pytestmark = pytest.mark.slow

VARIANTS = TINY_VARIANTS


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
            pred = nib.load(repo / f"predictions/{variant}/seed0/{case}.nii.gz")
            raw = nib.load(repo / f"data/raw/synthetic/{case}/{case}_flair.nii.gz")
            assert pred.shape == raw.shape
            np.testing.assert_allclose(pred.affine, raw.affine)
            assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}
    ablation = json.loads((repo / "metrics/ablation.json").read_text())
    assert set(ablation["variants"]) == set(VARIANTS) | {f"{v}+pp" for v in VARIANTS}
    assert set(ablation["postprocessing"]["effect"]) == set(VARIANTS)
    md = (repo / "metrics/ablation.md").read_text()
    assert "## Effect of postprocessing" in md
    assert "| Model |" in md and "(not retrained)" in md and "paper HD95 AVG" in md
    assert (repo / "models/unet/seed0/joint.pt").is_file() and (repo / "models/agvqvae/seed0/TC.pt").is_file()
    assert (repo / "models/agunet/seed0/joint.pt").is_file()
    diagnosis = json.loads((repo / "metrics/diagnosis.json").read_text())
    assert diagnosis["split"] == "val" and set(diagnosis["regions"]) == {"WT", "TC", "ET"}
    for region in ("WT", "TC", "ET"):
        vq = json.loads((repo / f"metrics/vqvae/{region}.json").read_text())
        assert {"val_dice", "used_fraction", "perplexity"} <= set(vq)
    assert {f"robustness_predict@{v}" for v in ("agvqvae", "agunet", "unet")} | {"robustness"} <= ran
    robustness = json.loads((repo / "metrics/robustness.json").read_text())
    assert set(robustness["comparisons"]) == {"agvqvae_vs_agunet", "agvqvae_vs_unet"}
    assert {"clean", "noise@3", "missing_t1ce@1"} <= set(robustness["variants"]["unet"])
    first = sorted(splits["test"])[0]
    for variant in ("agvqvae", "agunet", "unet"):  # the clean input gives what infer + evaluate give
        table = pd.read_csv(repo / f"metrics/robustness/{variant}_cases.csv")
        clean = table[table["perturbation"] == "clean"].set_index("region")
        evaluated = pd.read_csv(repo / f"metrics/eval/{variant}_cases.csv")
        evaluated = evaluated[evaluated["case"] == first].set_index("region")
        np.testing.assert_allclose(clean.loc[["WT", "TC", "ET"], ["dice", "hd95"]],
                                   evaluated.loc[["WT", "TC", "ET"], ["dice", "hd95"]])
    assert (repo / "plots/robustness.png").stat().st_size > 0 and "# Robustness" in (
        repo / "metrics/robustness.md").read_text()
    assert not list(repo.rglob("*_s3_*.nii.gz"))  # no perturbed volume is written by the pipeline


def test_postprocessing_is_chosen_on_validation_and_evaluated_on_test(reproduced):
    repo, proc = reproduced
    ran = stages_ran(proc)
    assert {"postprocess"} | {f"infer_val@{v}" for v in VARIANTS} | {f"evaluate_pp@{v}" for v in VARIANTS} <= ran
    splits = json.loads((repo / "data/splits.json").read_text())
    report = json.loads((repo / "metrics/postprocessing.json").read_text())
    assert report["split"] == "val" and report["n_val_cases"] == len(splits["val"])
    assert set(report["variants"]) == set(VARIANTS)
    for variant, entry in report["variants"].items():
        assert [t["step"] for t in entry["trials"]] == report["candidates"]
        assert set(entry["steps"]) <= set(report["candidates"])
        assert sorted(p.name for p in (repo / "predictions_val" / variant / "seed0").iterdir()) == sorted(
            f"{c}.nii.gz" for c in splits["val"])
        assert sorted(p.name for p in (repo / "predictions_pp" / variant / "seed0").iterdir()) == sorted(
            f"{c}.nii.gz" for c in splits["test"])
        summary = json.loads((repo / f"metrics/eval/{variant}+pp.json").read_text())
        assert summary["n_cases"] == len(splits["test"])
        assert {"nsd", "lesion_dice", "sensitivity"} <= set(summary["regions"]["WT"])


def test_tta_invalidates_inference_only(repo):
    """TTA is an inference option: `dvc exp run -S infer.tta=flip` re-runs the infer stages and what depends on their
    outputs (evaluate, postprocess, ablate), and the studies' own predictions, never training. `dvc status` names the stages whose own deps or params
    changed (the real experiment takes ~8x the inference time, so it is not repeated here)."""
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("tta: none", "tta: flip"))
    status = set(json.loads(dvc(repo, "status", "--json").stdout))
    expected = {f"{s}@{v}" for s in ("infer", "infer_val") for v in VARIANTS}
    expected |= {f"robustness_predict@{v}" for v in ("agvqvae", "agunet", "unet")}
    expected |= {f"evaluate_attention@{v}" for v in TINY_STUDY}
    assert status == expected, status


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
    assert "train_joint@agunet_no_sm-0" in ran
    assert {"infer@agunet_no_sm", "evaluate@agunet_no_sm", "ablate"} <= ran
    others = {s for s in ran if "@" in s and s.split("@")[1].split("-")[0] != "agunet_no_sm"}
    assert others == set(), others
    shown = dvc(repo, "exp", "show", "--json").stdout
    assert "metrics/eval/agunet_no_sm.json" in shown


def test_robustness_params_rerun_only_the_study(repo):
    ran = stages_ran(dvc(repo, "exp", "run", "-S", "robustness.bootstrap=300"))
    assert ran == {"robustness"}, ran
    ran = stages_ran(dvc(repo, "exp", "run", "-S", "robustness.levels.noise=[30,15,8]"))
    assert ran == {"robustness_predict@agvqvae", "robustness_predict@agunet", "robustness_predict@unet",
                   "robustness"}, ran


def test_metrics_diff_between_commits_reports_the_change(repo):
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("confidence: 0.95", "confidence: 0.9", 1))  # ablate, not robustness
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
    assert {"train_cond@agvqvae-WT-0", "train_joint@unet-0", "evaluate@unet", "evaluate_vqvae@WT"} <= set(status)
    assert not {"synthesize", "preprocess"} & set(status)


def test_attention_study_runs_in_the_default_repro(reproduced):
    repo, proc = reproduced
    ran = stages_ran(proc)
    assert {"train_attention_joint@unet_cbam", "train_attention_joint@unet_gate",
            "train_attention_cond@agvqvae_cbam-WT", "attention_study"} <= ran
    assert {f"evaluate_attention@{v}" for v in TINY_STUDY} <= ran
    summary = json.loads((repo / "metrics/attention.json").read_text())
    assert set(summary["comparisons"]) == set(TINY_STUDY) and summary["regions"] == ["WT"]
    assert summary["variants"]["agvqvae_cbam"]["reference"] == "agvqvae"
    assert summary["variants"]["unet_gate"]["reference"] == "unet"
    assert summary["variants"]["unet_cbam"]["parameters"] > summary["variants"]["unet"]["parameters"]
    for variant in TINY_STUDY:
        evaluation = json.loads((repo / f"metrics/attention/{variant}.json").read_text())
        assert set(evaluation["regions"]) == {"WT"}
        model = "WT" if variant == "agvqvae_cbam" else "joint"
        contract = json.loads((repo / f"models/{variant}/seed0/{model}.json").read_text())
        assert contract["attention"] != "none" and contract["parameters"] > 0
    assert "| Model | Attention | Parameters |" in (repo / "metrics/attention.md").read_text()
    assert (repo / "plots/attention.png").read_bytes()[:4] == b"\x89PNG"
    # the paper's tables show only the paper's variants
    tables = json.loads((repo / "metrics/ablation.json").read_text())["variants"]
    assert not set(tables) & set(TINY_STUDY) and not (repo / "metrics/eval/unet_cbam.json").exists()


def test_exp_run_on_a_study_variant_reruns_only_that_variant(repo):
    proc = dvc(repo, "exp", "run", "-S", "attention_study.variants.unet_cbam.attention.decoder=se")
    ran = stages_ran(proc)
    assert ran == {"train_attention_joint@unet_cbam", "evaluate_attention@unet_cbam", "attention_study"}, ran


def test_exp_run_on_the_unet_attention_reruns_the_unet_but_no_other_model(repo):
    proc = dvc(repo, "exp", "run", "-S", "+variants.unet.attention.encoder=cbam")
    ran = stages_ran(proc)
    assert {"train_joint@unet-0", "infer@unet", "evaluate@unet", "ablate", "attention_study"} <= ran
    assert not {s for s in ran if s.startswith("train") and s.split("@")[1].split("-")[0] != "unet"}, ran
    assert not {s for s in ran if s.startswith(("train_attention", "evaluate_attention"))}, ran
