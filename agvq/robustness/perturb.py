"""Seeded, deterministic perturbations of a case's raw MRI (C, X, Y, Z), three severities each.

Every perturbation acts on the raw intensities of all sequences, before the crop and z-score of preprocessing (the
point where a scanner's artefacts enter the data), and then zeroes everything outside the brain (voxels zero in every
sequence of the input), as the skull-stripping of BraTS data does after acquisition: the background stays 0, the crop
box is unchanged, and the network sees what a skull-stripped degraded scan would give it.

Severity 0 is the clean input. Severities 1..3 take their parameter from params ``robustness.levels``:

=========  =============================================================================  ==========================
kind       what                                                                           parameter per severity
=========  =============================================================================  ==========================
noise      Rician noise, sigma_c = brain mean of sequence c / SNR (MONAI RandRicianNoise)   SNR
bias       multiplicative exp(Legendre polynomial) field, coefficients U(-c, c)             c
           (MONAI RandBiasField; one field for all sequences, as a receive-coil profile)
gibbs      k-space truncation ringing (MONAI GibbsNoise)                                    alpha
spike      one k-space spike per sequence (MONAI KSpaceSpikeNoise) whose stripes have       amplitude
           amplitude = the given fraction of the sequence's brain mean
ghosting   periodic-motion ghosts along a seeded phase-encoding axis (TorchIO Ghosting)     ghost intensity
motion     rigid head motion during the acquisition (TorchIO Motion): rotations (degrees)   extent
           and translations (mm) drawn from U(-extent, extent) per axis
missing    one sequence absent, filled by agvq.inference.missing.fill_missing             (one level: the sequence)
=========  =============================================================================  ==========================

A case's random draws depend only on (params seed, case id, kind), never on the severity: the severities of one kind
scale the same noise field / coefficients / spike positions / motion path (common random numbers), so the curves
against severity are not blurred by re-drawing.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from monai.transforms import GibbsNoise, KSpaceSpikeNoise, RandBiasField, RandRicianNoise
from monai.utils import convert_to_numpy

from agvq.config import RobustnessConfig
from agvq.inference.missing import fill_missing
from agvq.robustness.conditions import CLEAN, MISSING, SEVERITIES


@dataclass(frozen=True)
class Perturbation:
    """One input condition of the study: ``name`` is ``clean``, an artefact kind or ``missing_<sequence>``."""

    name: str
    kind: str
    severity: int
    level: float | str | None

    @property
    def label(self) -> str:
        return CLEAN if self.kind == CLEAN else f"{self.name}@{self.severity}"


def study_plan(cfg: RobustnessConfig, modalities: Sequence[str]) -> list[Perturbation]:
    """The clean input, then each kind of ``cfg.perturbations`` at severities 1..3 (missing: each sequence once)."""
    plan = [Perturbation(CLEAN, CLEAN, 0, None)]
    for kind in cfg.perturbations:
        if kind == MISSING:
            plan += [Perturbation(f"{MISSING}_{m}", MISSING, 1, m) for m in modalities]
        else:
            levels = getattr(cfg.levels, kind)
            plan += [Perturbation(kind, kind, s, float(levels[s - 1])) for s in SEVERITIES]
    return plan


def case_seed(seed: int, case: str, kind: str) -> int:
    """A 32-bit seed of (params seed, case id, kind), stable across runs, platforms and plan changes."""
    sequence = np.random.SeedSequence([int(seed), zlib.crc32(case.encode()), zlib.crc32(kind.encode())])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def _tensor(image: np.ndarray) -> torch.Tensor:
    """A float32 torch copy: MONAI's k-space transforms then run torch's FFT (complex64), and nothing the
    transforms do in place reaches the caller's array."""
    return torch.from_numpy(image.astype(np.float32, copy=True))


def _brain(image: np.ndarray) -> np.ndarray:
    return (np.asarray(image) != 0).any(axis=0)


def _masked(out, brain: np.ndarray) -> np.ndarray:
    out = np.array(convert_to_numpy(out), dtype=np.float32)  # a float32 copy, whatever MONAI/TorchIO returned
    out[:, ~brain] = 0.0
    return out


