"""The one typed config layer: params.yaml -> Params, one-line ConfigErrors naming the key path, layered overrides,
the variant spec, and the stage scripts' handling of bad params (exit 2, one line, no traceback)."""
from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
import yaml

from agvq.config import (CondConfig, Params, TrainConfig, VariantSpec, deep_merge, load_params, merge_into, parse,
                         parse_params, to_dict)
from agvq.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def changed(edit) -> dict:
    raw = copy.deepcopy(RAW)
    edit(raw)
    return raw


def test_params_yaml_loads_into_typed_sections():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params) and p.regions == ("WT", "TC", "ET")
    assert isinstance(p.cond.train, TrainConfig) and isinstance(p.cond.train.patch_size, tuple)
    assert p.evaluate.empty_penalty == 373.13 and p.infer.threshold == 0.5
    with pytest.raises(FrozenInstanceError):
        p.infer.threshold = 0.4  # built once per stage, never changed behind its back


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["cond"]["train"].update(lr="fast"), r"^cond\.train\.lr must be a number, got 'fast'$"),
    (lambda r: r["cond"]["train"].update(lrate=1), r"^cond\.train: unknown key lrate \(known: "),
    (lambda r: r["vqvae"]["train"].update(epochs=2.5), r"^vqvae\.train\.epochs must be a whole number"),
    (lambda r: r["vqvae"]["regions"]["ET"]["train"].update(lr=-1), r"^vqvae\.regions\.ET\.train\.lr must be > 0"),
    (lambda r: r["variants"]["unet"]["overrides"]["train"].update(flip="yes"),
     r"^variants\.unet\.overrides\.train\.flip must be true or false"),
    (lambda r: r["variants"]["agunet"].update(attentions=True), r"^variants\.agunet: unknown key attentions"),
    (lambda r: r["variants"]["agunet"].update(attention=True),
     r"^variants\.agunet\.attention must be a mapping of settings, got True"),
    (lambda r: r["variants"]["unet"].setdefault("attention", {}).update(encoder="sse"),
     r"^variants\.unet\.attention\.encoder must be one of \['none', 'se', 'cbam'"),
    (lambda r: r["variants"]["unet"].setdefault("attention", {}).update(spatial_kernel=4),
     r"^variants\.unet\.attention\.spatial_kernel must be odd"),
    (lambda r: r["variants"]["unet"].setdefault("attention", {}).update(slice_axis=3),
     r"^variants\.unet\.attention\.slice_axis must be <= 2"),
    (lambda r: r["infer"].update(blend="mean"), r"^infer\.blend must be one of \['gaussian', 'constant'\]"),
    (lambda r: r.update(regions=["WT", "NCR"]), r"^regions\[1\] must be one of"),
    (lambda r: r["cond"]["regions"].update(NCR={}), r"^cond\.regions key must be one of"),
    (lambda r: r["preprocess"]["split"].update(val_fraction=0.6, test_fraction=0.5),
     r"^preprocess\.split: val_fraction \+ test_fraction must be below 1"),
    (lambda r: r["cond"]["model"]["backbone"].update(soft_mask_blocks=[9]), r"soft_mask_blocks \[9\] must be block"),
    (lambda r: r.update(two_stage_variants=["agvqvae", "nope"]), r"two_stage_variants lists 'nope'"),
    (lambda r: r.update(single_stage_variants=["agvqvae"]), r"single_stage_variants lists 'agvqvae', which is a two-stage variant \(it belongs in two_stage_variants\)"),
    (lambda r: r["ablate"].update(main_variant="best"), r"ablate\.main_variant 'best' is not among"),
    (lambda r: r["ablate"].update(comparison=["unet", "vit"]), r"ablate\.comparison lists \['vit'\]"),
    (lambda r: r.update(joint_variants=["unet", "agunet", "agunet_no_as"]),
     r"variants \['agunet_no_sm', 'segresnet', 'swinunetr', 'unetr'\] are in no training list"),
    (lambda r: r.update(single_stage_variants=["agunet"]),
     r"single_stage_variants lists 'agunet', which is a joint variant \(it belongs in joint_variants\)"),
    (lambda r: r["variants"]["agvqvae"].update(joint=True), r"variants\.agvqvae: joint .* is for single-stage"),
    (lambda r: r.update(seeds=[0, 0]), r"seeds must list distinct"),
    (lambda r: r["cond"]["model"]["swinunetr"].update(feature_size=16), r"feature_size must be a multiple of 12"),
    (lambda r: r.update(extra_section={}), r"^: unknown key extra_section|unknown key extra_section"),
    (lambda r: r["runtime"].update(threads=-1), r"^runtime\.threads must be >= 0"),
    (lambda r: r["synthesize"].update(shape=[96, 96]), r"^synthesize\.shape must be a list of 3"),
])
def test_bad_params_are_one_line_config_errors_naming_the_key(edit, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_params(changed(edit))
    assert "\n" not in str(info.value)


def test_combined_overrides_are_checked_for_every_trained_variant_and_region():
    # fine on its own, but the agunet override gives a depth below the soft-mask blocks of the shared backbone
    raw = changed(lambda r: r["variants"]["agunet"]["overrides"].update(model={"backbone": {"depth": 1}}))
    with pytest.raises(ConfigError, match=r"cond \(variant agunet, region WT\)\.model\.backbone\.soft_mask_blocks"):
        parse_params(raw)


def test_numbers_written_as_yaml_strings_are_numbers():
    p = parse_params(changed(lambda r: r["cond"]["train"].update(lr="3e-3", epochs="30")))
    assert p.cond.train.lr == 0.003 and p.cond.train.epochs == 30 and isinstance(p.cond.train.epochs, int)


def test_missing_keys_take_the_config_defaults_and_missing_sections_too():
    p = parse_params({"regions": ["WT"]})
    assert p.regions == ("WT",) and p.evaluate.empty_penalty == 373.13 and p.cond.train == TrainConfig()
    assert parse(TrainConfig, {}, "train") == TrainConfig()


def test_layered_settings_region_then_variant():
    p = load_params(ROOT / "params.yaml")
    assert p.vqvae_for("ET").train.foreground_fraction == RAW["vqvae"]["regions"]["ET"]["train"]["foreground_fraction"]
    assert p.cond_for("agvqvae", "ET").loss.code_balance == 0.0  # cond.regions.ET
    assert p.cond_for("agvqvae", "WT").loss.code_balance == RAW["cond"]["loss"]["code_balance"]
    assert p.cond_for("unet", "WT").train.foreground_fraction == 0.7  # variants.unet.overrides
    assert isinstance(p.cond_for("unet", "TC"), CondConfig)
    with pytest.raises(ConfigError, match="unknown region 'XX'"):
        p.vqvae_for("XX")
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        p.cond_for("nope", "WT")


def test_variant_spec_is_the_one_reading_of_a_variant():
    spec = parse(VariantSpec, {"two_stage": False, "soft_masking": False}, "variants.x")
    assert spec.family == "AG-UNet" and spec.display_name == "AG-UNet w/o SM" and spec.stages == 1
    assert spec.switch("attention_scaling") is True and spec.switch("soft_masking") is False
    unet = parse(VariantSpec, {"two_stage": False, "arch": "unet"}, "variants.unet")
    assert unet.switch("soft_masking") is None and unet.family == "3D U-Net" and unet.switch_values() == {}
    with pytest.raises(ConfigError, match="arch 'unet' is a single-stage baseline"):
        parse(VariantSpec, {"arch": "unet"}, "variants.bad")
    assert load_params(ROOT / "params.yaml").ordered_variants()[0] == "unet"


def test_one_deep_merge():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 3}
    merged = deep_merge(base, {"a": {"c": [9]}, "e": {"f": 1}})
    assert merged == {"a": {"b": 1, "c": [9]}, "d": 3, "e": {"f": 1}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 3}  # a copy: the base is untouched
    target = {"a": {"b": 1}}
    assert merge_into(target, {"a": {"b": 2, "x": 0}}) == [("a.b", 1, 2), ("a.x", None, 0)]


