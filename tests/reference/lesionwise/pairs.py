"""Hand-built (prediction, truth) label-map pairs for the lesion-wise cross-check with the official BraTS package.

Pure numpy, so the same file builds the pairs in the project's environment (tests/test_lesionwise.py) and in the
separate environment of the official package (make_reference.py). Labels follow BraTS 2023 (NCR 1, ED 2, ET 3),
which is what the package's glioma config expects. ``digest`` fingerprints each pair, so the test notices when a
pair changes without the reference values being regenerated.
"""
from __future__ import annotations

import hashlib

import numpy as np

SHAPE = (48, 44, 36)
NCR, ED, ET = 1, 2, 3


def _ball(shape, center, radius, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    grid = np.indices(shape).astype(np.float64)
    d2 = sum(((grid[i] - center[i]) * spacing[i]) ** 2 for i in range(3))
    return d2 <= radius ** 2


def _box(shape, start, stop) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[tuple(slice(a, b) for a, b in zip(start, stop))] = True
    return out


def tumour(shape, center, radius) -> np.ndarray:
    """A BraTS-like lesion: oedema shell around an enhancing rim around a necrotic core."""
    seg = np.zeros(shape, np.uint8)
    seg[_ball(shape, center, radius)] = ED
    seg[_ball(shape, center, 0.65 * radius)] = ET
    seg[_ball(shape, center, 0.35 * radius)] = NCR
    return seg


def _paste(seg: np.ndarray, other: np.ndarray) -> np.ndarray:
    out = seg.copy()
    out[other > 0] = other[other > 0]
    return out


def build_pairs() -> dict[str, dict]:
    """name -> {"pred", "truth" (uint8 label maps of SHAPE), "spacing" (mm per array axis), "note"}."""
    s = SHAPE
    iso = (1.0, 1.0, 1.0)
    pairs: dict[str, dict] = {}

    truth = tumour(s, (20, 20, 16), 8)
    pred = tumour(s, (21, 19, 17), 7.5)
    pairs["single_lesion"] = {"pred": pred, "truth": truth, "spacing": iso,
                              "note": "one tumour, prediction shifted by a voxel and a little smaller"}

    truth = _paste(_paste(tumour(s, (12, 12, 10), 6), tumour(s, (34, 30, 24), 7)), tumour(s, (36, 10, 26), 4))
    pred = _paste(_paste(tumour(s, (13, 12, 11), 6), tumour(s, (33, 31, 24), 6)), tumour(s, (37, 11, 27), 3))
    pairs["multiple_lesions"] = {"pred": pred, "truth": truth, "spacing": iso,
                                 "note": "three tumours, each found with a different overlap"}

    truth = _paste(tumour(s, (14, 14, 12), 7), tumour(s, (34, 30, 24), 5))
    pred = tumour(s, (15, 13, 12), 7)
    pairs["missed_lesion"] = {"pred": pred, "truth": truth, "spacing": iso,
                              "note": "two tumours, the smaller one missed"}

    truth = tumour(s, (16, 16, 14), 7)
    pred = tumour(s, (16, 17, 14), 7)
    pred[_ball(s, (38, 34, 28), 3)] = ED
    pred[_ball(s, (40, 8, 6), 2)] = ET  # a spurious enhancing blob far away (WT, TC and ET)
    pairs["spurious_lesion"] = {"pred": pred, "truth": truth, "spacing": iso,
                                "note": "one tumour plus two far false-positive blobs"}

    truth = tumour(s, (20, 22, 18), 7)
    pairs["empty_prediction"] = {"pred": np.zeros(s, np.uint8), "truth": truth, "spacing": iso,
                                 "note": "nothing predicted"}

    pred = tumour(s, (20, 22, 18), 5)
    pairs["empty_truth"] = {"pred": pred, "truth": np.zeros(s, np.uint8), "spacing": iso,
                            "note": "no tumour, one predicted"}

    pairs["both_empty"] = {"pred": np.zeros(s, np.uint8), "truth": np.zeros(s, np.uint8), "spacing": iso,
                           "note": "no tumour, none predicted"}

    truth = np.zeros(s, np.uint8)
    truth[_ball(s, (20, 20, 16), 5)] = ED
    pred = np.zeros(s, np.uint8)
    pred[_box(s, (27, 17, 13), (31, 24, 20))] = ED  # 2 voxels from the lesion: touches it only after dilation
    pairs["near_miss"] = {"pred": pred, "truth": truth, "spacing": iso,
                          "note": "a predicted blob 2 voxels beside the true lesion, never overlapping it"}

    truth = tumour(s, (22, 22, 18), 8)
    pred = truth.copy()
    pred[21:24] = 0  # a cut through the middle splits the prediction into two components
    pairs["split_prediction"] = {"pred": pred, "truth": truth, "spacing": iso,
                                 "note": "one tumour predicted as two components (a slab missing)"}

    truth = _paste(tumour(s, (14, 20, 16), 5), tumour(s, (30, 20, 16), 5))
    pred = np.zeros(s, np.uint8)
    pred[_box(s, (10, 16, 12), (35, 25, 21))] = ED
    pred[_ball(s, (14, 20, 16), 3)] = ET
    pred[_ball(s, (30, 20, 16), 3)] = ET
    pairs["merged_prediction"] = {"pred": pred, "truth": truth, "spacing": iso,
                                  "note": "two tumours joined by one predicted oedema slab"}

    truth = tumour(s, (24, 20, 18), 6)
    truth[truth == ET] = NCR  # no enhancing tumour in truth
    pred = tumour(s, (24, 20, 18), 6)
    pairs["et_only_predicted"] = {"pred": pred, "truth": truth, "spacing": iso,
                                  "note": "enhancing rim predicted where the truth has none"}

    truth = _paste(tumour(s, (12, 12, 10), 6), tumour(s, (34, 30, 24), 7))
    pred = _paste(tumour(s, (13, 12, 11), 6), tumour(s, (33, 31, 22), 6))
    pairs["anisotropic"] = {"pred": pred, "truth": truth, "spacing": (0.9, 1.2, 2.5),
                            "note": "two tumours on an anisotropic grid (the package's axis order shows)"}

    for pair in pairs.values():
        pair["pred"] = np.ascontiguousarray(pair["pred"], dtype=np.uint8)
        pair["truth"] = np.ascontiguousarray(pair["truth"], dtype=np.uint8)
    return pairs


def digest(pair: dict) -> str:
    """SHA-256 of a pair's arrays and spacing (what the reference values were computed on)."""
    h = hashlib.sha256()
    for key in ("pred", "truth"):
        arr = np.ascontiguousarray(pair[key], dtype=np.uint8)
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    h.update(repr(tuple(float(x) for x in pair["spacing"])).encode())
    return h.hexdigest()
