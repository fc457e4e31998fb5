"""Validation during training applies the protocol that infer + evaluate apply to the saved model (sliding window,
blending and threshold of params ``infer``, the brain mask, the BraTS empty-mask conventions, and for a joint model
of all regions the ET-in-TC-in-WT nesting): a model's recorded best validation Dice equals what the infer and
evaluate stages give on the validation cases."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from agvq.data.synthetic import write_dataset
from tests.helpers_training import run_stage_inprocess, write_params

# A protocol unlike the defaults (threshold, blend, overlap), so a validation that ignored params would differ.
PROTOCOL = {"threshold": 0.35, "blend": "constant", "overlap": 0.25, "sw_batch_size": 3}
OVERRIDE = {
    "regions": ["WT"],
    "synthesize": {"count": 8, "shape": [48, 48, 32], "seed": 7},
    "preprocess": {"workers": 1, "split": {"val_fraction": 0.25, "test_fraction": 0.125}},
    "infer": PROTOCOL,
    "vqvae": {"train": {"epochs": 2, "val_every": 1}},
    "cond": {"train": {"epochs": 2, "val_every": 1}},
    "evaluate": {"workers": 1, "empty_penalty": 200.0},
    # agunet trained per region here (the default trains it jointly): the per-region single-stage path is checked too
    "variants": {"agunet": {"joint": False}},
    "single_stage_variants": ["agunet"],
    "joint_variants": ["agunet_no_as", "agunet_no_sm", "unet", "unetr", "swinunetr", "segresnet"],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    write_params(root / "params.yaml", OVERRIDE)
    write_params(root / "params_all.yaml", {**OVERRIDE, "regions": ["WT", "TC", "ET"]})
    p = ["--params", str(root / "params.yaml")]
    p_all = ["--params", str(root / "params_all.yaml")]
    with pytest.MonkeyPatch.context() as mp:
        raw = root / "raw"
        s = OVERRIDE["synthesize"]
        write_dataset(raw, s["count"], s["shape"], s["seed"], "brats2021", 0.15, 1, progress=False)
        run_stage_inprocess("preprocess.py", [*p, "--raw", str(raw), "--out", str(root / "prepared"),
                                              "--splits", str(root / "splits.json"),
                                              "--report", str(root / "report.json")], mp)
        common = ["--prepared", str(root / "prepared"), "--splits", str(root / "splits.json")]

        def outputs(name: str) -> list[str]:
            return ["--out", str(root / "models" / name / "WT.pt"), "--metrics", str(root / "metrics" / f"{name}.json"),
                    "--curve", str(root / "curves" / f"{name}.csv"), "--run-dir", str(root / "runs" / name)]

        run_stage_inprocess("train_vqvae.py", [*p, "--region", "WT", *common, *outputs("vqvae")], mp)
        run_stage_inprocess("train_cond.py", [*p, "--variant", "agvqvae", "--region", "WT", "--seed", "0", "--vqvae",
                                              str(root / "models" / "vqvae" / "WT.pt"), *common, *outputs("agvqvae")],
                            mp)
        run_stage_inprocess("train_cond.py", [*p, "--variant", "agunet", "--region", "WT", "--seed", "1", *common,
                                              *outputs("agunet")], mp)
        joint = [*outputs("unet")]
        joint[1] = str(root / "models" / "unet" / "joint.pt")
        run_stage_inprocess("train_joint.py", [*p_all, "--variant", "unet", "--seed", "0", *common, *joint], mp)
        for name in ("agvqvae", "agunet", "unet"):
            q = p_all if name == "unet" else p
            run_stage_inprocess("infer.py", [*q, "--models", str(root / "models" / name), "--raw", str(raw),
                                             "--splits", str(root / "splits.json"), "--split", "val",
                                             "--out", str(root / "pred" / name)], mp)
            run_stage_inprocess("evaluate.py", [*q, "--pred", str(root / "pred" / name), "--raw", str(raw),
                                                "--splits", str(root / "splits.json"), "--split", "val",
                                                "--out-csv", str(root / "eval" / f"{name}.csv"),
                                                "--out-json", str(root / "eval" / f"{name}.json")], mp)
    return root


@pytest.mark.parametrize("variant", ["agvqvae", "agunet", "unet"])
def test_best_validation_dice_equals_infer_plus_evaluate_on_the_validation_cases(project, variant):
    recorded = json.loads((project / "metrics" / f"{variant}.json").read_text())
    cases = pd.read_csv(project / "eval" / f"{variant}.csv")
    val_ids = json.loads((project / "splits.json").read_text())["val"]
    assert sorted(cases["case"].unique()) == sorted(val_ids) and len(val_ids) >= 2
    regions = sorted(cases["region"].unique())
    assert regions == (["ET", "TC", "WT"] if variant == "unet" else ["WT"])
    by_region = cases.groupby("region")[["dice", "hd95"]].mean()
    assert recorded["val_dice"] == pytest.approx(by_region["dice"].mean(), abs=1e-6)
    assert recorded["val_hd95"] == pytest.approx(by_region["hd95"].mean(), abs=1e-6)
    if variant == "unet":  # a joint model also records each region
        for region in regions:
            assert recorded[f"val_dice_{region}"] == pytest.approx(by_region.loc[region, "dice"], abs=1e-6)


def test_curve_has_a_validation_row_per_epoch(project):
    curve = pd.read_csv(project / "curves" / "unet.csv")
    assert list(curve["epoch"]) == [1, 2] and curve["val_dice"].notna().all()
    best = json.loads((project / "metrics" / "unet.json").read_text())
    assert best["val_dice"] == pytest.approx(curve["val_dice"].max(), rel=1e-5)  # the curve keeps 6 digits

