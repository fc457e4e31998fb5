"""Backbone, CodePredictor, AGUNet, U-Net baseline and the variant factory."""
import json

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

from agvq.config import CondModelConfig, VariantSpec, parse
from agvq.errors import ConfigError
from agvq.models.attention import SoftMasking
from agvq.models.baseline import UNetBaseline
from agvq.models.conditional import AGUNet, AttentionBackbone, CodePredictor, PositionEmbedding3D
from agvq.models.factory import build_model, rebuild
from tests.helpers_config import backbone

TINY = {k: v for k, v in backbone(channels=(4, 8, 8), dim=16, depth=2, heads=2, soft_mask_blocks=(1,),
                                  pos_grid=(2, 2, 2)).items() if k != "in_channels"}
MODEL_CFG = parse(CondModelConfig, {"backbone": {**{k: TINY[k] for k in ("channels", "dim", "depth", "heads",
                                                                         "pos_grid")}, "soft_mask_blocks": [1]},
                                    "unet": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}}, "model")
RAW_VARIANTS = {
    "agvqvae": {"two_stage": True, "arch": "transformer", "attention_scaling": True, "soft_masking": True,
                "squeeze_excitation": True},
    "agvqvae_no_as": {"two_stage": True, "arch": "transformer", "attention_scaling": False, "soft_masking": True,
                      "squeeze_excitation": True},
    "agvqvae_no_sm": {"two_stage": True, "arch": "transformer", "attention_scaling": True, "soft_masking": False,
                      "squeeze_excitation": True},
    "agunet": {"two_stage": False, "arch": "transformer", "attention_scaling": True, "soft_masking": True,
               "squeeze_excitation": True},
    "agunet_no_as": {"two_stage": False, "arch": "transformer", "attention_scaling": False, "soft_masking": True,
                     "squeeze_excitation": True},
    "agunet_no_sm": {"two_stage": False, "arch": "transformer", "attention_scaling": True, "soft_masking": False,
                     "squeeze_excitation": True},
    "unet": {"two_stage": False, "arch": "unet"},
}
VARIANTS = {name: parse(VariantSpec, spec, f"variants.{name}") for name, spec in RAW_VARIANTS.items()}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def test_position_embedding_same_grid_is_the_parameter():
    pos = PositionEmbedding3D(3, (2, 2, 2))
    assert pos((2, 2, 2)) is pos.weight


def test_position_embedding_resamples_by_hand():
    pos = PositionEmbedding3D(1, (2, 2, 2))
    with torch.no_grad():  # value = 10 * y-index + z-index, constant along x
        pos.weight.copy_(torch.tensor([[0.0, 1.0], [10.0, 11.0]]).expand(1, 1, 2, 2, 2))
    out = pos((2, 3, 4))
    assert out.shape == (1, 1, 2, 3, 4)
    # trilinear, align_corners=False: 2 -> 3 gives (a, (a+b)/2, b); 2 -> 4 gives (a, .75a+.25b, .25a+.75b, b)
    z = torch.tensor([0.0, 0.25, 0.75, 1.0])
    expected = torch.stack([z, z + 5.0, z + 10.0])
    torch.testing.assert_close(out[0, 0, 0], expected)
    torch.testing.assert_close(out[0, 0, 1], expected)


@pytest.mark.parametrize("shape,grid", [((32, 32, 32), (2, 2, 2)), ((32, 48, 64), (2, 3, 4)),
                                        ((16, 16, 16), (1, 1, 1))])
