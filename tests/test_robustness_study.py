"""Robustness study end to end on tiny models: the per-case table, its clean rows equal to infer + evaluate, nothing
written unless asked; the report's changes, paired comparisons, markdown, JSON and plot; the two stage scripts;
``infer.missing_modality``."""
from __future__ import annotations

import dataclasses
import json
import logging
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from agvq.config import InferConfig, RobustnessConfig, VariantSpec, parse
from agvq.errors import CaseError, ConfigError
from agvq.inference.predict import run_inference
from agvq.metrics.ablation import paired_bootstrap
from agvq.metrics.evaluate import evaluate_predictions
from agvq.robustness.conditions import COLUMNS
from agvq.robustness.plot import robustness_plot
from agvq.robustness.report import changes, robustness_report
from agvq.robustness.study import robustness_cases, select_cases
from agvq.regions import REGIONS
from tests.helpers_nifti import write_case
from tests.test_inference import CFG, CPU, CROP, MODS, model_dir, read

ROOT = Path(__file__).resolve().parents[1]
STUDY = RobustnessConfig(perturbations=("noise", "gibbs", "missing"), bootstrap=200)
PENALTY = 373.13
VARIANTS = {"agvqvae": {"two_stage": True, "arch": "transformer"}, "agunet": {"two_stage": False,
                                                                             "arch": "transformer"},
            "unet": {"two_stage": False, "arch": "unet"}}
SPECS = {n: parse(VariantSpec, v, f"variants.{n}") for n, v in VARIANTS.items()}


def raw_cases(tmp_path: Path, n: int = 2) -> Path:
    raw = tmp_path / "raw"
    for i in range(n):
        write_case(raw, f"R{i}", seed=i)
    return raw


def test_select_cases_takes_the_first_sorted():
    assert select_cases(["c", "a", "b"], 2) == ["a", "b"]
    assert select_cases(["c", "a"], 0) == ["a", "c"]
    with pytest.raises(ConfigError, match="no cases"):
        select_cases([], 0)


def test_table_has_every_condition_and_clean_rows_equal_infer_plus_evaluate(tmp_path):
    raw = raw_cases(tmp_path)
    models = model_dir(tmp_path)
    before = {p: p.read_bytes() for p in raw.rglob("*.nii.gz")}
    files_before = set(tmp_path.rglob("*"))
    table = robustness_cases(models, raw, ["R0", "R1"], REGIONS, STUDY, CFG, CROP, PENALTY, CPU, "fp32")
    assert set(tmp_path.rglob("*")) == files_before  # nothing written
    assert {p: p.read_bytes() for p in raw.rglob("*.nii.gz")} == before
    assert list(table.columns) == list(COLUMNS)
    n_conditions = 1 + 2 * 3 + len(MODS)
    assert len(table) == 2 * n_conditions * len(REGIONS)
    assert table["dice"].between(0, 1).all() and np.isfinite(table["hd95"]).all()
    assert set(table.loc[table["kind"] == "missing", "level"]) == set(MODS)
    run_inference(models, raw, tmp_path / "pred", ["R0", "R1"], REGIONS, CFG, CROP, CPU, "fp32")
    evaluated = evaluate_predictions(tmp_path / "pred", raw, ["R0", "R1"], REGIONS, PENALTY, 1)
    clean = table[table["perturbation"] == "clean"].reset_index(drop=True)
    pd.testing.assert_frame_equal(clean[["case", "region", "dice", "hd95"]],
                                  evaluated[["case", "region", "dice", "hd95"]], check_dtype=False)


