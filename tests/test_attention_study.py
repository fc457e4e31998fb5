"""The attention study report: per-variant CIs, paired differences with the reference, parameter counts, training
seconds, markdown, JSON without wall times, plot, the stage script and its one-line errors on bad input."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from agvq.config import VariantSpec, parse
from agvq.errors import ConfigError
from agvq.metrics.ablation import paired_bootstrap
from agvq.metrics.attention_study import attention_report, difference_plot, model_cost
from agvq.metrics.tables import COLUMNS, summarize, write_case_table, write_summary

ROOT = Path(__file__).resolve().parents[1]
REGIONS = ["WT", "TC"]
CASES = [f"BraTS-{i:05d}" for i in range(12)]
RAW = {
    "unet": {"two_stage": False, "arch": "unet"},
    "unet_cbam": {"two_stage": False, "arch": "unet", "attention": {"encoder": "cbam"}},
    "unet_gate": {"two_stage": False, "arch": "unet", "attention": {"skips": "gate"}},
}
SPECS = {k: parse(VariantSpec, v, f"variants.{k}") for k, v in RAW.items()}
REFERENCES = {"unet_cbam": "unet", "unet_gate": "unet"}
# Dice shift vs unet (cbam clearly better, gate indistinguishable), HD95 shift
SHIFT = {"unet": (0.0, 0.0), "unet_cbam": (0.05, -2.0), "unet_gate": (0.0, 0.0)}
PARAMS = {"unet": 1000, "unet_cbam": 1200, "unet_gate": 1100}


def _cases(variant: str) -> pd.DataFrame:
    rng = np.random.default_rng(list(RAW).index(variant))
    base = np.random.default_rng(99)
    rows = []
    for case in CASES:
        for region in REGIONS:
            dice0, hd0 = base.uniform(0.6, 0.85), base.uniform(5, 15)
            rows.append({"case": case, "region": region, "dice": dice0 + SHIFT[variant][0] + rng.normal(0, 0.01),
                         "hd95": hd0 + SHIFT[variant][1] + rng.normal(0, 0.2), "convention": "computed",
                         "pred_empty": False, "truth_empty": False, "pred_voxels": 10, "truth_voxels": 10})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _write(root: Path) -> dict[str, pd.DataFrame]:
    tables = {}
    for variant in RAW:
        folder = root / ("eval" if variant == "unet" else "attention")
        tables[variant] = _cases(variant)
        written = tables[variant]
        if variant == "unet":  # the reference is evaluated over two seeds; the study compares with seed 0's model
            other = written.assign(dice=written["dice"] - 0.3)
            written = pd.concat([written.assign(seed=0), other.assign(seed=1)], ignore_index=True)
        write_case_table(written, folder / f"{variant}_cases.csv")
        write_summary(summarize(written, REGIONS, 373.13), folder / f"{variant}.json")
        for k, region in enumerate(["WT", "TC", "ET"]):
            contract = {"region": region, "parameters": PARAMS[variant], "train_seconds": 20.0 + k + len(variant)}
            path = root / "models" / variant / "seed0" / f"{region}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(contract))
    return tables


def _report(root: Path, n_boot: int = 500):
    return attention_report(root / "attention", root / "eval", root / "models", SPECS, REFERENCES, REGIONS, n_boot,
                            0, 0.95, 0)


def test_report_numbers(tmp_path):
    tables = _write(tmp_path)
    report = _report(tmp_path)
    s = report.summary
    assert report.order == ["unet", "unet_cbam", "unet_gate"]
    assert s["variants"]["unet"]["reference"] is None and s["variants"]["unet_cbam"]["reference"] == "unet"
    assert s["variants"]["unet_cbam"]["parameters"] == 1200
    assert s["variants"]["unet_cbam"]["attention"] == "encoder cbam"
    for name in RAW:
        for region in REGIONS:
            cell = s["variants"][name]["dice"][region]
            rows = tables[name][tables[name]["region"] == region]
            assert cell["mean"] == pytest.approx(rows["dice"].mean())
            assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"]
    for name in REFERENCES:
        for metric in ("dice", "hd95"):
            for region in REGIONS:
                expected = paired_bootstrap(tables[name], tables["unet"], metric, region, 500, 0, 0.95)
                got = s["comparisons"][name][metric][region]
                assert got["mean_diff"] == pytest.approx(expected["mean_diff"])
                assert (got["ci_low"], got["ci_high"]) == (expected["ci_low"], expected["ci_high"])
    cbam = s["comparisons"]["unet_cbam"]
    assert cbam["dice"]["WT"]["ci_low"] > 0 and cbam["hd95"]["WT"]["ci_high"] < 0
    gate = s["comparisons"]["unet_gate"]["dice"]["WT"]
    assert gate["ci_low"] < 0 < gate["ci_high"]
    # training seconds: mean over the study regions of the contracts (WT 20, TC 21, plus the name length)
    assert report.seconds["unet_cbam"] == pytest.approx(20.5 + len("unet_cbam"))
    assert "seconds" not in json.dumps(s)  # wall times stay out of the metrics JSON


def test_markdown_and_plot(tmp_path):
    _write(tmp_path)
    report = _report(tmp_path)
    md = report.markdown
    assert "| Model | Attention | Parameters | Train s / model | Dice WT [CI]" in md
    assert "| 3D U-Net +CBAM (encoder) | encoder cbam | 1,200 (+200) |" in md
    assert "3D U-Net +CBAM (encoder) − 3D U-Net (`unet_cbam` − `unet`) | Dice | +0.0" in md
    assert md.count("†") >= 4  # cbam's Dice and HD95 on both regions
    assert "Test split, 12 cases, regions WT, TC" in md
    difference_plot(report, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def _digest(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage,match", [
    (lambda r: (r / "attention" / "unet_gate.json").unlink(), "unet_gate.json of variant unet_gate not found"),
    (lambda r: (r / "eval" / "unet_cases.csv").write_text("case,region\n"), "lacks columns"),
    (lambda r: (r / "models" / "unet" / "seed0" / "TC.json").unlink(), r"model contract .*unet/seed0/TC.json .* not found"),
    (lambda r: (r / "models" / "unet_cbam" / "seed0" / "WT.json").write_text("{}"), "lacks parameters / train_seconds"),
    (lambda r: (r / "models" / "unet_cbam" / "seed0" / "WT.json").write_text("{"), "cannot read model contract"),
    (lambda r: (r / "models" / "unet_cbam" / "seed0" / "TC.json").write_text(json.dumps({"parameters": 1, "train_seconds": 1})),
     "differ in parameter count"),
    (lambda r: write_case_table(_cases("unet_gate").iloc[2:], r / "attention" / "unet_gate_cases.csv"),
     "case sets differ"),
])
def test_bad_inputs_are_config_errors_and_change_nothing(tmp_path, damage, match):
    _write(tmp_path)
    damage(tmp_path)
    before = _digest(tmp_path)
    with pytest.raises(ConfigError, match=match):
        _report(tmp_path)
    assert _digest(tmp_path) == before


def test_a_joint_model_has_one_contract_for_every_region(tmp_path):
    path = tmp_path / "unet" / "seed1" / "joint.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"parameters": 7, "train_seconds": 30.0}))
    cost = model_cost(tmp_path, "unet", ["WT", "TC"], 1, joint=True)
    assert cost.parameters == 7 and cost.train_seconds == {"WT": 30.0, "TC": 30.0}
    with pytest.raises(ConfigError, match=r"unet/seed0/joint.json .* not found"):
        model_cost(tmp_path, "unet", ["WT"], 0, joint=True)


def test_the_reference_is_compared_through_its_model_of_the_study_seed(tmp_path):
    _write(tmp_path)
    with pytest.raises(ConfigError, match=r"unet_cases.csv has no rows of seed 3 .*seeds there: \[0, 1\]"):
        attention_report(tmp_path / "attention", tmp_path / "eval", tmp_path / "models", SPECS, REFERENCES, REGIONS,
                         50, 0, 0.95, 3)


def test_empty_study_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no variants"):
        attention_report(tmp_path, tmp_path, tmp_path, SPECS, {}, REGIONS, 10, 0, 0.95, 0)


def _stage(tmp_path: Path) -> subprocess.CompletedProcess:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["regions"] = ["WT", "TC", "ET"]
    unet = params["variants"]["unet"] = {**params["variants"]["unet"], "joint": False}  # per region, as in RAW
    params["joint_variants"].remove("unet")
    params["single_stage_variants"].append("unet")
    params["attention_study"] = {"regions": REGIONS, "single_stage_variants": list(REFERENCES), "bootstrap": 200,
                                 "variants": {k: {**unet, "attention": RAW[k]["attention"]} for k in REFERENCES}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "stages" / "attention_study.py"), "--params", str(tmp_path / "params.yaml"),
           "--eval-dir", str(tmp_path / "attention"), "--reference-eval-dir", str(tmp_path / "eval"),
           "--models", str(tmp_path / "models"), "--json", str(out / "attention.json"),
           "--markdown", str(out / "attention.md"), "--plot", str(out / "attention.png")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_stage_script(tmp_path):
    _write(tmp_path)
    proc = _stage(tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "attention.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"non-finite {c}"))
    assert set(summary["comparisons"]) == set(REFERENCES) and summary["bootstrap"]["resamples"] == 200
    assert (tmp_path / "out" / "attention.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "attention" / "unet_cbam_cases.csv").unlink()
    proc = _stage(tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and "unet_cbam_cases.csv" in lines[0]
