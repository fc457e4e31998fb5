"""Attention modules inside the networks: MONAI's U-Net with modules at encoder/decoder/skips (equal to MONAI's UNet
with none), the conditional net's CNN encoder/decoder, the factory's `attention` switch, and the V-Net baseline."""
from __future__ import annotations

import json

import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

from agvq.config import CondModelConfig, VariantSpec, parse, to_dict
from agvq.config.variants import AttentionSpec
from agvq.errors import ConfigError
from agvq.models.attention import NAMES, AttentionGate, NoAttention, build_attention
from agvq.models.attention_unet import AttentionUNet, GatedSkipConnection
from agvq.models.baseline import UNetBaseline, VNetBaseline
from agvq.models.conditional import AGUNet, AttentionBackbone, CodePredictor
from agvq.models.factory import build_model, rebuild
from tests.helpers_config import backbone

WIDTHS, STRIDES = (8, 16, 32, 64), (2, 2, 2)
HYPER = {"reduction": 4, "spatial_kernel": 3, "slice_axis": 2}
NONE = {"encoder": "none", "decoder": "none", "skips": "none", **HYPER}
TINY_BACKBONE = {k: v for k, v in backbone(channels=(4, 8, 8), dim=16, depth=1, heads=2, soft_mask_blocks=(0,),
                                           pos_grid=(1, 1, 1)).items() if k != "in_channels"}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def settings(**placed) -> dict:
    return {**NONE, **placed}


def test_attention_unet_without_modules_is_monai_unet():
    torch.manual_seed(1)
    ref = UNet(spatial_dims=3, in_channels=4, out_channels=2, channels=WIDTHS, strides=STRIDES, num_res_units=1)
    torch.manual_seed(1)
    ours = AttentionUNet(4, 2, WIDTHS, STRIDES, 1, NONE)
    assert n_params(ours) == n_params(ref)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]
    assert str(ours.model) == str(ref.model)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 16, 16, 16)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_baseline_without_attention_is_monai_unet_and_keeps_its_config():
    net = UNetBaseline(4, 2, WIDTHS, STRIDES, 1)
    assert type(net.net) is UNet and "attention" not in net.config()
    net_none = UNetBaseline(4, 2, WIDTHS, STRIDES, 1, NONE)
    assert type(net_none.net) is UNet and net_none.config()["attention"] == NONE
    assert list(net.state_dict()) == list(net_none.state_dict())


def _module_params(name: str, channels: int, gate_channels: int | None = None) -> int:
    return n_params(build_attention(name, channels, gate_channels=gate_channels, **HYPER))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "none"])
def test_unet_places_one_module_per_position(name):
    base = n_params(UNet(3, 4, 2, WIDTHS, STRIDES, num_res_units=1))
    x = torch.randn(2, 4, 16, 16, 16)
    # encoder: every down layer and the bottom (8, 16, 32, 64); decoder: every up layer but the top one (its output
    # is the logits): 16 and 8 channels; skips: (skip, gating) = (8, 8), (16, 16), (32, 64).
    expected = {"encoder": sum(_module_params(name, c) for c in WIDTHS),
                "decoder": _module_params(name, 16) + _module_params(name, 8),
                "skips": sum(_module_params(name, c, g) for c, g in ((8, 8), (16, 16), (32, 64)))}
    for position, extra in expected.items():
        if name == "gate" and position != "skips":
            continue  # self-gating at encoder/decoder is allowed but counted with gate_channels = channels
        net = UNetBaseline(4, 2, WIDTHS, STRIDES, 1, settings(**{position: name}))
        assert isinstance(net.net, AttentionUNet)
        assert n_params(net) == base + extra, position
        assert net(x).shape == (2, 2, 16, 16, 16)


def test_unet_skip_gate_is_called_with_the_deeper_output():
    net = UNetBaseline(4, 2, WIDTHS, STRIDES, 1, settings(skips="gate"))
    skips = [m for m in net.modules() if isinstance(m, GatedSkipConnection)]
    assert len(skips) == 3 and all(isinstance(s.attention, AttentionGate) for s in skips)
    calls = []
    for s in skips:
        original = s.attention.gate

        def spy(x, g, original=original):
            calls.append((x.shape, g.shape))
            return original(x, g)
        s.attention.gate = spy
    net(torch.randn(1, 4, 16, 16, 16))
    assert sorted(calls) == sorted([((1, 8, 8, 8, 8), (1, 8, 8, 8, 8)), ((1, 16, 4, 4, 4), (1, 16, 4, 4, 4)),
                                    ((1, 32, 2, 2, 2), (1, 64, 2, 2, 2))])


def test_backbone_without_attention_has_the_old_state_dict_keys():
    old = AttentionBackbone(in_channels=2, **TINY_BACKBONE)
    none = AttentionBackbone(in_channels=2, **TINY_BACKBONE, attention=NONE)
    assert list(old.state_dict()) == list(none.state_dict())
    assert all(isinstance(getattr(none, a), NoAttention) for a in ("att_enc2", "att_enc4", "att_enc8", "att_dec8"))
    assert "attention" not in old.config() and none.config()["attention"] == NONE


