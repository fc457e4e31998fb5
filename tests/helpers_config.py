"""Typed configs and small models for unit tests, built through agvq.config (where every default lives)."""
from __future__ import annotations

import torch

from agvq.config import (BackboneConfig, CondLossConfig, InferConfig, MaskLossConfig, QuantizerConfig, TrainConfig,
                         parse, to_dict)
from agvq.models.vqvae import MaskVQVAE
from agvq.training.runtime import Runtime
from agvq.training.validation import ValidationProtocol

PENALTY = 373.13
QUANTIZER_DEFAULTS = to_dict(QuantizerConfig())


def train_cfg(**kw) -> TrainConfig:
    return parse(TrainConfig, kw, "train")


def infer_cfg(**kw) -> InferConfig:
    return parse(InferConfig, kw, "infer")


def protocol(patch_size=(16, 16, 16), empty_penalty: float = PENALTY, **infer) -> ValidationProtocol:
    return ValidationProtocol(infer_cfg(**infer), empty_penalty, tuple(patch_size))


def quantizer(**kw) -> dict:
    """Every quantizer keyword: the config defaults with ``kw`` replacing any (not validated: tests probe errors)."""
    return {**QUANTIZER_DEFAULTS, **kw}


def vqvae(channels=(4, 8), res_blocks: int = 1, latent_dim: int = 4, num_embeddings: int = 8, norm: str = "batch",
          **quantizer_kw) -> MaskVQVAE:
    return MaskVQVAE(channels=channels, res_blocks=res_blocks, latent_dim=latent_dim, num_embeddings=num_embeddings,
                     quantizer=quantizer(**quantizer_kw), norm=norm)


def backbone(in_channels: int = 4, **kw) -> dict:
    """AttentionBackbone keywords: the config defaults, switches on, with ``kw`` replacing any of them."""
    out = {**to_dict(BackboneConfig()), "in_channels": in_channels, "attention_scaling": True,
           "squeeze_excitation": True}
    out.update(kw)
    return out


def mask_loss(**kw) -> MaskLossConfig:
    return parse(MaskLossConfig, kw, "loss")


def cond_loss(**kw) -> CondLossConfig:
    return parse(CondLossConfig, kw, "loss")


def cpu_runtime(precision: str = "fp32") -> Runtime:
    return Runtime(torch.device("cpu"), precision, False, 0, 1, 0)


def preprocess_cfg(**kw):
    from agvq.config import PreprocessConfig

    return parse(PreprocessConfig, kw, "preprocess")
