"""Everything a training stage does around the loop: splits, case stores, preflight checks, the fingerprint that
guards resuming, and the atomic writing of model file, contract, metrics and curves."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from agvq.config import TrainConfig
from agvq.data.dataset import CaseStore
from agvq.errors import ConfigError
from agvq.io.atomic import ensure_writable, write_json
from agvq.io.model_file import model_file, save_atomic
from agvq.io.splits import read_splits
from agvq.training.loop import fit, finish_run
from agvq.training.runtime import Runtime
from agvq.training.validation import ValidationProtocol

log = logging.getLogger(__name__)


@dataclass
class TrainingPaths:
    prepared: Path
    splits: Path
    model: Path  # the model file (.pt); its contract is written beside it as .json
    metrics: Path
    curve: Path
    run_dir: Path

    @classmethod
    def from_args(cls, args) -> "TrainingPaths":
        return cls(Path(args.prepared), Path(args.splits), Path(args.out), Path(args.metrics), Path(args.curve),
                   Path(args.run_dir))


def prepared_modalities(prepared: str | Path) -> list[str]:
    """Modalities (in channel order) of the prepared cases, read from the first case's properties."""
    props = sorted(p for p in Path(prepared).glob("*.json") if not p.name.startswith("."))  # not the manifest
    if not props:
        raise ConfigError(f"no prepared cases in {prepared} (run the preprocess stage first)")
    return list(json.loads(props[0].read_text())["modalities"])


RUNTIME_KEYS_OUTSIDE_IDENTITY = ("launcher", "threads")
"""Runtime params that do not define a run: a pre-empted run may resume with another launcher or thread count."""


def fingerprint(paths: TrainingPaths, identity: dict, extra_files=()) -> str:
    """Hash of what defines a run: its params, the split, the prepared files and any input checkpoints."""
    identity = dict(identity)
    if isinstance(identity.get("runtime"), dict):
        identity["runtime"] = {k: v for k, v in identity["runtime"].items() if k not in RUNTIME_KEYS_OUTSIDE_IDENTITY}
    h = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    h.update(paths.splits.read_bytes())
    for f in sorted(paths.prepared.glob("*")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    for f in extra_files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def train_and_save(task, kind: str, region: str | tuple[str, ...], cfg: TrainConfig, protocol: ValidationProtocol, rt: Runtime,
                   paths: TrainingPaths, seed: int, identity: dict, contract: dict, desc: str, extra_files=(),
                   extra: dict | None = None):
    """Train ``task`` on the train split, pick the best epoch on val (by ``protocol``, the infer + evaluate
    protocol), and write model, contract, metrics, curve."""
    if rt.is_main:
        ensure_writable([paths.model, paths.metrics, paths.curve, paths.run_dir / "last.pt"])
    splits = read_splits(paths.splits, need=("train", "val"))
    train = CaseStore(paths.prepared, splits["train"], region, cache=cfg.cache)
    val = CaseStore(paths.prepared, splits["val"], region, cache=cfg.cache)
    fp = fingerprint(paths, identity, extra_files)
    result = fit(task, train, val, cfg, protocol, rt, paths.run_dir, paths.curve if rt.is_main else None, seed, fp,
                 desc)
    if rt.is_main:
        task.model.load_state_dict(result.best_state)
        metrics = {
            "best_epoch": result.best_epoch,
            **{k: v for k, v in result.best_metrics.items() if k != "epoch"},
            "train_cases": len(train), "val_cases": len(val),
        }
        # Wall time goes in the contract, not the metrics: metrics stay bit-identical across identical runs.
        contract = {"kind": kind, "region": region if isinstance(region, str) else None, "in_channels": train.in_channels,
                    "modalities": prepared_modalities(paths.prepared), "train_seconds": round(result.seconds, 2),
                    "patch_size": list(cfg.patch_size),
                    "parameters": sum(p.numel() for p in task.model.parameters() if p.requires_grad), **contract}
        save_atomic(model_file(kind, task.model.cpu(), contract, metrics, extra), paths.model)
        write_json(paths.model.with_suffix(".json"), contract)
        write_json(paths.metrics, metrics)
        log.info("%s: best epoch %d, %s", desc, result.best_epoch,
                 ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    rt.barrier()
    finish_run(paths.run_dir, rt)
    return result
