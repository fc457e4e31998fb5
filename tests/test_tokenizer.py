"""The MRI tokenizer: SSIM/PSNR wrappers against direct computations, the histogram baseline, the model's shapes on
odd sizes (2D and 3D), a tiny training run that beats the baseline, the stages, and filling a missing T1ce file
before segmenting."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import ndimage as ndi
from scipy.signal import correlate
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from agvq.config import QuantizerConfig, TokenizerLossConfig, TokenizerTrainConfig, load_params, parse, to_dict
from agvq.errors import CaseError, ConfigError
from agvq.io.prepared import write_prepared
from agvq.metrics.image import match_histogram, psnr_per_image, ssim_per_image, ssim_separable
from agvq.tokenizer.data import TokenizerSamples, TokenizerStore, scored_slices, to_unit_range, to_zscore
from agvq.tokenizer.model import MRITokenizer, load_tokenizer
from agvq.tokenizer.synthesis import render, render_many, synthesize_missing
from agvq.tokenizer.train import TokenizerTask
from tests.helpers_training import ROOT, run_stage_inprocess

MODS = ["flair", "t1", "t1ce", "t2"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tokenizer(dims: int = 2, channels=(4, 8), num_embeddings: int = 16, seed: int = 0, **kw) -> MRITokenizer:
    torch.manual_seed(seed)
    args = dict(dims=dims, sequences=MODS, channels=channels, res_blocks=1, latent_dim=4,
                num_embeddings=num_embeddings, sequence_embedding=4, groups=2,
                quantizer=to_dict(QuantizerConfig()), percentiles=(0.5, 99.5))
    args.update(kw)
    return MRITokenizer(**args)


# ------------------------------------------------------------------------------------------- SSIM / PSNR
def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x**2 / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


def direct_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Wang et al. (2004) SSIM with an 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, averaged over every
    pixel with the image reflected (without repeating the edge) beyond its borders."""
    w = _gaussian_window()

    def f(a):
        return correlate(np.pad(a, 5, mode="reflect"), w, mode="valid")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(ssim.mean())


def test_ssim_wrapper_equals_a_direct_computation_and_the_torchmetrics_module():
    rng = np.random.default_rng(0)
    target = ndi.gaussian_filter(rng.random((3, 40, 52)), (0, 2, 2))
    pred = np.clip(target + 0.05 * rng.standard_normal(target.shape), 0, 1)
    t, p = torch.from_numpy(target)[:, None], torch.from_numpy(pred)[:, None]
    got = ssim_per_image(p, t, 1.0)
    assert got.shape == (3,)
    for i in range(3):
        assert got[i].item() == pytest.approx(direct_ssim(pred[i], target[i], 1.0), abs=2e-5)  # float32
    module = StructuralSimilarityIndexMeasure(data_range=1.0, reduction="none")
    torch.testing.assert_close(got, module(p, t).double(), atol=2e-5, rtol=0)
    assert torch.allclose(ssim_per_image(t, t, 1.0), torch.ones(3, dtype=torch.float64))
    # the data range matters: the same images read on a 0..255 scale score higher (smaller relative constants)
    assert ssim_per_image(p * 255, t * 255, 255.0)[0].item() == pytest.approx(got[0].item(), abs=2e-5)
    assert ssim_per_image(p, t, 10.0)[0] > got[0]


def test_separable_ssim_loss_equals_torchmetrics_and_has_gradients():
    rng = np.random.default_rng(1)
    target = ndi.gaussian_filter(rng.random((4, 33, 47)), (0, 2, 2)).astype(np.float32)
    pred = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0, 1).astype(np.float32)
    t = torch.from_numpy(target)[:, None]
    p = torch.from_numpy(pred)[:, None].requires_grad_(True)
    got = ssim_separable(p, t, 1.0)
    want = StructuralSimilarityIndexMeasure(data_range=1.0, reduction="none")(p.detach(), t)
    torch.testing.assert_close(got.detach(), want.float(), atol=2e-5, rtol=0)
    got.mean().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        ssim_separable(p.detach()[:, :, None], t[:, :, None], 1.0)


