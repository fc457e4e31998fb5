"""Stage 1 set-up: build the region's mask VQ-VAE from params and train it through the shared loop."""
from __future__ import annotations

from agvq.config import Params, VQVAEConfig, to_dict
from agvq.models.vqvae import MaskVQVAE
from agvq.training.run import TrainingPaths, train_and_save
from agvq.training.runtime import setup_runtime, teardown_runtime
from agvq.training.tasks import VQVAETask
from agvq.training.validation import ValidationProtocol


def build_vqvae(cfg: VQVAEConfig) -> MaskVQVAE:
    return MaskVQVAE(**to_dict(cfg.model), quantizer=to_dict(cfg.quantizer))


def protocol_identity(params: Params) -> dict:
    """What of the validation protocol defines a training run (its resume fingerprint): the ``infer`` keys that
    validation shares with inference (InferConfig.PROTOCOL_KEYS, the params of every training stage in dvc.yaml;
    tta, on_error, missing_modality... are inference-only) and the empty-mask penalty."""
    return {"infer": params.infer.protocol_values(), "empty_penalty": params.evaluate.empty_penalty}


def validation_protocol(params: Params, patch_size) -> ValidationProtocol:
    """What infer + evaluate do, applied to the validation cases during training."""
    return ValidationProtocol(params.infer, params.evaluate.empty_penalty, tuple(patch_size))


def train_vqvae(region: str, params: Params, paths: TrainingPaths):
    cfg = params.vqvae_for(region)
    rt = setup_runtime(params.runtime, cfg.seed)
    try:
        model = build_vqvae(cfg)
        task = VQVAETask(model, cfg.loss)
        contract = {"num_embeddings": cfg.model.num_embeddings, "latent_dim": cfg.model.latent_dim,
                    "stride": model.stride}
        identity = {"stage": "vqvae", "region": region, "params": to_dict(cfg), "runtime": to_dict(params.runtime),
                    "protocol": protocol_identity(params)}
        return train_and_save(task, "vqvae", region, cfg.train, validation_protocol(params, cfg.train.patch_size), rt,
                              paths, cfg.seed, identity=identity, contract=contract, desc=f"vqvae {region}")
    finally:
        teardown_runtime(rt)
