"""3D feature-map attention modules: shapes on odd sizes, determinism, gradient flow, initial behaviour, parameter
counts against each paper's formula, equality with MONAI's implementations, hand computations and bad input."""
from __future__ import annotations

import math
from dataclasses import fields
from typing import get_args

import pytest
import torch
import torch.nn.functional as F
from monai.networks.blocks import ChannelSELayer
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

from agvq.config.variants import AttentionName, AttentionSpec
from agvq.models.attention import (NAMES, AttentionGate, ConcurrentSE, KeySliceSelection, NoAttention,
                                   ProgressiveAttention, SliceAttention, build_attention, check_settings)
from agvq.models.attention.registry import attention_at

C, R, K, AXIS = 8, 2, 5, 2
ODD = (13, 17, 11)
SETTINGS = dict(reduction=R, spatial_kernel=K, slice_axis=AXIS)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def build(name: str, channels: int = C, **kw) -> nn.Module:
    return build_attention(name, channels, **{**SETTINGS, **kw})


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise(module: nn.Module, std: float = 0.3) -> nn.Module:
    """Every parameter drawn at random (zero-initialised layers would otherwise hide the gradient path); vectors
    (biases, norm scales) positive, so no ReLU of a pooled descriptor is dead by chance."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            r = torch.randn(p.shape, generator=gen) * std
            p.copy_(r.abs() + 0.1 if p.ndim == 1 else r)
    return module


def test_every_config_name_has_a_module():
    assert tuple(get_args(AttentionName)) == NAMES
    assert {f.name for f in fields(AttentionSpec)} == {"encoder", "decoder", "skips", *SETTINGS}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [True, False])
def test_shape_on_odd_sizes(name, training):
    m = build(name).train(training)
    x = torch.randn(2, C, *ODD)
    y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    g = torch.randn(2, C, *ODD)
    assert m.gate(x, g).shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name):
    x = torch.randn(2, C, *ODD)
    torch.manual_seed(3)
    a = randomise(build(name)) if name != "none" else build(name)
    torch.manual_seed(3)
    b = randomise(build(name)) if name != "none" else build(name)
    for one, two in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(one, two)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    torch.testing.assert_close(a(x), a(x), rtol=0, atol=0)  # no state carried between calls (train mode)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "none"])
def test_gradient_reaches_input_and_every_parameter(name):
    m = randomise(build(name))
    x = torch.randn(2, C, *ODD, requires_grad=True)
    weights = torch.randn(2, C, *ODD)
    (m(x) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"


def test_gradient_of_a_gate_reaches_the_gating_signal():
    m = randomise(build("gate", gate_channels=6))
    x = torch.randn(2, C, *ODD, requires_grad=True)
    g = torch.randn(2, 6, *ODD, requires_grad=True)
    m.gate(x, g).sum().backward()
    assert g.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


def test_none_is_the_identity_and_owns_nothing():
    m = build("none")
    x = torch.randn(1, C, *ODD)
    assert m(x) is x and m.gate(x, torch.randn(1, 3, 2, 2, 2)) is x
    assert n_params(m) == 0 and not m.state_dict()


def _h(channels: int = C, reduction: int = R) -> int:
    return channels // reduction


@pytest.mark.parametrize("name,formula", [
    # SE (Hu et al.): two fully connected layers C -> C/r -> C; 2 C^2/r weights plus MONAI's biases (h + C).
    ("se", lambda c, h: 2 * c * h + h + c),
    # CBAM (Woo et al.): shared MLP as SE, plus a k^3 convolution from 2 maps to 1 (with bias).
    ("cbam", lambda c, h: 2 * c * h + h + c + 2 * K ** 3 + 1),
    # scSE (Roy et al.): cSE (= SE) plus a 1x1x1 convolution C -> 1 (with bias).
    ("scse", lambda c, h: 2 * c * h + h + c + c + 1),
    # Project & Excite (Rickmann et al.): two 1x1x1 convolutions C -> C/r -> C with biases.
    ("pe", lambda c, h: 2 * c * h + h + c),
    # Attention gate (Oktay et al.) in MONAI's form, F_int = C/2 and F_g = F_x = C (self-gating):
    # Oktay's F_int (F_x + F_g + 1) + F_int + 1, plus MONAI's W_x bias (F_int) and batch norms (2 F_int, 2 F_int, 2).
    ("gate", lambda c, h: (c // 2) * (c + c + 1) + c // 2 + 1 + c // 2 + 4 * (c // 2) + 2),
    # SA: query and key maps C -> h with biases, one logit per slice from C values (+ bias).
    ("slice", lambda c, h: 2 * (c * h + h) + c + 1),
    # PAM = SA + KSS (two scalars) + CA (= SE).
    ("pam", lambda c, h: 2 * (c * h + h) + c + 1 + 2 + 2 * c * h + h + c),
])
@pytest.mark.parametrize("channels", [8, 16, 12])
def test_parameter_count_is_the_papers_formula(name, formula, channels):
    assert n_params(build(name, channels)) == formula(channels, _h(channels))


def test_gate_parameter_count_with_a_gating_signal_of_other_width():
    f_int, f_g, f_x = C // 2, 6, C
    assert n_params(build("gate", gate_channels=f_g)) == f_int * (f_g + f_x + 7) + 3


# -- equality with MONAI -------------------------------------------------------------------------------------------
def test_se_equals_monai_channel_se_layer():
    ours = randomise(build("se"))
    ref = ChannelSELayer(3, C, r=R)
    ref.load_state_dict({k.removeprefix("se."): v for k, v in ours.state_dict().items()})
    x = torch.randn(2, C, *ODD)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_gate_equals_the_block_of_monai_attention_unet(training):
    ours = randomise(build("gate", gate_channels=6))
    ref = AttentionBlock(3, f_int=C // 2, f_g=6, f_l=C)
    ref.load_state_dict({k.removeprefix("block."): v for k, v in ours.state_dict().items()})
    ours.train(training), ref.train(training)
    x, g = torch.randn(2, C, *ODD), torch.randn(2, 6, *ODD)
    torch.testing.assert_close(ours.gate(x, g), ref(g=g, x=x), rtol=0, atol=1e-6)


def test_gate_resamples_a_coarse_gating_signal():
    m = build("gate").eval()
    x, g = torch.randn(1, C, *ODD), torch.randn(1, C, 7, 9, 6)
    up = F.interpolate(g, size=ODD, mode="trilinear", align_corners=False)
    torch.testing.assert_close(m.gate(x, g), m.gate(x, up), rtol=0, atol=0)


def test_scse_is_monai_cse_plus_a_voxel_gate():
    m = randomise(build("scse"))
    assert isinstance(m, ConcurrentSE)
    ref = ChannelSELayer(3, C, r=R)
    ref.load_state_dict(m.cse.state_dict())
    x = torch.randn(2, C, *ODD)
    sse = x * torch.sigmoid(F.conv3d(x, m.sse.weight, m.sse.bias))
    torch.testing.assert_close(m(x), ref(x) + sse, rtol=0, atol=1e-6)


# -- hand computations of the modules without a MONAI counterpart ---------------------------------------------------
def test_cbam_matches_its_equations():
    m = randomise(build("cbam"))
    x = torch.randn(2, C, *ODD)
    w1, b1, w2, b2 = m.mlp[0].weight, m.mlp[0].bias, m.mlp[2].weight, m.mlp[2].bias

    def mlp(v):
        return F.linear(F.relu(F.linear(v, w1, b1)), w2, b2)

    avg, mx = x.flatten(2).mean(-1), x.flatten(2).max(-1).values
    xc = x * torch.sigmoid(mlp(avg) + mlp(mx))[..., None, None, None]
    pooled = torch.stack([xc.mean(1), xc.max(1).values], dim=1)
    expected = xc * torch.sigmoid(F.conv3d(pooled, m.spatial.weight, m.spatial.bias, padding=K // 2))
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-6)


def test_project_excite_matches_a_loop_over_axes():
    m = randomise(build("pe"))
    x = torch.randn(1, C, 3, 4, 5)
    z = torch.zeros_like(x)
    for i in range(3):
        for j in range(4):
            for k in range(5):
                z[:, :, i, j, k] = x[:, :, i].mean((-2, -1)) + x[:, :, :, j].mean((-2, -1)) + x[..., k].mean((-2, -1))
    v1, v2 = m.excite[0], m.excite[2]
    expected = x * torch.sigmoid(F.conv3d(F.relu(F.conv3d(z, v1.weight, v1.bias)), v2.weight, v2.bias))
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-6)


def test_slice_attention_is_the_identity_at_initialisation():
    m = build("slice")
    x = torch.randn(2, C, *ODD)
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)


def test_key_slice_selection_is_the_identity_at_initialisation():
    kss = KeySliceSelection(AXIS)
    x = torch.randn(2, C, *ODD)
    torch.testing.assert_close(kss(x, torch.randn(2, ODD[AXIS])), x, rtol=0, atol=0)


def test_pam_starts_as_plain_squeeze_excitation():
    m = build("pam")
    assert isinstance(m, ProgressiveAttention)
    ref = ChannelSELayer(3, C, r=R)
    ref.load_state_dict(m.channel_attention.state_dict())
    x = torch.randn(2, C, *ODD)
    torch.testing.assert_close(m(x), ref(x), rtol=0, atol=1e-6)


def test_slice_attention_hand_computation():
    m = randomise(SliceAttention(C, R, AXIS))
    x = torch.randn(2, C, *ODD)
    z = x.mean(dim=(2, 3)).transpose(1, 2)  # slices along Z: (B, S, C)
    q, k = F.linear(z, m.query.weight, m.query.bias), F.linear(z, m.key.weight, m.key.bias)
    attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(C // R), dim=-1)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, ODD[2]))
    e = F.linear(attn @ z, m.score.weight, m.score.bias).squeeze(-1)
    expected = x * (2 * torch.sigmoid(e))[:, None, None, None, :]
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-6)


def test_key_slice_selection_emphasises_rich_slices():
    """With beta > 0, the slice whose features vary most in-plane is scaled up, a flat slice down."""
    kss = KeySliceSelection(AXIS)
    with torch.no_grad():
        kss.beta.fill_(3.0)
    x = torch.ones(1, C, 6, 6, 3)
    x[..., 0] = torch.randn(1, C, 6, 6) * 5  # rich slice
    y = kss(x, torch.zeros(1, 3))
    scale = (y / x)[0, 0, 0, 0]
    assert scale[0] > 1.5 and scale[1] < 1.0 and scale[2] < 1.0
    torch.testing.assert_close(scale[1], scale[2])


@pytest.mark.parametrize("name", ["slice", "pam"])
@pytest.mark.parametrize("axis", [0, 1])
def test_slice_axis_is_a_parameter(name, axis):
    """Weighing slices of axis ``axis`` equals weighing the last axis of the volume with the two axes swapped."""
    torch.manual_seed(5)
    m = randomise(build(name, slice_axis=axis))
    torch.manual_seed(5)
    last = randomise(build(name, slice_axis=2))
    x = torch.randn(2, C, *ODD)
    swapped = x.transpose(2 + axis, 4)
    torch.testing.assert_close(m(x), last(swapped).transpose(2 + axis, 4), rtol=0, atol=1e-5)


def test_single_slice_maps_are_fine():
    for name in ("slice", "pam"):
        m = randomise(build(name))
        y = m(torch.randn(2, C, 5, 4, 1))
        assert y.shape == (2, C, 5, 4, 1) and torch.isfinite(y).all()


# -- placement settings and bad input --------------------------------------------------------------------------------
def test_attention_at_reads_the_settings():
    settings = check_settings({"encoder": "cbam", "decoder": "none", "skips": "gate", **SETTINGS})
    assert isinstance(attention_at(settings, "decoder", C), NoAttention)
    assert isinstance(attention_at(settings, "skips", C, gate_channels=4), AttentionGate)
    assert attention_at(settings, "skips", C, gate_channels=4).gate_channels == 4
    assert isinstance(attention_at(None, "encoder", C), NoAttention)


@pytest.mark.parametrize("call,match", [
    (lambda: build("sse"), "unknown attention module 'sse'"),
    (lambda: build("se", 8, reduction=16), r"reduction \(16\) must be in 1..channels \(8\)"),
    (lambda: build("cbam", spatial_kernel=4), "positive odd size"),
    (lambda: build("slice", slice_axis=3), "slice_axis must be 0, 1 or 2"),
    (lambda: build("gate", 1), "at least 2 channels"),
    (lambda: build("se")(torch.randn(1, C + 1, 4, 4, 4)), r"expected a \(B, 8, X, Y, Z\) feature map"),
    (lambda: build("pam")(torch.randn(1, C, 4, 4)), "feature map"),
    (lambda: build("gate", gate_channels=4)(torch.randn(1, C, 4, 4, 4)), "self-gating needs"),
    (lambda: build("gate").gate(torch.randn(1, C, 4, 4, 4), torch.randn(2, C, 4, 4, 4)), "batch"),
    (lambda: check_settings({"encoder": "se"}), "need exactly the keys"),
    (lambda: check_settings({"encoder": "xx", "decoder": "none", "skips": "none", **SETTINGS}), "encoder: unknown"),
    (lambda: attention_at(None, "bottleneck", C), "unknown attention position"),
])
def test_bad_input_is_a_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
