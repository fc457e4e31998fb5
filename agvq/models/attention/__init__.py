"""Attention blocks.

* Token level (tokens.py): the AG-VQ-VAE transformer's Attention Scaling, squeeze-excitation over tokens, Soft
  Masking, self-attention and the transformer block, on (B, N, dim) token tensors.
* Feature-map level (base.py, channel.py, gate.py, slices.py): 3D modules with one interface,
  ``module(x: (B, C, X, Y, Z)) -> same shape`` plus the gated form ``module.gate(x, g)``, built by name
  (registry.py): ``none``, ``se``, ``cbam``, ``scse``, ``pe``, ``gate``, ``slice``, ``pam``.
"""
from agvq.models.attention.base import FeatureAttention, NoAttention
from agvq.models.attention.channel import CBAM, ConcurrentSE, ProjectExcite, SqueezeExcite3D
from agvq.models.attention.gate import AttentionGate
from agvq.models.attention.registry import NAMES, POSITIONS, attention_at, build_attention, check_settings
from agvq.models.attention.slices import KeySliceSelection, ProgressiveAttention, SliceAttention
from agvq.models.attention.tokens import (AttentionScaling, SelfAttention, SoftMasking, SqueezeExcitation,
                                          TransformerBlock)

__all__ = [
    "NAMES", "POSITIONS", "AttentionGate", "AttentionScaling", "CBAM", "ConcurrentSE", "FeatureAttention",
    "KeySliceSelection", "NoAttention", "ProgressiveAttention", "ProjectExcite", "SelfAttention", "SliceAttention",
    "SoftMasking", "SqueezeExcitation", "SqueezeExcite3D", "TransformerBlock", "attention_at", "build_attention",
    "check_settings",
]
