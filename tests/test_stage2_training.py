"""Stage 2 through the shared loop: the frozen stage-1 model never changes, a tiny two-stage run learns codes
above chance and decodes masks, single-stage variants train on masks, and variant/flag mismatches fail clearly."""
from __future__ import annotations

import pytest
import torch
import yaml

from agvq.config import CondModelConfig, VariantSpec, load_params, parse, parse_params
from agvq.data.dataset import CaseStore
from agvq.errors import ConfigError
from agvq.io import model_file as checkpoint
from agvq.models.factory import build_model
from agvq.models.loading import load_predictor_parts, load_vqvae
from agvq.training.loop import fit
from agvq.training.run import TrainingPaths
from agvq.training.runtime import seed_everything
from agvq.training.stage2 import train_variant
from agvq.training.tasks import CodeTask, VQVAETask
from tests.helpers_config import cond_loss, cpu_runtime, mask_loss, protocol, train_cfg
from tests.helpers_config import vqvae as small_vqvae
from tests.helpers_training import ROOT, make_prepared, run_stage_inprocess, vqvae_argv, write_params

CPU = cpu_runtime()
PROTOCOL = protocol()
MODEL = parse(CondModelConfig, {"backbone": {"channels": [8, 16, 16], "dim": 16, "depth": 2, "heads": 2,
                                             "soft_mask_blocks": [1], "pos_grid": [1, 1, 1]}}, "model")
TWO_STAGE = VariantSpec(two_stage=True)
ROOT_PARAMS = ROOT / "params.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage2")
    prepared, splits = make_prepared(root, n=6, size=32)
    return root, prepared, splits


@pytest.fixture(scope="module")
def vqvae(data):
    """A stage-1 VQ-VAE trained briefly on the WT masks (in process, through the shared loop)."""
    root, prepared, splits = data
    import json
    ids = json.loads(splits.read_text())
    seed_everything(0)
    model = small_vqvae(channels=(8, 16), latent_dim=8, num_embeddings=16, decay=0.9, kmeans_iters=3)
    cfg = train_cfg(epochs=6, batch_size=4, patch_size=(16, 16, 16), patches_per_epoch=32, lr=3e-3, val_every=6)
    stores = CaseStore(prepared, ids["train"], "WT", cache=True), CaseStore(prepared, ids["val"], "WT", cache=True)
    result = fit(VQVAETask(model, mask_loss()), *stores, cfg, PROTOCOL, CPU, root / "run_vq", None, 0, "vq", "vq")
    model.load_state_dict(result.best_state)
    return model.eval(), stores


def test_frozen_stage1_is_bit_identical_after_stage2_training(vqvae, data, tmp_path):
    model, (train, val) = vqvae
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = build_model(TWO_STAGE, MODEL, in_channels=4, num_embeddings=16)
    task = CodeTask(net, model, cond_loss())
    cfg = train_cfg(epochs=2, batch_size=4, patch_size=(16, 16, 16), patches_per_epoch=16, lr=3e-3)
    fit(task, train, val, cfg, PROTOCOL, CPU, tmp_path / "run", None, 0, "cond", "cond")
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:  # codebook, EMA statistics, batch-norm running stats and weights alike
        assert torch.equal(before[key], after[key]), key
    assert not model.training and all(not p.requires_grad for p in model.parameters())


def test_tiny_two_stage_run_beats_chance(vqvae, data, tmp_path):
    model, (train, val) = vqvae
    seed_everything(1)
    net = build_model(TWO_STAGE, MODEL, in_channels=4, num_embeddings=16)
    task = CodeTask(net, model, cond_loss())
    cfg = train_cfg(epochs=8, batch_size=4, patch_size=(16, 16, 16), patches_per_epoch=32, lr=3e-3, val_every=8)
    result = fit(task, train, val, cfg, PROTOCOL, CPU, tmp_path / "run", None, 0, "cond", "cond")
    first, last = result.history[0], result.history[-1]
    # chance: a uniform guess over the 16 codes; decoding random codes gives a Dice near 0 on these small masks
    assert last["code_accuracy"] > max(first["code_accuracy"], 1.0 / 16 + 0.3), (first, last)
    assert result.best_metrics["val_dice"] > 0.3, result.best_metrics


