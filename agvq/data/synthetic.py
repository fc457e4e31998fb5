"""Synthetic BraTS-like phantoms: the embedded default dataset.

``make_phantom`` builds one skull-stripped, multi-modal head from smooth random fields: a deformed ellipsoidal
brain with folded cortex (grey matter around sulcal CSF sheets), white matter, deep grey nuclei, lateral ventricles,
enhancing vessels, and a tumour made of a necrotic core (label 1), an enhancing rim of varying thickness (label 4) and
surrounding oedema (label 2) that spreads preferentially through white matter. Intensities follow MRI contrasts and
are degraded by partial-volume blur, a multiplicative bias field, per-case scaling and Rician noise.
``write_dataset`` writes N such cases in a BraTS 2021 or 2023 layout, atomically and reproducibly.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from agvq.errors import ConfigError
from agvq.io.naming import MODALITIES, NAMINGS, get_naming
from agvq.io.nifti import write_volume
from agvq.io.outputs import atomic_dir
from agvq.processes import worker_pool
from agvq.regions import REGIONS, get_convention, labels_to_regions, regions_to_labels

# Mean intensity of each tissue relative to white matter on T1, per modality in MODALITIES order (t1, t1ce, t2, flair).
TISSUES: dict[str, tuple[float, float, float, float]] = {
    "wm": (1.00, 1.00, 0.55, 0.70),
    "gm": (0.72, 0.76, 0.80, 0.82),
    "deep_gm": (0.84, 0.86, 0.68, 0.80),
    "csf": (0.30, 0.32, 1.90, 0.22),
    "vessel": (0.78, 2.40, 0.65, 0.60),
    "wmh": (0.90, 0.92, 0.95, 1.20),  # periventricular / small white-matter hyperintensities
    "ncr": (0.42, 0.36, 1.55, 0.75),  # necrosis inside an enhancing rim
    "net": (0.62, 0.64, 1.60, 0.95),  # non-enhancing core (no enhancing tumour): T2-FLAIR mismatch
    "ed": (0.74, 0.78, 1.30, 1.50),
    "et": (0.82, 2.00, 1.05, 1.20),
}
_T = {name: i for i, name in enumerate(TISSUES)}
_BRATS2021 = get_convention("brats2021")
SEG_NCR, SEG_ED, SEG_ET = _BRATS2021.ncr, _BRATS2021.ed, _BRATS2021.et  # make_phantom labels (agvq.regions)


@functools.lru_cache(maxsize=64)
def _zoom_matrix(n: int, size: int) -> np.ndarray:
    """(size, n) matrix equal to scipy's cubic-spline ``zoom`` of each unit vector (grid mode, mirror edges)."""
    eye = np.eye(n)
    cols = [ndi.zoom(eye[j], size / n, order=3, mode="grid-mirror", grid_mode=True) for j in range(n)]
    return np.stack(cols, axis=1).astype(np.float32)


