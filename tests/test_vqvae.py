"""MaskVQVAE: shapes, crop sizes, config round trip, frozen index encoding, and a tiny CPU training run."""
from __future__ import annotations

import time

import pytest
import torch

from agvq.errors import ConfigError
from agvq.models.losses import MaskLoss
from agvq.models.vqvae import MaskVQVAE as _MaskVQVAE
from tests.helpers_config import QUANTIZER_DEFAULTS

SMALL = dict(channels=(16, 32), res_blocks=1, latent_dim=16, num_embeddings=64, norm="batch")


def MaskVQVAE(quantizer=None, **kw) -> _MaskVQVAE:  # noqa: N802  (test defaults: a small model)
    return _MaskVQVAE(**{**SMALL, **kw}, quantizer={**QUANTIZER_DEFAULTS, **(quantizer or {})})



def blobs(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """n binary masks (n, 1, size, size, size): unions of 1-3 random ellipsoids."""
    g = torch.Generator().manual_seed(seed)
    ax = torch.arange(size).float()
    X, Y, Z = torch.meshgrid(ax, ax, ax, indexing="ij")
    out = torch.zeros(n, 1, size, size, size, dtype=torch.bool)
    for i in range(n):
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            c = 6 + torch.rand(3, generator=g) * (size - 12)
            r = 3 + torch.rand(3, generator=g) * 6
            out[i, 0] |= ((X - c[0]) / r[0]) ** 2 + ((Y - c[1]) / r[1]) ** 2 + ((Z - c[2]) / r[2]) ** 2 <= 1
    return out.float()


def hard_dice(logits: torch.Tensor, target: torch.Tensor) -> float:
    pred = logits.argmax(1, keepdim=True).float()
    return float(2 * (pred * target).sum() / (pred.sum() + target.sum()))


def test_default_shapes_and_stride():
    torch.manual_seed(0)
    m = MaskVQVAE()
    assert m.stride == 4
    x = blobs(2)
    z = m.encode(x)
    assert z.shape == (2, 16, 8, 8, 8)
    out = m(x)
    assert out.logits.shape == (2, 2, 32, 32, 32)
    assert out.indices.shape == (2, 8, 8, 8) and out.indices.dtype == torch.long
    assert 0 < out.used_fraction.item() <= 1 and out.perplexity.item() >= 1
    assert out.commitment_loss.dim() == 0
    # boolean / uint8 masks are accepted too
    assert m.eval()(x.bool()).logits.shape == (2, 2, 32, 32, 32)


@pytest.mark.parametrize("size", [(48, 32, 64), (4, 8, 12), (36, 20, 28)])
def test_any_multiple_of_stride(size):
    torch.manual_seed(1)
    m = MaskVQVAE(channels=(4, 8), latent_dim=4, num_embeddings=8)
    out = m(torch.zeros(1, 1, *size))
    assert out.logits.shape == (1, 2, *size)
    assert out.indices.shape == (1, *(s // 4 for s in size))


@pytest.mark.parametrize("size", [(30, 32, 32), (32, 32, 34), (2, 4, 4)])
def test_invalid_size_clear_error(size):
    m = MaskVQVAE(channels=(4, 8), latent_dim=4, num_embeddings=8)
    with pytest.raises(ConfigError, match="multiple of the model stride 4"):
        m(torch.zeros(1, 1, *size))
    with pytest.raises(ConfigError, match="multiple"):
        m.encode_indices(torch.zeros(1, 1, *size))


def test_bad_config():
    with pytest.raises(ConfigError, match="channels"):
        MaskVQVAE(channels=(8, 16, 32))
    with pytest.raises(ConfigError, match="unknown quantizer keys"):
        MaskVQVAE(quantizer={"decai": 0.9})
    with pytest.raises(ConfigError, match="norm"):
        MaskVQVAE(norm="layer")
    with pytest.raises(ValueError):
        MaskVQVAE()(torch.zeros(1, 2, 8, 8, 8))


def test_paper_size_builds_and_runs():
    torch.manual_seed(2)
    m = MaskVQVAE(channels=(32, 64), res_blocks=2, latent_dim=32, num_embeddings=512,
                  quantizer={"commitment": 0.25, "decay": 0.99})
    assert tuple(m.quantizer.embedding.shape) == (512, 32)
    out = m(blobs(1))
    assert out.logits.shape == (1, 2, 32, 32, 32) and int(out.indices.max()) < 512
    assert bool(m.quantizer.initialized)


def test_config_round_trip_and_frozen_indices():
    torch.manual_seed(3)
    m = MaskVQVAE(channels=(8, 8), latent_dim=8, num_embeddings=16, norm="group",
                  quantizer={"decay": 0.9, "dead_code_threshold": 0.5})
    x = blobs(2, seed=5)
    m(x)  # k-means init + one EMA step
    cfg = m.config()
    assert cfg["quantizer"]["decay"] == 0.9 and cfg["quantizer"]["kmeans_init"] is True
    m2 = MaskVQVAE(**cfg)
    m2.load_state_dict(m.state_dict())
    m.eval(), m2.eval()
    with torch.no_grad():
        torch.testing.assert_close(m2(x).logits, m(x).logits)
    # stage-2 targets: encode_indices never moves the codebook, even in training mode
    m2.train()
    state = {k: v.clone() for k, v in m2.state_dict().items()}
    idx = m2.encode_indices(x)
    for k, v in m2.state_dict().items():
        assert torch.equal(v, state[k]), k
    m2.eval()
    out = m2(x)
    assert torch.equal(idx, out.indices)
    with torch.no_grad():
        torch.testing.assert_close(m2.decode_indices(idx), out.logits)


def test_bf16_autocast_forward():
    torch.manual_seed(4)
    m = MaskVQVAE(channels=(4, 8), latent_dim=4, num_embeddings=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(blobs(1, size=16))
    assert out.logits.shape == (1, 2, 16, 16, 16) and torch.isfinite(out.logits.float()).all()
    assert out.commitment_loss.dtype == torch.float32


@pytest.mark.parametrize("norm,local", [("batch", True), ("none", True), ("instance", False)])
def test_codes_are_local_only_without_instance_statistics(norm, local):
    """With batch (eval) or no norm a voxel's code ignores far-away content; instance norm does not."""
    torch.manual_seed(3)
    m = MaskVQVAE(norm=norm, quantizer={"kmeans_init": False}).eval()
    assert m.local is local
    a = torch.zeros(1, 1, 64, 32, 32)
    a[..., 4:14, 8:20, 8:20] = 1
    b = a.clone()
    b[..., 40:60, 4:28, 4:28] = 1  # a second blob far outside the first one's receptive field
    same = torch.equal(m.encode_indices(a)[..., :3, :, :], m.encode_indices(b)[..., :3, :, :])
    assert same is local


def test_tiny_training_run_reconstructs_and_uses_codebook():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    m = MaskVQVAE(num_embeddings=32, quantizer={"decay": 0.9})
    loss_fn = MaskLoss(dice_weight=1.0, ce_weight=1.0)
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    pool = blobs(32, seed=0)
    start = time.perf_counter()
    for step in range(80):
        x = pool[torch.randint(32, (4,))]
        out = m(x)
        loss = loss_fn(out.logits, x) + out.commitment_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    m.eval()
    held_out = blobs(8, seed=1234)
    with torch.no_grad():
        out = m(held_out)
        used = m.quantizer.quantize_indices(m.encode(pool)).unique().numel() / 32
    dice = hard_dice(out.logits, held_out)
    print(f"tiny run: held-out Dice {dice:.3f}, codes used {used:.2f}, {elapsed / 80 * 1000:.0f} ms/step")
    assert dice > 0.8
    assert used > 0.25
