"""AS, SE, SM and the transformer block: hand computations on small tensors, identity when off, shapes."""
import math

import pytest
import torch
from torch import nn

from agvq.models.attention import AttentionScaling, SoftMasking, SqueezeExcitation
from agvq.models.attention import SelfAttention as _SelfAttention
from agvq.models.attention import TransformerBlock as _TransformerBlock


def SelfAttention(dim, heads, dropout=0.0):  # noqa: N802  (test defaults)
    return _SelfAttention(dim, heads, dropout)


def TransformerBlock(dim, heads, mlp_ratio=4, dropout=0.0, attention_scaling=True, squeeze_excitation=True,  # noqa: N802
                     soft_masking=False, se_reduction=4):
    return _TransformerBlock(dim, heads, mlp_ratio=mlp_ratio, dropout=dropout, attention_scaling=attention_scaling,
                             squeeze_excitation=squeeze_excitation, soft_masking=soft_masking,
                             se_reduction=se_reduction)


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def test_attention_scaling_hand_computation():
    # dim 4, 2 heads of 2 channels; identity query projection -> head score = mean of the token's own slice.
    mod = AttentionScaling(dim=4, heads=2)
    with torch.no_grad():
        mod.query.weight.copy_(torch.eye(4))
        mod.query.bias.zero_()
    x = torch.tensor([[[1.0, 3.0, 0.0, 2.0], [4.0, 0.0, -2.0, 2.0]]])  # (B=1, N=2, dim=4)
    # token 0: head means 2 and 1 -> w = softmax(2, 1) = (sigmoid(1), sigmoid(-1)); y = heads * w_h * slice
    w0 = sigmoid(1.0)
    # token 1: head means 2 and 0 -> w = (sigmoid(2), sigmoid(-2))
    w1 = sigmoid(2.0)
    expected = torch.tensor([[
        [2 * w0 * 1, 2 * w0 * 3, 2 * (1 - w0) * 0, 2 * (1 - w0) * 2],
        [2 * w1 * 4, 2 * w1 * 0, 2 * (1 - w1) * -2, 2 * (1 - w1) * 2],
    ]])
    torch.testing.assert_close(mod(x), expected)
    torch.testing.assert_close(mod.head_weights(x)[0, :, 0], torch.tensor([w0, w1]))


def test_attention_scaling_with_projection_and_bias():
    # non-trivial projection: queries q = W x + b, score_h = mean of q's slice h.
    mod = AttentionScaling(dim=2, heads=2)
    with torch.no_grad():
        mod.query.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
        mod.query.bias.copy_(torch.tensor([0.5, -1.0]))
    x = torch.tensor([[[1.0, 2.0]]])
    # q = (0*1 + 1*2 + 0.5, 2*1 + 0*2 - 1) = (2.5, 1.0); w = softmax -> (sigmoid(1.5), sigmoid(-1.5))
    w = sigmoid(1.5)
    torch.testing.assert_close(mod(x), torch.tensor([[[2 * w * 1.0, 2 * (1 - w) * 2.0]]]))


def test_attention_scaling_uniform_weights_keep_token():
    mod = AttentionScaling(dim=8, heads=4)
    with torch.no_grad():
        mod.query.weight.zero_()
        mod.query.bias.fill_(0.3)  # equal scores for every head
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(mod(x), x)


def test_squeeze_excitation_hand_computation():
    mod = SqueezeExcitation(dim=2, reduction=1)
    with torch.no_grad():
        mod.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        mod.fc1.bias.copy_(torch.tensor([0.0, 4.0]))
        mod.fc2.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 2.0]]))
        mod.fc2.bias.copy_(torch.tensor([-1.0, 0.0]))
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # channel means (2, 3)
    # fc1: (2, -3 + 4) = (2, 1), relu -> (2, 1); fc2: (2 + 1 - 1, 2) = (2, 2); gate sigmoid(2) on both channels
    g = sigmoid(2.0)
    torch.testing.assert_close(mod(x), x * g)
    # relu path: a negative hidden unit is clipped
    x2 = torch.tensor([[[-4.0, 0.0], [-2.0, 0.0]]])  # means (-3, 0) -> fc1 (-3, 4) -> relu (0, 4) -> fc2 (3, 8)
    torch.testing.assert_close(mod(x2), x2 * torch.tensor([sigmoid(3.0), sigmoid(8.0)]))


def test_squeeze_excitation_gate_is_per_sample():
    mod = SqueezeExcitation(dim=4, reduction=2)
    a, b = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    torch.testing.assert_close(mod(torch.cat([a, b])), torch.cat([mod(a), mod(b)]))


def test_soft_masking_hand_computation():
    mod = SoftMasking(dim=2)
    with torch.no_grad():
        mod.gate.weight.copy_(torch.tensor([[1.0, -1.0]]))
        mod.gate.bias.fill_(0.5)
    x = torch.tensor([[[2.0, 1.0], [0.0, 3.0]]])
    u0, u1 = sigmoid(2 - 1 + 0.5), sigmoid(0 - 3 + 0.5)
    expected = torch.tensor([[[(1 - u0) * 2, (1 - u0) * 1], [(1 - u1) * 0, (1 - u1) * 3]]])
    torch.testing.assert_close(mod(x), expected)


def test_self_attention_matches_torch_multihead_attention():
    dim, heads = 8, 2
    ours = SelfAttention(dim, heads).eval()
    ref = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 6, dim)
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("off", ["attention_scaling", "squeeze_excitation", "soft_masking"])
def test_switching_a_block_off_is_the_identity(off):
    dim, heads = 8, 2
    full = TransformerBlock(dim, heads, attention_scaling=True, squeeze_excitation=True, soft_masking=True).eval()
    part = TransformerBlock(dim, heads, **{"attention_scaling": True, "squeeze_excitation": True,
                                           "soft_masking": True, off: False}).eval()
    missing, unexpected = part.load_state_dict(full.state_dict(), strict=False)
    assert missing == [] and unexpected and all(k.startswith(off + ".") for k in unexpected)
    assert isinstance(getattr(part, off), nn.Identity)
    x = torch.randn(2, 5, dim)
    with torch.no_grad():
        y = full.core(x)
        for name in ("attention_scaling", "squeeze_excitation", "soft_masking"):
            if name != off:
                y = getattr(full, name)(y)
        torch.testing.assert_close(part(x), y)
        assert not torch.allclose(full(x), y)  # the switched-on block does change the tokens


def test_block_all_off_is_plain_post_norm_transformer():
    dim, heads = 8, 2
    block = TransformerBlock(dim, heads, attention_scaling=False, squeeze_excitation=False,
                             soft_masking=False).eval()
    x = torch.randn(3, 4, dim)
    with torch.no_grad():
        h = block.norm1(x + block.attn(x))
        expected = block.norm2(h + block.mlp(h))
        torch.testing.assert_close(block(x), expected)
    # post-norm: every token leaves with zero mean / unit variance before the layer norm's affine (init 1, 0)
    out = block(x)
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n_tokens", [1, 7, 64])
def test_transformer_block_shapes_and_gradients(n_tokens):
    block = TransformerBlock(16, 4, mlp_ratio=2, dropout=0.1, soft_masking=True)
    x = torch.randn(2, n_tokens, 16, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in block.parameters())


def test_bad_head_count_is_a_clear_error():
    with pytest.raises(ValueError, match="multiple of heads"):
        TransformerBlock(10, 4)
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcitation(4, reduction=8)
