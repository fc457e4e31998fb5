"""Names shared by the study (perturb, study) and its report: the perturbation kinds, severities and table columns.

Kept free of imports so the report stage does not depend on the inference chain.
"""
from __future__ import annotations

ARTEFACTS = ("noise", "bias", "gibbs", "spike", "ghosting", "motion")
"""Perturbation kinds with three severities (params ``robustness.levels.<kind>``)."""
MISSING = "missing"
"""One sequence absent (one level per sequence), filled by agvq.inference.missing.fill_missing."""
CLEAN = "clean"
SEVERITIES = (1, 2, 3)

COLUMNS = ("case", "perturbation", "kind", "severity", "level", "region", "dice", "hd95", "convention",
           "pred_voxels", "truth_voxels")
"""Columns of a variant's per-case table (one row per case, condition and region)."""