def upsample(coarse: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Cubic-spline zoom of a small 3D grid to ``shape``; equals ``scipy.ndimage.zoom(order=3, grid_mode=True,
    mode='grid-mirror')`` but runs as three small matrix products (the spline zoom is separable)."""
    wx, wy, wz = (_zoom_matrix(n, s) for n, s in zip(coarse.shape, shape))
    out = np.tensordot(coarse.astype(np.float32), wz, axes=([2], [1]))  # (nx, ny, Z)
    out = np.tensordot(wy, out, axes=([1], [1]))  # (Y, nx, Z)
    return np.ascontiguousarray(np.tensordot(wx, out, axes=([1], [1])))  # (X, Y, Z)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], nodes) -> np.ndarray:
    """Zero-mean, roughly unit-variance smooth random field: Gaussian-filtered noise on a ``nodes`` grid, upsampled."""
    nodes = tuple(max(2, int(n)) for n in np.broadcast_to(nodes, (3,)))
    coarse = ndi.gaussian_filter(rng.standard_normal(nodes), sigma=1.0, mode="wrap")
    coarse = (coarse - coarse.mean()) / (coarse.std() + 1e-8)
    return upsample(coarse, tuple(shape))


def _brain_frame(shape, rng):
    """Brain semi-axes (voxels), the region of interest holding the brain, and normalised coordinates over it.

    In the coordinates (qx, qy, qz) (broadcastable 1D arrays) the brain is roughly the unit ball.
    """
    shape_a = np.asarray(shape, dtype=np.float64)
    semi = np.array([0.64, 0.80, 0.78]) * shape_a / 2 * rng.uniform(0.93, 1.04, 3)
    centre = shape_a / 2 - 0.5 + rng.normal(0.0, 0.01, 3) * shape_a
    lo = np.maximum(np.floor(centre - 1.2 * semi), 0).astype(int)
    hi = np.minimum(np.ceil(centre + 1.2 * semi) + 1, shape_a).astype(int)
    roi = tuple(slice(a, b) for a, b in zip(lo, hi))
    q = [((np.arange(a, b) - c) / s).astype(np.float32) for a, b, c, s in zip(lo, hi, centre, semi)]
    return roi, (q[0][:, None, None], q[1][None, :, None], q[2][None, None, :]), semi, centre - lo


def _anatomy(shape, rng, qx, qy, qz, semi):
    """Normal-tissue label map (indices into TISSUES), brain mask, normalised depth below the surface, texture."""
    # Egg-shaped: wider at the back (array y grows posteriorly), flatter underneath; gently deformed.
    flat = np.where(qz < 0, np.float32(1.15), np.float32(1.0))
    r = np.sqrt((qx / (1.0 + 0.08 * qy)) ** 2 + qy**2 + (flat * qz) ** 2)
    r = r + 0.035 * smooth_field(rng, shape, 6)
    brain = r < 1.0
    depth = 1.0 - r
    fold = smooth_field(rng, shape, np.clip(np.round(np.asarray(shape) / 3), 10, 64))
    texture = smooth_field(rng, shape, np.clip(np.asarray(shape) // 4, 6, 24))
    atrophy = rng.uniform(0.0, 1.0)

    tissue = np.full(shape, _T["wm"], dtype=np.uint8)
    mantle = depth < rng.uniform(0.22, 0.3)  # cortical mantle: gyri with grey matter around sulci
    afold = np.abs(fold)
    tissue[(depth < rng.uniform(0.05, 0.07)) | ((afold < 0.9) & mantle)] = _T["gm"]
    # Interhemispheric fissure: full depth at the front and back, down to the corpus callosum in between.
    w_mid = max(0.012, 0.5 / semi[0])
    mid = np.abs(qx)
    fissure = (qz > 0.3) | (np.abs(qy) > 0.62)
    tissue[(mid < 3 * w_mid) & fissure] = _T["gm"]
    deep = np.sqrt(((mid - 0.20) / 0.11) ** 2 + ((qy - 0.02) / 0.24) ** 2 + ((qz + 0.05) / 0.16) ** 2)
    tissue[deep + 0.15 * fold < 1.0] = _T["deep_gm"]
    tissue[(texture > rng.uniform(1.6, 2.4)) & (tissue == _T["wm"]) & ~mantle] = _T["wmh"]
    csf = (depth < 0.02) | ((afold < 0.10 + 0.08 * atrophy) & mantle) | ((mid < w_mid) & fissure)
    # Lateral ventricles: close to the midline at the front, diverging and widening towards the back.
    k = rng.uniform(0.8, 1.3) * (1.0 + 0.35 * atrophy)
    vent = np.sqrt(((mid - 0.065 - 0.08 * (qy + 0.4)) / (0.035 * k + 0.035 * (qy + 0.4))) ** 2
                   + ((qy + 0.03) / 0.45) ** 2 + ((qz - 0.13 + 0.35 * qy**2) / (0.10 * k)) ** 2) + 0.08 * fold
    septum = 0.5 / semi[0]
    third = (mid < 0.012 * k + septum) & (np.abs(qy) < 0.15) & (np.abs(qz + 0.05) < 0.12)
    csf |= ((vent < 1.0) & (mid > septum)) | third
    if atrophy > 0.5:  # periventricular caps
        tissue[(vent < 1.25) & (tissue == _T["wm"])] = _T["wmh"]
    tissue[csf] = _T["csf"]
    # Enhancing structures that are not tumour: choroid plexus, cortical veins, the sagittal sinus.
    tissue[(vent < 0.5) & (qy > 0.15)] = _T["vessel"]
    tissue[csf & (depth < 0.15) & (texture > rng.uniform(0.9, 1.5))] = _T["vessel"]
    tissue[(mid < w_mid) & (depth < 0.05) & (qz > 0.1)] = _T["vessel"]
    return tissue, brain, depth, texture


def _tumour_box(shape, rng, brain, depth, semi, centre, radius):
    """A tumour centre inside the brain, away from the midline, and a bounding box around it."""
    best, best_margin = None, -np.inf
    for _ in range(30):
        q = np.array([rng.choice([-1.0, 1.0]) * rng.uniform(0.12, 0.55), rng.uniform(-0.6, 0.55),
                      rng.uniform(-0.25, 0.5)])
        c = np.clip(np.round(centre + q * semi).astype(int), 0, np.asarray(shape) - 1)
        if not brain[tuple(c)]:
            continue
        margin = depth[tuple(c)] * semi.min() - radius
        if margin > best_margin:
            best, best_margin = c, margin
        if margin > 2:
            break
    half = int(math.ceil(1.8 * radius)) + 2
    lo = np.maximum(best - half, 0)
    hi = np.minimum(best + half + 1, shape)
    return best, tuple(slice(a, b) for a, b in zip(lo, hi))


def _ellipsoid(rng, rel, radius: float, spread: float) -> np.ndarray:
    """Normalised radius of a randomly rotated, randomly elongated ellipsoid over broadcastable offsets ``rel``."""
    axes = np.exp(rng.normal(0.0, spread, 3))
    axes = radius * axes / np.prod(axes) ** (1 / 3)
    rot = Rotation.random(rng=rng).as_matrix()
    total = 0.0
    for i in range(3):
        u = rel[0] * np.float32(rot[0, i]) + rel[1] * np.float32(rot[1, i]) + rel[2] * np.float32(rot[2, i])
        total = total + (u / np.float32(axes[i])) ** 2
    return np.sqrt(total)


def _tumour(shape, rng, brain, depth, tissue, semi, centre, no_et):
    """Bounding box, label map (0/1/2/4) and per-voxel intensity mixing weights of a tumour inside the box."""
    n_wt = math.exp(rng.uniform(math.log(0.03), math.log(0.15))) * int(brain.sum())
    r_wt = (3 * n_wt / (4 * math.pi)) ** (1 / 3)
    r_core = r_wt * rng.uniform(0.15, 0.55) ** (1 / 3)
    c, box = _tumour_box(shape, rng, brain, depth, semi, centre, r_wt)
    rel = [(np.arange(s.start, s.stop, dtype=np.float32) - c[i]).reshape([-1 if j == i else 1 for j in range(3)])
           for i, s in enumerate(box)]
    bshape = tuple(s.stop - s.start for s in box)
    nodes = np.clip(np.round(np.asarray(bshape) / max(0.4 * r_core, 1.0)), 3, 20)
    inner = brain[box] & (depth[box] > 0.04)

    t_core = _ellipsoid(rng, rel, r_core, 0.2) + rng.uniform(0.15, 0.4) * smooth_field(rng, bshape, nodes)
    core = (t_core < 1.0) & inner
    if not core.any():  # tiny volumes: keep at least the most central voxel
        core[np.unravel_index(np.argmin(np.where(inner, t_core, np.inf)), bshape)] = True
    # Enhancing rim: voxels within a spatially varying thickness (voxels) of the core's surface.
    rim = rng.uniform(0.15, 0.4) * r_core * (1.0 + 0.35 * smooth_field(rng, bshape, nodes))
    rim = np.clip(rim, 1.5, max(1.5, 0.6 * r_core))
    inside = ndi.distance_transform_edt(core)
    necrotic = core & (inside > rim)
    seg = np.zeros(bshape, dtype=np.uint8)
    seg[core] = SEG_NCR
    if not no_et:
        seg[core & ~necrotic] = SEG_ET
    # Oedema: a wider, more irregular blob that prefers white matter and stays out of CSF; its volume is set
    # exactly by thresholding its score at the rank that completes the whole-tumour volume.
    t_ed = 0.6 * _ellipsoid(rng, rel, r_wt, 0.3) + (0.4 * r_core / r_wt) * t_core
    t_ed += rng.uniform(0.2, 0.4) * smooth_field(rng, bshape, nodes * 1.5)
    t_ed += 0.35 * (tissue[box] == _T["gm"]) + 0.2 * (tissue[box] == _T["deep_gm"])
    allowed = inner & ~core & ~np.isin(tissue[box], [_T["csf"], _T["vessel"]])
    n_ed = int(round(n_wt)) - int(core.sum())
    scores = t_ed[allowed]
    strength = np.zeros(bshape, dtype=np.float32)
    if n_ed > 0 and scores.size:
        n_ed = min(n_ed, scores.size)
        thr = np.partition(scores, n_ed - 1)[n_ed - 1]
        ed = allowed & (t_ed <= thr)
        parts, _ = ndi.label(ed | core)  # oedema not attached to the core is dropped
        ed &= np.isin(parts, np.unique(parts[core]))
        seg[ed] = SEG_ED
        ramp = np.clip((thr - t_ed[ed]) / max(thr - float(scores.min()), 1e-3), 0.0, 1.0)
        strength[ed] = (0.12 + 0.88 * ramp**0.6) * (1.0 + 0.15 * smooth_field(rng, bshape, nodes)[ed])
    et = seg == SEG_ET
    # Patchy enhancement that fades towards the necrosis in thick rims.
    fade = np.clip(1.0 - 0.7 * (inside[et] - 1.0) / np.maximum(rim[et], 1.0), 0.3, 1.0)
    strength[et] = np.clip(0.75 + 0.3 * smooth_field(rng, bshape, nodes)[et], 0.4, 1.0) * fade
    ncr = seg == SEG_NCR
    strength[ncr] = 1.0
    texture = np.ones(bshape, dtype=np.float32)  # cystic / solid variation inside the core
    texture[ncr] = 1.0 + 0.15 * smooth_field(rng, bshape, nodes)[ncr]
    return box, seg, np.clip(strength, 0.0, 1.0), texture


def make_phantom(shape=(64, 64, 48), rng: np.random.Generator | None = None, no_et: bool = False,
                 blur: tuple[float, float] = (0.35, 0.7), noise: tuple[float, float] = (0.03, 0.06),
                 bias: tuple[float, float] = (0.08, 0.18)) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One synthetic case: ({modality: int16 image} in MODALITIES order, uint8 BraTS 2021 label map).

    ``blur`` (partial-volume Gaussian sigma, voxels), ``noise`` (Rician sigma relative to white matter) and ``bias``
    (log-amplitude of the bias field) are ranges sampled per case. Voxels outside the brain are 0, inside >= 1.
    """
    images, seg, _ = phantom_with_tissue(shape, rng, no_et, blur, noise, bias)
    return images, seg


def phantom_with_tissue(shape=(64, 64, 48), rng: np.random.Generator | None = None, no_et: bool = False,
                        blur: tuple[float, float] = (0.35, 0.7), noise: tuple[float, float] = (0.03, 0.06),
                        bias: tuple[float, float] = (0.08, 0.18)):
    """``make_phantom`` plus the normal-tissue map under the tumour: uint8 indices into ``TISSUES`` (255 outside
    the brain), for checking contrasts against named tissues."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"phantom shape must be 3 sizes of at least 16 voxels, got {shape}")
    rng = np.random.default_rng() if rng is None else rng
    roi, (qx, qy, qz), semi, centre = _brain_frame(shape, rng)
    rshape = tuple(s.stop - s.start for s in roi)
    tissue, brain, depth, texture = _anatomy(rshape, rng, qx, qy, qz, semi)
    box, tseg, strength, core_texture = _tumour(rshape, rng, brain, depth, tissue, semi, centre, no_et)
    seg = np.zeros(shape, dtype=np.uint8)
    seg[roi][box] = tseg

    values = np.array(list(TISSUES.values()), dtype=np.float32)
    values *= rng.uniform(0.93, 1.07, values.shape).astype(np.float32)  # per-case contrast jitter
    core_tissue = _T["net"] if no_et else _T["ncr"]
    idx = np.nonzero(brain)
    bias_fields = [smooth_field(rng, rshape, 4)[idx] for _ in range(2)]
    texture = 1.0 + 0.04 * texture
    sigma_blur, noise_level = rng.uniform(*blur), rng.uniform(*noise)
    images = {}
    for m, modality in enumerate(MODALITIES):
        img = values[:, m][tissue] * texture
        sub = img[box]
        for label, name in ((SEG_ED, "ed"), (SEG_ET, "et"), (SEG_NCR, None)):
            sel = tseg == label
            target = values[core_tissue if name is None else _T[name], m] * core_texture[sel]
            sub[sel] = (1.0 - strength[sel]) * sub[sel] + strength[sel] * target
        img[~brain] = 0.0
        img = ndi.gaussian_filter(img, sigma_blur, truncate=3.0)
        a, b = rng.normal(0.0, 1.0, 2)
        log_bias = np.float32(rng.uniform(*bias) / math.hypot(a, b)) * (a * bias_fields[0] + b * bias_fields[1])
        gain = np.float32(rng.uniform(500.0, 1000.0))
        v = img[idx] * np.exp(log_bias) * gain
        sd = np.float32(noise_level) * gain
        v = np.sqrt((v + sd * rng.standard_normal(v.size, dtype=np.float32)) ** 2
                    + (sd * rng.standard_normal(v.size, dtype=np.float32)) ** 2)
        out = np.zeros(shape, dtype=np.int16)
        out[roi][idx] = np.clip(np.rint(v), 1, np.iinfo(np.int16).max).astype(np.int16)
        images[modality] = out
    tissue_map = np.full(shape, 255, dtype=np.uint8)
    tissue_map[roi][idx] = tissue[idx]
    return images, seg, tissue_map


def case_ids(count: int) -> list[str]:
    """Case identifiers SYN_0000, SYN_0001, ..."""
    return [f"SYN_{i:04d}" for i in range(count)]


def brats_affine(shape) -> np.ndarray:
    """1 mm affine with the orientation of BraTS 2021 volumes: diag(-1, -1, 1), y origin at the far edge."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[1, 3] = float(shape[1] - 1)
    return affine


def _write_case(out_dir: str, case: str, shape: tuple[int, int, int], seed_seq: np.random.SeedSequence,
                no_et: bool, naming: str) -> str:
    images, seg = make_phantom(shape, np.random.default_rng(seed_seq), no_et=no_et)
    scheme = get_naming(naming)
    src, dst = get_convention("brats2021"), get_convention(scheme.convention)
    if dst != src:
        seg = regions_to_labels(dict(zip(REGIONS, labels_to_regions(seg, src))), dst)
    affine = brats_affine(shape)
    case_dir = Path(out_dir) / case
    case_dir.mkdir(parents=True, exist_ok=True)
    for modality in MODALITIES:
        write_volume(case_dir / scheme.filename(case, modality), images[modality], affine, (1.0, 1.0, 1.0))
    write_volume(case_dir / scheme.filename(case, "seg"), seg, affine, (1.0, 1.0, 1.0))
    return case


def plan_cases(count: int, seed: int, no_et_fraction: float) -> list[tuple[str, np.random.SeedSequence, bool]]:
    """(case id, its own seed sequence, no-ET flag) per case; exactly round(fraction * count) cases lack ET.

    Each case's generator comes from ``SeedSequence(seed).spawn(count)[i]``, so a case does not depend on the
    worker count; the no-ET cases are those with the smallest keys drawn from a second spawned stream per case.
    """
    children = np.random.SeedSequence(seed).spawn(count)
    streams = [child.spawn(2) for child in children]
    keys = np.array([np.random.default_rng(s[1]).random() for s in streams])
    n_no_et = int(math.floor(no_et_fraction * count + 0.5))
    no_et = np.zeros(count, dtype=bool)
    no_et[np.argsort(keys, kind="stable")[:n_no_et]] = True
    return [(case, s[0], bool(flag)) for case, s, flag in zip(case_ids(count), streams, no_et)]


def write_dataset(out_dir: str | Path, count: int, shape, seed: int, naming: str, no_et_fraction: float,
                  workers: int, progress: bool = True) -> list[str]:
    """Write ``count`` phantom cases to ``out_dir`` (replaced whole, atomically, only if this stage wrote it: see
    agvq.io.outputs); returns the case ids.

    Arguments as validated by agvq.config.SynthesizeConfig. Same arguments give byte-identical files whatever
    ``workers`` is.
    """
    if naming not in NAMINGS:
        raise ConfigError(f"synthesize.naming must be one of {sorted(NAMINGS)}, got {naming!r}")
    shape = tuple(int(s) for s in shape)
    plan = plan_cases(count, seed, no_et_fraction)
    with tqdm(total=count, desc="synthesize", unit="case", disable=not progress) as bar, \
            atomic_dir(out_dir, "synthesize") as tmp:
        if workers == 1:
            for case, ss, no_et in plan:
                _write_case(str(tmp), case, shape, ss, no_et, naming)
                bar.update()
        else:
            with worker_pool(workers) as pool:
                futures = [pool.submit(_write_case, str(tmp), case, shape, ss, no_et, naming)
                           for case, ss, no_et in plan]
                for future in futures:
                    future.result()
                    bar.update()
    return [case for case, _, _ in plan]
