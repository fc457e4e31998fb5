"""Stage 2 set-up: build one variant's network (two-stage code predictor, AG-UNet or U-Net baseline) from params,
load the frozen stage-1 VQ-VAE for two-stage variants, and train through the shared loop."""
from __future__ import annotations

from pathlib import Path

from agvq.config import Params, to_dict
from agvq.errors import ConfigError
from agvq.models.factory import build_model
from agvq.models.loading import load_vqvae
from agvq.training.run import TrainingPaths, prepared_modalities, train_and_save
from agvq.training.runtime import setup_runtime, teardown_runtime
from agvq.training.stage1 import protocol_identity, validation_protocol
from agvq.training.tasks import CodeTask, JointSegmentationTask, SegmentationTask


def train_variant(name: str, region: str, params: Params, paths: TrainingPaths, vqvae_path: str | Path | None,
                  seed: int):
    """Train variant ``name`` (two-stage or per-region single-stage) for ``region`` with training seed ``seed``."""
    spec, cfg = params.variant(name), params.cond_for(name, region)
    if spec.joint:
        raise ConfigError(f"variant {name} is a joint model of all regions: train it with stages/train_joint.py")
    if spec.two_stage and not vqvae_path:
        raise ConfigError(f"variant {name} is two-stage: pass --vqvae with the region's stage-1 model file")
    if not spec.two_stage and vqvae_path:
        raise ConfigError(f"variant {name} is single-stage: it takes no --vqvae")
    rt = setup_runtime(params.runtime, seed)
    try:
        in_channels = len(prepared_modalities(paths.prepared))
        extra, extra_files = {}, []
        if spec.two_stage:
            vqvae, bundle = load_vqvae(vqvae_path, region=region)
            if any(s % vqvae.stride for s in cfg.train.patch_size):
                raise ConfigError(f"patch_size {list(cfg.train.patch_size)} is not a multiple of the VQ-VAE stride")
            model = build_model(spec, cfg.model, in_channels, bundle["contract"]["num_embeddings"])
            task = CodeTask(model, vqvae.to(rt.device), cfg.loss)
            extra, extra_files = {"vqvae": bundle}, [vqvae_path]
        else:
            model = build_model(spec, cfg.model, in_channels, patch_size=cfg.train.patch_size)
            task = SegmentationTask(model, cfg.loss)
        if any(s % model.stride for s in cfg.train.patch_size):
            raise ConfigError(f"patch_size {list(cfg.train.patch_size)} is not a multiple of {model.stride} ({name})")
        contract = {"variant": name, "two_stage": spec.two_stage, "switches": spec.switch_values(),
                    "attention": spec.attention.describe(), "stride": model.stride, "seed": seed}
        identity = {"stage": "cond", "variant": name, "region": region, "seed": seed, "variant_params": to_dict(spec),
                    "params": to_dict(cfg), "runtime": to_dict(params.runtime), "protocol": protocol_identity(params)}
        return train_and_save(task, model.kind, region, cfg.train, validation_protocol(params, cfg.train.patch_size),
                              rt, paths, seed, identity=identity, contract=contract, desc=f"{name} {region}",
                              extra_files=extra_files, extra=extra)
    finally:
        teardown_runtime(rt)


def train_joint(name: str, params: Params, paths: TrainingPaths, seed: int):
    """Train the joint single-stage variant ``name``: one model with one sigmoid output per region of
    ``params.regions``, on the settings of the first (outermost) region (its patches are centred on tumour)."""
    spec = params.variant(name)
    if not spec.joint:
        raise ConfigError(f"variant {name} is not a joint model (set joint: true, or train it per region)")
    regions = tuple(params.regions)
    cfg = params.cond_for(name, regions[0])
    rt = setup_runtime(params.runtime, seed)
    try:
        in_channels = len(prepared_modalities(paths.prepared))
        model = build_model(spec, cfg.model, in_channels, patch_size=cfg.train.patch_size, out_channels=len(regions))
        if any(s % model.stride for s in cfg.train.patch_size):
            raise ConfigError(f"patch_size {list(cfg.train.patch_size)} is not a multiple of {model.stride} ({name})")
        task = JointSegmentationTask(model, cfg.loss)
        contract = {"variant": name, "two_stage": False, "joint": True, "regions": list(regions),
                    "switches": spec.switch_values(), "attention": spec.attention.describe(), "stride": model.stride,
                    "seed": seed}
        identity = {"stage": "joint", "variant": name, "regions": list(regions), "seed": seed,
                    "variant_params": to_dict(spec), "params": to_dict(cfg), "runtime": to_dict(params.runtime),
                    "protocol": protocol_identity(params)}
        return train_and_save(task, model.kind, regions, cfg.train, validation_protocol(params, cfg.train.patch_size),
                              rt, paths, seed, identity=identity, contract=contract, desc=f"{name} joint")
    finally:
        teardown_runtime(rt)
