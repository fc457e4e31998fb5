"""Token-level attention blocks of the AG-VQ-VAE conditional network: AS, SE, SM and the transformer block.

All modules act on token tensors of shape (B, N, dim). A switched-off block is ``nn.Identity`` (nothing is applied
and it owns no parameters), so an ablation is exactly the network without that block.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_heads(dim: int, heads: int) -> None:
    if dim <= 0 or heads <= 0 or dim % heads:
        raise ValueError(f"dim ({dim}) must be a positive multiple of heads ({heads})")


class AttentionScaling(nn.Module):
    """Attention Scaling (AS): re-weight each head's slice of a token by a softmax over heads.

    For a token ``x`` (dim channels, ``heads`` slices of ``d = dim / heads``):
    ``q = W x + b`` (a linear projection to per-head queries), ``s_h = mean(q[h*d:(h+1)*d])`` (one score per head),
    ``w = softmax_h(s)`` and ``y[h*d:(h+1)*d] = heads * w_h * x[h*d:(h+1)*d]``.

    The factor ``heads`` makes the neutral point exact: when all heads score alike (``w_h = 1/heads``) the token is
    unchanged, so AS only redistributes magnitude between heads instead of shrinking every token by ``1/heads``
    (which a post-norm stack would otherwise have to undo, and which would make "AS on" and "AS off" differ by a
    global scale rather than by the re-weighting the method is about).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        _check_heads(dim, heads)
        self.dim, self.heads = dim, heads
        self.query = nn.Linear(dim, dim)

    def head_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax-over-heads weights, shape (B, N, heads)."""
        q = self.query(x).unflatten(-1, (self.heads, self.dim // self.heads))
        return torch.softmax(q.mean(dim=-1), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.head_weights(x) * self.heads
        return (x.unflatten(-1, (self.heads, self.dim // self.heads)) * w.unsqueeze(-1)).flatten(-2)


class SqueezeExcitation(nn.Module):
    """Squeeze-excitation over channels: ``g = sigmoid(W2 relu(W1 mean_tokens(x)))``, ``y = g * x`` per channel."""

    def __init__(self, dim: int, reduction: int):
        super().__init__()
        if reduction <= 0 or dim < reduction:
            raise ValueError(f"squeeze-excitation reduction ({reduction}) must be in 1..dim ({dim})")
        hidden = dim // reduction
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=1)))))
        return x * gate.unsqueeze(1)


class SoftMasking(nn.Module):
    """Soft Masking (SM): a scalar gate per token ``u = sigmoid(w . x + b)`` and ``y = (1 - u) x``.

    The gate is one number per token (a soft token mask), not per channel: it suppresses whole tokens, which is
    what lets late blocks mute background positions.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1.0 - torch.sigmoid(self.gate(x))) * x


class SelfAttention(nn.Module):
    """Multi-head self-attention on (B, N, dim) through ``F.scaled_dot_product_attention`` (flash/SDPA kernels)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        _check_heads(dim, heads)
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, dim = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2],
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, dim))


class TransformerBlock(nn.Module):
    """Post-norm transformer block followed by the AG-VQ-VAE refinements.

    ``x = LN(x + attn(x)); x = LN(x + mlp(x))``, then AS, SE and SM in that order, each only when switched on.
    """

    def __init__(self, dim: int, heads: int, *, mlp_ratio: float, dropout: float, attention_scaling: bool,
                 squeeze_excitation: bool, soft_masking: bool, se_reduction: int):
        super().__init__()
        _check_heads(dim, heads)
        hidden = int(round(dim * mlp_ratio))
        if hidden <= 0:
            raise ValueError(f"mlp_ratio ({mlp_ratio}) gives an empty MLP")
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.attention_scaling = AttentionScaling(dim, heads) if attention_scaling else nn.Identity()
        self.squeeze_excitation = SqueezeExcitation(dim, se_reduction) if squeeze_excitation else nn.Identity()
        self.soft_masking = SoftMasking(dim) if soft_masking else nn.Identity()

    def core(self, x: torch.Tensor) -> torch.Tensor:
        """The plain post-norm attention + MLP part."""
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.drop(self.mlp(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention_scaling(self.core(x))
        x = self.squeeze_excitation(x)
        return self.soft_masking(x)
