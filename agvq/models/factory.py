"""Build the stage-2 / single-stage model of a variant from params, and rebuild one from a checkpoint's config."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from torch import nn

from agvq.errors import ConfigError
from agvq.models.baseline import UNetBaseline
from agvq.models.conditional import AGUNet, CodePredictor

SWITCHES = ("attention_scaling", "soft_masking", "squeeze_excitation")
VARIANT_KEYS = ("two_stage", "arch") + SWITCHES
ARCHS = ("transformer", "unet")
KINDS: dict[str, Callable[..., nn.Module]] = {
    CodePredictor.kind: CodePredictor,
    AGUNet.kind: AGUNet,
    UNetBaseline.kind: UNetBaseline,
}


def _construct(kind: str, config: Mapping[str, Any]) -> nn.Module:
    try:
        return KINDS[kind](**config)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build a {kind} model: {exc}") from None


def build_model(variant: Mapping[str, Any], model_cfg: Mapping[str, Any], in_channels: int,
                num_embeddings: int | None = None) -> nn.Module:
    """Model of one variant.

    ``variant``: {two_stage: bool, arch: transformer|unet, attention_scaling, soft_masking, squeeze_excitation}
    (the switches only for arch transformer; a missing switch keeps the backbone's own setting, soft_masking false
    empties ``soft_mask_blocks``). ``model_cfg``: {backbone: {...AttentionBackbone kwargs}, unet: {...build_unet
    kwargs}}. two_stage -> CodePredictor (needs ``num_embeddings``); single-stage transformer -> AGUNet; unet ->
    the MONAI U-Net baseline.
    """
    unknown = sorted(set(variant) - set(VARIANT_KEYS))
    if unknown:
        raise ConfigError(f"variant has unknown keys {unknown}; allowed: {list(VARIANT_KEYS)}")
    arch = variant.get("arch", "transformer")
    if arch not in ARCHS:
        raise ConfigError(f"variant arch {arch!r} is not one of {list(ARCHS)}")
    two_stage = bool(variant.get("two_stage", True))
    if arch == "unet":
        if two_stage:
            raise ConfigError("variant arch 'unet' is a single-stage baseline; set two_stage: false")
        on = [k for k in SWITCHES if variant.get(k)]
        if on:
            raise ConfigError(f"variant arch 'unet' has no attention blocks; remove {on}")
        return _construct(UNetBaseline.kind, {**dict(model_cfg.get("unet") or {}), "in_channels": in_channels})

    backbone = dict(model_cfg.get("backbone") or {})
    for key in ("attention_scaling", "squeeze_excitation"):
        if key in variant:
            backbone[key] = bool(variant[key])
    if "soft_masking" in variant:
        if not variant["soft_masking"]:
            backbone["soft_mask_blocks"] = []
        elif not backbone.get("soft_mask_blocks", True):
            raise ConfigError("variant has soft_masking on but model backbone.soft_mask_blocks is empty")
    backbone["in_channels"] = in_channels
    if two_stage:
        if num_embeddings is None:
            raise ConfigError("a two-stage variant needs num_embeddings (the stage-1 codebook size)")
        return _construct(CodePredictor.kind, {**backbone, "num_embeddings": num_embeddings})
    return _construct(AGUNet.kind, backbone)


def rebuild(kind: str, config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from ``model.kind`` and ``model.config()`` as saved in a checkpoint (weights not loaded)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; known: {sorted(KINDS)}")
    return _construct(kind, config)
