"""Stage 1 set-up: build the region's mask VQ-VAE from params and train it through the shared loop."""
from __future__ import annotations

from agvq.models.vqvae import MaskVQVAE
from agvq.training.config import TrainConfig, deep_merge
from agvq.training.run import TrainingPaths, train_and_save
from agvq.training.runtime import setup_runtime, teardown_runtime
from agvq.training.tasks import VQVAETask


def region_params(vqvae_params: dict, region: str) -> dict:
    """The ``vqvae`` section with the region's overrides (``vqvae.regions.<region>``) merged in."""
    base = {k: v for k, v in vqvae_params.items() if k != "regions"}
    return deep_merge(base, (vqvae_params.get("regions") or {}).get(region))


def build_vqvae(p: dict) -> MaskVQVAE:
    return MaskVQVAE(**p["model"], quantizer=dict(p["quantizer"]))


def train_vqvae(region: str, vqvae_params: dict, runtime_params: dict, args):
    p = region_params(vqvae_params, region)
    cfg = TrainConfig.from_params(p["train"])
    rt = setup_runtime({**runtime_params, "seed": p.get("seed", 0)})
    try:
        model = build_vqvae(p)
        task = VQVAETask(model, **p.get("loss", {}))
        contract = {"num_embeddings": p["model"]["num_embeddings"], "latent_dim": p["model"]["latent_dim"],
                    "stride": model.stride}
        return train_and_save(task, "vqvae", region, cfg, rt, TrainingPaths.from_args(args), p.get("seed", 0),
                              identity={"stage": "vqvae", "region": region, "params": p, "runtime": runtime_params},
                              contract=contract, desc=f"vqvae {region}")
    finally:
        teardown_runtime(rt)
