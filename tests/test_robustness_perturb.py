"""Perturbations of the robustness study: deterministic per seed, background kept at 0, finite, severity 0 the
identity, stronger with severity; Rician noise at the requested SNR; spike amplitude as stated; missing-sequence fills
and their equivalence after the z-score; the study config's checks."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from monai.transforms import RandBiasField

from agvq.config import RobustnessConfig, SeverityLevels, parse, parse_params
from agvq.data.preprocess import zscore
from agvq.errors import ConfigError
from agvq.inference.missing import fill_missing
from agvq.io.naming import MODALITIES
from agvq.robustness.conditions import ARTEFACTS, SEVERITIES
from agvq.robustness.perturb import (Perturbation, case_seed, kspace_spikes, motion_params, perturb,
                                     rician_noise, study_plan)
from tests.helpers_nifti import AFFINE, phantom

CFG = RobustnessConfig()
MODS = list(MODALITIES)


def stack(shape=(24, 24, 16), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    images, _, brain = phantom(shape, seed)
    return np.stack([images[m] for m in MODS]), brain


def level(kind: str, severity: int) -> Perturbation:
    return Perturbation(kind, kind, severity, float(getattr(CFG.levels, kind)[severity - 1]))


ALL = [level(k, s) for k in ARTEFACTS for s in SEVERITIES] + [Perturbation(f"missing_{m}", "missing", 1, m)
                                                              for m in MODS]


@pytest.mark.parametrize("p", ALL, ids=lambda p: p.label)
def test_perturbation_is_deterministic_finite_and_keeps_the_background(p):
    image, brain = stack()
    before = image.copy()
    out = perturb(image, p, CFG, "C1", AFFINE, MODS)
    np.testing.assert_array_equal(image, before)  # the input is never modified
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    outside = ~(image != 0).any(axis=0)
    assert outside.any() and (out[:, outside] == 0).all()
    np.testing.assert_array_equal(out, perturb(image, p, CFG, "C1", AFFINE, MODS))
    assert not np.array_equal(out, image)


@pytest.mark.parametrize("kind", ["noise", "bias", "spike", "motion"])
def test_random_perturbations_depend_on_seed_and_case(kind):
    image, _ = stack()
    p = level(kind, 2)
    out = perturb(image, p, CFG, "C1", AFFINE, MODS)
    assert not np.array_equal(out, perturb(image, p, dataclasses.replace(CFG, seed=1), "C1", AFFINE, MODS))
    assert not np.array_equal(out, perturb(image, p, CFG, "C2", AFFINE, MODS))


@pytest.mark.parametrize("kind", ARTEFACTS)
def test_severity_zero_is_the_identity_and_change_grows_with_severity(kind):
    image, brain = stack()
    clean = perturb(image, Perturbation(kind, kind, 0, None), CFG, "C1", AFFINE, MODS)
    np.testing.assert_array_equal(clean, image.astype(np.float32))
    change = [np.abs(perturb(image, level(kind, s), CFG, "C1", AFFINE, MODS) - image)[:, brain].mean()
              for s in SEVERITIES]
    assert 0 < change[0] < change[1] < change[2], change


def test_seeds_are_stable_and_do_not_depend_on_severity():
    assert case_seed(0, "BraTS2021_00001", "noise") == case_seed(0, "BraTS2021_00001", "noise")
    assert len({case_seed(0, "A", "noise"), case_seed(1, "A", "noise"), case_seed(0, "B", "noise"),
                case_seed(0, "A", "bias")}) == 4
    image = np.zeros((1, 24, 24, 16), np.float32)
    image[:, 4:20, 4:20, 2:14] = 800.0
    brain = image[0] > 0
    mild, strong = (rician_noise(image, brain, snr, 7)[0][brain] - 800.0 for snr in (20.0, 5.0))
    # common random numbers: the same Gaussian draws, scaled, so the severities differ in strength only
    assert np.corrcoef(mild, strong)[0, 1] > 0.95
    assert np.std(strong) / np.std(mild) == pytest.approx(4.0, rel=0.05)


@pytest.mark.parametrize("snr", CFG.levels.noise + (3.0,))
def test_rician_noise_has_the_requested_snr(snr):
    """SNR measured on the output, per sequence: brain mean of the input / std of (output - input) over the brain,
    within 10% of the request."""
    image, brain = stack((40, 40, 32), seed=3)
    out = rician_noise(image, brain, snr, 11)
    for c in range(image.shape[0]):
        a, m = image[c][brain].astype(np.float64), out[c][brain].astype(np.float64)
        assert a.mean() / np.std(m - a) == pytest.approx(snr, rel=0.10)


def test_rician_noise_difference_std_matches_sigma_on_bright_tissue():
    image = np.zeros((2, 40, 40, 32), np.float32)
    image[:, 4:36, 4:36, 4:28] = [[[[800.0]]], [[[400.0]]]]
    brain = image[0] > 0
    out = rician_noise(image, brain, 10.0, 3)
    for c, mean in enumerate((800.0, 400.0)):
        assert np.std(out[c][brain] - mean) == pytest.approx(mean / 10.0, rel=0.05)


def test_bias_field_is_monai_with_a_symmetric_coefficient_range():
    image, brain = stack()
    out = perturb(image, level("bias", 2), CFG, "C1", AFFINE, MODS)
    ref = RandBiasField(degree=3, coeff_range=(-0.2, 0.2), prob=1.0)
    ref.set_random_state(case_seed(CFG.seed, "C1", "bias"))
    expected = np.asarray(ref(image.astype(np.float32))) * brain
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    inside = brain & (image != 0).all(axis=0)
    ratios = out[:, inside] / image[:, inside]
    np.testing.assert_allclose(ratios, np.broadcast_to(ratios[0], ratios.shape), rtol=1e-5)  # one field


def test_spike_stripes_have_the_stated_amplitude():
    """On a constant volume a spike's image is a pure cosine (its k-space point held nothing before), whose
    amplitude is the requested fraction of the brain mean."""
    image = np.full((1, 32, 32, 24), 500.0, np.float32)
    brain = np.ones((32, 32, 24), bool)
    for amplitude in CFG.levels.spike:
        out = kspace_spikes(image, brain, amplitude, 5)
        assert np.abs(out - image).max() == pytest.approx(amplitude * 500.0, rel=0.02)


def test_motion_draws_scale_with_the_extent():
    small, large = motion_params(2.0, 2, 9), motion_params(8.0, 2, 9)
    np.testing.assert_allclose(large[0], 4 * small[0])
    np.testing.assert_allclose(large[1], 4 * small[1])
    np.testing.assert_array_equal(large[2], small[2])
    assert np.abs(large[0]).max() <= 8.0 and np.all(np.diff(large[2]) > 0) and 0 < large[2].min() < 1


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_missing_sequence_is_filled_and_the_others_kept(mode):
    image, brain = stack()
    out = perturb(image, Perturbation("missing_t1ce", "missing", 1, "t1ce"),
                  dataclasses.replace(CFG, missing_fill=mode), "C1", AFFINE, MODS)
    i = MODS.index("t1ce")
    np.testing.assert_array_equal(np.delete(out, i, axis=0), np.delete(image, i, axis=0).astype(np.float32))
    filled = out[i]
    assert (filled[~brain] == 0).all()
    if mode == "zero":
        assert (filled == 0).all()
    else:
        others = np.delete(image, i, axis=0)
        assert np.allclose(filled[brain], np.mean([o[brain].mean() for o in others]))


def test_zero_and_mean_fill_give_the_same_network_input():
    image, brain = stack()
    present = {m: image[k] for k, m in enumerate(MODS) if m != "flair"}
    zero, mean = fill_missing(present, MODS, "zero"), fill_missing(present, MODS, "mean")
    i = MODS.index("flair")
    assert not np.array_equal(zero[i], mean[i])
    np.testing.assert_array_equal(zscore(zero, brain), zscore(mean, brain))


def test_fill_missing_rejects_bad_input():
    image, _ = stack()
    with pytest.raises(ValueError, match="unknown fill mode"):
        fill_missing({"t1": image[0]}, MODS, "synthesize")
    with pytest.raises(ValueError, match="none of the sequences"):
        fill_missing({}, MODS, "zero")
    with pytest.raises(ValueError, match="differ in shape"):
        fill_missing({"t1": image[0], "t2": image[0][:10]}, MODS, "zero")
    with pytest.raises(ValueError, match="expected a"):
        perturb(image[:2], level("noise", 1), CFG, "C1", AFFINE, MODS)
    with pytest.raises(ValueError, match="not among"):
        perturb(image, Perturbation("missing_dwi", "missing", 1, "dwi"), CFG, "C1", AFFINE, MODS)


def test_study_plan_lists_clean_then_every_kind_and_severity():
    plan = study_plan(CFG, MODS)
    assert plan[0].label == "clean" and plan[0].severity == 0
    assert len(plan) == 1 + len(ARTEFACTS) * 3 + len(MODS)
    assert [p.label for p in plan[1:4]] == ["noise@1", "noise@2", "noise@3"]
    assert [p.level for p in plan[1:4]] == [20.0, 10.0, 5.0]
    short = study_plan(dataclasses.replace(CFG, perturbations=("missing", "gibbs")), ["t1", "flair"])
    assert [p.label for p in short] == ["clean", "missing_t1@1", "missing_flair@1", "gibbs@1", "gibbs@2", "gibbs@3"]


@pytest.mark.parametrize("data, message", [
    ({"levels": {"noise": [5, 10, 20]}}, "noise .SNR. must decrease"),
    ({"levels": {"bias": [0.3, 0.2, 0.1]}}, "bias must increase"),
    ({"levels": {"gibbs": [0.3, 0.5, 1.0]}}, "gibbs.2. must be < 1"),
    ({"levels": {"spike": [0.1, 0.2]}}, "levels.spike must be a list of 3"),
    ({"perturbations": ["noise", "blur"]}, "perturbations.1. must be one of"),
    ({"perturbations": ["noise", "noise"]}, "distinct"),
    ({"main_variant": "x"}, "main_variant 'x' is not in robustness.variants"),
    ({"variants": ["agvqvae"]}, "at least one to compare"),
    ({"missing_fill": "error"}, "missing_fill must be one of"),
])
def test_robustness_params_are_checked(data, message):
    with pytest.raises(ConfigError, match=message):
        parse(RobustnessConfig, data, "robustness")


def test_robustness_variants_must_be_trained_and_main_two_stage():
    base = {"variants": {"agvqvae": {"two_stage": True, "arch": "transformer"},
                         "unet": {"two_stage": False, "arch": "unet"},
                         "agunet": {"two_stage": False, "arch": "transformer"}},
            "two_stage_variants": ["agvqvae"], "single_stage_variants": ["unet", "agunet"]}
    params = parse_params({**base, "robustness": {"variants": ["agvqvae", "unet"]}})
    assert params.robustness.variants == ("agvqvae", "unet")
    assert params.robustness.levels == SeverityLevels()
    with pytest.raises(ConfigError, match="robustness.variants lists 'agunet_no_sm'"):
        parse_params({**base, "robustness": {"variants": ["agvqvae", "agunet_no_sm"]}})
    with pytest.raises(ConfigError, match="must be a two-stage variant"):
        parse_params({**base, "robustness": {"variants": ["agvqvae", "unet"], "main_variant": "unet"}})