def _brain_means(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    return np.array([np.abs(c[brain]).mean(dtype=np.float64) if brain.any() else 0.0 for c in image])


def rician_noise(image: np.ndarray, brain: np.ndarray, snr: float, seed: int) -> np.ndarray:
    """Rician noise of per-sequence sigma = (brain mean of the sequence) / ``snr``."""
    sigma = (_brain_means(image, brain) / float(snr)).tolist()
    noise = RandRicianNoise(prob=1.0, mean=0.0, std=sigma, channel_wise=True, relative=False, sample_std=False)
    noise.set_random_state(seed)
    return _masked(noise(image.astype(np.float32, copy=True)), brain)


def bias_field(image: np.ndarray, brain: np.ndarray, coeff: float, degree: int, seed: int) -> np.ndarray:
    """Multiplication by exp(Legendre polynomial field of ``degree``), coefficients drawn from U(-coeff, coeff)."""
    field = RandBiasField(degree=int(degree), coeff_range=(-float(coeff), float(coeff)), prob=1.0)
    field.set_random_state(seed)
    return _masked(field(image.astype(np.float32, copy=True)), brain)


def gibbs_ringing(image: np.ndarray, brain: np.ndarray, alpha: float) -> np.ndarray:
    """Truncation of k-space outside a sphere of radius (1 - alpha) x the half-diagonal (deterministic)."""
    return _masked(GibbsNoise(alpha=float(alpha))(_tensor(image)), brain)


def spike_locations(shape: Sequence[int], channels: int, seed: int, exclude: int = 2) -> list[tuple[int, ...]]:
    """One (channel, kx, ky, kz) per channel in centred k-space, at least ``exclude`` planes from the centre along
    some axis (so that a spike is a stripe pattern, not a change of overall brightness)."""
    rng = np.random.default_rng(seed)
    centre = np.array([s // 2 for s in shape])
    locations = []
    for c in range(channels):
        while True:
            loc = np.array([rng.integers(0, s) for s in shape])
            if np.abs(loc - centre).max() >= exclude:
                break
        locations.append((c, *(int(v) for v in loc)))
    return locations


def kspace_spikes(image: np.ndarray, brain: np.ndarray, amplitude: float, seed: int) -> np.ndarray:
    """One spike per sequence: a k-space point set to ``amplitude`` x brain mean x N, i.e. stripes whose amplitude
    is that fraction of the sequence's brain mean (numpy's inverse FFT divides by the N voxels)."""
    locations = spike_locations(image.shape[1:], image.shape[0], seed)
    n = float(np.prod(image.shape[1:]))
    means = _brain_means(image, brain)
    log_k = tuple(float(np.log(max(float(amplitude) * m * n, 1e-30))) for m in means)
    return _masked(KSpaceSpikeNoise(loc=tuple(locations), k_intensity=log_k)(_tensor(image)), brain)


def ghosting(image: np.ndarray, brain: np.ndarray, intensity: float, num_ghosts: int, restore: float,
             seed: int) -> np.ndarray:
    """TorchIO Ghosting: every ``num_ghosts``-th k-space plane along a seeded axis scaled by (1 - intensity), the
    central ``restore`` fraction of k-space kept."""
    from torchio.transforms import Ghosting

    axis = int(np.random.default_rng(seed).integers(0, 3))
    transform = Ghosting(num_ghosts=int(num_ghosts), axis=axis, intensity=float(intensity), restore=float(restore))
    return _masked(transform(_tensor(image)), brain)


def motion_params(extent: float, transforms: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(degrees (n, 3), translation mm (n, 3), times (n,)) of ``transforms`` movements, as TorchIO RandomMotion
    draws them but from a seeded generator whose draws are scaled by ``extent`` (the severity)."""
    rng = np.random.default_rng(seed)
    unit = rng.uniform(-1.0, 1.0, size=(2, int(transforms), 3))
    step = 1.0 / (int(transforms) + 1)
    times = np.arange(1, int(transforms) + 1) * step + rng.uniform(-0.3 * step, 0.3 * step, size=int(transforms))
    return unit[0] * float(extent), unit[1] * float(extent), times


def motion(image: np.ndarray, brain: np.ndarray, extent: float, transforms: int, affine: np.ndarray,
           seed: int) -> np.ndarray:
    """TorchIO Motion: k-space assembled from the head at ``transforms`` + 1 rigid positions (Shaw et al. 2019)."""
    from torchio import ScalarImage
    from torchio.transforms import Motion

    degrees, translation, times = motion_params(extent, transforms, seed)
    moved = Motion(degrees=degrees, translation=translation, times=times, image_interpolation="linear")(
        ScalarImage(tensor=_tensor(image), affine=np.asarray(affine)))
    return _masked(moved.data, brain)


def missing_sequence(image: np.ndarray, modalities: Sequence[str], modality: str, mode: str) -> np.ndarray:
    """The stack with ``modality`` removed and filled by ``fill_missing(mode)``."""
    modalities = list(modalities)
    if modality not in modalities:
        raise ValueError(f"sequence {modality!r} is not among the case's sequences {modalities}")
    present = {m: image[i] for i, m in enumerate(modalities) if m != modality}
    return np.stack(fill_missing(present, modalities, mode)).astype(np.float32)


def perturb(image: np.ndarray, p: Perturbation, cfg: RobustnessConfig, case: str, affine: np.ndarray,
            modalities: Sequence[str]) -> np.ndarray:
    """The raw stack ``image`` (C, X, Y, Z) under perturbation ``p`` of ``case`` (a float32 copy; severity 0 returns
    the input values unchanged). Deterministic for (``cfg.seed``, ``case``, kind)."""
    image = np.asarray(image)
    if image.ndim != 4 or image.shape[0] != len(modalities):
        raise ValueError(f"expected a (C, X, Y, Z) stack of {len(modalities)} sequences, got shape {image.shape}")
    if p.severity == 0 or p.kind == CLEAN:
        return image.astype(np.float32, copy=True)
    if p.kind == MISSING:
        return missing_sequence(image, modalities, str(p.level), cfg.missing_fill)
    brain, seed, level = _brain(image), case_seed(cfg.seed, case, p.kind), float(p.level)
    if p.kind == "noise":
        return rician_noise(image, brain, level, seed)
    if p.kind == "bias":
        return bias_field(image, brain, level, cfg.bias_degree, seed)
    if p.kind == "gibbs":
        return gibbs_ringing(image, brain, level)
    if p.kind == "spike":
        return kspace_spikes(image, brain, level, seed)
    if p.kind == "ghosting":
        return ghosting(image, brain, level, cfg.ghosts, cfg.ghost_restore, seed)
    if p.kind == "motion":
        return motion(image, brain, level, cfg.motion_transforms, affine, seed)
    raise ValueError(f"unknown perturbation kind {p.kind!r}")
