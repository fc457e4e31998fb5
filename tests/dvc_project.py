"""Copy the project into a temporary git repository with tiny params and run DVC commands there."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from agvq.config.schema import deep_merge

ROOT = Path(__file__).resolve().parents[1]
COPY = ["agvq", "stages", "references", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config"]

TINY = {
    "synthesize": {"count": 8, "shape": [48, 48, 32]},
    "preprocess": {"workers": 1, "split": {"val_fraction": 0.25, "test_fraction": 0.25}},
    "vqvae": {"model": {"channels": [8, 16], "latent_dim": 8, "num_embeddings": 16},
              "train": {"epochs": 2, "patches_per_epoch": 8, "batch_size": 4, "patch_size": [16, 16, 16]}},
    "seeds": [0],
    "cond": {"model": {"backbone": {"channels": [8, 16, 16], "dim": 16, "depth": 2, "heads": 2,
                                    "soft_mask_blocks": [1], "pos_grid": [1, 1, 1]},
                       "unet": {"channels": [8, 16, 32], "strides": [2, 2]},
                       "unetr": {"feature_size": 4, "hidden_size": 16, "mlp_dim": 32, "num_heads": 2},
                       "swinunetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1],
                                     "window_size": 2},
                       "segresnet": {"init_filters": 4, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]}},
             "train": {"epochs": 1, "patches_per_epoch": 8, "batch_size": 4, "patch_size": [16, 16, 16]}},
    "evaluate": {"workers": 1, "figure_cases": 1},
    "robustness": {"cases": 1, "perturbations": ["noise", "missing"], "bootstrap": 200},
    "attention_study": {"bootstrap": 200},
    "tokenizer": {"model": {"channels": [4, 8], "latent_dim": 4, "num_embeddings": 16, "sequence_embedding": 4,
                            "groups": 2},
                  "train": {"epochs": 2, "batch_size": 4, "samples_per_epoch": 8, "patch_size": [32, 32],
                            "val_every": 1, "val_slices": 2, "figure_epochs": [1, 2]},
                  "evaluate": {"bootstrap": 50, "figure_slices": 1}},
}
TINY_VARIANTS = ["agvqvae", "agvqvae_no_as", "agunet", "agunet_no_sm", "unet", "segresnet"]
"""The paper variants the tiny project keeps: every kind (two-stage, joint AG-UNet, joint MONAI baselines) and a
switch of each, at a third of the default project's stages."""
TINY_STUDY = ["unet_cbam", "unet_gate", "agvqvae_cbam"]
"""The attention study variants the tiny project keeps (a deep merge cannot remove keys, so they are filtered)."""


def _keep_variants(values: dict, keep) -> dict:
    values["variants"] = {k: v for k, v in values["variants"].items() if k in keep}
    for key in ("single_stage_variants", "two_stage_variants", "joint_variants"):
        values[key] = [v for v in values.get(key, []) if v in keep]
    for key in ("comparison", "ablation"):
        values["ablate"][key] = [v for v in values["ablate"][key] if v in keep]
    return values


def _keep_study(values: dict, keep) -> dict:
    study = values["attention_study"]
    study["variants"] = {k: v for k, v in study["variants"].items() if k in keep}
    for key in ("single_stage_variants", "two_stage_variants", "joint_variants"):
        study[key] = [v for v in study.get(key, []) if v in keep]
    return values


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")
    e.update(GIT_AUTHOR_NAME="agvq-tests", GIT_AUTHOR_EMAIL="tests@example.org",
             GIT_COMMITTER_NAME="agvq-tests", GIT_COMMITTER_EMAIL="tests@example.org",
             OMP_NUM_THREADS="1", DVC_NO_ANALYTICS="1")
    return e


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=cwd, env=env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(cwd, sys.executable, "-m", "dvc", *args, check=check)


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run(cwd, "git", *args)


def make_project(dest: Path, params: dict | None = None) -> Path:
    """A git repository at ``dest`` holding the project with TINY params (plus ``params``), committed."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in COPY:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    values = _keep_variants(_keep_study(deep_merge(values, TINY), TINY_STUDY), TINY_VARIANTS)
    values = deep_merge(values, params or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "tiny project")
    return dest


def stages_ran(proc: subprocess.CompletedProcess) -> set[str]:
    """Names of the stages DVC ran, from its "Running stage 'x':" lines."""
    out = proc.stdout + proc.stderr
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}
