"""Postprocessing: each step on hand-made label maps, the validation-only choice (a poisoned test split changes
nothing), the stage on disk, and the ``+pp`` rows and paired effect in the ablation report."""
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

from agvq.config import PostprocessConfig, VariantSpec, parse
from agvq.errors import CaseError, ConfigError, OutputError
from agvq.io.nifti import read_volume, write_volume
from agvq.metrics.postprocessed import (effect_markdown, postprocessing_effect, with_postprocessed)
from agvq.metrics.tables import COLUMNS, summarize, write_case_table, write_summary
from agvq.postprocessing.run import postprocess_variants
from agvq.postprocessing.selection import ValidationCase, choose_steps
from agvq.postprocessing.steps import apply_to_labels, keep_components
from agvq.regions import REGIONS, get_convention

ROOT = Path(__file__).resolve().parents[1]
C21 = get_convention("brats2021")
SHAPE = (40, 36, 28)
PENALTY = 373.13


def cfg(**kw) -> PostprocessConfig:
    return parse(PostprocessConfig, kw, "postprocess")


def ball(center, radius, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape)
    return sum((grid[i] - center[i]) ** 2 for i in range(3)) <= radius ** 2


def tumour(center=(14, 14, 12), radius=7, et=True, shape=SHAPE) -> np.ndarray:
    seg = np.zeros(shape, np.uint8)
    seg[ball(center, radius, shape)] = C21.ed
    seg[ball(center, 0.6 * radius, shape)] = C21.et if et else C21.ncr
    seg[ball(center, 0.3 * radius, shape)] = C21.ncr
    return seg


def with_blob(seg, center=(33, 30, 22), radius=2, label=None) -> np.ndarray:
    out = seg.copy()
    out[ball(center, radius)] = C21.et if label is None else label
    return out


# ------------------------------------------------------------------------------------------------ the steps
def test_keep_components_keeps_the_largest_and_those_above_the_threshold():
    mask = ball((10, 10, 10), 5) | ball((30, 28, 20), 2) | ball((30, 8, 20), 3)
    only = keep_components(mask, None)
    assert np.array_equal(only, ball((10, 10, 10), 5))
    big = keep_components(mask, int(ball((30, 8, 20), 3).sum()))
    assert np.array_equal(big, ball((10, 10, 10), 5) | ball((30, 8, 20), 3))
    single = ball((10, 10, 10), 5)
    assert np.array_equal(keep_components(single, None), single)


def test_largest_wt_removes_a_far_blob_with_its_core_and_et():
    seg = tumour()
    noisy = with_blob(seg)  # a far enhancing blob: WT, TC and ET all hold it
    out = apply_to_labels(noisy, C21, ["largest_wt"], cfg())
    assert np.array_equal(out, seg) and out.dtype == noisy.dtype
    assert not np.array_equal(noisy, seg)  # the input is not changed in place


def test_largest_tc_turns_a_second_core_into_oedema():
    seg = tumour(radius=9)
    noisy = seg.copy()
    noisy[ball((14, 14, 20), 1)] = C21.ncr  # a small separate core inside the oedema shell
    out = apply_to_labels(noisy, C21, ["largest_tc"], cfg())
    assert np.array_equal(out, seg)
    assert np.array_equal(apply_to_labels(noisy, C21, ["largest_wt"], cfg()), noisy)  # one WT: nothing to remove


def test_small_et_becomes_necrosis_and_a_large_one_stays():
    seg = tumour(et=False)
    small = seg.copy()
    small[ball((14, 14, 12), 1)] = C21.et  # 7 voxels of ET
    out = apply_to_labels(small, C21, ["small_et"], cfg(et_min_voxels=50))
    assert np.array_equal(out, seg)  # the ET voxels are NCR again, nothing else moved
    large = tumour(et=True)
    assert np.array_equal(apply_to_labels(large, C21, ["small_et"], cfg(et_min_voxels=50)), large)
    assert np.array_equal(apply_to_labels(small, C21, ["small_et"], cfg(et_min_voxels=7)), small)  # 7 is not < 7


@pytest.mark.parametrize("convention", ["brats2021", "brats2023"])
def test_nothing_changes_when_nothing_qualifies(convention):
    conv = get_convention(convention)
    seg = tumour()
    seg = np.select([seg == C21.ncr, seg == C21.ed, seg == C21.et], [conv.ncr, conv.ed, conv.et], 0).astype(np.uint8)
    steps = ["largest_wt", "largest_tc", "small_et"]
    assert np.array_equal(apply_to_labels(seg, conv, steps, cfg()), seg)
    empty = np.zeros(SHAPE, np.uint8)
    assert np.array_equal(apply_to_labels(empty, conv, steps, cfg()), empty)