def test_perturbed_volumes_are_written_only_when_asked(tmp_path):
    raw = raw_cases(tmp_path, 1)
    study = dataclasses.replace(STUDY, perturbations=("gibbs",))
    out = tmp_path / "perturbed"
    robustness_cases(model_dir(tmp_path), raw, ["R0"], REGIONS, study, CFG, CROP, PENALTY, CPU, "fp32", out)
    names = sorted(p.name for p in (out / "R0").iterdir())
    assert names == sorted(f"R0_gibbs_s{s}_{m}.nii.gz" for s in (1, 2, 3) for m in MODS)
    image, data = read(out / "R0" / "R0_gibbs_s3_flair.nii.gz")
    ref, raw_data = read(raw / "R0" / "R0_flair.nii.gz")
    np.testing.assert_allclose(image.affine, ref.affine)
    assert data.shape == raw_data.shape and not np.array_equal(data, raw_data)
    with pytest.raises(ConfigError, match="exists and is not empty"):
        robustness_cases(model_dir(tmp_path, name="m2"), raw, ["R0"], REGIONS, study, CFG, CROP, PENALTY, CPU,
                         "fp32", out)
    with pytest.raises(ConfigError, match="overlaps the raw data folder"):
        robustness_cases(model_dir(tmp_path, name="m3"), raw, ["R0"], REGIONS, study, CFG, CROP, PENALTY, CPU,
                         "fp32", raw / "sub")


def test_a_case_without_ground_truth_is_a_case_error(tmp_path):
    raw = tmp_path / "raw"
    write_case(raw, "U0", with_seg=False)
    with pytest.raises(CaseError, match="case U0.*segmentation file is missing"):
        robustness_cases(model_dir(tmp_path), raw, ["U0"], REGIONS, STUDY, CFG, CROP, PENALTY, CPU, "fp32")