def test_psnr_wrapper_equals_the_definition_on_known_images():
    target = torch.zeros(2, 1, 8, 9, dtype=torch.float64)
    target[1, 0, 2:5, 3:7] = 0.5
    pred = target + 0.1  # MSE 0.01 everywhere: 20 dB at data range 1, 20 + 20 log10(2) at data range 2
    got = psnr_per_image(pred, target, 1.0)
    torch.testing.assert_close(got, torch.full((2,), 20.0, dtype=torch.float64))
    assert psnr_per_image(pred, target, 2.0)[0].item() == pytest.approx(20 + 20 * math.log10(2))
    half = target.clone()
    half[0, 0, :4] += 0.2  # 36 of 72 pixels off by 0.2: MSE 0.02
    assert psnr_per_image(half, target, 1.0)[0].item() == pytest.approx(10 * math.log10(1 / 0.02))
    module = PeakSignalNoiseRatio(data_range=1.0, reduction="none", dim=(1, 2, 3))
    torch.testing.assert_close(got, module(pred, target).double())
    assert torch.isinf(psnr_per_image(target, target, 1.0)).all()
    with pytest.raises(ValueError, match="one shape"):
        psnr_per_image(pred, target[:1], 1.0)


def test_histogram_matching_takes_the_reference_histogram_inside_the_mask():
    rng = np.random.default_rng(1)
    mask = np.zeros((20, 20), bool)
    mask[3:17, 2:18] = True
    source = rng.random((20, 20)) ** 2
    reference = 5.0 - 3.0 * rng.random((20, 20))
    out = match_histogram(source, reference, mask)
    np.testing.assert_allclose(np.sort(out[mask]), np.sort(reference[mask]), atol=1e-9)  # same sample size
    assert (out[~mask] == 0).all()
    order = np.argsort(source[mask])
    assert (np.diff(out[mask][order]) >= -1e-12).all()  # monotone in the source
    # a monotone remapping of the reference is undone exactly
    np.testing.assert_allclose(match_histogram(np.log(reference), reference, mask)[mask], reference[mask])


def test_unit_range_and_zscore_scales():
    rng = np.random.default_rng(2)
    brain = np.zeros((10, 12, 6), bool)
    brain[2:8, 3:10, 1:5] = True
    image = rng.normal(3.0, 2.0, (2, 10, 12, 6)).astype(np.float32)
    image[1] = 7.0  # constant in the brain
    unit = to_unit_range(image, brain, (1.0, 99.0))
    assert unit.min() == 0 and unit.max() == 1 and (unit[:, ~brain] == 0).all() and (unit[1] == 0).all()
    lo, hi = np.percentile(image[0][brain], [1.0, 99.0])
    np.testing.assert_allclose(unit[0][brain], np.clip((image[0][brain] - lo) / (hi - lo), 0, 1), rtol=1e-6)
    z = to_zscore(unit[:1], brain)[0]
    assert abs(z[brain].mean()) < 1e-5 and z[brain].std() == pytest.approx(1.0, abs=1e-5) and (z[~brain] == 0).all()
    assert list(scored_slices(brain, 0.3)) == [1, 2, 3, 4] and list(scored_slices(brain, 0.4)) == []


# ------------------------------------------------------------------------------------------- the model
@pytest.mark.parametrize("dims, size", [(2, (37, 51)), (2, (8, 5)), (3, (13, 17, 9))])
def test_round_trip_shapes_for_odd_sizes(dims, size):
    model = tokenizer(dims)
    x = torch.rand(3, 1, *size)
    brain = torch.zeros(3, 1, *size)
    brain[..., 1:-1, 1:] = 1
    out = model(x, model.sequence_index(["t1", "t2", "flair"]), brain)
    assert out.image.shape == x.shape
    assert out.indices.shape == (3, *[math.ceil(s / model.stride) for s in size])
    assert (out.image >= 0).all() and (out.image <= 1).all() and (out.image[brain == 0] == 0).all()
    fused = model.eval().fuse(torch.rand(2, 3, *size), model.sequence_index(["t1ce", "t1ce"]))
    assert fused.shape == (2, 1, *size)