def test_config_rejects_repeated_or_unknown_steps():
    with pytest.raises(ConfigError, match="distinct"):
        cfg(steps=["small_et", "small_et"])
    with pytest.raises(ConfigError, match="postprocess.steps"):
        cfg(steps=["dilate"])
    with pytest.raises(ConfigError, match="et_min_voxels"):
        cfg(et_min_voxels=0)


# ------------------------------------------------------------------------------------------------ the choice
def _val(pred, truth, case="v") -> ValidationCase:
    return ValidationCase(case, pred, truth, "brats2021", (1.0, 1.0, 1.0))


def test_choice_keeps_only_steps_that_improve_the_validation_mean():
    seg = tumour()
    no_et = tumour(et=False)
    small_et = no_et.copy()
    small_et[ball((14, 14, 12), 1)] = C21.et
    cases = [_val(with_blob(seg), seg, "a"), _val(small_et, no_et, "b"), _val(seg, seg, "c")]
    choice = choose_steps(cases, cfg(), REGIONS, PENALTY, 1.0)
    assert choice.steps == ["largest_wt", "small_et"]
    assert [t.kept for t in choice.trials] == [True, False, True]
    assert choice.trials[1].gain == 0.0  # largest_tc changes nothing here
    assert choice.score > choice.baseline and choice.n_cases == 3
    for metric in ("hd95", "nsd"):
        assert choose_steps(cases, cfg(metric=metric), REGIONS, PENALTY, 1.0).steps == ["largest_wt", "small_et"]
    # The official lesion-wise scores ignore spurious lesions (only matched pairs are averaged), so removing the far
    # blob does not change them; the ET-free case becomes lesion-free (undefined, left out) instead of Dice 0.
    lesion = choose_steps(cases, cfg(metric="lesion_dice"), REGIONS, PENALTY, 1.0)
    assert lesion.steps == ["small_et"] and lesion.trials[0].gain == 0.0


def test_choice_rejects_a_step_that_hurts_and_keeps_nothing_when_nothing_changes():
    two = tumour((12, 12, 10), 6) | with_blob(np.zeros(SHAPE, np.uint8), (30, 26, 20), 5, C21.ed)
    hurt = choose_steps([_val(two, two)], cfg(), REGIONS, PENALTY, 1.0)  # two true tumours, both predicted
    assert hurt.steps == [] and hurt.score == hurt.baseline == 1.0
    assert hurt.trials[0].step == "largest_wt" and hurt.trials[0].gain < 0 and not hurt.trials[0].kept
    both = choose_steps([_val(two, two)], cfg(wt_min_voxels=100), REGIONS, PENALTY, 1.0)  # keeps both tumours
    assert both.steps == [] and [t.gain for t in both.trials] == [0.0, 0.0, 0.0]


def test_min_gain_and_no_cases():
    seg = tumour()
    cases = [_val(with_blob(seg), seg)]
    gain = choose_steps(cases, cfg(steps=["largest_wt"]), REGIONS, PENALTY, 1.0).trials[0].gain
    assert choose_steps(cases, cfg(steps=["largest_wt"], min_gain=gain * 2), REGIONS, PENALTY, 1.0).steps == []
    with pytest.raises(ValueError, match="no validation cases|there are none"):
        choose_steps([], cfg(), REGIONS, PENALTY, 1.0)


# ------------------------------------------------------------------------------------------------ on disk
def _case(raw: Path, case: str, seg: np.ndarray) -> None:
    write_volume(raw / case / f"{case}_seg.nii.gz", seg, np.eye(4))
    write_volume(raw / case / f"{case}_flair.nii.gz", (seg > 0).astype(np.float32), np.eye(4))


def _project(tmp_path: Path) -> dict:
    """raw/ with 3 val and 2 test cases; predictions (test) and predictions_val (val) of two variants."""
    raw, pred, val = tmp_path / "raw", tmp_path / "pred", tmp_path / "val"
    seg, no_et = tumour(), tumour(et=False)
    small = no_et.copy()
    small[ball((14, 14, 12), 1)] = C21.et
    val_cases = {"V1": (with_blob(seg), seg), "V2": (small, no_et), "V3": (seg, seg)}
    test_cases = {"T1": (with_blob(seg, (4, 30, 4)), seg), "T2": (seg, seg)}
    for case, (p, t) in val_cases.items():
        _case(raw, case, t)
        for variant in ("good", "noisy"):
            write_volume(val / variant / f"{case}.nii.gz", t if variant == "good" else p, np.eye(4))
    for case, (p, t) in test_cases.items():
        _case(raw, case, t)
        for variant in ("good", "noisy"):
            write_volume(pred / variant / f"{case}.nii.gz", p, np.eye(4))
    return {"raw": raw, "pred": pred, "val": val, "val_ids": sorted(val_cases), "test_ids": sorted(test_cases)}


