"""Build the stage-2 / single-stage model of a variant from params, and rebuild one from a model file's config."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from torch import nn

from agvq.config import CondModelConfig, VariantSpec, to_dict
from agvq.errors import ConfigError
from agvq.models.baseline import BASELINE_KINDS
from agvq.models.conditional import AGUNet, CodePredictor

KINDS: dict[str, Callable[..., nn.Module]] = {
    CodePredictor.kind: CodePredictor,
    AGUNet.kind: AGUNet,
    **BASELINE_KINDS,
}


def _construct(kind: str, config: Mapping[str, Any]) -> nn.Module:
    try:
        return KINDS[kind](**config)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build a {kind} model: {exc}") from None


def attention_kwargs(spec: VariantSpec) -> dict[str, Any]:
    """``{"attention": settings}`` for a variant that places 3D attention modules (agvq.models.attention), else {}
    (so a model without attention is built, and recorded in its model file, exactly as before attention existed)."""
    return {"attention": to_dict(spec.attention)} if spec.attention.active else {}


def backbone_kwargs(spec: VariantSpec, model_cfg: CondModelConfig, in_channels: int) -> dict[str, Any]:
    """AttentionBackbone keywords: ``cond.model.backbone`` with the variant's switches and attention modules applied
    (soft masking off empties ``soft_mask_blocks``)."""
    kwargs = to_dict(model_cfg.backbone)
    kwargs.update(in_channels=int(in_channels), attention_scaling=spec.switch("attention_scaling"),
                  squeeze_excitation=spec.switch("squeeze_excitation"), **attention_kwargs(spec))
    if not spec.switch("soft_masking"):
        kwargs["soft_mask_blocks"] = []
    elif not kwargs["soft_mask_blocks"]:
        raise ConfigError("variant has soft_masking on but cond.model.backbone.soft_mask_blocks is empty")
    return kwargs


def build_model(spec: VariantSpec, model_cfg: CondModelConfig, in_channels: int,
                num_embeddings: int | None = None, patch_size=None, out_channels: int = 2) -> nn.Module:
    """Model of one variant: two-stage -> CodePredictor (needs the stage-1 ``num_embeddings``); single-stage
    transformer -> AGUNet; ``arch: unet | unetr | swinunetr | segresnet | vnet`` -> the MONAI baseline (U-Net with
    the variant's attention modules; UNETR also needs the training ``patch_size``, its fixed input size).
    ``out_channels``: 2 (background/foreground softmax of one region) or the number of regions of a joint model (one
    sigmoid output per region)."""
    if spec.arch != "transformer":
        kwargs = {**to_dict(getattr(model_cfg, spec.arch)), "in_channels": in_channels, "out_channels": out_channels}
        if spec.arch == "unet":
            kwargs.update(attention_kwargs(spec))
        if spec.arch == "unetr":
            if patch_size is None:
                raise ConfigError("a UNETR variant needs the training patch size (its fixed input size)")
            kwargs["img_size"] = [int(p) for p in patch_size]
        return _construct(spec.arch, kwargs)
    kwargs = backbone_kwargs(spec, model_cfg, in_channels)
    if spec.two_stage:
        if num_embeddings is None:
            raise ConfigError("a two-stage variant needs num_embeddings (the stage-1 codebook size)")
        return _construct(CodePredictor.kind, {**kwargs, "num_embeddings": num_embeddings})
    return _construct(AGUNet.kind, {**kwargs, "out_channels": out_channels})


def rebuild(kind: str, config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from ``model.kind`` and ``model.config()`` as saved in a model file (weights not loaded)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; known: {sorted(KINDS)}")
    return _construct(kind, config)
