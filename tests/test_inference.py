"""Inference: region model loading, patch predictors, sliding windows, label maps on the original grid, the stage."""
from __future__ import annotations

import dataclasses
import json
import runpy
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from agvq.data.preprocess import prepare_case, uncrop
from agvq.errors import CaseError, ConfigError
from agvq.config import InferConfig, parse
from agvq.inference.predict import (CropSettings, RegionModel, load_region_models, predict_case, predict_masks,
                                    run_inference)
from agvq.inference.predictors import (SingleStagePredictor, TwoStagePredictor, VQVAEReconstructor,
                                       sliding_window_probabilities)
from agvq.io.discovery import discover_cases
from agvq.io.outputs import MANIFEST
from agvq.models.conditional import AGUNet, CodePredictor
from agvq.models.vqvae import MaskVQVAE
from agvq.regions import REGIONS, get_convention, labels_to_regions
from agvq.io.model_file import model_file, save_atomic
from tests.helpers_config import vqvae
from tests.helpers_nifti import AFFINE, phantom, truncate, write_case

ROOT = Path(__file__).resolve().parents[1]
MODS = ["flair", "t1", "t1ce", "t2"]
PATCH = (16, 16, 16)
CFG = InferConfig(overlap=0.5, blend="gaussian", sw_batch_size=4, threshold=0.5)
CROP = CropSettings(margin=2, stride=16)
CPU = torch.device("cpu")
BACKBONE = dict(channels=[4, 4, 4], dim=8, depth=1, heads=2, mlp_ratio=2, dropout=0.0, soft_mask_blocks=[0],
                se_reduction=2, pos_grid=[1, 1, 1], attention_scaling=True, squeeze_excitation=True)
# Rotated about z by 30 degrees, anisotropic (0.9, 1.1, 2.5) mm, translated: a grid unlike the identity.
_R = np.array([[np.cos(0.5236), -np.sin(0.5236), 0], [np.sin(0.5236), np.cos(0.5236), 0], [0, 0, 1]])
OBLIQUE = np.eye(4)
OBLIQUE[:3, :3] = _R @ np.diag([0.9, 1.1, 2.5])
OBLIQUE[:3, 3] = [-30.0, 12.5, 4.0]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_vqvae(seed: int = 0) -> MaskVQVAE:
    torch.manual_seed(seed)
    vq = vqvae(channels=(4, 4), res_blocks=0, latent_dim=4, num_embeddings=8)
    vq.quantizer.embedding.copy_(torch.randn_like(vq.quantizer.embedding))  # a codebook whose codes differ
    return vq.eval()


