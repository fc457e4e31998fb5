"""Load trained models from their self-describing files (format: agvq.io.model_file)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from agvq.errors import ConfigError
from agvq.models.factory import rebuild
from agvq.models.vqvae import MaskVQVAE
from agvq.io.model_file import check_model_file, load


def vqvae_from_bundle(bundle: dict) -> MaskVQVAE:
    model = MaskVQVAE(**bundle["config"])
    model.load_state_dict(bundle["state_dict"])
    return model.eval()


def load_vqvae(path: str | Path, region: str | None = None) -> tuple[MaskVQVAE, dict]:
    """The frozen-to-be stage-1 model of ``path`` in eval mode, and its file contents."""
    bundle = check_model_file(load(path), path, "vqvae")
    if region is not None and bundle["contract"].get("region") != region:
        raise ConfigError(f"{path} is the VQ-VAE of region {bundle['contract'].get('region')}, not {region}")
    return vqvae_from_bundle(bundle), bundle


def load_predictor_parts(path: str | Path) -> tuple[nn.Module, MaskVQVAE | None, dict]:
    """(network, frozen stage-1 VQ-VAE or None, file contents) of a stage-2 / single-stage model file."""
    bundle = load(path)
    if not isinstance(bundle, dict) or bundle.get("kind") == "vqvae":
        raise ConfigError(f"{path} is not a stage-2 or single-stage model file")
    bundle = check_model_file(bundle, path)
    model = rebuild(bundle["kind"], bundle["config"])
    model.load_state_dict(bundle["state_dict"])
    vqvae = None
    if (bundle.get("contract") or {}).get("two_stage"):
        embedded = (bundle.get("extra") or {}).get("vqvae")
        if not isinstance(embedded, dict):
            raise ConfigError(f"{path} is a two-stage model file without its stage-1 VQ-VAE (extra['vqvae'])")
        vqvae = vqvae_from_bundle(check_model_file(embedded, f"{path} (embedded VQ-VAE)", "vqvae"))
    return model.eval(), vqvae, bundle