@pytest.mark.parametrize("position", ["encoder", "decoder", "skips"])
@pytest.mark.parametrize("name", ["cbam", "gate", "pam", "pe"])
def test_conditional_nets_take_attention_and_rebuild(position, name):
    x = torch.randn(2, 2, 16, 16, 16)
    for cls, extra, shape in ((CodePredictor, {"num_embeddings": 8}, (2, 8, 4, 4, 4)),
                              (AGUNet, {"out_channels": 2}, (2, 2, 16, 16, 16))):
        plain = cls(in_channels=2, **TINY_BACKBONE, **extra)
        net = cls(in_channels=2, **TINY_BACKBONE, **extra, attention=settings(**{position: name}))
        assert n_params(net) > n_params(plain)
        y = net(x)
        assert y.shape == shape and torch.isfinite(y).all()
        y.float().mean().backward()
        again = rebuild(net.kind, json.loads(json.dumps(net.config())))
        again.load_state_dict(net.state_dict())
        net.eval(), again.eval()
        with torch.no_grad():
            torch.testing.assert_close(again(x), net(x))


def test_agunet_places_modules_on_its_half_resolution_level_too():
    net = AGUNet(in_channels=2, **TINY_BACKBONE, out_channels=2, attention=settings(decoder="se", skips="gate"))
    assert not isinstance(net.att_dec2, NoAttention) and isinstance(net.up2.skip_attention, AttentionGate)
    assert net.up2.skip_attention.channels == 4


MODEL_CFG = parse(CondModelConfig, {"backbone": {k: TINY_BACKBONE[k] for k in ("channels", "dim", "depth", "heads",
                                                                               "pos_grid")} | {"soft_mask_blocks": [0]},
                                    "unet": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}}, "model")


@pytest.mark.parametrize("raw,kind", [
    ({"two_stage": False, "arch": "unet", "attention": {"encoder": "cbam", "skips": "gate"}}, "unet"),
    ({"two_stage": True, "arch": "transformer", "attention": {"decoder": "scse"}}, "code_predictor"),
    ({"two_stage": False, "arch": "transformer", "attention": {"encoder": "slice", "slice_axis": 0}}, "agunet"),
])
def test_factory_applies_the_variant_attention(raw, kind):
    spec = parse(VariantSpec, raw, "variants.x")
    net = build_model(spec, MODEL_CFG, in_channels=2, num_embeddings=8)
    assert net.kind == kind
    cfg = net.config() if kind == "unet" else net.backbone.config()
    assert cfg["attention"] == to_dict(spec.attention)
    plain = build_model(parse(VariantSpec, {k: v for k, v in raw.items() if k != "attention"}, "v"), MODEL_CFG,
                        in_channels=2, num_embeddings=8)
    assert "attention" not in (plain.config() if kind == "unet" else plain.backbone.config())
    assert n_params(net) > n_params(plain)


def test_variant_labels_and_reference_matching():
    spec = parse(VariantSpec, {"two_stage": False, "arch": "unet", "attention": {"encoder": "cbam", "skips": "gate"}},
                 "v")
    assert spec.display_name == "3D U-Net +CBAM (encoder), AG (skips)"
    assert spec.attention.describe() == "encoder cbam, skips gate"
    plain = parse(VariantSpec, {"two_stage": False, "arch": "unet"}, "v")
    assert plain.display_name == "3D U-Net" and not plain.attention.active
    assert spec.same_model_apart_from_attention(plain)
    other = parse(VariantSpec, {"two_stage": False, "arch": "unet", "overrides": {"train": {"lr": 0.1}}}, "v")
    assert not spec.same_model_apart_from_attention(other)
    assert AttentionSpec().describe() == "none"


def test_vnet_baseline_builds_trains_and_rebuilds():
    spec = parse(VariantSpec, {"two_stage": False, "arch": "vnet"}, "variants.vnet")
    assert spec.family == "V-Net" and spec.display_name == "V-Net"
    net = build_model(spec, MODEL_CFG, in_channels=4)
    assert isinstance(net, VNetBaseline) and net.stride == 16
    x = torch.randn(2, 4, 16, 16, 16)  # batch 2: the 1x1x1 bottom of a 16^3 input needs it for batch norm
    y = net(x)
    assert y.shape == (2, 2, 16, 16, 16)
    y.mean().backward()
    again = rebuild(net.kind, json.loads(json.dumps(net.config())))
    again.load_state_dict(net.state_dict())
    net.eval(), again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x))


@pytest.mark.parametrize("raw,in_channels,match", [
    ({"two_stage": False, "arch": "vnet"}, 3, "in_channels must divide 16"),
    ({"two_stage": True, "arch": "vnet"}, 4, "single-stage baseline"),
    ({"two_stage": False, "arch": "vnet", "attention": {"encoder": "se"}}, 4, "takes no attention modules"),
    ({"two_stage": False, "arch": "unet", "attention": {"encoder": "se", "reduction": 32}}, 4,
     r"cannot build a unet model: reduction \(32\)"),
])
def test_bad_baselines_are_config_errors(raw, in_channels, match):
    with pytest.raises(ConfigError, match=match):
        build_model(parse(VariantSpec, raw, "variants.bad"), MODEL_CFG, in_channels=in_channels)
