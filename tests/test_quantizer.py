"""EMAVectorQuantizer: shapes, straight-through gradients, EMA maths vs MONAI, k-means init, dead codes, DDP."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from monai.networks.layers.vector_quantizer import EMAQuantizer

import agvq.models.quantizer as qmod
from agvq.errors import ConfigError
from agvq.models.quantizer import EMAVectorQuantizer as _EMAVectorQuantizer
from agvq.models.quantizer import kmeans
from tests.helpers_config import QUANTIZER_DEFAULTS


def EMAVectorQuantizer(num_embeddings, embedding_dim, **kw) -> _EMAVectorQuantizer:  # noqa: N802 (config defaults)
    return _EMAVectorQuantizer(num_embeddings, embedding_dim, **{**QUANTIZER_DEFAULTS, **kw})



def _clusters(n_per: int, centres: torch.Tensor, spread: float = 0.05, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = centres.repeat_interleave(n_per, 0)
    return pts + spread * torch.randn(pts.shape, generator=g)


def _state(q: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in q.state_dict().items()}


@pytest.mark.parametrize("shape", [(2, 8, 4, 4, 4), (3, 8, 5, 6), (2, 8, 7)])
def test_shapes_and_straight_through(shape):
    torch.manual_seed(0)
    q = EMAVectorQuantizer(16, 8)
    z = torch.randn(shape, requires_grad=True)
    out = q(z)
    assert out.quantized.shape == z.shape
    assert out.indices.shape == (shape[0], *shape[2:]) and out.indices.dtype == torch.long
    assert out.commitment_loss.dim() == 0 and out.perplexity.dim() == 0 and out.used_fraction.dim() == 0
    assert 1.0 <= out.perplexity.item() <= 16 and 0 < out.used_fraction.item() <= 1
    # forward values are the codebook vectors used in that step (the codebook was updated after assignment)
    q.eval()
    out = q(z)
    torch.testing.assert_close(out.quantized, q.lookup(out.indices))
    torch.testing.assert_close(q.quantize_indices(z), out.indices)
    # straight-through: d(sum quantized)/dz == 1 everywhere; commitment loss pulls z towards its code
    (g,) = torch.autograd.grad(out.quantized.sum(), z)
    torch.testing.assert_close(g, torch.ones_like(z))
    (g,) = torch.autograd.grad(out.commitment_loss, z)
    expected = 0.25 * 2 * (z - q.lookup(out.indices)) / z.numel()
    torch.testing.assert_close(g, expected.detach())


def test_ema_moves_in_train_and_never_in_eval():
    torch.manual_seed(1)
    q = EMAVectorQuantizer(8, 4, kmeans_init=False)
    z = torch.randn(2, 4, 3, 3, 3)
    before = _state(q)
    q(z)
    assert not torch.equal(before["embedding"], q.embedding)
    assert not torch.equal(before["cluster_size"], q.cluster_size)
    q.eval()
    frozen = _state(q)
    q(z)
    q(torch.randn(2, 4, 3, 3, 3) * 5)
    with torch.no_grad():
        q(z)
    q.quantize_indices(z)
    for k, v in q.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    # quantize_indices changes nothing in training mode either
    q.train()
    q.quantize_indices(z * 3)
    for k, v in q.state_dict().items():
        assert torch.equal(v, frozen[k]), k


@pytest.mark.parametrize("decay,epsilon", [(0.99, 1e-5), (0.8, 1e-3)])
def test_ema_update_equals_monai(decay, epsilon):
    torch.manual_seed(2)
    ref = EMAQuantizer(3, 12, 6, commitment_cost=0.25, decay=decay, epsilon=epsilon)
    q = EMAVectorQuantizer(12, 6, commitment=0.25, decay=decay, epsilon=epsilon, dead_code_threshold=0.0,
                           kmeans_init=False)
    q.embedding.copy_(ref.embedding.weight.data)
    q.embed_avg.copy_(ref.ema_w)
    ref.train(), q.train()
    for step in range(6):
        z = torch.randn(2, 6, 4, 3, 5) + 0.2 * step
        r_q, r_loss, r_idx = ref(z)
        out = q(z)
        torch.testing.assert_close(out.indices, r_idx)
        torch.testing.assert_close(out.quantized, r_q)
        torch.testing.assert_close(out.commitment_loss, r_loss)
        torch.testing.assert_close(q.cluster_size, ref.ema_cluster_size)
        torch.testing.assert_close(q.embed_avg, ref.ema_w)
        torch.testing.assert_close(q.embedding, ref.embedding.weight.data)


def test_dead_code_reseeded_from_current_outputs():
    torch.manual_seed(3)
    q = EMAVectorQuantizer(8, 4, dead_code_threshold=1.0, kmeans_init=False)
    z = torch.randn(2, 4, 4, 4, 4)
    q(z)  # every unused code is re-seeded on the first step
    q.embedding[5] = 1e3  # code 5 can no longer win any vector
    q.embed_avg[5] = 1e3 * q.cluster_size[5]
    q.usage[5] = 1.0  # alive for now: one unused step decays it below the threshold
    z2 = torch.randn(2, 4, 4, 4, 4)
    out = q(z2)
    assert (out.indices != 5).all()
    flat = z2.movedim(1, -1).reshape(-1, 4)
    assert (flat == q.embedding[5]).all(1).any(), "code 5 should now equal one current encoder vector"
    assert q.usage[5] == 1.0 and q.cluster_size[5] == 1.0
    torch.testing.assert_close(q.embed_avg[5], q.embedding[5])
    # with re-seeding off, the unused code stays where it is
    q2 = EMAVectorQuantizer(8, 4, dead_code_threshold=0.0, kmeans_init=False)
    q2.embedding[5] = 1e3
    q2.cluster_size[5] = 10.0
    q2.embed_avg[5] = 1e4
    q2(z2)
    torch.testing.assert_close(q2.embedding[5], torch.full((4,), 1e3), rtol=1e-3, atol=0)


def test_kmeans_recovers_separated_clusters():
    torch.manual_seed(4)
    centres = torch.randn(6, 3) * 4
    x = _clusters(50, centres)
    c, counts = kmeans(x, 6, iters=10)
    assert counts.sum() == 300
    d = torch.cdist(centres, c).min(1).values
    assert (d < 0.1).all()


def test_kmeans_init_runs_once_and_survives_state_dict(monkeypatch):
    torch.manual_seed(5)
    calls = []
    real = qmod.kmeans

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(qmod, "kmeans", counting)
    centres = torch.randn(4, 3) * 5
    z = _clusters(64, centres).T.reshape(3, 4, 8, 8).movedim(0, 1).contiguous()  # (4, 3, 8, 8)
    q = EMAVectorQuantizer(4, 3, kmeans_init=True, kmeans_max_vectors=100)
    q.eval()
    q(z)
    assert not bool(q.initialized) and not calls  # eval mode never initialises
    q.train()
    out = q(z)
    assert bool(q.initialized) and len(calls) == 1
    assert torch.cdist(centres, q.embedding).min(1).values.max() < 0.2
    assert out.used_fraction.item() == 1.0 and out.perplexity.item() > 3.9
    q(z)
    assert len(calls) == 1
    q2 = EMAVectorQuantizer(4, 3, kmeans_init=True)
    q2.load_state_dict(q.state_dict())
    assert bool(q2.initialized)
    before = q2.embedding.clone()
    q2(z)
    assert len(calls) == 1
    torch.testing.assert_close(q2.embedding, before, atol=0.05, rtol=0)


def test_fewer_vectors_than_codes():
    torch.manual_seed(6)
    q = EMAVectorQuantizer(64, 4)
    out = q(torch.randn(1, 4, 2, 2, 2))
    assert out.indices.shape == (1, 2, 2, 2) and torch.isfinite(q.embedding).all()


def test_distances_float32_under_autocast():
    torch.manual_seed(7)
    q = EMAVectorQuantizer(512, 32, kmeans_init=False).eval()
    q.embedding.copy_(torch.randn(512, 32) * 0.1 + 1.0)  # close codes: bf16 distances mis-assign ~80 %
    z = torch.randn(4, 32, 8, 8, 8) * 0.1 + 1.0
    flat = z.double().movedim(1, -1).reshape(-1, 32)
    ref = torch.cdist(flat, q.embedding.double()).argmin(1).view(4, 8, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z)
        idx = q.quantize_indices(z)
        out16 = q(z.bfloat16())
    assert torch.equal(out.indices, ref) and torch.equal(idx, ref)
    assert out16.quantized.dtype == torch.bfloat16 and out16.commitment_loss.dtype == torch.float32


def test_bad_arguments():
    with pytest.raises(ConfigError):
        EMAVectorQuantizer(8, 4, decay=1.0)
    with pytest.raises(ConfigError):
        EMAVectorQuantizer(0, 4)
    with pytest.raises(ValueError):
        EMAVectorQuantizer(8, 4)(torch.randn(2, 5, 3, 3))


def _ddp_worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(100 + rank)  # ranks draw different random numbers: results must not depend on it
        data = torch.load(out + "_data.pt")
        z = data["z"][rank * 2:(rank + 1) * 2]
        plain = EMAVectorQuantizer(16, 4, dead_code_threshold=0.0, kmeans_init=False)
        plain.embedding.copy_(data["init"])
        plain.embed_avg.copy_(data["init"])
        full = EMAVectorQuantizer(32, 4, decay=0.5, dead_code_threshold=3.0, kmeans_init=True)
        for step in range(3):
            plain(z + step)
            full(z * (step + 1))
        torch.save({"plain": plain.state_dict(), "full": full.state_dict()}, f"{out}_{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_codebooks_identical_and_equal_single_process(tmp_path):
    torch.manual_seed(8)
    z, init = torch.randn(4, 4, 3, 3, 3), torch.randn(16, 4)
    out = str(tmp_path / "res")
    torch.save({"z": z, "init": init}, out + "_data.pt")
    mp.spawn(_ddp_worker, args=(str(tmp_path / "store"), out), nprocs=2)
    r0, r1 = torch.load(out + "_0.pt"), torch.load(out + "_1.pt")
    for part in ("plain", "full"):
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), (part, k)
    single = EMAVectorQuantizer(16, 4, dead_code_threshold=0.0, kmeans_init=False)
    single.embedding.copy_(init)
    single.embed_avg.copy_(init)
    for step in range(3):
        single(z + step)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(r0["plain"][k], v)


def test_error_weighted_reseeding_avoids_background_duplicates():
    """Mostly 'background' outputs plus a few far away: error re-seeding draws the far ones, uniform mostly not."""
    torch.manual_seed(5)
    background = torch.zeros(1, 4, 10, 10, 10) + 0.01 * torch.randn(1, 4, 10, 10, 10)
    background[0, :, 0, 0, :4] = 5.0 + torch.arange(4.0)  # 4 of 1000 vectors are far from the live code
    far = background[0, :, 0, 0, :4].t()
    picked = {}
    for mode in ("error", "uniform"):
        q = EMAVectorQuantizer(4, 4, dead_code_threshold=1.0, kmeans_init=False, reseed=mode, decay=0.0)
        q.embedding.zero_()  # code 0 (at the background) is live; codes 1..3 are dead
        q.embed_avg.zero_()
        q.usage.copy_(torch.tensor([100.0, 0.0, 0.0, 0.0]))
        picks = q._reseed_picks(background.movedim(1, -1).reshape(-1, 4), q.usage < 1.0, 3)
        new = background.movedim(1, -1).reshape(-1, 4)[picks]
        picked[mode] = int(sum(bool((row == far).all(1).any()) for row in new))
    assert picked["error"] == 3  # the 996 background vectors carry ~0.1% of the error mass
    assert picked["uniform"] <= 1
    with pytest.raises(ConfigError, match="reseed"):
        EMAVectorQuantizer(4, 4, reseed="random")


def test_error_reseeding_falls_back_to_uniform_when_everything_fits():
    torch.manual_seed(6)
    q = EMAVectorQuantizer(4, 2, dead_code_threshold=1.0, kmeans_init=False)
    flat = torch.zeros(6, 2)  # every vector sits exactly on the live code 0: no error mass
    q.embedding.zero_()
    dead = torch.tensor([False, True, True, True])
    picks = q._reseed_picks(flat, dead, 3)
    assert picks.shape == (3,) and len(set(picks.tolist())) == 3
