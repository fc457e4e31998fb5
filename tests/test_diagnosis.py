"""Diagnosis of the two-stage model: latent position classes, code accuracy by position, false-positive
locations, and the stage on tiny trained models."""
from __future__ import annotations

import numpy as np
import pytest

from agvq.diagnosis.report import diagnosis_markdown
from agvq.diagnosis.two_stage import block_positions, false_positive_locations


def test_block_positions_background_boundary_interior():
    mask = np.zeros((8, 8, 4), bool)
    mask[:4, :4, :4] = True  # one full block
    mask[4, 4, 0] = True  # one voxel of another block
    pos = block_positions(mask, 4)
    assert pos.shape == (2, 2, 1)
    assert pos[0, 0, 0] == 2 and pos[1, 1, 0] == 1 and pos[0, 1, 0] == 0 and pos[1, 0, 0] == 0


def test_false_positive_locations_shares_and_distance():
    truth = np.zeros((3, 20, 20, 20), bool)
    truth[0, 2:18, 2:18, 2:18] = True  # WT
    truth[1, 6:14, 6:14, 6:14] = True  # TC
    truth[2, 6:14, 6:14, 6:8] = True  # ET: a slab of the core
    pred = truth[2].copy()
    pred[6:14, 6:14, 8:10] = True  # 128 false positives inside the core (necrosis)
    pred[2:4, 2:4, 2:4] = True  # 8 in the oedema
    pred[0, 0, 0] = True  # 1 outside the whole tumour
    loc = false_positive_locations(pred, truth, "ET", (1.0, 1.0, 1.0))
    assert loc["false_positive_voxels"] == 137
    assert loc["in_TC"] == pytest.approx(128 / 137) and loc["in_WT"] == pytest.approx(8 / 137)
    assert loc["outside_WT"] == pytest.approx(1 / 137)
    assert loc["median_distance_mm"] == pytest.approx(2.0)  # 64 voxels at 1 mm, 64 at 2 mm, 9 farther
    none = false_positive_locations(truth[2], truth, "ET", (1.0, 1.0, 1.0))
    assert none["false_positive_voxels"] == 0 and none["in_TC"] is None


def test_markdown_report_lists_every_region():
    acc = {p: {"positions": 10, "accuracy": 0.5, "wrong_but_same_block": 0.2} for p in
           ("background", "boundary", "interior")}
    fp = {"false_positive_voxels": 5, "in_TC": 0.6, "in_WT": 0.4, "outside_WT": 0.0,
          "median_of_case_median_distance_mm": 1.5, "cases_predicting_more_than_truth": 2, "cases": 3}
    report = {"cases": 3, "regions": {r: {"reconstruction_ceiling": {"dice": 0.95, "hd95": 1.0, "used_codes": 30,
                                                                       "num_embeddings": 64},
                                          "code_accuracy": acc, "false_positives": fp,
                                          "false_positives_single_stage": fp} for r in ("WT", "TC", "ET")}}
    md = diagnosis_markdown(report, "agvqvae", "agunet")
    assert md.count("| ET | `agvqvae` |") == 1 and md.count("| ET | `agunet` |") == 1
    assert "| WT | 0.950 | 1.00 | 30/64 | 50.0% | 50.0% | 50.0% | 10 | 20.0% |" in md
