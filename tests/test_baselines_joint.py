"""MONAI baselines (3D U-Net, UNETR, SwinUNETR, SegResNet), joint models with one sigmoid output per region, the
joint training path and its inference (joint.pt), the optional two-stage auxiliary losses."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agvq.config import CondModelConfig, VariantSpec, parse
from agvq.data.dataset import CaseStore, PatchDataset
from agvq.errors import ConfigError
from agvq.inference.predict import load_region_models, predict_masks
from agvq.inference.predictors import JointPredictor
from agvq.io.model_file import model_file, save_atomic
from agvq.models.factory import build_model, rebuild
from agvq.models.losses import MultiLabelMaskLoss
from agvq.training.loop import fit
from agvq.training.tasks import CodeTask, JointSegmentationTask
from monai.losses import DiceLoss
from tests.helpers_config import cond_loss, cpu_runtime, infer_cfg, protocol, train_cfg, vqvae
from tests.helpers_training import make_prepared

MODEL = parse(CondModelConfig, {
    "unet": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
    "unetr": {"feature_size": 4, "hidden_size": 16, "mlp_dim": 32, "num_heads": 2},
    "swinunetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 2},
    "segresnet": {"init_filters": 4, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]},
    "backbone": {"channels": [4, 8, 8], "dim": 8, "depth": 1, "heads": 2, "soft_mask_blocks": [0],
                 "pos_grid": [1, 1, 1]}}, "model")
ARCHS = {"unet": 4, "unetr": 16, "swinunetr": 32, "segresnet": 4}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_each_baseline_builds_runs_and_rebuilds_from_its_config(arch):
    spec = parse(VariantSpec, {"two_stage": False, "arch": arch, "joint": True}, f"variants.{arch}")
    torch.manual_seed(0)
    net = build_model(spec, MODEL, in_channels=4, patch_size=(32, 32, 32), out_channels=3).eval()
    assert net.kind == arch and net.stride == ARCHS[arch]
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (1, 3, 32, 32, 32)
    again = rebuild(net.kind, json.loads(json.dumps(net.config())))
    again.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), out)
    assert spec.family in {"3D U-Net", "UNETR", "SwinUNETR", "SegResNet"}


def test_baseline_input_size_errors_are_clear():
    unetr = build_model(VariantSpec(two_stage=False, arch="unetr"), MODEL, 4, patch_size=(32, 32, 32))
    with pytest.raises(ValueError, match="UNETR takes inputs of exactly"):
        unetr(torch.randn(1, 4, 32, 32, 16))
    swin = build_model(VariantSpec(two_stage=False, arch="swinunetr"), MODEL, 4)
    with pytest.raises(ValueError, match="multiple of 32"):
        swin(torch.randn(1, 4, 32, 32, 16))
    with pytest.raises(ConfigError, match="needs the training patch size"):
        build_model(VariantSpec(two_stage=False, arch="unetr"), MODEL, 4)
    with pytest.raises(ConfigError, match="single-stage baseline"):
        parse(VariantSpec, {"two_stage": True, "arch": "segresnet"}, "variants.x")


def test_multilabel_loss_is_monai_sigmoid_dice_plus_binary_ce():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 8, 8), (torch.rand(2, 3, 8, 8, 8) > 0.6).float()
    dice = DiceLoss(sigmoid=True, batch=True)(logits, target)
    bce = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits), target)
    assert MultiLabelMaskLoss(0.7, 1.3)(logits, target).item() == pytest.approx((0.7 * dice + 1.3 * bce).item(), rel=1e-5)
    # each region is its own problem: the loss of one channel does not depend on the others' logits
    single = MultiLabelMaskLoss(0.0, 1.0)(logits[:, :1], target[:, :1])
    assert single.item() == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, 0], target[:, 0]).item(), rel=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        MultiLabelMaskLoss(1, 1)(logits, target[:, :2])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("joint")
    prepared, splits = make_prepared(root, n=6, size=32)
    return prepared, json.loads(splits.read_text())


def test_joint_patches_hold_every_region_and_centre_on_the_tumour(data):
    prepared, ids = data
    store = CaseStore(prepared, ids["train"], ("WT", "TC", "ET"), cache=True)
    item = PatchDataset(store, (16, 16, 16), 8, 1.0, seed=0, flip=True)[0]
    assert item["mask"].shape == (3, 16, 16, 16) and item["mask"][0].sum() > 0
    assert bool((item["mask"][1] <= item["mask"][0]).all())  # TC inside WT, as in the prepared masks


def test_joint_training_learns_and_its_model_file_predicts_every_region(data, tmp_path):
    prepared, ids = data
    torch.manual_seed(0)
    spec = VariantSpec(two_stage=False, arch="unet", joint=True)
    net = build_model(spec, MODEL, in_channels=4, out_channels=3)
    regions = ("WT", "TC", "ET")
    train = CaseStore(prepared, ids["train"], regions, cache=True)
    val = CaseStore(prepared, ids["val"], regions, cache=True)
    cfg = train_cfg(epochs=10, batch_size=4, patches_per_epoch=16, patch_size=[16, 16, 16], lr=1e-2, val_every=5)
    result = fit(JointSegmentationTask(net, cond_loss()), train, val, cfg, protocol(), cpu_runtime(),
                 tmp_path / "run", None, 0, "fp", "joint")
    best = result.best_metrics
    assert {"val_dice_WT", "val_dice_TC", "val_dice_ET"} <= set(best)
    assert best["val_dice"] == pytest.approx(np.mean([best[f"val_dice_{r}"] for r in regions]))
    first = result.history[4]["val_dice"]
    assert best["val_dice"] > max(0.15, first), (first, best)  # chance on these masks is near 0
    net.load_state_dict(result.best_state)
    contract = {"kind": net.kind, "region": None, "regions": list(regions), "in_channels": 4,
                "modalities": ["flair", "t1", "t1ce", "t2"], "patch_size": [16, 16, 16], "variant": "unet",
                "two_stage": False, "joint": True, "stride": net.stride}
    save_atomic(model_file(net.kind, net.eval(), contract), tmp_path / "models" / "joint.pt")
    models = load_region_models(tmp_path / "models", ["WT", "ET"], torch.device("cpu"))
    assert list(models) == ["WT", "ET"] and models["WT"] is models["ET"]
    assert isinstance(models["WT"].predictor, JointPredictor) and models["WT"].regions == regions
    case = val[0]
    masks = predict_masks(case.image, case.brain, models, infer_cfg(), torch.device("cpu"), "fp32")
    assert set(masks) == {"WT", "ET"} and masks["WT"].shape == case.brain.shape
    with pytest.raises(ConfigError, match="cannot predict"):
        bad = {**contract, "regions": ["WT"]}
        save_atomic(model_file(net.kind, net.eval(), bad), tmp_path / "bad" / "joint.pt")
        load_region_models(tmp_path / "bad", ["WT", "TC"], torch.device("cpu"))


def test_two_stage_auxiliary_losses_are_off_by_default_and_differentiable(data):
    prepared, ids = data
    torch.manual_seed(0)
    vq = vqvae(channels=(4, 8), latent_dim=4, num_embeddings=8).eval()
    net = build_model(VariantSpec(), MODEL, in_channels=4, num_embeddings=8)
    store = CaseStore(prepared, ids["train"], "WT", cache=True)
    batch = next(iter(torch.utils.data.DataLoader(PatchDataset(store, (16, 16, 16), 4, 1.0, 0, False),
                                                  batch_size=4)))
    plain = CodeTask(net, vq, cond_loss())
    base, logs = plain.forward_loss(net, batch)
    assert set(logs) == {"code_accuracy"}
    task = CodeTask(net, vq, cond_loss(align_weight=0.5, decoded_dice_weight=2.0))
    loss, logs = task.forward_loss(net, batch)
    assert {"align_loss", "decoded_dice_loss"} <= set(logs)
    assert loss.item() == pytest.approx(base.item() + logs["align_loss"].item() + logs["decoded_dice_loss"].item(),
                                        rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert all(p.grad is None for p in vq.parameters())  # the frozen stage 1 never learns
    emb = task.expected_embedding(torch.full((1, 8, 2, 2, 2), -50.0).index_fill_(1, torch.tensor([3]), 50.0))
    torch.testing.assert_close(emb[0, :, 0, 0, 0], vq.quantizer.embedding[3])  # a sure code is its embedding