def _run(p: dict, out: Path, **kw) -> dict:
    return postprocess_variants(["good", "noisy"], p["pred"], p["val"], p["raw"], p["val_ids"], p["test_ids"], out,
                                cfg(**kw), REGIONS, PENALTY, 1.0)


def _digest(folder: Path) -> dict:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


def test_postprocess_on_disk_chooses_per_variant_and_applies_to_test(tmp_path):
    p = _project(tmp_path)
    before = {k: _digest(p[k]) for k in ("raw", "pred", "val")}
    report = _run(p, tmp_path / "out")
    assert report["variants"]["good"]["steps"] == []  # perfect validation predictions: no step helps
    assert report["variants"]["noisy"]["steps"] == ["largest_wt", "small_et"]
    assert report["variants"]["noisy"]["test_cases_changed"] == 1
    fixed = read_volume(tmp_path / "out" / "noisy" / "T1.nii.gz").data
    assert np.array_equal(fixed, tumour())
    untouched = read_volume(tmp_path / "out" / "good" / "T1.nii.gz").data
    assert np.array_equal(untouched, with_blob(tumour(), (4, 30, 4)))
    assert {k: _digest(p[k]) for k in ("raw", "pred", "val")} == before  # no input file changed


def test_choice_never_reads_the_test_labels(tmp_path):
    """Poison the test split's segmentations (garbage bytes, then other labels, then none): same choice."""
    p = _project(tmp_path)
    clean = _run(p, tmp_path / "out_clean")
    for case in p["test_ids"]:
        (p["raw"] / case / f"{case}_seg.nii.gz").write_bytes(b"not a nifti file")
    assert _run(p, tmp_path / "out_garbage") == clean
    for case in p["test_ids"]:
        write_volume(p["raw"] / case / f"{case}_seg.nii.gz", np.full(SHAPE, C21.et, np.uint8), np.eye(4))
    assert _run(p, tmp_path / "out_relabelled") == clean
    for case in p["test_ids"]:
        (p["raw"] / case / f"{case}_seg.nii.gz").unlink()
    assert _run(p, tmp_path / "out_none") == clean
    assert _digest(tmp_path / "out_none") == _digest(tmp_path / "out_clean")
    # ... whereas poisoning a validation label does change it
    (p["raw"] / "V1" / "V1_seg.nii.gz").write_bytes(b"broken")
    with pytest.raises(CaseError, match="V1"):
        _run(p, tmp_path / "out_val")