def test_to_dict_round_trips():
    p = load_params(ROOT / "params.yaml")
    assert parse_params(to_dict(p)) == p


def _stage(script: str, params: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), "--params", str(params), *args],
                          capture_output=True, text=True, timeout=120)


def test_stage_scripts_report_bad_params_and_bad_regions_in_one_line(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(changed(lambda r: r["vqvae"]["train"].update(lr="fast"))))
    before = bad.read_bytes()
    proc = _stage("train_vqvae.py", bad, "--region", "WT", "--prepared", "p", "--splits", "s", "--out", "o.pt",
                  "--metrics", "m.json", "--curve", "c.csv", "--run-dir", "r")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "vqvae.train.lr must be a number" in lines[0], proc.stderr
    good = tmp_path / "good.yaml"
    good.write_text((ROOT / "params.yaml").read_text())
    proc = _stage("train_cond.py", good, "--variant", "agvqvae", "--region", "XX", "--seed", "0", "--prepared", "p",
                  "--splits",
                  "s", "--out", "o.pt", "--metrics", "m.json", "--curve", "c.csv", "--run-dir", "r")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == ["error: unknown region 'XX'; regions are ['WT', 'TC', 'ET']"], proc.stderr
    proc = _stage("evaluate.py", tmp_path / "missing.yaml", "--pred", "p", "--raw", "r", "--splits", "s",
                  "--out-csv", "c", "--out-json", "j")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"error: params file {tmp_path}/missing.yaml "
                                                                         "not found"]
    assert bad.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["good.yaml", "params.yaml"]