def test_render_many_shares_encodings_and_equals_single_renders():
    model = tokenizer(2).eval()
    rng = np.random.default_rng(3)
    images = rng.random((4, 19, 23, 7)).astype(np.float32)
    brain = np.ones((19, 23, 7), bool)
    brain[:3] = False
    requests = [((0,), "flair"), ((1,), "t2"), ((0, 2, 3), "t1")]
    outs, counts = render_many(model, images, brain, requests, [1, 4, 5])
    assert [o.shape for o in outs] == [(19, 23, 3)] * 3 and counts.shape == (4, 16)
    assert counts.sum(1).tolist() == [3 * 5 * 6] * 4  # one code per latent position (stride 4) of each slice
    np.testing.assert_allclose(outs[2], render(model, images[[0, 2, 3]], "t1", brain, [1, 4, 5]), atol=1e-6)
    assert (outs[0][:3] == 0).all()
    with pytest.raises(ConfigError, match="renders"):
        render(model, images[:1], "dwi", brain)


def test_bad_model_settings_are_config_errors():
    with pytest.raises(ConfigError, match="dims"):
        tokenizer(4)
    with pytest.raises(ConfigError, match="percentiles"):
        tokenizer(percentiles=(90, 10))
    with pytest.raises(ConfigError, match="quantizer"):
        tokenizer(quantizer={"commitment": 0.25})
    with pytest.raises(ValueError, match="expects images"):
        tokenizer(2)(torch.rand(2, 2, 8, 8), torch.zeros(2, dtype=torch.long))


def test_params_check_patch_size_against_dims_and_figure_epochs(tmp_path):
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for override, message in ((({"dims": 3}), "patch_size must list 3"),
                              ({"train": {"figure_epochs": [3]}}, "not validation epochs"),
                              ({"intensity": {"low_percentile": 99.0, "high_percentile": 1.0}}, "below"),
                              ({"train": {"val_metric": "dice"}}, "val_metric")):
        data = json.loads(json.dumps(base))
        for key, value in override.items():
            data["tokenizer"][key] = value if not isinstance(value, dict) else {**data["tokenizer"][key], **value}
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError, match=message):
            load_params(path)


def test_params_yaml_states_every_tokenizer_key():
    from dataclasses import fields

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())["tokenizer"]
    params = load_params(ROOT / "params.yaml").tokenizer
    assert set(raw) == {f.name for f in fields(params)}
    for sub in ("model", "quantizer", "intensity", "loss", "train", "evaluate"):
        assert set(raw[sub]) == {f.name for f in fields(getattr(params, sub))}, sub


# ---------------------------------------------------------------------------------------- tiny data + runs
def tissue_phantom(shape, rng) -> tuple[np.ndarray, np.ndarray]:
    """(4, X, Y, Z) z-scored images of three smooth tissues and the brain. Each sequence orders the three tissues
    differently, so no sequence is a monotone remapping of another and histogram matching cannot synthesize any."""
    grid = np.indices(shape).astype(np.float32)
    c = (np.asarray(shape) - 1) / 2 + rng.normal(0, 1, 3)
    r = np.sqrt((((grid - c[:, None, None, None]) / (np.asarray(shape)[:, None, None, None] * 0.42)) ** 2).sum(0))
    brain = r < 1.0
    field = ndi.gaussian_filter(rng.standard_normal(shape), 2.0)
    tissue = np.where(r > 0.75, 2, np.where(field > 0, 1, 0))  # cortex-like rim, two inner tissues
    values = {"flair": (0.3, 0.9, 0.6), "t1": (0.6, 0.3, 0.9), "t1ce": (0.9, 0.6, 0.3), "t2": (0.3, 0.6, 0.9)}
    images = np.stack([np.asarray(values[m])[tissue] + 0.02 * rng.standard_normal(shape) for m in MODS])
    images = ndi.gaussian_filter(images, (0, 0.6, 0.6, 0.6)) * brain
    return to_zscore(images, brain), brain


