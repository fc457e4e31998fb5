"""Regenerate reference.json: the official BraTS package's lesion-wise scores of the pairs in pairs.py.

The package (PyPI ``brats-evaluation``, built on ``panoptica``) pins numpy below 2.3 while the project pins 2.4, so
it runs in its own virtual environment, with the exact versions of requirements.txt beside this file:

    python3 -m venv /tmp/brats-ref && /tmp/brats-ref/bin/pip install -r tests/reference/lesionwise/requirements.txt
    /tmp/brats-ref/bin/python tests/reference/lesionwise/make_reference.py

It runs the package's own two commands on the pairs written as NIfTI files (``brats-evaluate --config gli`` then
``brats-parse-metrics seg``) and stores, per pair and region, the parsed CSV's values next to the raw panoptica ones.
tests/test_lesionwise.py compares agvq.metrics.lesionwise with them; it fails (never skips) when this file is missing
or was computed on other pairs.
"""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pairs import build_pairs, digest  # noqa: E402

REGIONS = {"WT": "wt", "TC": "tc", "ET": "et"}
PARSED = ("lesionwise_dsc_mean", "lesionwise_hd95_mean", "all_instance_tp", "all_instance_fp", "all_instance_fn",
          "global_dsc", "global_hd95")
RAW = ("sq_dsc", "sq_hd95", "tp", "fp", "fn", "n_ref_instances", "n_pred_instances")


def _number(text):
    if text is None or text == "":
        return None
    value = float(text)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _save(path: Path, data: np.ndarray, spacing) -> None:
    nib.save(nib.Nifti1Image(data, np.diag([*map(float, spacing), 1.0])), str(path))


def main() -> None:
    pairs = build_pairs()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="brats_ref_") as tmp:
        tmp = Path(tmp)
        (tmp / "ref").mkdir()
        (tmp / "pred").mkdir()
        names = {}
        for i, (name, pair) in enumerate(pairs.items(), start=1):
            subject = f"BraTS-GLI-{i:05d}-000"
            names[subject] = name
            _save(tmp / "ref" / f"{subject}-seg.nii.gz", pair["truth"], pair["spacing"])
            _save(tmp / "pred" / f"{subject}.nii.gz", pair["pred"], pair["spacing"])
        summary, table = tmp / "summary.json", tmp / "parsed.csv"
        subprocess.run([str(bin_dir / "brats-evaluate"), "--config", "gli", "--ref_path", str(tmp / "ref"),
                        "--pred_path", str(tmp / "pred"), "--summary_json", str(summary)], check=True)
        subprocess.run([str(bin_dir / "brats-parse-metrics"), "seg", "--json_path", str(summary),
                        "--output_csv_path", str(table)], check=True)
        raw = {m["subject_name"]: m for m in json.loads(summary.read_text())["metrics"]}
        with open(table, newline="") as fh:
            rows = {r["subject_id"]: r for r in csv.DictReader(fh)}
    out = {"package": {p: metadata.version(p) for p in ("brats-evaluation", "panoptica", "numpy")},
           "config": "gli", "labels": "brats2023", "pairs": {}}
    for subject, name in names.items():
        file = f"{subject}-seg.nii.gz"
        if "error" in raw[file]:
            raise SystemExit(f"the package failed on pair {name}: {raw[file]['error']}")
        entry = {"digest": digest(pairs[name]), "spacing": list(pairs[name]["spacing"]), "regions": {}}
        for region, key in REGIONS.items():
            parsed = {m: _number(rows[file].get(f"{m}_{key}")) for m in PARSED}
            native = {m: _number(raw[file][key].get(m)) for m in RAW}
            entry["regions"][region] = {"parsed": parsed, "panoptica": native}
        out["pairs"][name] = entry
    (HERE / "reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {HERE / 'reference.json'} ({len(names)} pairs)")


if __name__ == "__main__":
    main()
