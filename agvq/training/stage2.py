"""Stage 2 set-up: build one variant's network (two-stage code predictor, AG-UNet or U-Net baseline) from params,
load the frozen stage-1 VQ-VAE for two-stage variants, and train through the shared loop."""
from __future__ import annotations

from agvq.errors import ConfigError
from agvq.models.factory import build_model
from agvq.models.loading import load_vqvae
from agvq.regions import REGIONS
from agvq.training.config import TrainConfig, deep_merge
from agvq.training.run import TrainingPaths, prepared_modalities, train_and_save
from agvq.training.runtime import setup_runtime, teardown_runtime
from agvq.training.tasks import CodeTask, SegmentationTask


def variant_params(params: dict, name: str, region: str | None = None) -> tuple[dict, dict]:
    """(variant switches, ``cond`` section for this variant and region).

    The ``cond`` section is merged with ``cond.regions.<region>`` (settings of one region, for every variant),
    then with the variant's optional ``overrides`` (settings of one variant, for every region).
    """
    variants = params.get("variants") or {}
    if name not in variants:
        raise ConfigError(f"unknown variant {name!r}; params.yaml defines {sorted(variants)}")
    variant = dict(variants[name])
    overrides = variant.pop("overrides", None)
    cond = {k: v for k, v in params["cond"].items() if k != "regions"}
    per_region = params["cond"].get("regions") or {}
    unknown = sorted(set(per_region) - set(REGIONS))
    if unknown:
        raise ConfigError(f"cond.regions has settings for {unknown}; regions are {list(REGIONS)}")
    cond = deep_merge(cond, per_region.get(region) if region is not None else None)
    return variant, deep_merge(cond, overrides)


def train_variant(name: str, region: str, params: dict, args):
    variant, p = variant_params(params, name, region)
    two_stage = bool(variant.get("two_stage", True))
    if two_stage and not args.vqvae:
        raise ConfigError(f"variant {name} is two-stage: pass --vqvae with the region's stage-1 model file")
    if not two_stage and args.vqvae:
        raise ConfigError(f"variant {name} is single-stage: it takes no --vqvae")
    cfg = TrainConfig.from_params(p["train"])
    runtime_params = params["runtime"]
    rt = setup_runtime({**runtime_params, "seed": p.get("seed", 0)})
    try:
        in_channels = len(prepared_modalities(args.prepared))
        loss = dict(p.get("loss") or {})
        extra, extra_files = {}, []
        if two_stage:
            vqvae, bundle = load_vqvae(args.vqvae, region=region)
            if any(s % vqvae.stride for s in cfg.patch_size):
                raise ConfigError(f"patch_size {list(cfg.patch_size)} is not a multiple of the VQ-VAE stride")
            model = build_model(variant, p["model"], in_channels, bundle["contract"]["num_embeddings"])
            task = CodeTask(model, vqvae.to(rt.device), focal_weight=loss.get("focal_weight", 1.0),
                            ce_weight=loss.get("ce_weight", 1.0), gamma=loss.get("gamma", 2.0),
                            code_balance=loss.get("code_balance", 0.0))
            extra, extra_files = {"vqvae": bundle}, [args.vqvae]
        else:
            model = build_model(variant, p["model"], in_channels)
            task = SegmentationTask(model, dice_weight=loss.get("dice_weight", 1.0),
                                    ce_weight=loss.get("ce_weight", 1.0))
        if any(s % model.stride for s in cfg.patch_size):
            raise ConfigError(f"patch_size {list(cfg.patch_size)} is not a multiple of {model.stride} ({name})")
        contract = {"variant": name, "two_stage": two_stage, "switches": variant, "stride": model.stride}
        return train_and_save(task, model.kind, region, cfg, rt, TrainingPaths.from_args(args), p.get("seed", 0),
                              identity={"stage": "cond", "variant": name, "region": region, "variant_params": variant,
                                        "params": p, "runtime": runtime_params},
                              contract=contract, extra_files=extra_files, extra=extra, desc=f"{name} {region}")
    finally:
        teardown_runtime(rt)