def test_backbone_token_grid_follows_patch(shape, grid):
    net = AttentionBackbone(in_channels=2, **TINY)
    seen = []
    net.pos.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape[2:])))
    f4, skips = net(torch.randn(1, 2, *shape))
    assert seen == [grid]
    assert f4.shape == (1, 8, *(s // 4 for s in shape))
    assert {k: tuple(v.shape[2:]) for k, v in skips.items()} == {k: tuple(s // k for s in shape) for k in skips}


@pytest.mark.parametrize("shape", [(32, 48, 64), (16, 16, 16)])
def test_code_predictor_and_agunet_shapes(shape):
    x = torch.randn(2, 3, *shape)
    code = CodePredictor(num_embeddings=7, in_channels=3, **TINY)
    assert code(x).shape == (2, 7, *(s // 4 for s in shape))
    seg = AGUNet(out_channels=2, in_channels=3, **TINY)
    assert seg(x).shape == (2, 2, *shape)
    assert code.stride == seg.stride == 16


def test_gradients_reach_every_parameter():
    net = AGUNet(out_channels=2, in_channels=2, **TINY)
    net(torch.randn(2, 2, 32, 32, 32)).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("shape", [(32, 32, 40), (8, 16, 16)])
def test_spatial_size_not_multiple_of_16_is_a_clear_error(shape):
    net = CodePredictor(num_embeddings=4, in_channels=1, **TINY)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        net(torch.randn(1, 1, *shape))


def test_bad_soft_mask_block_index():
    with pytest.raises(ValueError, match="soft_mask_blocks"):
        AttentionBackbone(**{**TINY, "in_channels": 1, "depth": 2, "soft_mask_blocks": (2,)})


def test_soft_mask_blocks_are_placed_where_configured():
    net = AttentionBackbone(**{**TINY, "in_channels": 1, "depth": 4, "soft_mask_blocks": (1, 3)})
    assert [isinstance(b.soft_masking, SoftMasking) for b in net.blocks] == [False, True, False, True]


def test_paper_size_builds_and_runs():
    net = CodePredictor(num_embeddings=512, **{**TINY, "in_channels": 4, "channels": (16, 32, 64), "depth": 8,
                                               "dim": 256, "heads": 8, "soft_mask_blocks": [5, 6]})
    assert len(net.backbone.blocks) == 8
    assert [i for i, b in enumerate(net.backbone.blocks) if isinstance(b.soft_masking, SoftMasking)] == [5, 6]
    assert net.backbone.blocks[0].attn.heads == 8
    with torch.no_grad():
        assert net(torch.randn(1, 4, 32, 32, 32)).shape == (1, 512, 8, 8, 8)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_factory_every_variant(name):
    variant = RAW_VARIANTS[name]
    net = build_model(VARIANTS[name], MODEL_CFG, in_channels=2, num_embeddings=6)
    x = torch.randn(1, 2, 32, 32, 32)
    expected_kind = "code_predictor" if variant["two_stage"] else ("unet" if variant["arch"] == "unet" else "agunet")
    assert net.kind == expected_kind
    with torch.no_grad():
        out = net(x)
    assert out.shape == ((1, 6, 8, 8, 8) if variant["two_stage"] else (1, 2, 32, 32, 32))
    if variant["arch"] == "transformer":
        cfg = net.config()
        assert cfg["attention_scaling"] == variant["attention_scaling"]
        assert cfg["soft_mask_blocks"] == ([1] if variant["soft_masking"] else [])
        blocks = net.backbone.blocks
        assert all(isinstance(b.attention_scaling, nn.Identity) != variant["attention_scaling"] for b in blocks)
        assert any(isinstance(b.soft_masking, SoftMasking) for b in blocks) == variant["soft_masking"]
    # the config survives JSON (checkpoint) and rebuilds the same network
    again = rebuild(net.kind, json.loads(json.dumps(net.config())))
    again.load_state_dict(net.state_dict())
    net.eval(), again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x))


@pytest.mark.parametrize("variant,num_embeddings,match", [
    ({"two_stage": True, "arch": "transformer"}, None, "num_embeddings"),
    ({"two_stage": True, "arch": "unet"}, 8, "single-stage"),
    ({"two_stage": False, "arch": "unet", "attention_scaling": True}, None, "no attention blocks"),
    ({"two_stage": False, "arch": "vit"}, None, "arch"),
    ({"two_stage": False, "attention_scalling": True}, None, "unknown key attention_scalling"),
])
def test_factory_rejects_bad_variants(variant, num_embeddings, match):
    with pytest.raises(ConfigError, match=match):
        spec = parse(VariantSpec, variant, "variants.bad")
        build_model(spec, MODEL_CFG, in_channels=2, num_embeddings=num_embeddings)


def test_factory_bad_widths_are_config_errors():
    with pytest.raises(ConfigError, match=r"model\.backbone\.dim \(10\) must be divisible by heads"):
        parse(CondModelConfig, {"backbone": {"dim": 10, "heads": 4}}, "model")
    with pytest.raises(ConfigError, match="unknown key width"):
        parse(CondModelConfig, {"backbone": {"width": 10}}, "model")
    with pytest.raises(ConfigError, match="cannot build a agunet model"):
        build_model(VARIANTS["agunet"], parse(CondModelConfig, {"backbone": {"dim": 3, "heads": 1, "se_reduction": 4}},
                                              "model"), in_channels=2)
    with pytest.raises(ConfigError, match="unknown model kind"):
        rebuild("segformer", {})


def test_unet_baseline_is_monai_unet():
    from monai.networks.nets import UNet
    net = UNetBaseline(3, 2, channels=(4, 8, 16, 32), strides=(2, 2, 2), num_res_units=1)
    assert isinstance(net, UNetBaseline) and isinstance(net.net, UNet)
    assert net.stride == 8
    assert net(torch.randn(1, 3, 16, 24, 32)).shape == (1, 2, 16, 24, 32)
    with pytest.raises(ValueError, match="not a multiple of 8"):
        net(torch.randn(1, 3, 16, 16, 20))


def test_code_predictor_overfits_one_batch():
    torch.manual_seed(1)
    net = CodePredictor(num_embeddings=8, in_channels=2, **TINY)
    x = torch.randn(2, 2, 16, 16, 32)
    target = torch.randint(0, 8, (2, 4, 4, 8))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_agunet_overfits_one_mask():
    torch.manual_seed(2)
    net = AGUNet(out_channels=2, in_channels=1, **TINY)
    mask = torch.zeros(1, 1, 16, 16, 32)
    mask[:, :, 4:11, 5:12, 8:25] = 1
    x = mask + 0.3 * torch.randn_like(mask)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(net(x), mask)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
