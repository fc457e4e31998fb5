"""Tiny prepared data, params and stage command lines shared by the training tests."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import yaml

from agvq.io.prepared import write_prepared
from agvq.config import deep_merge

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "runtime": {"device": "cpu", "threads": 1},
    "vqvae": {"model": {"channels": [4, 8], "latent_dim": 4, "num_embeddings": 8},
              "quantizer": {"kmeans_iters": 2, "dead_code_threshold": 16.0},  # random re-seeding every epoch
              "train": {"epochs": 6, "batch_size": 4, "patches_per_epoch": 8, "patch_size": [16, 16, 16]}},
    "cond": {"model": {"backbone": {"channels": [4, 8, 8], "dim": 8, "depth": 2, "heads": 2, "soft_mask_blocks": [1],
                                    "pos_grid": [1, 1, 1]}},
             "train": {"epochs": 2, "batch_size": 4, "patches_per_epoch": 8, "patch_size": [16, 16, 16]}},
}


def make_prepared(root: Path, n: int = 6, size: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """``n`` prepared cases (4 channels, size^3, nested ellipsoid masks) and a splits file (4 train, 1 val, 1 test)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"))
    ids = []
    for i in range(n):
        c, r = rng.uniform(10, size - 10, 3), rng.uniform(4, 8, 3)
        d = (((grid - c[:, None, None, None]) / r[:, None, None, None]) ** 2).sum(0)
        masks = np.stack([d <= 1, d <= 0.5, (d <= 0.5) & (d > 0.2)]).astype(np.uint8)
        image = rng.normal(0, 1, (4, size, size, size)).astype(np.float32) + 2 * masks[:1] + masks[1:2]
        case = f"case{i:02d}"
        ids.append(case)
        props = {"case": case, "naming": "brats2021", "convention": "brats2021",
                 "modalities": ["flair", "t1", "t1ce", "t2"], "original_shape": [size] * 3,
                 "affine": np.eye(4).tolist(), "spacing": [1.0, 1.0, 1.0], "crop_start": [0, 0, 0],
                 "crop_stop": [size] * 3, "has_labels": True, "files": {}}
        write_prepared(root / "prepared", {"image": image, "brain": np.ones((size,) * 3, bool), "masks": masks}, props,
                       compress_level=1)
    splits = root / "splits.json"
    splits.write_text(json.dumps({"seed": 0, "train": ids[:4], "val": ids[4:5], "test": ids[5:]}))
    return root / "prepared", splits


def write_params(path: Path, override: dict | None = None) -> Path:
    params = deep_merge(deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY), override or {})
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def vqvae_argv(root: Path, data: Path, name: str) -> list[str]:
    return ["--params", str(root / "params.yaml"), "--region", "WT", "--prepared", str(data / "prepared"),
            "--splits", str(data / "splits.json"), "--out", str(root / name / "model.pt"),
            "--metrics", str(root / name / "metrics.json"), "--curve", str(root / name / "curve.csv"),
            "--run-dir", str(root / "runs" / name)]


def cond_argv(root: Path, data: Path, vqvae: Path, name: str) -> list[str]:
    return ["--params", str(root / "params.yaml"), "--variant", "agvqvae", "--region", "WT", "--seed", "0",
            "--vqvae", str(vqvae),
            "--prepared", str(data / "prepared"), "--splits", str(data / "splits.json"),
            "--out", str(root / name / "model.pt"), "--metrics", str(root / name / "metrics.json"),
            "--curve", str(root / name / "curve.csv"), "--run-dir", str(root / "runs" / name)]


def run_stage_inprocess(script: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")


