"""Ablation report: paper-style table, best-value marking, paired bootstrap, markdown, JSON, bar plot, stage script."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from agvq.config import VariantSpec, parse
from agvq.metrics.ablation import (ablation_report, comparison_markdown, compare_to_main, markdown_table,
                                   table_rows)
from agvq.metrics.ablation_plot import bar_plot
from agvq.metrics.bootstrap import bootstrap_ci, paired_bootstrap, variant_ci
from agvq.metrics.published import load_published
from agvq.metrics.tables import COLUMNS, summarize, write_case_table, write_summary

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = load_published(ROOT / "references" / "agvqvae_miccai2025_brats2021.yaml")

REGIONS = ["WT", "TC", "ET"]
T, SE = "transformer", {"squeeze_excitation": True}
RAW_VARIANTS = {
    "agvqvae": {"two_stage": True, "arch": T, "attention_scaling": True, "soft_masking": True, **SE},
    "agvqvae_no_as": {"two_stage": True, "arch": T, "attention_scaling": False, "soft_masking": True, **SE},
    "agvqvae_no_sm": {"two_stage": True, "arch": T, "attention_scaling": True, "soft_masking": False, **SE},
    "agunet": {"two_stage": False, "arch": T, "attention_scaling": True, "soft_masking": True, **SE},
    "agunet_no_as": {"two_stage": False, "arch": T, "attention_scaling": False, "soft_masking": True, **SE},
    "agunet_no_sm": {"two_stage": False, "arch": T, "attention_scaling": True, "soft_masking": False, **SE},
    "unet": {"two_stage": False, "arch": "unet", "joint": True},
}
VARIANTS = {name: parse(VariantSpec, spec, f"variants.{name}") for name, spec in RAW_VARIANTS.items()}
# per variant: Dice offset and HD95 (mm) offset; agvqvae is best except unet's ET HD95 (set in _cases)
QUALITY = {"agvqvae": (0.90, 4.0), "agvqvae_no_as": (0.86, 6.0), "agvqvae_no_sm": (0.87, 5.5), "agunet": (0.85, 7.0),
           "agunet_no_as": (0.82, 8.0), "agunet_no_sm": (0.83, 7.5), "unet": (0.80, 9.0)}
CASES = [f"BraTS-{i:05d}" for i in range(16)]
ORDER = ["unet", "agunet_no_as", "agunet_no_sm", "agunet", "agvqvae_no_as", "agvqvae_no_sm", "agvqvae"]
LISTS = {"comparison": ["unet", "agunet", "agvqvae"], "ablation": ORDER[1:]}


def _cases(variant: str, seed: int = 0, seeds=(0, 1)) -> pd.DataFrame:
    rows = []
    for s in seeds:
        rng = np.random.default_rng([seed, list(VARIANTS).index(variant), s])
        dice0, hd0 = QUALITY[variant]
        for case in CASES:
            for k, region in enumerate(REGIONS):
                hd = hd0 + k + rng.normal(0, 0.5) if not (variant == "unet" and region == "ET") else 1.0 + rng.random()
                rows.append({"case": case, "region": region, "dice": dice0 - 0.05 * k + rng.normal(0, 0.02),
                             "hd95": hd, "convention": "computed", "pred_empty": False, "truth_empty": False,
                             "pred_voxels": 100, "truth_voxels": 100, "seed": s})
    return pd.DataFrame(rows, columns=list(COLUMNS) + ["seed"])


def _write_evals(folder, variants=VARIANTS) -> dict[str, pd.DataFrame]:
    tables = {}
    for variant in variants:
        tables[variant] = _cases(variant)
        write_case_table(tables[variant], folder / f"{variant}_cases.csv")
        write_summary(summarize(tables[variant], REGIONS, 373.13), folder / f"{variant}.json")
    return tables


def _summaries() -> dict:
    return {v: summarize(_cases(v), REGIONS, 373.13) for v in VARIANTS}


def _pair(shift: float, n: int = 40, noise: float = 0.05, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 0.9, n)
    ids = [f"c{i:03d}" for i in range(n)]
    b = pd.DataFrame({"case": ids, "region": "WT", "dice": base})
    a = pd.DataFrame({"case": ids, "region": "WT", "dice": base + shift + rng.normal(0, noise, n)})
    return a, b


def _all_cases() -> dict[str, pd.DataFrame]:
    return {v: _cases(v) for v in VARIANTS}


def test_table_values_order_names_seed_spread_and_published():
    cases = _all_cases()
    table = table_rows(LISTS["ablation"], VARIANTS, cases, REGIONS, PUBLISHED, "ablation")
    assert list(table["variant"]) == LISTS["ablation"]
    row = table.set_index("variant").loc["agvqvae_no_as"]
    assert (row["model"], row["stages"], row["AS"], row["SM"], row["seeds"]) == ("AG-VQ-VAE", 2, False, True, 2)
    for variant in LISTS["ablation"]:
        rows = table.set_index("variant").loc[variant]
        for region in REGIONS:
            for metric in ("dice", "hd95"):
                frame = cases[variant][cases[variant].region == region]
                assert rows[f"{metric}_{region}"] == pytest.approx(frame[metric].mean())
                per_seed = frame.groupby("seed")[metric].mean()
                assert rows[f"{metric}_{region}_sd"] == pytest.approx(per_seed.std(ddof=1))
        assert rows["dice_avg"] == pytest.approx(np.mean([rows[f"dice_{r}"] for r in REGIONS]))
    # the paper's ablation row of the same name sits beside ours, Dice as a fraction
    assert row["paper_name"] == "AG-VQ-VAE w/o AS" and row["paper_dice_WT"] == pytest.approx(0.9174)
    assert row["paper_hd95_ET"] == pytest.approx(4.43)
    comp = table_rows(LISTS["comparison"], VARIANTS, cases, REGIONS, PUBLISHED, "comparison").set_index("variant")
    assert comp.loc["unet", "paper_name"] == "3D U-Net" and comp.loc["unet", "paper_hd95_avg"] == pytest.approx(7.94)
    assert comp.loc["unet", "AS"] is None and np.isnan(comp.loc["agunet", "paper_dice_WT"])  # not in that table
    assert VARIANTS["agunet_no_sm"].display_name == "AG-UNet w/o SM"


def test_markdown_header_best_marking_and_published_columns():
    table = table_rows(LISTS["ablation"], VARIANTS, _all_cases(), REGIONS, PUBLISHED, "ablation")
    lines = markdown_table(table, REGIONS, True).strip().splitlines()
    assert lines[0] == ("| Model | Stages | AS | SM | HD95 WT | HD95 TC | HD95 ET | HD95 AVG | Dice WT | Dice TC "
                        "| Dice ET | Dice AVG | paper HD95 WT | paper HD95 TC | paper HD95 ET | paper HD95 AVG "
                        "| paper Dice WT | paper Dice TC | paper Dice ET | paper Dice AVG | Variant |")
    body = {row.split("|")[-2].strip().strip("`"): [c.strip() for c in row.split("|")[1:-1]] for row in lines[2:]}
    assert len(body) == 6 and all(len(cells) == 21 for cells in body.values())
    assert body["agvqvae_no_sm"][:4] == ["AG-VQ-VAE w/o SM", "2", "✓", "✗"]
    assert " ± " in body["agvqvae"][4]  # two seeds: mean ± seed spread
    assert body["agvqvae"][12:20] == ["5.01", "4.10", "3.74", "4.28", "0.926", "0.890", "0.823", "0.880"]
    bold = {(v, i) for v, cells in body.items() for i, c in enumerate(cells) if c.startswith("**")}
    assert bold == {("agvqvae", i) for i in range(4, 12)}  # agvqvae is best in each of our columns
    assert not any(c.startswith("**") for cells in body.values() for c in cells[12:])  # never the paper's
    comp = table_rows(LISTS["comparison"], VARIANTS, _all_cases(), REGIONS, PUBLISHED, "comparison")
    extra = [r for n, r in PUBLISHED.comparison.items() if n not in set(comp["paper_name"])]
    lines = markdown_table(comp, REGIONS, False, extra).strip().splitlines()
    not_retrained = [line for line in lines if "(not retrained)" in line]
    assert len(not_retrained) == 5  # TransBTS, UNETR, NestedFormer, DBTrans, Causal Intervention
    dbtrans = next(line for line in not_retrained if line.startswith("| DBTrans"))
    assert dbtrans.count("| – ") == 9 and "| 9.84 |" in dbtrans and "| 0.898 |" in dbtrans
    assert any(line.startswith("| 3D U-Net (joint)") for line in lines)


def test_bootstrap_known_shift_deterministic():
    a, b = _pair(0.10)
    res = paired_bootstrap(a, b, "dice", "WT", n_boot=2000, seed=3, confidence=0.95)
    assert res["ci_low"] < 0.10 < res["ci_high"] and res["ci_low"] > 0 and res["p_value"] == 0.0
    assert res["n_cases"] == 40 and res["mean_diff"] == pytest.approx((a.dice - b.dice).mean())
    assert paired_bootstrap(a, b, "dice", "WT", n_boot=2000, seed=3, confidence=0.95) == res
    assert paired_bootstrap(a, b, "dice", "WT", n_boot=2000, seed=4, confidence=0.95)["ci_low"] != res["ci_low"]
    a0, b0 = _pair(0.0)
    null = paired_bootstrap(a0, b0, "dice", "WT", n_boot=2000, seed=3, confidence=0.95)
    assert null["ci_low"] < 0 < null["ci_high"] and null["p_value"] > 0.05
    # order of rows does not matter: pairs are matched by case id
    shuffled = b.sample(frac=1.0, random_state=0)
    assert paired_bootstrap(a, shuffled, "dice", "WT", n_boot=2000, seed=3, confidence=0.95) == res


def test_bootstrap_matches_scipy():
    a, b = _pair(0.02, n=30, noise=0.08)
    ours = paired_bootstrap(a, b, "dice", "WT", n_boot=20000, seed=0, confidence=0.95)
    diff = (a.dice - b.dice).to_numpy()
    ref = stats.bootstrap((diff,), np.mean, n_resamples=20000, method="percentile", confidence_level=0.95,
                          rng=np.random.default_rng(1)).confidence_interval
    width = ref.high - ref.low
    assert abs(ours["ci_low"] - ref.low) < 0.05 * width and abs(ours["ci_high"] - ref.high) < 0.05 * width
    single = bootstrap_ci(diff, 20000, 0, 0.95)
    assert single["mean"] == pytest.approx(diff.mean()) and abs(single["ci_low"] - ref.low) < 0.05 * width


def test_paired_errors_and_nonfinite():
    a, b = _pair(0.05)
    with pytest.raises(ValueError, match="case sets differ.*1 only in A"):
        paired_bootstrap(a, b.iloc[1:], "dice", "WT", 100, 0, 0.95)
    with pytest.raises(ValueError, match="twice"):
        paired_bootstrap(pd.concat([a, a.iloc[:1]]), b, "dice", "WT", 100, 0, 0.95)
    with pytest.raises(ValueError, match="no rows for region TC"):
        paired_bootstrap(a, b, "dice", "TC", 100, 0, 0.95)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(a, b, "dice", "WT", 100, 0, confidence=1.0)
    a.loc[0, "dice"] = np.nan
    res = paired_bootstrap(a, b, "dice", "WT", 100, 0, 0.95)
    assert (res["n_cases"], res["n_dropped"]) == (39, 1)


def test_comparison_markdown_marks_ci():
    cases = _all_cases()
    comps = compare_to_main(cases, ORDER, "agvqvae", REGIONS, 500, 0, 0.95)
    assert len(comps) == 6 * 2 * 3 and set(comps["seeds_a"]) == {2}
    labels = {v: VARIANTS[v].display_name for v in ORDER}
    lines = comparison_markdown(comps, labels, "agvqvae", REGIONS, 0.95).strip().splitlines()
    assert lines[0] == "| Comparison | Metric | WT Δ [95% CI] | TC Δ [95% CI] | ET Δ [95% CI] |"
    assert len(lines) == 2 + 12
    unet_dice = next(line for line in lines if "(`unet`)" in line and "| Dice |" in line)
    assert unet_dice.startswith("| AG-VQ-VAE − 3D U-Net (`unet`)") and unet_dice.count("†") == 3
    unet_hd = next(line for line in lines if "(`unet`)" in line and "| HD95 |" in line)
    et = unet_hd.split("|")[5].strip()
    assert et.startswith("+") and et.endswith("†")  # the main variant is worse than unet on ET HD95


def test_seed_resampling_widens_the_interval_when_seeds_disagree():
    """Two seeds that disagree by a constant: resampling seeds widens the CI of the mean; one seed does not."""
    base = _cases("agvqvae", seeds=(0,))
    shifted = base.assign(seed=1, dice=base["dice"] + 0.1)
    two = pd.concat([base, shifted], ignore_index=True)
    one = variant_ci(base, "dice", "WT", 2000, 0, 0.95)
    both = variant_ci(two, "dice", "WT", 2000, 0, 0.95)
    assert both["seeds"] == 2 and both["mean"] == pytest.approx(one["mean"] + 0.05)
    assert (both["ci_high"] - both["ci_low"]) > 2 * (one["ci_high"] - one["ci_low"])
    # a single seed reduces to the plain case bootstrap of the paired differences
    other = _cases("agunet", seeds=(0,))
    res = paired_bootstrap(base, other, "dice", "WT", 2000, 3, 0.95)
    diff = base[base.region == "WT"].set_index("case")["dice"] - other[other.region == "WT"].set_index("case")["dice"]
    rng = np.random.default_rng(3)
    boot = diff.to_numpy()[rng.integers(0, len(diff), size=(2000, len(diff)))].mean(axis=1)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))


def test_report_json_and_png(tmp_path):
    _write_evals(tmp_path)
    report = ablation_report(tmp_path, VARIANTS, LISTS, REGIONS, "agvqvae", 300, 0, 0.95, PUBLISHED)
    text = json.dumps(report.summary, allow_nan=False)
    loaded = json.loads(text)
    assert set(loaded["variants"]) == set(VARIANTS) and len(loaded["comparisons"]) == 6
    assert loaded["tables"] == LISTS and loaded["published"]["dataset"] == "BraTS 2021"
    cell = loaded["comparisons"]["agvqvae_vs_unet"]["dice"]["WT"]
    assert set(cell) == {"mean_diff", "ci_low", "ci_high", "p_value", "n_cases"} and cell["n_cases"] == 16
    assert loaded["variants"]["agvqvae"]["dice"]["mean"] == pytest.approx(np.mean(
        [loaded["variants"]["agvqvae"]["dice"][r] for r in REGIONS]))
    assert loaded["variants"]["agvqvae"]["seeds"] == 2 and loaded["variants"]["agvqvae"]["dice_seed_sd"]["WT"] > 0
    md = report.markdown
    assert "## Comparison with other methods" in md and "## Ablation of attention scaling" in md
    assert "PUBLISHED numbers" in md and "cells)." in md
    png = tmp_path / "plot" / "ablation.png"
    bar_plot(report.intervals, pd.concat(report.tables.values()), png, 0.95)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in png.parent.iterdir() if p.name != "ablation.png"]  # no temp files left
    iv = report.intervals
    assert ((iv["ci_low"] <= iv["mean"]) & (iv["mean"] <= iv["ci_high"])).all()


def _stage(tmp_path, eval_dir):
    params = {"regions": REGIONS, "variants": RAW_VARIANTS, "seeds": [0, 1],
              "two_stage_variants": ORDER[4:], "single_stage_variants": ORDER[1:4], "joint_variants": ["unet"],
              "ablate": {"main_variant": "agvqvae", "bootstrap": 200, "seed": 0, "confidence": 0.95, **LISTS}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / "stages" / "ablate.py"),
           "--params", str(tmp_path / "params.yaml"), "--eval-dir", str(eval_dir),
           "--published", str(ROOT / "references" / "agvqvae_miccai2025_brats2021.yaml"),
           "--json", str(tmp_path / "out" / "ablation.json"), "--markdown", str(tmp_path / "out" / "ablation.md"),
           "--plot", str(tmp_path / "out" / "ablation.png")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_stage_script(tmp_path):
    eval_dir = tmp_path / "eval"
    _write_evals(eval_dir)
    proc = _stage(tmp_path, eval_dir)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    summary = json.loads((out / "ablation.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-finite {c}"))
    assert summary["main_variant"] == "agvqvae" and summary["bootstrap"]["resamples"] == 200
    md = (out / "ablation.md").read_text()
    assert "| Model | Stages | AS | SM | HD95 WT" in md and "| Comparison | Metric |" in md
    assert "| Model | HD95 WT | HD95 TC | HD95 ET | HD95 AVG |" in md
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"

    (eval_dir / "agunet_no_sm.json").unlink()
    proc = _stage(tmp_path, eval_dir)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and "agunet_no_sm.json" in lines[0] and lines[0].startswith("error:")