# ---------------------------------------------------------------------------------------------- the report
def fake_table(quality: float, fragility: float, cases: int = 10, seed: int = 0) -> pd.DataFrame:
    """Clean Dice ``quality``; a perturbed condition at severity s loses ``fragility * s`` plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    plan = [("clean", "clean", 0, "")] + [("noise", "noise", s, str(l)) for s, l in zip((1, 2, 3), (20., 10., 5.))] \
        + [("gibbs", "gibbs", s, str(l)) for s, l in zip((1, 2, 3), (0.3, 0.45, 0.6))] \
        + [("missing_t1ce", "missing", 1, "t1ce")]
    for c in range(cases):
        for name, kind, sev, level in plan:
            for region in REGIONS:
                loss = fragility * (sev if kind != "missing" else 5) + rng.normal(0, 0.01)
                dice = float(np.clip(quality - (loss if sev else 0.0), 0, 1))
                rows.append({"case": f"C{c:02d}", "perturbation": name, "kind": kind, "severity": sev,
                             "level": level, "region": region, "dice": dice, "hd95": 2.0 + 20 * (1 - dice),
                             "convention": "", "pred_voxels": 100, "truth_voxels": 100})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_tables(folder: Path, tables: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}_cases.csv", index=False)
    return folder


def test_changes_are_perturbed_minus_clean_and_pooled_over_artefacts():
    table = fake_table(0.9, 0.02)
    delta = changes(table)
    row = delta[(delta["condition"] == "noise@2") & (delta["case"] == "C03") & (delta["region"] == "ET")].iloc[0]
    clean = table[(table["perturbation"] == "clean") & (table["case"] == "C03") & (table["region"] == "ET")].iloc[0]
    assert row["dice_change"] == pytest.approx(row["dice"] - clean["dice"])
    pooled = delta[(delta["condition"] == "artefacts@2") & (delta["case"] == "C03") & (delta["region"] == "ET")]
    parts = delta[delta["condition"].isin(["noise@2", "gibbs@2"]) & (delta["case"] == "C03")
                  & (delta["region"] == "ET")]
    assert pooled["dice_change"].iloc[0] == pytest.approx(parts["dice_change"].mean())
    assert "artefacts@1" in set(delta["condition"]) and not any(delta["condition"].str.startswith("artefacts@0"))


def test_report_measures_a_more_robust_main_variant(tmp_path):
    tables = {"agvqvae": fake_table(0.85, 0.005, seed=1), "agunet": fake_table(0.9, 0.03, seed=2),
              "unet": fake_table(0.88, 0.005, seed=3)}
    folder = write_tables(tmp_path / "rob", tables)
    study = dataclasses.replace(STUDY, bootstrap=500)
    report = robustness_report(folder, SPECS, REGIONS, study)
    s = report.summary
    assert s["n_cases"] == 10 and s["main_variant"] == "agvqvae"
    cell = s["variants"]["agunet"]["noise@3"]["WT"]["dice"]
    assert cell["change"] == pytest.approx(-0.09, abs=0.01)
    assert cell["change_ci_low"] <= cell["change"] <= cell["change_ci_high"]
    assert "change" not in s["variants"]["agunet"]["clean"]["WT"]["dice"]
    vs_agunet = s["comparisons"]["agvqvae_vs_agunet"]["noise@3"]["dice"]["WT"]
    assert vs_agunet["mean_diff"] == pytest.approx(0.075, abs=0.01) and vs_agunet["ci_low"] > 0
    vs_unet = s["comparisons"]["agvqvae_vs_unet"]["noise@3"]["dice"]["WT"]
    assert vs_unet["ci_low"] < 0 < vs_unet["ci_high"]  # the same fragility: no measurable difference
    delta = {v: changes(t) for v, t in tables.items()}
    direct = paired_bootstrap(delta["agvqvae"][delta["agvqvae"]["condition"] == "gibbs@1"],
                              delta["agunet"][delta["agunet"]["condition"] == "gibbs@1"], "hd95_change", "TC",
                              500, study.seed, study.confidence)
    assert s["comparisons"]["agvqvae_vs_agunet"]["gibbs@1"]["hd95"]["TC"] == {
        k: direct[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value", "n_cases")}
    md = report.markdown
    assert "# Robustness" in md and "`noise@3`" in md and "`artefacts@3`" in md and "`missing_t1ce@1`" in md
    assert "†" in md and "AG-UNet (`agunet`)" in md
    json.dumps(s, allow_nan=False)
    robustness_plot(report.tables, SPECS, study, tmp_path / "rob.png")
    assert (tmp_path / "rob.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_rejects_missing_or_mismatched_tables(tmp_path):
    folder = write_tables(tmp_path / "rob", {"agvqvae": fake_table(0.9, 0.01), "agunet": fake_table(0.9, 0.01)})
    with pytest.raises(ConfigError, match="unet_cases.csv of variant unet not found"):
        robustness_report(folder, SPECS, REGIONS, STUDY)
    write_tables(folder, {"unet": fake_table(0.9, 0.01, cases=9)})
    with pytest.raises(ConfigError, match="agvqvae and unet hold different cases or conditions"):
        robustness_report(folder, SPECS, REGIONS, STUDY)
    write_tables(folder, {"unet": fake_table(0.9, 0.01).drop(columns=["hd95"])})
    with pytest.raises(ConfigError, match="lacks columns"):
        robustness_report(folder, SPECS, REGIONS, STUDY)


# ----------------------------------------------------------------------------------------- the stage scripts
def run_script(monkeypatch, name: str, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", [name, *argv])
    try:
        runpy.run_path(str(ROOT / "stages" / name), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code)
    return 0


def test_stage_scripts_write_the_tables_report_and_plot(tmp_path, monkeypatch, capsys):
    raw = raw_cases(tmp_path, 3)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "regions": list(REGIONS), "preprocess": {"margin": 2, "stride": 16}, "runtime": {"device": "cpu"},
        "variants": VARIANTS, "two_stage_variants": ["agvqvae"], "single_stage_variants": ["agunet", "unet"],
        "robustness": {"variants": ["agvqvae", "unet"], "perturbations": ["spike"], "cases": 2, "bootstrap": 100}}))
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"seed": 0, "train": [], "val": [], "test": ["R2", "R0", "R1"]}))
    for name, two_stage in (("agvqvae", True), ("unet", False)):
        models = model_dir(tmp_path, two_stage=two_stage, name=name)
        assert run_script(monkeypatch, "robustness_predict.py", "--params", str(params), "--models", str(models),
                          "--raw", str(raw), "--splits", str(splits), "--out",
                          str(tmp_path / "rob" / f"{name}_cases.csv")) == 0
    table = pd.read_csv(tmp_path / "rob" / "unet_cases.csv")
    assert sorted(set(table["case"])) == ["R0", "R1"] and len(table) == 2 * 4 * 3
    out = [str(tmp_path / n) for n in ("r.json", "r.md", "r.png")]
    assert run_script(monkeypatch, "robustness.py", "--params", str(params), "--cases-dir", str(tmp_path / "rob"),
                      "--json", out[0], "--markdown", out[1], "--plot", out[2]) == 0
    summary = json.loads(Path(out[0]).read_text())
    assert set(summary["comparisons"]) == {"agvqvae_vs_unet"}
    assert set(summary["variants"]["unet"]) == {"clean", "artefacts@1", "artefacts@2", "artefacts@3", "spike@1",
                                                "spike@2", "spike@3"}
    capsys.readouterr()
    (tmp_path / "rob" / "unet_cases.csv").unlink()
    assert run_script(monkeypatch, "robustness.py", "--params", str(params), "--cases-dir", str(tmp_path / "rob"),
                      "--json", out[0], "--markdown", out[1], "--plot", out[2]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unet_cases.csv" in err and "\n" not in err


# ---------------------------------------------------------------------------------- infer.missing_modality
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_infer_fills_a_missing_sequence_with_a_warning(tmp_path, mode, caplog):
    raw = tmp_path / "raw"
    write_case(raw, "F0", modalities=["flair", "t1", "t2"], with_seg=False)
    write_case(raw, "F1", seed=1, with_seg=False)
    before = {p: p.read_bytes() for p in raw.rglob("*.nii.gz")}
    cfg = dataclasses.replace(CFG, missing_modality=mode)
    models = model_dir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="agvq.inference"):
        written = run_inference(models, raw, tmp_path / "pred", None, REGIONS, cfg, CROP, CPU, "fp32")
    assert written == ["F0", "F1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "case F0" in warnings[0] and "t1ce" in warnings[0] and mode in warnings[0]
    assert {p: p.read_bytes() for p in raw.rglob("*.nii.gz")} == before
    # zero and mean fills are the same network input after the z-score, so the same prediction
    other = "mean" if mode == "zero" else "zero"
    run_inference(models, raw, tmp_path / "pred2", ["F0"], REGIONS, dataclasses.replace(CFG, missing_modality=other),
                  CROP, CPU, "fp32")
    np.testing.assert_array_equal(read(tmp_path / "pred" / "F0.nii.gz")[1], read(tmp_path / "pred2" / "F0.nii.gz")[1])


def test_infer_missing_modality_error_and_a_case_with_no_sequence(tmp_path):
    raw = tmp_path / "raw"
    write_case(raw, "E0", modalities=["flair", "t1", "t1ce"], with_seg=False)
    with pytest.raises(CaseError, match="case E0: file E0_t2.nii.gz: file for modality t2 is missing"):
        run_inference(model_dir(tmp_path), raw, tmp_path / "pred", None, REGIONS, CFG, CROP, CPU, "fp32")
    raw2 = tmp_path / "raw2"
    write_case(raw2, "E1", modalities=[], with_seg=True)
    with pytest.raises(CaseError, match="case E1: none of the sequences"):
        run_inference(model_dir(tmp_path, name="m2"), raw2, tmp_path / "pred", None, REGIONS,
                      dataclasses.replace(CFG, missing_modality="zero"), CROP, CPU, "fp32")
    assert not (tmp_path / "pred").exists()
    assert parse(InferConfig, {}, "infer").missing_modality == "error"
    with pytest.raises(ConfigError, match="infer.missing_modality must be one of"):
        parse(InferConfig, {"missing_modality": "blur"}, "infer")
