"""EMA vector quantizer with data-driven (k-means) codebook init and dead-code re-seeding.

The EMA maths follows MONAI's ``EMAQuantizer`` (sonnet VQ-VAE v2 with Laplace-smoothed cluster sizes), which the
tests check; this module adds k-means initialisation, dead-code re-seeding, any number of spatial dims,
float32 distances under any autocast, rank-identical codebooks under torch.distributed, and keeps all state in
registered buffers so ``state_dict`` is the whole checkpoint.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from agvq.errors import ConfigError


class QuantizerOutput(NamedTuple):
    """Result of one quantizer forward pass."""

    quantized: torch.Tensor  # (B, D, *spatial), straight-through w.r.t. the input
    indices: torch.Tensor  # (B, *spatial) long
    commitment_loss: torch.Tensor  # scalar float32
    perplexity: torch.Tensor  # scalar, exp(entropy) of this batch's code histogram
    used_fraction: torch.Tensor  # scalar, share of codes hit at least once in this batch


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _is_rank0() -> bool:
    return not _distributed() or dist.get_rank() == 0


def _flatten(z: torch.Tensor) -> torch.Tensor:
    """(B, D, *spatial) -> (N, D) float32."""
    return z.detach().float().movedim(1, -1).reshape(-1, z.shape[1])


def _sq_distances(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (N, K) between rows of x and rows of codes (float32)."""
    return (x * x).sum(1, keepdim=True) + (codes * codes).sum(1)[None, :] - 2.0 * (x @ codes.t())


def kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeding then ``iters`` Lloyd steps on x (N, D). Returns (centroids (k, D), counts (k,)).

    With fewer distinct points than k, the surplus centroids duplicate data points and end with zero counts
    (dead-code re-seeding then replaces them).
    """
    x = x.float()
    n = x.shape[0]
    first = int(torch.randint(n, (1,), device=x.device))
    centroids = [x[first]]
    closest = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:
            idx = int(torch.randint(n, (1,), device=x.device))
        else:
            idx = int(torch.multinomial(closest / total, 1))
        centroids.append(x[idx])
        closest = torch.minimum(closest, ((x - x[idx]) ** 2).sum(1))
    c = torch.stack(centroids)
    counts = torch.zeros(k, device=x.device)
    for step in range(iters + 1):
        assign = _sq_distances(x, c).argmin(1)
        counts = torch.bincount(assign, minlength=k).float()
        if step == iters:
            break
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled, None]
    return c, counts


class EMAVectorQuantizer(nn.Module):
    """Vector quantizer whose codebook follows an EMA of the assigned encoder outputs.

    Args:
        num_embeddings: codebook size K.
        embedding_dim: code dimension D (channels of the input).
        commitment: weight of the commitment loss ``mse(z, sg(e))``.
        decay: EMA decay of cluster sizes and sums.
        epsilon: Laplace smoothing of the cluster sizes.
        dead_code_threshold: codes whose usage EMA (vectors per step) falls below this are re-seeded from
            current encoder outputs in training mode; 0 disables re-seeding.
        kmeans_iters: Lloyd iterations of the k-means initialisation.
        kmeans_init: initialise the codebook by k-means on the first training batch.
        kmeans_max_vectors: cap on the number of encoder vectors k-means runs on (random subsample).
        reseed: how a dead code's new vector is drawn from the current encoder outputs. "error" (default) draws
            with probability proportional to the squared distance to the nearest live code, like k-means++, so
            new codes go where the codebook fits badly. "uniform" draws any output; since most outputs of a
            mask encoder are empty background, it fills the codebook with near-duplicates of the background
            code, which stage 2 then cannot tell apart.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        commitment: float,
        decay: float,
        epsilon: float,
        dead_code_threshold: float,
        kmeans_iters: int,
        kmeans_init: bool,
        kmeans_max_vectors: int,
        reseed: str,
    ):
        super().__init__()
        if num_embeddings < 1 or embedding_dim < 1:
            raise ConfigError(f"quantizer: num_embeddings ({num_embeddings}) and embedding_dim ({embedding_dim}) "
                              "must be positive")
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"quantizer: decay must be in [0, 1), got {decay}")
        if epsilon <= 0 or commitment < 0 or dead_code_threshold < 0 or kmeans_iters < 0 or kmeans_max_vectors < 1:
            raise ConfigError("quantizer: epsilon must be > 0 and commitment, dead_code_threshold, kmeans_iters "
                              "must be >= 0, kmeans_max_vectors >= 1")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.commitment, self.decay, self.epsilon = float(commitment), float(decay), float(epsilon)
        self.dead_code_threshold = float(dead_code_threshold)
        self.kmeans_iters, self.kmeans_init = int(kmeans_iters), bool(kmeans_init)
        self.kmeans_max_vectors = int(kmeans_max_vectors)
        if reseed not in ("error", "uniform"):
            raise ConfigError(f"quantizer: reseed must be 'error' or 'uniform', got {reseed!r}")
        self.reseed = reseed
        embedding = torch.randn(num_embeddings, embedding_dim)
        self.register_buffer("embedding", embedding)
        self.register_buffer("cluster_size", torch.zeros(num_embeddings))
        self.register_buffer("embed_avg", embedding.clone())
        self.register_buffer("usage", torch.full((num_embeddings,), float(dead_code_threshold)))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.embedding: torch.Tensor
        self.cluster_size: torch.Tensor
        self.embed_avg: torch.Tensor
        self.usage: torch.Tensor
        self.initialized: torch.Tensor

    def extra_repr(self) -> str:
        return (f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, "
                f"commitment={self.commitment}, decay={self.decay}, dead_code_threshold={self.dead_code_threshold}")

    def _check(self, z: torch.Tensor) -> None:
        if z.dim() < 2 or z.shape[1] != self.embedding_dim:
            raise ValueError(f"quantizer expects (B, {self.embedding_dim}, *spatial), got {tuple(z.shape)}")

    def _assign(self, flat: torch.Tensor) -> torch.Tensor:
        return _sq_distances(flat, self.embedding).argmin(1)

    @torch.no_grad()
    def quantize_indices(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-code indices (B, *spatial) for z (B, D, *spatial); never changes any state."""
        self._check(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            idx = self._assign(_flatten(z))
        return idx.view(z.shape[0], *z.shape[2:])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for indices (B, *spatial) as (B, D, *spatial) float32."""
        if indices.dtype != torch.long:
            indices = indices.long()
        return self.embedding[indices].movedim(-1, 1).contiguous()

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        k = self.num_embeddings
        n_local = torch.tensor(float(flat.shape[0]), device=flat.device)
        if _distributed():
            dist.all_reduce(n_local)
        if _is_rank0():
            sub = flat
            if flat.shape[0] > self.kmeans_max_vectors:
                sub = flat[torch.randperm(flat.shape[0], device=flat.device)[: self.kmeans_max_vectors]]
            centroids, counts = kmeans(sub, k, self.kmeans_iters)
            counts = counts * (n_local / sub.shape[0])  # expected vectors per step at this batch size
            self.embedding.copy_(centroids)
            self.cluster_size.copy_(counts)
        if _distributed():
            dist.broadcast(self.embedding, 0)
            dist.broadcast(self.cluster_size, 0)
        self.embed_avg.copy_(self.embedding * self.cluster_size[:, None])
        self.usage.copy_(self.cluster_size)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> None:
        counts = counts.clone()
        sums = torch.zeros_like(self.embed_avg).index_add_(0, idx, flat)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        d = self.decay
        self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
        self.usage.mul_(d).add_(counts, alpha=1 - d)
        self.embed_avg.mul_(d).add_(sums, alpha=1 - d)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (n + self.num_embeddings * self.epsilon) * n
        self.embedding.copy_(self.embed_avg / smoothed[:, None])

    def _reseed_picks(self, flat: torch.Tensor, dead: torch.Tensor, n_dead: int) -> torch.Tensor:
        """Rows of ``flat`` that become the new codes: distinct where possible; with ``reseed="error"`` drawn with
        probability proportional to their squared distance to the nearest live code (k-means++ style)."""
        n = flat.shape[0]
        if self.reseed == "error" and bool((~dead).any()):
            err = _sq_distances(flat, self.embedding[~dead]).min(1).values.clamp_min(0.0)
            if float(err.sum()) > 0:
                replacement = int((err > 0).sum()) < n_dead
                return torch.multinomial(err / err.sum(), n_dead, replacement=replacement)
        if n >= n_dead:
            return torch.randperm(n, device=flat.device)[:n_dead]
        return torch.randint(n, (n_dead,), device=flat.device)

    @torch.no_grad()
    def _reseed_dead(self, flat: torch.Tensor) -> None:
        dead = self.usage < self.dead_code_threshold  # identical on all ranks: usage comes from reduced counts
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        new = torch.empty(n_dead, self.embedding_dim, device=flat.device)
        if _is_rank0():
            new.copy_(flat[self._reseed_picks(flat, dead, n_dead)])
        if _distributed():
            dist.broadcast(new, 0)
        self.embedding[dead] = new
        self.cluster_size[dead] = 1.0
        self.embed_avg[dead] = new
        self.usage[dead] = self.dead_code_threshold

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z (B, D, *spatial); in training mode also init / EMA-update / re-seed the codebook."""
        self._check(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            zf = z.float()
            flat = _flatten(z)
            if self.training and not bool(self.initialized):
                self._kmeans_init(flat)
            idx = self._assign(flat)
            counts = torch.bincount(idx, minlength=self.num_embeddings).float()
            quantized = self.embedding[idx].view(z.shape[0], *z.shape[2:], self.embedding_dim).movedim(-1, 1)
            if self.training:
                self._ema_update(flat, idx, counts)
                if self.dead_code_threshold > 0:
                    self._reseed_dead(flat)
            loss = self.commitment * nn.functional.mse_loss(zf, quantized.detach())
            probs = counts / max(idx.numel(), 1)
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            used = (probs > 0).float().mean()
        out = z + (quantized.to(z.dtype) - z).detach()
        return QuantizerOutput(out, idx.view(z.shape[0], *z.shape[2:]), loss, perplexity, used)