def test_postprocess_errors(tmp_path):
    p = _project(tmp_path)
    (p["val"] / "noisy" / "V2.nii.gz").unlink()
    with pytest.raises(CaseError, match="V2.*missing"):
        _run(p, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # written whole or not at all
    with pytest.raises(OutputError, match="lies inside the input --pred"):
        _run(p, p["pred"] / "inside")


def _into_seed_folders(root: Path, seed: int = 0) -> None:
    """Move each variant's predictions into ``seed<k>/`` (the layout of the seeded pipeline)."""
    for variant in [d for d in root.iterdir() if d.is_dir()]:
        (variant / f"seed{seed}").mkdir()
        for f in [f for f in variant.iterdir() if f.is_file()]:
            f.rename(variant / f"seed{seed}" / f.name)


def test_stage_script(tmp_path):
    p = _project(tmp_path)
    _into_seed_folders(p["pred"])
    _into_seed_folders(p["val"])
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": [], "val": p["val_ids"], "test": p["test_ids"]}))
    params = {"regions": list(REGIONS), "variants": {"good": {"two_stage": False, "arch": "unet"},
                                                     "noisy": {"two_stage": False, "arch": "unet"}},
              "single_stage_variants": ["good", "noisy"], "seeds": [0],
              "ablate": {"main_variant": "good"}, "postprocess": {"metric": "hd95"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, str(ROOT / "stages" / "postprocess.py"), "--params", str(tmp_path / "params.yaml"),
           "--pred", str(p["pred"]), "--val-pred", str(p["val"]), "--raw", str(p["raw"]), "--splits", str(splits),
           "--out", str(tmp_path / "pp"), "--json", str(tmp_path / "m" / "postprocessing.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "m" / "postprocessing.json").read_text())
    assert report["metric"] == "hd95" and report["split"] == "val" and report["n_val_cases"] == 3
    assert report["variants"]["noisy"]["steps"] == ["largest_wt", "small_et"]
    assert report["variants"]["noisy"]["baseline"] > report["variants"]["noisy"]["score"]  # HD95: lower is better
    assert sorted(f.name for f in (tmp_path / "pp" / "noisy" / "seed0").iterdir()) == ["T1.nii.gz", "T2.nii.gz"]
    (p["pred"] / "good" / "seed0" / "T2.nii.gz").unlink()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "T2" in proc.stderr


# ------------------------------------------------------------------------------------------------ the report
def _table(shift: float, n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        for k, region in enumerate(REGIONS):
            rows.append({"case": f"c{i:02d}", "region": region, "dice": 0.8 - 0.05 * k + rng.normal(0, 0.02) + shift,
                         "hd95": 5.0 + k + rng.normal(0, 0.3) - 10 * shift, "convention": "", "pred_empty": False,
                         "truth_empty": False, "pred_voxels": 100, "truth_voxels": 100})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_with_postprocessed_rows_sit_beside_their_variant():
    variants = {"agvqvae": parse(VariantSpec, {"two_stage": True, "arch": "transformer"}, "v"),
                "unet": parse(VariantSpec, {"two_stage": False, "arch": "unet"}, "u")}
    both = with_postprocessed(variants)
    assert list(both) == ["agvqvae", "agvqvae+pp", "unet", "unet+pp"]
    assert both["agvqvae+pp"].display_name == "AG-VQ-VAE +pp" and both["agvqvae+pp"].family == "AG-VQ-VAE"
    assert both["unet+pp"].switch("soft_masking") is None and both["agvqvae+pp"].stages == 2


def test_postprocessing_effect_is_the_paired_difference(tmp_path):
    for name, shift in (("a", 0.0), ("a+pp", 0.02)):
        write_case_table(_table(shift), tmp_path / f"{name}_cases.csv")
        write_summary(summarize(_table(shift), REGIONS, PENALTY), tmp_path / f"{name}.json")
    effect = postprocessing_effect(tmp_path, ["a"], REGIONS, 500, 0, 0.95)
    dice = effect[(effect["metric"] == "dice") & (effect["region"] == "WT")].iloc[0]
    assert dice["mean_diff"] == pytest.approx(0.02)
    assert dice["ci_low"] == pytest.approx(0.02) and dice["ci_high"] == pytest.approx(0.02)  # a constant shift
    hd = effect[(effect["metric"] == "hd95") & (effect["region"] == "ET")].iloc[0]
    assert hd["mean_diff"] == pytest.approx(-0.2)
    md = effect_markdown(effect, REGIONS, 0.95, 500, 0, {"a": ["largest_wt"]})
    assert "| `a` | largest_wt | Dice | +0.020" in md
    (tmp_path / "a+pp_cases.csv").unlink()
    with pytest.raises(ConfigError, match=r"a\+pp_cases.csv"):
        postprocessing_effect(tmp_path, ["a"], REGIONS, 500, 0, 0.95)


def test_ablate_stage_with_postprocessing(tmp_path):
    eval_dir = tmp_path / "eval"
    raw_variants = {"agvqvae": {"two_stage": True, "arch": "transformer"},
                    "unet": {"two_stage": False, "arch": "unet"}}
    for i, name in enumerate(raw_variants):
        for suffix, shift in (("", 0.0), ("+pp", 0.01)):
            table = _table(shift - 0.03 * i)
            write_case_table(table, eval_dir / f"{name}{suffix}_cases.csv")
            write_summary(summarize(table, REGIONS, PENALTY), eval_dir / f"{name}{suffix}.json")
    (tmp_path / "pp.json").write_text(json.dumps({"variants": {"agvqvae": {"steps": ["largest_wt"]},
                                                               "unet": {"steps": []}}}))
    params = {"regions": list(REGIONS), "variants": raw_variants, "two_stage_variants": ["agvqvae"],
              "single_stage_variants": ["unet"], "robustness": {"variants": ["agvqvae", "unet"]},
              "ablate": {"main_variant": "agvqvae", "bootstrap": 200, "seed": 0, "confidence": 0.95}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "stages" / "ablate.py"), "--params", str(tmp_path / "params.yaml"),
           "--eval-dir", str(eval_dir), "--postprocessing", str(tmp_path / "pp.json"), "--json",
           str(out / "a.json"), "--markdown", str(out / "a.md"), "--plot", str(out / "a.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "a.json").read_text())
    assert list(summary["variants"]) == ["unet", "unet+pp", "agvqvae", "agvqvae+pp"]
    assert summary["postprocessing"]["steps"] == {"agvqvae": ["largest_wt"], "unet": []}
    effect = summary["postprocessing"]["effect"]["agvqvae"]["dice"]["WT"]
    assert effect["mean_diff"] == pytest.approx(0.01)
    md = (out / "a.md").read_text()
    assert "`agvqvae+pp`" in md and "## Effect of postprocessing" in md and "AG-VQ-VAE +pp" in md