def test_stage2_model_file_embeds_the_frozen_stage1(vqvae, data, tmp_path, monkeypatch):
    root, prepared, splits = data
    write_params(tmp_path / "params.yaml")
    run_stage_inprocess("train_vqvae.py", vqvae_argv(tmp_path, root, "vq"), monkeypatch)
    stage1 = tmp_path / "vq" / "model.pt"
    original = checkpoint.load(stage1)
    paths = TrainingPaths(prepared, splits, tmp_path / "cond.pt", tmp_path / "cond.json", tmp_path / "cond.csv",
                          tmp_path / "runs" / "cond")
    params = load_params(tmp_path / "params.yaml")
    train_variant("agvqvae", "WT", params, paths, stage1, 0)
    net, frozen, bundle = load_predictor_parts(tmp_path / "cond.pt")
    assert bundle["contract"]["two_stage"] and bundle["contract"]["variant"] == "agvqvae"
    for key, value in original["state_dict"].items():
        assert torch.equal(frozen.state_dict()[key], value), key
    assert checkpoint.load(stage1)["state_dict"].keys() == original["state_dict"].keys()
    reloaded, _ = load_vqvae(stage1, region="WT")
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in original["state_dict"].items())

    with pytest.raises(ConfigError, match="two-stage"):
        train_variant("agvqvae", "WT", params, paths, None, 0)
    with pytest.raises(ConfigError, match="single-stage|joint model"):
        train_variant("agunet", "WT", params, paths, stage1, 0)
    with pytest.raises(ConfigError, match="unknown variant"):
        train_variant("agvqvae_typo", "WT", params, paths, stage1, 0)
    with pytest.raises(ConfigError, match="region"):
        train_variant("agvqvae", "ET", params, paths, stage1, 0)
    with pytest.raises(ConfigError, match="joint model of all regions"):
        train_variant("unet", "WT", params, paths, None, 0)


def _params(cond: dict, variants: dict) -> dict:
    raw = yaml.safe_load(open(ROOT_PARAMS).read())
    raw.update(cond=cond, variants=variants, two_stage_variants=list(variants), single_stage_variants=[],
               joint_variants=[])
    raw["ablate"].update(main_variant=next(iter(variants)), comparison=[], ablation=[])
    raw.pop("attention_study")  # its variants are compared with the real params' variants replaced here
    raw.pop("robustness")  # as for the attention study: it names the real params' variants
    raw.pop("diagnose")
    return raw


def test_cond_settings_merge_region_then_variant_overrides():
    raw = _params({"loss": {"code_balance": 0.25, "gamma": 2.0}, "train": {"epochs": 3},
                   "regions": {"ET": {"loss": {"code_balance": 0.0}}}},
                  {"a": {"two_stage": True}, "b": {"two_stage": True, "overrides": {"loss": {"code_balance": 0.5}}}})
    params = parse_params(raw)
    wt = params.cond_for("a", "WT")
    assert wt.loss.code_balance == 0.25 and wt.loss.gamma == 2.0 and wt.train.epochs == 3
    assert params.cond_for("a", "ET").loss.code_balance == 0.0
    # a variant's overrides win over the region's (they name one model family explicitly)
    assert params.cond_for("b", "ET").loss.code_balance == 0.5
    assert params.variant("b").overrides == {"loss": {"code_balance": 0.5}}
    with pytest.raises(ConfigError, match="NCR"):
        parse_params({**raw, "cond": {**raw["cond"], "regions": {"NCR": {}}}})
    with pytest.raises(ConfigError, match=r"variants\.b\.overrides\.loss: unknown key gama"):
        parse_params({**raw, "variants": {**raw["variants"], "b": {"overrides": {"loss": {"gama": 1}}}}})
    with pytest.raises(ConfigError, match="unknown variant"):
        params.cond_for("c", "WT")


def test_train_numbers_written_as_yaml_strings_are_accepted_and_bad_ones_rejected():
    cfg = train_cfg(lr="3e-3", epochs="4", weight_decay=0)
    assert cfg.lr == 0.003 and isinstance(cfg.lr, float) and cfg.epochs == 4 and isinstance(cfg.weight_decay, float)
    with pytest.raises(ConfigError, match="whole number"):
        train_cfg(epochs=2.5)
    with pytest.raises(ConfigError, match="train.lr must be a number"):
        train_cfg(lr="fast")
