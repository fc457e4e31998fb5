"""The attention_study section and variants' `attention` params: references, lists, regions and one-line errors."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from agvq.config import load_params, parse_params
from agvq.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
PAPER = ["agvqvae", "agvqvae_no_as", "agvqvae_no_sm", "agunet", "agunet_no_as", "agunet_no_sm", "unet", "unetr",
         "swinunetr", "segresnet"]


def edited(change) -> dict:
    raw = copy.deepcopy(RAW)
    change(raw)
    return raw


def test_default_study_variants_and_their_references():
    params = load_params(ROOT / "params.yaml")
    study = params.attention_study
    assert set(study.variants) >= {"unet_se", "unet_cbam", "unet_pe", "unet_gate", "unet_pam", "agvqvae_cbam"}
    assert {v: params.attention_reference(v) for v in params.attention_variants} == {
        "agvqvae_cbam": "agvqvae", "unet_se": "unet", "unet_cbam": "unet", "unet_pe": "unet", "unet_gate": "unet",
        "unet_pam": "unet"}
    # kept apart from the paper's variants: the ablation table and infer/evaluate of `variants` never see them
    assert list(params.variants) == PAPER and not set(params.trained_variants) & set(params.attention_variants)
    # same budget: the resolved training settings equal the reference's, region by region
    for name in params.attention_variants:
        ref = params.attention_reference(name)
        for region in study.regions:
            assert params.cond_for(name, region) == params.cond_for(ref, region)
        assert params.variant(name).attention.active and not params.variant(ref).attention.active


def test_reference_ignores_the_reference_attention():
    """`dvc exp run -S variants.unet.attention.encoder=cbam` keeps unet the reference of the unet_* variants."""
    raw = edited(lambda r: r["variants"]["unet"].setdefault("attention", {}).update(encoder="cbam"))
    params = parse_params(raw)
    assert params.attention_reference("unet_se") == "unet"
    assert params.variant("unet").display_name == "3D U-Net +CBAM (encoder)"


def _study(r) -> dict:
    return r["attention_study"]


@pytest.mark.parametrize("change,match", [
    (lambda r: _study(r)["variants"]["unet_se"]["overrides"]["train"].update(lr=0.1),
     r"^attention_study\.variants\.unet_se: no trained variant of params variants .* equal it apart from `attention`"),
    (lambda r: r["variants"].update(unet2=dict(r["variants"]["unet"])) or r["joint_variants"].append("unet2"),
     r"^attention_study\.variants\.unet_se: several trained variants \['unet', 'unet2'\]"),
    (lambda r: _study(r)["variants"].update(unet=_study(r)["variants"]["unet_se"]),
     r"^attention_study\.variants \['unet'\] are also defined in params variants"),
    (lambda r: _study(r)["single_stage_variants"].append("unet_xx"),
     r"^attention_study\.single_stage_variants lists 'unet_xx', which attention_study\.variants does not define"),
    (lambda r: _study(r)["two_stage_variants"].append("unet_se"),
     r"^attention_study\.two_stage_variants lists 'unet_se', which is a joint variant"),
    (lambda r: _study(r)["variants"]["unet_se"].update(joint=False),
     r"^attention_study\.joint_variants lists 'unet_se', which is a per-region variant"),
    (lambda r: _study(r).update(model_seed=7), r"^attention_study\.model_seed 7 is not one of seeds"),
    (lambda r: _study(r)["joint_variants"].remove("unet_pe"),
     r"^attention_study\.variants \['unet_pe'\] are in none of"),
    (lambda r: _study(r).update(regions=["WT", "ET"]), r"^attention_study\.regions lists ET without TC"),
    (lambda r: _study(r).update(regions=["TC"]), r"^attention_study\.regions lists TC without WT"),
    (lambda r: _study(r).update(regions=["TC", "WT"]), r"^attention_study\.regions must follow the order"),
    (lambda r: _study(r).update(regions=[]), r"^attention_study\.regions must list distinct regions"),
    (lambda r: r.update(regions=["TC", "ET"]) or _study(r).update(regions=["WT"]),
     r"^attention_study\.regions \['WT'\] are not in params regions"),
    (lambda r: _study(r)["variants"]["unet_se"].setdefault("attention", {}).update(encoder="se3d"),
     r"^attention_study\.variants\.unet_se\.attention\.encoder must be one of"),
    (lambda r: _study(r)["variants"]["unet_se"].update(arch="vnet"),
     r"^attention_study\.variants\.unet_se\.attention: arch 'vnet' .* takes no attention modules"),
    (lambda r: _study(r).update(bootstrap=0), r"^attention_study\.bootstrap must be >= 1"),
    (lambda r: _study(r).update(confidence=1.0), r"^attention_study\.confidence must be < 1"),
    (lambda r: _study(r).update(seeds=[0]), r"^attention_study: unknown key seeds"),
])
def test_bad_study_params_are_one_line_config_errors(change, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_params(edited(change))
    assert "\n" not in str(info.value)


def test_an_empty_study_is_valid():
    params = parse_params(edited(lambda r: r.pop("attention_study")))
    assert params.attention_variants == () and params.attention_study.variants == {}


def test_unknown_variant_names_both_mappings():
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(ConfigError, match="attention study"):
        params.variant("nope")
    with pytest.raises(ConfigError, match="not a variant of attention_study.variants"):
        params.attention_reference("unet")
