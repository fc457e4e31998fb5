"""Test-time augmentation (infer.tta), probability maps (infer.save_probabilities) and the ensemble helper."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from agvq.config import InferConfig, parse
from agvq.errors import ConfigError, OutputError
from agvq.io.outputs import MANIFEST
from agvq.inference.ensemble import average_maps, ensemble_folders, labels_from_maps
from agvq.inference.predict import RegionModel, predict_masks, predict_probabilities, run_inference
from agvq.inference.predictors import SingleStagePredictor, predict_region, sliding_window_probabilities
from agvq.inference.tta import FLIPS, flips_for, tta_probabilities


def tta_probability(predictor, x, patch, cfg):
    return tta_probabilities(predictor, x, patch, cfg)[0]
from agvq.io.nifti import read_volume
from agvq.io.probabilities import (ProbabilityFileError, ProbabilityMaps, probability_cases, probability_path,
                                   read_probabilities, write_probabilities)
from agvq.regions import REGIONS, get_convention
from tests.helpers_nifti import write_case
from tests.test_inference import CROP, PATCH, model_dir

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def infer(**kw) -> InferConfig:
    return parse(InferConfig, {"overlap": 0.5, "blend": "gaussian", "sw_batch_size": 4, **kw}, "infer")


class Conv(nn.Module):
    """A fixed 3D convolution -> 2-class probabilities; ``symmetric`` makes the kernel even under every axis flip."""

    def __init__(self, kernel: int, symmetric: bool, whole_volume: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv3d(4, 2, kernel, padding=kernel // 2)
        if symmetric:
            with torch.no_grad():
                w = self.conv.weight
                w.copy_((w + w.flip(2) + w.flip(3) + w.flip(4) + w.flip(2, 3) + w.flip(2, 4) + w.flip(3, 4)
                         + w.flip(2, 3, 4)) / 8)
        self.whole_volume = whole_volume

    def forward(self, x):
        return torch.softmax(self.conv(x), dim=1)


def test_the_eight_flips():
    assert len(FLIPS) == 8 and len(set(FLIPS)) == 8 and FLIPS[0] == ()
    assert set(FLIPS) >= {(2,), (3,), (4,), (2, 3, 4)}
    assert flips_for("none") == ((),) and flips_for("flip") == FLIPS
    with pytest.raises(ValueError, match="tta"):
        flips_for("rotate")
    with pytest.raises(ConfigError, match="infer.tta"):
        infer(tta="rotate")


@pytest.mark.parametrize("predictor", [Conv(1, symmetric=False), Conv(3, symmetric=True, whole_volume=True)],
                         ids=["pointwise-sliding-window", "symmetric-kernel-whole-volume"])
def test_tta_of_a_flip_equivariant_model_equals_no_tta(predictor):
    """An odd grid where the windows are not placed symmetrically: still the same map, as the model commutes with
    every flip."""
    x = torch.randn(1, 4, 21, 18, 13)
    with torch.inference_mode():
        plain = tta_probability(predictor, x, PATCH, infer(tta="none"))
        flipped = tta_probability(predictor, x, PATCH, infer(tta="flip"))
    assert plain.shape == (21, 18, 13) and plain.dtype == torch.float32
    assert torch.allclose(plain, flipped, atol=1e-6)


def test_tta_of_another_model_is_the_mean_of_the_flipped_predictions():
    predictor = Conv(3, symmetric=False, seed=1)
    x = torch.randn(1, 4, 20, 16, 12)
    with torch.inference_mode():
        got = tta_probability(predictor, x, PATCH, infer(tta="flip"))
        parts = [sliding_window_probabilities(predictor, x.flip(d) if d else x, PATCH, 0.5, 4, "gaussian")[0, 1]
                 for d in FLIPS]
        want = torch.stack([p.flip(tuple(a - 2 for a in d)) if d else p for d, p in zip(FLIPS, parts)]).mean(0)
        plain = tta_probability(predictor, x, PATCH, infer())
    assert torch.allclose(got, want, atol=1e-6)
    assert (got - plain).abs().max() > 1e-3  # the augmentation matters for a model that is not equivariant


def test_masks_without_tta_are_the_validation_protocol():
    predictor = SingleStagePredictor(nn.Sequential(nn.Conv3d(4, 2, 3, padding=1)).eval())
    image = np.random.default_rng(0).normal(size=(4, 20, 18, 16)).astype(np.float32)
    brain = np.zeros((20, 18, 16), bool)
    brain[2:18, 2:16, 2:14] = True
    models = {r: RegionModel(r, predictor, PATCH, {}) for r in REGIONS}
    cfg = infer(threshold=0.5)
    masks = predict_masks(image, brain, models, cfg, CPU, "fp32")
    probs = predict_probabilities(image, brain, models, cfg, CPU, "fp32")
    with torch.inference_mode():
        want = predict_region(predictor, torch.from_numpy(image)[None], PATCH, brain, cfg)
    assert np.array_equal(masks["WT"], want)
    assert probs["WT"].dtype == np.float32 and (probs["WT"][~brain] == 0).all()
    assert np.array_equal(probs["WT"] > 0.5, want)


# ----------------------------------------------------------------------------------------- probability maps
def _predict(tmp_path: Path, name: str, seed: int = 0, **kw) -> Path:
    raw = tmp_path / "raw"
    if not raw.exists():
        for i, case in enumerate(("P1", "P2")):
            write_case(raw, case, seed=i, with_seg=False)
    models = model_dir(tmp_path, two_stage=False, name=f"models_{name}") if seed == 0 else _models(tmp_path, name)
    out = tmp_path / name
    run_inference(models, raw, out, None, REGIONS, infer(**kw), CROP, CPU, "fp32")
    return out


def _models(tmp_path, name):
    from tests.test_inference import save_region_model

    folder = tmp_path / f"models_{name}"
    folder.mkdir()
    for i, region in enumerate(REGIONS):
        save_region_model(folder, region, two_stage=False, seed=10 + i)
    return folder


def test_saved_probabilities_are_on_the_original_grid_and_give_the_label_map(tmp_path):
    out = _predict(tmp_path, "pred", save_probabilities=True, threshold=0.5)
    assert probability_cases(out) == ["P1", "P2"]
    for case in ("P1", "P2"):
        labels = read_volume(out / f"{case}.nii.gz")
        maps = read_probabilities(probability_path(out, case))
        assert maps.regions == REGIONS and maps.shape == labels.shape and maps.convention == "brats2021"
        np.testing.assert_allclose(maps.affine, labels.affine)
        assert 0.0 <= maps.probabilities.min() and maps.probabilities.max() <= 1.0
        rebuilt = labels_from_maps(maps, 0.5)
        near = (np.abs(maps.probabilities - 0.5) < 2 ** -10).any(axis=0)  # float16 rounding at the threshold
        assert np.array_equal(rebuilt[~near], labels.data[~near])
    plain = _predict(tmp_path, "plain")
    assert probability_cases(plain) == [] and sorted(p.name for p in plain.iterdir() if p.name != MANIFEST) == ["P1.nii.gz", "P2.nii.gz"]
    for case in ("P1", "P2"):  # saving the maps does not change the label maps
        assert np.array_equal(read_volume(plain / f"{case}.nii.gz").data, read_volume(out / f"{case}.nii.gz").data)


def test_tta_changes_inference_only_by_its_flips(tmp_path):
    plain = _predict(tmp_path, "plain", save_probabilities=True)
    tta = _predict(tmp_path, "tta", save_probabilities=True, tta="flip")
    a = read_probabilities(probability_path(plain, "P1")).probabilities
    b = read_probabilities(probability_path(tta, "P1")).probabilities
    assert a.shape == b.shape and not np.allclose(a, b, atol=1e-3)


def test_probability_file_errors(tmp_path):
    bad = tmp_path / "x_probabilities.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(ProbabilityFileError, match="cannot read"):
        read_probabilities(bad)
    np.savez(bad, probabilities=np.zeros((3, 2, 2, 2)))
    with pytest.raises(ProbabilityFileError, match="not a probability file"):
        read_probabilities(bad)
    with pytest.raises(ProbabilityFileError, match="not found"):
        read_probabilities(tmp_path / "missing_probabilities.npz")
    with pytest.raises(ValueError, match="regions"):
        write_probabilities(bad, ProbabilityMaps(("WT",), np.zeros((3, 2, 2, 2)), np.eye(4), (1, 1, 1), "brats2021"))


# ----------------------------------------------------------------------------------------- ensemble
def _maps(value: float, regions=REGIONS, shape=(6, 5, 4), convention="brats2021") -> ProbabilityMaps:
    probs = np.zeros((len(regions),) + shape, np.float32)
    probs[:, 1:5, 1:4, 1:3] = value
    probs[-1, 1:5, 1:4, 1:3] = value / 2
    return ProbabilityMaps(tuple(regions), probs, np.eye(4), (1.0, 1.0, 1.0), convention)


def test_average_and_labels():
    avg = average_maps([_maps(0.2), _maps(1.0)])
    np.testing.assert_allclose(avg.probabilities.max(), 0.6)
    weighted = average_maps([_maps(0.2), _maps(1.0)], [3, 1])
    np.testing.assert_allclose(weighted.probabilities.max(), 0.4)
    labels = labels_from_maps(avg, 0.5)  # WT, TC at 0.6 inside the box, ET at 0.3: necrosis
    conv = get_convention("brats2021")
    assert set(np.unique(labels)) == {0, conv.ncr}
    with pytest.raises(ValueError, match="regions"):
        average_maps([_maps(0.2), _maps(0.2, regions=("WT", "TC"))])
    with pytest.raises(ValueError, match="grid"):
        average_maps([_maps(0.2), _maps(0.2, shape=(6, 5, 5))])
    with pytest.raises(ValueError, match="labels"):
        average_maps([_maps(0.2), _maps(0.2, convention="brats2023")])


def _digest(folder: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def test_ensemble_folders(tmp_path):
    a = _predict(tmp_path, "a", save_probabilities=True)
    b = _predict(tmp_path, "b", seed=1, save_probabilities=True)
    before = {a: _digest(a), b: _digest(b)}
    same = ensemble_folders([a, a], tmp_path / "same", 0.5)
    assert same == ["P1", "P2"]
    for case in same:
        maps = read_probabilities(probability_path(a, case))
        assert np.array_equal(read_volume(tmp_path / "same" / f"{case}.nii.gz").data, labels_from_maps(maps, 0.5))
    ensemble_folders([a, b], tmp_path / "ab", 0.5, keep_probabilities=True)
    avg = read_probabilities(probability_path(tmp_path / "ab", "P1")).probabilities
    pa = read_probabilities(probability_path(a, "P1")).probabilities
    pb = read_probabilities(probability_path(b, "P1")).probabilities
    np.testing.assert_allclose(avg, (pa + pb) / 2, atol=2e-3)  # float16 storage
    assert {a: _digest(a), b: _digest(b)} == before  # inputs untouched
    probability_path(b, "P2").unlink()
    with pytest.raises(ConfigError, match="different cases"):
        ensemble_folders([a, b], tmp_path / "bad", 0.5)
    with pytest.raises(OutputError, match="lies inside the input"):
        ensemble_folders([a, b], a / "inside", 0.5)
    with pytest.raises(ConfigError, match="at least two"):
        ensemble_folders([a], tmp_path / "one", 0.5)
    with pytest.raises(ConfigError, match="weights"):
        ensemble_folders([a, a], tmp_path / "w", 0.5, weights=[1.0, -1.0])
    assert not (tmp_path / "bad").exists()


def test_ensemble_script(tmp_path):
    a = _predict(tmp_path, "a", save_probabilities=True)
    b = _predict(tmp_path, "b", seed=1, save_probabilities=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"infer": {"threshold": 0.4}}))
    cmd = [sys.executable, str(ROOT / "stages" / "ensemble.py"), "--params", str(tmp_path / "params.yaml"),
           "--inputs", str(a), str(b), "--out", str(tmp_path / "ens")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "ens").iterdir() if p.name != MANIFEST) == ["P1.nii.gz", "P2.nii.gz"]
    maps = average_maps([read_probabilities(probability_path(f, "P1")) for f in (a, b)])
    assert np.array_equal(read_volume(tmp_path / "ens" / "P1.nii.gz").data, labels_from_maps(maps, 0.4))
    proc = subprocess.run(cmd[:4] + ["--inputs", str(a), str(tmp_path / "nowhere"), "--out", str(tmp_path / "e2")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "does not exist" in proc.stderr


def test_tta_and_probabilities_are_inference_only_params():
    """The training stages (and evaluate_vqvae) declare exactly the validation-protocol keys of ``infer``, so
    ``dvc exp run -S infer.tta=flip`` re-runs inference and what follows it, never training."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    protocol = {f"infer.{k}" for k in InferConfig.PROTOCOL_KEYS}
    assert set(InferConfig.PROTOCOL_KEYS) == {"overlap", "blend", "sw_batch_size", "threshold"}
    for name, stage in stages.items():
        params = {str(p) for p in stage.get("do", stage).get("params", [])}
        declared = {p for p in params if p == "infer" or p.startswith("infer.")}
        if name == "train_tokenizer":  # an image model: no segmentation protocol
            assert not declared, (name, declared)
        elif name.startswith("train_") or name in ("evaluate_vqvae", "diagnose"):
            assert declared == protocol, (name, declared)
        elif name in ("infer", "infer_val", "robustness_predict", "evaluate_attention"):
            assert declared == {"infer"}
        else:
            assert not declared, (name, declared)
    cfg = infer(tta="flip", save_probabilities=True)
    assert cfg.protocol_values() == {"overlap": 0.5, "blend": "gaussian", "sw_batch_size": 4, "threshold": 0.5}