def write_tissue_data(root: Path, n: int = 8, shape=(24, 24, 8), seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        image, brain = tissue_phantom(shape, rng)
        case = f"T{i:02d}"
        ids.append(case)
        props = {"case": case, "naming": "brats2021", "convention": "brats2021", "modalities": MODS,
                 "original_shape": list(shape), "affine": np.eye(4).tolist(), "spacing": [1.0] * 3,
                 "crop_start": [0, 0, 0], "crop_stop": list(shape), "has_labels": False, "files": {}}
        write_prepared(root / "prepared", {"image": image, "brain": brain}, props, compress_level=1)
    splits = root / "splits.json"
    splits.write_text(json.dumps({"seed": 0, "train": ids[:5], "val": ids[5:6], "test": ids[6:]}))
    return root / "prepared", splits


TINY_TOKENIZER = {
    "runtime": {"device": "cpu", "threads": 1},
    "tokenizer": {"model": {"channels": [8], "latent_dim": 8, "num_embeddings": 32, "sequence_embedding": 8,
                            "groups": 4},
                  "quantizer": {"kmeans_iters": 3, "decay": 0.9},
                  "train": {"epochs": 8, "batch_size": 4, "patch_size": [24, 24], "samples_per_epoch": 96,
                            "lr": 5.0e-3, "val_every": 4, "figure_epochs": [4, 8]},
                  "evaluate": {"bootstrap": 200, "figure_slices": 2}},
}


def write_tiny_params(path: Path, override: dict | None = None) -> Path:
    from agvq.config import deep_merge

    params = deep_merge(deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY_TOKENIZER), override or {})
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny tokenizer trained and evaluated by the two stage scripts on tissue phantoms."""
    root = tmp_path_factory.mktemp("tokenizer")
    prepared, splits = write_tissue_data(root)
    before = digest(root)
    params = write_tiny_params(root / "params.yaml")
    mp = pytest.MonkeyPatch()
    try:
        run_stage_inprocess("train_tokenizer.py", [
            "--params", str(params), "--prepared", str(prepared), "--splits", str(splits),
            "--out", str(root / "models/tokenizer.pt"), "--metrics", str(root / "metrics/train.json"),
            "--curve", str(root / "plots/curve.csv"), "--run-dir", str(root / "runs/tokenizer"),
            "--curves-figure", str(root / "plots/curves.png"), "--epochs-figure", str(root / "plots/epochs.png")], mp)
        run_stage_inprocess("evaluate_tokenizer.py", [
            "--params", str(params), "--model", str(root / "models/tokenizer.pt"), "--prepared", str(prepared),
            "--splits", str(splits), "--out", str(root / "metrics/test.json"),
            "--markdown", str(root / "metrics/test.md"), "--slices-csv", str(root / "metrics/slices.csv"),
            "--figures", str(root / "plots/synthesis")], mp)
    finally:
        mp.undo()
    return root, before


def test_tiny_training_run_beats_the_histogram_baseline(trained):
    root, _ = trained
    train = json.loads((root / "metrics/train.json").read_text())
    assert train["best_epoch"] in (4, 8) and 0 < train["val_ssim"] <= 1
    report = json.loads((root / "metrics/test.json").read_text())
    assert set(report["reconstruction"]) == set(MODS) and report["cases"] == 2
    fused = [e for e in report["synthesis"] if e["source"] == "others"]
    assert len(fused) == 4 and len(report["synthesis"]) == 16
    for entry in fused:  # from the other sequences together, every target beats its baseline
        assert entry["ssim_difference"]["mean"] > 0.05, entry
    assert report["targets_beating_baseline"] >= 3  # ... and the best baseline of any source, for 3 of 4 targets
    assert 2 <= report["codes_used"] <= 32 and report["perplexity"] >= 1


def test_stage_outputs_curves_tables_and_figures(trained):
    root, before = trained
    curve = (root / "plots/curve.csv").read_text().splitlines()
    assert curve[0].startswith("epoch,") and "val_ssim" in curve[0] and len(curve) == 9
    for name in ("curves.png", "epochs.png", *[f"synthesis/{m}.png" for m in MODS]):
        assert (root / "plots" / name).read_bytes()[:4] == b"\x89PNG", name
    md = (root / "metrics/test.md").read_text()
    assert "| t1 → t2 |" in md and "| all others → t1ce |" in md and "LPIPS" in md and "n/a" in md
    report = json.loads((root / "metrics/test.json").read_text())
    assert report["data_range"] == 1.0 and "cannot be downloaded" in report["lpips"]
    assert all(e["tokenizer"]["lpips"] is None for e in report["synthesis"])
    assert not (root / "runs/tokenizer").exists()  # the resume state is removed once the run is saved
    contract = json.loads((root / "models/tokenizer.json").read_text())
    assert contract["modalities"] == MODS and contract["dims"] == 2
    after = digest(root)
    assert {k: v for k, v in after.items() if k in before} == before  # the inputs did not change


def test_training_resumes_with_its_snapshots(tmp_path):
    """A run interrupted after its first validation resumes with the snapshot it had taken."""
    model = tokenizer(2)
    task = TokenizerTask(model, parse(TokenizerLossConfig, {}, "loss"),
                         parse(TokenizerTrainConfig, {"epochs": 2, "val_every": 1, "figure_epochs": [1]}, "train"))
    task.snapshots = {1: torch.ones(4, 5, 6).half()}
    task.snapshot_real, task.snapshot_caption = torch.zeros(4, 5, 6).half(), "case x"
    state = task.state_dict()
    path = tmp_path / "state.pt"
    torch.save(state, path)
    other = TokenizerTask(model, task.loss, task.train)
    other.load_state_dict(torch.load(path, weights_only=True))
    assert list(other.snapshots) == [1] and other.snapshot_caption == "case x"


def test_a_3d_tokenizer_trains_a_step_and_renders_a_volume(tmp_path):
    prepared, splits = write_tissue_data(tmp_path, n=3, shape=(20, 20, 12))
    store = TokenizerStore(prepared, ["T00", "T01"], (0.5, 99.5), cache=True)
    samples = TokenizerSamples(store, 3, (16, 16, 8), 4, 0.1, seed=0, flip=True, per_case=1)
    batch = {k: torch.stack([samples[i][k] for i in range(2)]) for k in ("image", "brain")}
    assert batch["image"].shape == (2, 4, 16, 16, 8) and batch["brain"].shape == (2, 1, 16, 16, 8)
    model = tokenizer(3)
    task = TokenizerTask(model, parse(TokenizerLossConfig, {"consistency_weight": 0.1, "ssim_weight": 0.5}, "loss"),
                         parse(TokenizerTrainConfig, {"patch_size": [16, 16, 8]}, "train"))
    loss, logs = task.forward_loss(model.train(), batch)
    loss.backward()
    assert torch.isfinite(loss) and {"reconstruction_l1", "translation_l1", "fused_l1", "consistency"} <= set(logs)
    case = store[0]
    out = render(model, case.image[:2], "t2", case.brain)
    assert out.shape == case.brain.shape and (out[~case.brain] == 0).all()


def test_samples_are_a_pure_function_of_seed_epoch_and_index(tmp_path):
    prepared, _ = write_tissue_data(tmp_path, n=2)
    store = TokenizerStore(prepared, ["T00", "T01"], (0.5, 99.5), cache=False)
    a = TokenizerSamples(store, 2, (32, 16), 8, 0.1, seed=3, flip=True, per_case=1)
    b = TokenizerSamples(store, 2, (32, 16), 8, 0.1, seed=3, flip=True, per_case=1)
    b.set_epoch(1)
    b.set_epoch(0)
    for i in range(8):
        sa, sb = a[i], b[i]
        assert sa["image"].shape == (4, 32, 16) and torch.equal(sa["image"], sb["image"])
        assert ((sa["image"] > 0) <= (sa["brain"] > 0)).all()  # zero outside the brain
    a.set_epoch(1)
    assert not all(torch.equal(a[i]["image"], b[i]["image"]) for i in range(8))
    seen: list[int] = []

    class Recording(TokenizerStore):
        def __getitem__(self, i):
            seen.append(int(i))
            return super().__getitem__(i)

    recording = Recording(prepared, ["T00", "T01"], (0.5, 99.5), cache=False)
    grouped = TokenizerSamples(recording, 2, (32, 16), 16, 0.1, seed=3, flip=False, per_case=4)
    seen.clear()
    for i in range(16):
        grouped[i]
    runs = [seen[k:k + 4] for k in range(0, 16, 4)]
    assert all(len(set(run)) == 1 for run in runs) and len({run[0] for run in runs}) == 2
    with pytest.raises(ConfigError, match="no training slice"):
        TokenizerSamples(store, 2, (8, 8), 4, 1.0, seed=0, flip=False, per_case=1)


# ------------------------------------------------------------------------------------ missing modality
def test_synthesize_missing_keeps_the_available_channels_and_zscores_the_new_one(trained):
    root, _ = trained
    model, _ = load_tokenizer(root / "models/tokenizer.pt")
    rng = np.random.default_rng(5)
    image, brain = tissue_phantom((24, 24, 8), rng)
    available = ["flair", "t1", "t2"]
    out = synthesize_missing(image[[0, 1, 3]], available, ["t1ce"], model, brain, order=MODS)
    assert out.shape == (4, 24, 24, 8) and out.dtype == np.float32
    np.testing.assert_array_equal(out[[0, 1, 3]], image[[0, 1, 3]])
    assert abs(out[2][brain].mean()) < 1e-4 and out[2][brain].std() == pytest.approx(1.0, abs=1e-4)
    assert (out[2][~brain] == 0).all()
    assert np.corrcoef(out[2][brain], image[2][brain])[0, 1] > 0.5  # it resembles the real T1ce
    with pytest.raises(ConfigError, match="cannot use or render"):
        synthesize_missing(image[[0, 1, 3]], available, ["dwi"], model, brain)
    with pytest.raises(ConfigError, match="no sequence is available"):
        synthesize_missing(image[:0], [], ["t1ce"], model, brain)


def test_missing_t1ce_file_is_synthesized_before_segmenting(trained, tmp_path):
    from agvq.config import InferConfig
    from agvq.inference.predict import CropSettings, RegionModel, predict_case, run_inference
    from agvq.io.discovery import discover_cases
    from tests.helpers_nifti import write_case
    from tests.test_inference import Pointwise, brain_of, model_dir, read

    root, _ = trained
    raw = tmp_path / "raw"
    folder = write_case(raw, "M1", seed=3)
    (folder / "M1_t1ce.nii.gz").unlink()
    before = digest(raw)
    case = discover_cases(raw)[0]
    assert "t1ce" not in case.images
    models = {r: RegionModel(r, Pointwise(2, 0.0), (16, 16, 16), {}) for r in ("WT", "TC", "ET")}  # reads t1ce
    crop, cpu = CropSettings(margin=2, stride=16), torch.device("cpu")
    error = InferConfig(overlap=0.5, blend="gaussian", sw_batch_size=2, threshold=0.5, missing_modality="error")
    synth = InferConfig(overlap=0.5, blend="gaussian", sw_batch_size=2, threshold=0.5, missing_modality="synthesize")
    with pytest.raises(CaseError, match="t1ce"):
        predict_case(case, models, MODS, error, crop, cpu, "fp32")
    with pytest.raises(ConfigError, match="no tokenizer"):
        predict_case(case, models, MODS, synth, crop, cpu, "fp32")
    model, _ = load_tokenizer(root / "models/tokenizer.pt")
    labels, props = predict_case(case, models, MODS, synth, crop, cpu, "fp32", tokenizer=model)
    assert labels.shape == (24, 24, 16) and props["synthesized"] == ["t1ce"]
    assert labels.any() and set(np.unique(labels)) <= {0, 1, 2, 4}
    with pytest.raises(ConfigError, match="--tokenizer"):
        run_inference(tmp_path / "models", raw, tmp_path / "pred", None, ("WT",), synth, crop, cpu, "fp32")
    assert not (tmp_path / "pred").exists()
    folder = model_dir(tmp_path, fg={"WT": True, "TC": True, "ET": True}, two_stage=False)  # ET in the brain
    written = run_inference(folder, raw, tmp_path / "pred", None, ("WT", "TC", "ET"), synth, crop, cpu, "fp32",
                            tokenizer_path=root / "models/tokenizer.pt")
    assert written == ["M1"]
    np.testing.assert_array_equal(read(tmp_path / "pred" / "M1.nii.gz")[1], np.where(brain_of(seed=3), 4, 0))
    assert digest(raw) == before


def test_a_model_file_of_another_kind_is_refused(tmp_path):
    from agvq.io.model_file import model_file, save_atomic
    from tests.helpers_config import vqvae

    path = tmp_path / "vq.pt"
    save_atomic(model_file("vqvae", vqvae(), {"region": "WT"}), path)
    with pytest.raises(ConfigError, match="expected tokenizer"):
        load_tokenizer(path)
    with pytest.raises(ConfigError, match="not found"):
        load_tokenizer(tmp_path / "missing.pt")