def _force(conv: nn.Module, fg: bool) -> None:
    """Make a 2-class output layer predict foreground (or background) everywhere, whatever its input."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([-10.0, 10.0] if fg else [10.0, -10.0]))


def save_region_model(folder: Path, region: str, two_stage: bool = True, fg: bool | None = None,
                      modalities=MODS, vq_region: str | None = None, contract_region: str | None = None,
                      seed: int = 0) -> Path:
    """A tiny untrained model file as the training stages write it; ``fg`` forces the output layer."""
    torch.manual_seed(seed)
    contract = {"kind": None, "region": contract_region or region, "in_channels": len(modalities),
                "modalities": list(modalities), "patch_size": list(PATCH), "variant": "test",
                "two_stage": two_stage, "switches": {}, "stride": 16}
    backbone = {**BACKBONE, "in_channels": len(modalities)}
    extra = {}
    if two_stage:
        vq = tiny_vqvae(seed)
        if fg is not None:
            _force(vq.decoder[-1].conv, fg)
        vq_contract = {"kind": "vqvae", "region": vq_region or region, "in_channels": 1, "modalities": list(MODS),
                       "patch_size": list(PATCH), "num_embeddings": 8, "latent_dim": 4, "stride": 4}
        extra = {"vqvae": model_file("vqvae", vq, vq_contract)}
        net = CodePredictor(num_embeddings=8, **backbone)
    else:
        net = AGUNet(out_channels=2, **backbone)
        if fg is not None:  # logits = up1_trans(features) + image_skip(image): force one, silence the other
            _force(net.up1_trans, fg)
            with torch.no_grad():
                net.image_skip.weight.zero_()
                net.image_skip.bias.zero_()
    contract["kind"] = net.kind
    path = folder / f"{region}.pt"
    save_atomic(model_file(net.kind, net.eval(), contract, {}, extra), path)
    return path


def model_dir(tmp_path: Path, fg: dict[str, bool] | None = None, two_stage: bool = True, name: str = "models"):
    folder = tmp_path / name
    folder.mkdir()
    for i, region in enumerate(REGIONS):
        save_region_model(folder, region, two_stage, None if fg is None else fg[region], seed=i)
    return folder


def read(path: Path):
    img = nib.load(str(path))
    return img, np.asanyarray(img.dataobj)


def brain_of(shape=(24, 24, 16), seed: int = 0) -> np.ndarray:
    return phantom(shape, seed)[2]


# ------------------------------------------------------------------------------------------- model files
def test_load_region_models_builds_eval_predictors(tmp_path):
    models = load_region_models(model_dir(tmp_path), REGIONS, CPU)
    assert list(models) == list(REGIONS)
    for region, m in models.items():
        assert isinstance(m.predictor, TwoStagePredictor) and not m.predictor.training
        assert m.patch_size == PATCH and m.contract["region"] == region
    single = load_region_models(model_dir(tmp_path, two_stage=False, name="single"), REGIONS, CPU)
    assert all(isinstance(m.predictor, SingleStagePredictor) for m in single.values())


def test_model_file_problems_are_config_errors(tmp_path):
    folder = model_dir(tmp_path)
    (folder / "ET.pt").unlink()
    with pytest.raises(ConfigError, match="ET.pt not found"):
        load_region_models(folder, REGIONS, CPU)
    save_region_model(folder, "ET", contract_region="TC")  # TC model saved as ET.pt
    with pytest.raises(ConfigError, match="trained for region TC, not ET"):
        load_region_models(folder, REGIONS, CPU)
    save_region_model(folder, "ET", vq_region="WT")  # a two-stage ET model decoding through the WT codebook
    with pytest.raises(ConfigError, match="VQ-VAE of region WT"):
        load_region_models(folder, REGIONS, CPU)
    save_region_model(folder, "ET", modalities=["flair", "t1ce", "t1", "t2"])
    with pytest.raises(ConfigError, match="different modalities"):
        load_region_models(folder, REGIONS, CPU)
    save_atomic(model_file("vqvae", tiny_vqvae(), {"region": "ET"}), folder / "ET.pt")  # a stage-1 file
    with pytest.raises(ConfigError, match="not a stage-2 or single-stage model file"):
        load_region_models(folder, REGIONS, CPU)
    (folder / "ET.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_region_models(folder, REGIONS, CPU)


def _edit_bundle(path: Path, edit) -> None:
    bundle = torch.load(path, weights_only=True)
    edit(bundle)
    save_atomic(bundle, path)


@pytest.mark.parametrize("edit, message", [
    (lambda b: b["extra"].pop("vqvae"), "without its stage-1 VQ-VAE"),
    (lambda b: b["contract"].update(modalities=["flair", "dwi"]), "bad modalities"),
    (lambda b: b["contract"].update(in_channels=3), "takes 3 input channels"),
    (lambda b: b["contract"].update(patch_size=[16, 16, 8]), "not a multiple of the model stride 16"),
    (lambda b: b["contract"].pop("patch_size"), "patch_size must be three positive integers"),
    (lambda b: b["config"].update(num_embeddings=6), "predicts 6 codes but its VQ-VAE codebook has 8"),
], ids=["no-vqvae", "modalities", "in-channels", "patch-stride", "no-patch", "codebook-size"])
def test_inconsistent_model_file_is_a_config_error(tmp_path, edit, message):
    path = save_region_model(tmp_path, "TC")
    _edit_bundle(path, edit)
    if "predicts 6" in message:  # a code predictor really built for 6 codes, with an 8-code VQ-VAE
        net = CodePredictor(num_embeddings=6, in_channels=4, **BACKBONE)
        _edit_bundle(path, lambda b: b.update(state_dict=net.state_dict()))
    with pytest.raises(ConfigError, match=message):
        load_region_models(tmp_path, ["TC"], CPU)


def test_case_without_a_model_modality_is_a_case_error(tmp_path):
    raw = tmp_path / "raw"
    write_case(raw, "M1", modalities=["flair", "t1", "t1ce"], with_seg=False)
    with pytest.raises(CaseError, match="case M1: file M1_t2.nii.gz: file for modality t2 is missing"):
        run_inference(model_dir(tmp_path), raw, tmp_path / "pred", None, REGIONS, CFG, CROP, CPU, "fp32")
    assert not (tmp_path / "pred").exists()


@pytest.mark.parametrize("infer, message", [({"overlap": 1.0}, "overlap"), ({"blend": "mean"}, "blend"),
                                            ({"sw_batch_size": 0}, "sw_batch_size"), ({"threshold": 1.5}, "threshold"),
                                            ({"overlap": "half"}, "overlap"), ({"patch": 32}, "unknown key patch")])
def test_infer_params_are_checked(infer, message):
    with pytest.raises(ConfigError, match=message):
        parse(InferConfig, infer, "infer")
    cfg = parse(InferConfig, {"overlap": 0.25, "blend": "constant"}, "infer")
    assert (cfg.overlap, cfg.blend, cfg.sw_batch_size, cfg.threshold) == (0.25, "constant", 2, 0.5)


# ------------------------------------------------------------------------------------------- predictors
def test_two_stage_decodes_argmax_codes_through_frozen_codebook():
    torch.manual_seed(1)
    net, vq = CodePredictor(num_embeddings=8, in_channels=4, **BACKBONE).eval(), tiny_vqvae(1)
    codebook = vq.quantizer.embedding.clone()
    x = torch.randn(2, 4, 16, 16, 16)
    with torch.inference_mode():
        got = TwoStagePredictor(net, vq)(x)
        codes = net(x).argmax(dim=1)  # (B, 4, 4, 4)
        z = codebook[codes].permute(0, 4, 1, 2, 3)  # codebook vectors as channels
        want = torch.softmax(vq.decoder(z), dim=1)
        assert len(codes.unique()) > 1  # the comparison would be weak with one code everywhere
        assert torch.allclose(got, want, atol=1e-6)
        assert torch.equal(vq.quantizer.embedding, codebook)  # the codebook is not updated by prediction
        vq.quantizer.embedding.mul_(-1.0)  # another codebook gives another decoding
        assert not torch.allclose(TwoStagePredictor(net, vq)(x), want, atol=1e-3)
    assert got.shape == (2, 2, 16, 16, 16) and torch.allclose(got.sum(1), torch.ones(2, 16, 16, 16))


def test_vqvae_reconstructor_equals_decode_of_encoded_indices():
    vq = tiny_vqvae(2)
    mask = torch.from_numpy(labels_to_regions(phantom((16, 16, 16))[1], get_convention("brats2021"))[0])
    mask = mask[None, None].float()
    with torch.inference_mode():
        want = torch.softmax(vq.decode_indices(vq.encode_indices(mask)), dim=1)
        assert torch.allclose(VQVAEReconstructor(vq)(mask), want, atol=1e-6)
        whole = sliding_window_probabilities(VQVAEReconstructor(vq), mask, (16, 16, 16), 0.5, 1, "gaussian")
    assert torch.allclose(whole, want, atol=1e-5)


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_sliding_window_equals_whole_volume_forward_when_patch_covers_it(blend):
    torch.manual_seed(3)
    predictor = SingleStagePredictor(AGUNet(out_channels=2, in_channels=4, **BACKBONE).eval())
    x = torch.randn(1, 4, 32, 16, 48)
    with torch.inference_mode():
        want = predictor(x)
        got = sliding_window_probabilities(predictor, x, (32, 16, 48), 0.5, 2, blend)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)


class Pointwise(nn.Module):
    """Foreground where channel ``c`` of the image is above ``t``: its sliding-window blend is the same map."""

    def __init__(self, c: int, t: float = 0.0):
        super().__init__()
        self.c, self.t = c, t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = (x[:, self.c:self.c + 1] > self.t).float()
        return torch.cat([1 - fg, fg], dim=1)


def test_sliding_window_of_a_pointwise_predictor_is_exact():
    x = torch.randn(1, 4, 48, 32, 16)
    got = sliding_window_probabilities(Pointwise(1), x, PATCH, 0.5, 3, "gaussian")
    assert torch.allclose(got, Pointwise(1)(x), atol=1e-5)


# ----------------------------------------------------------------------------------------- whole cases
def test_hierarchy_is_enforced_when_region_outputs_violate_it(tmp_path):
    """WT, TC and ET thresholded from three different channels: TC and ET stick out of their parents."""
    case = discover_cases(write_case(tmp_path / "raw", "C1", seed=4).parent)[0]
    models = {r: RegionModel(r, Pointwise(c), PATCH, {}) for c, r in enumerate(REGIONS)}
    labels, props = predict_case(case, models, MODS, CFG, CROP, CPU, "fp32")
    arrays, _ = prepare_case(dataclasses.replace(case, seg=None), MODS, CROP.margin, CROP.stride, False)
    wt, tc, et = ((arrays["image"][c] > 0) & arrays["brain"] for c in range(3))
    assert (tc & ~wt).any() and (et & ~tc).any()  # the raw outputs do violate the hierarchy
    conv = get_convention("brats2021")
    want = np.zeros(wt.shape, np.uint8)
    want[wt] = conv.ed
    want[wt & tc] = conv.ncr
    want[wt & tc & et] = conv.et
    want = uncrop(want, props["crop_start"], props["crop_stop"], props["original_shape"])
    np.testing.assert_array_equal(labels, want)
    masks = labels_to_regions(labels, conv)
    assert not (masks[1] & ~masks[0]).any() and not (masks[2] & ~masks[1]).any()
    assert set(np.unique(labels)) == {0, 1, 2, 4}


@pytest.mark.parametrize("naming, et", [("brats2021", 4), ("brats2023", 3)])
@pytest.mark.parametrize("affine", [AFFINE, OBLIQUE], ids=["flipped", "oblique"])
def test_written_map_has_input_grid_and_case_convention(tmp_path, naming, et, affine):
    shape = (24, 22, 16) if naming == "brats2021" else (26, 24, 13)
    raw = tmp_path / "raw"
    write_case(raw, "P1", naming, shape=shape, seed=5, affine=affine)
    folder = model_dir(tmp_path, fg={"WT": True, "TC": True, "ET": True})  # everything inside the brain is ET
    written = run_inference(folder, raw, tmp_path / "pred", None, REGIONS, CFG, CROP, CPU, "fp32")
    assert written == ["P1"]
    img, data = read(tmp_path / "pred" / "P1.nii.gz")
    src = nib.load(str(next((raw / "P1").glob("*t1*"))))
    assert data.shape == shape and np.issubdtype(data.dtype, np.integer)
    assert np.allclose(img.affine, affine, atol=1e-5)
    assert np.allclose(img.header.get_qform(), affine, atol=1e-4) and np.allclose(img.header.get_sform(), affine)
    assert int(img.header["qform_code"]) > 0 and int(img.header["sform_code"]) > 0
    assert np.allclose(img.header.get_zooms()[:3], src.header.get_zooms()[:3], atol=1e-5)
    np.testing.assert_array_equal(data, np.where(brain_of(shape, 5), et, 0))


@pytest.mark.parametrize("fg, label", [({"WT": True, "TC": False, "ET": True}, 2),  # ET outside TC: dropped
                                       ({"WT": False, "TC": True, "ET": True}, 0),  # nothing outside WT
                                       ({"WT": True, "TC": True, "ET": False}, 1)])
def test_model_files_compose_nested_regions(tmp_path, fg, label):
    raw = tmp_path / "raw"
    write_case(raw, "H1", seed=6)
    run_inference(model_dir(tmp_path, fg=fg, two_stage=False), raw, tmp_path / "pred", None, REGIONS, CFG, CROP, CPU, "fp32")
    _, data = read(tmp_path / "pred" / "H1.nii.gz")
    np.testing.assert_array_equal(data, np.where(brain_of(seed=6), label, 0))


def test_labels_are_never_read(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_case(raw, "A_intact", seed=7)
    write_case(raw, "B_truncated", seed=7)
    truncate(raw / "B_truncated" / "B_truncated_seg.nii.gz", 0.3)
    write_case(raw, "C_missing", seed=7, with_seg=False)
    write_case(raw, "D_garbage", seed=7)
    (raw / "D_garbage" / "D_garbage_seg.nii.gz").write_bytes(b"\x00" * 10)
    opened = []
    real_load = nib.load
    monkeypatch.setattr(nib, "load", lambda f, *a, **k: opened.append(str(f)) or real_load(f, *a, **k))
    written = run_inference(model_dir(tmp_path), raw, tmp_path / "pred", None, REGIONS, CFG, CROP, CPU, "fp32")
    assert written == ["A_intact", "B_truncated", "C_missing", "D_garbage"]
    assert opened and not [f for f in opened if "seg" in Path(f).name]
    maps = [read(tmp_path / "pred" / f"{c}.nii.gz")[1] for c in written]
    for other in maps[1:]:  # same images, so the same prediction whatever the labels are
        np.testing.assert_array_equal(other, maps[0])


def test_unlabelled_folder_and_cases_subset(tmp_path):
    raw = tmp_path / "scans"
    for i, naming in enumerate(["brats2021", "brats2023", "brats2021"]):
        write_case(raw / "site", f"N{i}", naming, seed=i, with_seg=False)  # one container level deeper
    folder = model_dir(tmp_path, fg={"WT": True, "TC": True, "ET": True}, two_stage=False)
    assert run_inference(folder, raw, tmp_path / "pred", None, REGIONS, CFG, CROP, CPU, "fp32") == ["N0", "N1", "N2"]
    for i, et in enumerate([4, 3, 4]):
        np.testing.assert_array_equal(read(tmp_path / "pred" / f"N{i}.nii.gz")[1], np.where(brain_of(seed=i), et, 0))
    assert run_inference(folder, raw, tmp_path / "pred", ["N1"], REGIONS, CFG, CROP, CPU, "fp32") == ["N1"]
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [MANIFEST, "N1.nii.gz"]  # replaced whole
    with pytest.raises(ConfigError, match="not under"):
        run_inference(folder, raw, tmp_path / "pred2", ["N1", "X9"], REGIONS, CFG, CROP, CPU, "fp32")
    assert not (tmp_path / "pred2").exists()


def test_predict_masks_is_off_outside_the_brain():
    image = np.random.default_rng(0).standard_normal((4, 32, 16, 16)).astype(np.float32)
    brain = np.zeros((32, 16, 16), bool)
    brain[4:20, 2:14, 3:12] = True
    models = {r: RegionModel(r, Pointwise(0, -100.0), PATCH, {}) for r in REGIONS}  # foreground everywhere
    masks = predict_masks(image, brain, models, CFG, CPU, "fp32")
    assert all(np.array_equal(m, brain) for m in masks.values())


# --------------------------------------------------------------------------------------------- the stage
def run_stage(monkeypatch, capsys, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", ["infer.py", *argv])
    try:
        runpy.run_path(str(ROOT / "stages" / "infer.py"), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code)
    return 0


def test_stage_script_with_and_without_splits(tmp_path, monkeypatch, capsys):
    raw = tmp_path / "raw"
    for i in range(3):
        write_case(raw, f"S{i}", seed=i)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "regions": list(REGIONS), "preprocess": {"margin": 2, "stride": 16},
        "runtime": {"device": "cpu"},
        "infer": {"overlap": 0.5, "blend": "gaussian", "sw_batch_size": 2, "threshold": 0.5}}))
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"seed": 0, "train": ["S0"], "val": ["S1"], "test": ["S2"]}))
    models = model_dir(tmp_path, fg={"WT": True, "TC": False, "ET": False})
    common = ["--params", str(params), "--models", str(models), "--raw", str(raw)]
    assert run_stage(monkeypatch, capsys, *common, "--out", str(tmp_path / "all")) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [MANIFEST] + [f"S{i}.nii.gz" for i in range(3)]
    assert run_stage(monkeypatch, capsys, *common, "--splits", str(splits), "--out", str(tmp_path / "test")) == 0
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == [MANIFEST, "S2.nii.gz"]
    np.testing.assert_array_equal(read(tmp_path / "test" / "S2.nii.gz")[1], np.where(brain_of(seed=2), 2, 0))
    capsys.readouterr()
    assert run_stage(monkeypatch, capsys, *common, "--splits", str(splits), "--split", "val",
                     "--out", str(tmp_path / "val")) == 0
    assert sorted(p.name for p in (tmp_path / "val").iterdir()) == [MANIFEST, "S1.nii.gz"]
    capsys.readouterr()
    (models / "TC.pt").unlink()
    assert run_stage(monkeypatch, capsys, *common, "--out", str(tmp_path / "bad")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "TC.pt not found" in err and "\n" not in err
    assert not (tmp_path / "bad").exists()


def test_per_seed_inference_and_evaluation_write_one_guarded_folder(tmp_path, monkeypatch, capsys):
    """stages/infer.py --per-seed: seed<k>/ predictions of each seed's models in one output folder (one manifest),
    one report with an entry per seed; stages/evaluate.py --per-seed: a seed column and the seed spread."""
    raw = tmp_path / "raw"
    for i in range(2):
        write_case(raw, f"S{i}", seed=i)
    models = tmp_path / "models"
    models.mkdir()
    for seed, fg in ((0, {"WT": True, "TC": False, "ET": False}), (1, {"WT": True, "TC": True, "ET": False})):
        model_dir(models, fg=fg, name=f"seed{seed}")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"regions": list(REGIONS), "seeds": [0, 1], "runtime": {"device": "cpu"},
                                      "preprocess": {"margin": 2, "stride": 16}, "evaluate": {"workers": 1}}))
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": [], "val": [], "test": ["S0", "S1"]}))
    common = ["--params", str(params), "--models", str(models), "--raw", str(raw), "--splits", str(splits)]
    out, report = tmp_path / "pred", tmp_path / "pred_report.json"
    assert run_stage(monkeypatch, capsys, *common, "--per-seed", "--out", str(out), "--report", str(report)) == 0
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "seed0", "seed1"]
    assert sorted(json.loads((out / MANIFEST).read_text())["files"]) == [
        f"seed{k}/S{i}.nii.gz" for k in (0, 1) for i in (0, 1)]
    assert set(json.loads(report.read_text())) == {"seed0", "seed1"}
    np.testing.assert_array_equal(read(out / "seed0" / "S0.nii.gz")[1], np.where(brain_of(seed=0), 2, 0))
    np.testing.assert_array_equal(read(out / "seed1" / "S0.nii.gz")[1], np.where(brain_of(seed=0), 1, 0))
    csv, summary = tmp_path / "eval" / "cases.csv", tmp_path / "eval" / "summary.json"
    monkeypatch.setattr(sys, "argv", ["evaluate.py", "--params", str(params), "--pred", str(out), "--per-seed",
                                      "--raw", str(raw), "--splits", str(splits), "--out-csv", str(csv),
                                      "--out-json", str(summary)])
    runpy.run_path(str(ROOT / "stages" / "evaluate.py"), run_name="__main__")
    import pandas as pd
    table = pd.read_csv(csv)
    assert sorted(table["seed"].unique()) == [0, 1] and len(table) == 2 * 2 * 3
    result = json.loads(summary.read_text())
    assert result["seeds"] == [0, 1] and set(result["per_seed"]) == {"0", "1"}
    assert result["regions"]["TC"]["seed_sd"]["dice"] > 0  # the two seeds' models differ on TC
