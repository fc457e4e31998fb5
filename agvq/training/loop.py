"""The one training loop every model uses: seeded patches, device/AMP/DDP, validation on whole cropped volumes,
best + last checkpoints, resume after a crash, per-epoch curves and a progress bar.

Resume state lives in ``run_dir`` (untracked by DVC, which deletes declared outputs before a stage runs); it is
only reused when its fingerprint (the params that define the run) matches, and removed once the run finishes.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from agvq.data.dataset import CaseStore, PatchDataset
from agvq.errors import ConfigError, TrainingError
from agvq.io.atomic import atomic_path
from agvq.training import checkpoint
from agvq.training.config import METRIC_DIRECTIONS, TrainConfig
from agvq.training.runtime import Runtime
from agvq.training.validation import validate

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_metrics: dict
    history: list = field(default_factory=list)
    seconds: float = 0.0


def _scheduler(optimizer, cfg: TrainConfig):
    def factor(epoch: int) -> float:
        if epoch < cfg.warmup_epochs:
            return (epoch + 1) / (cfg.warmup_epochs + 1)
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span)) * 0.95 + 0.05

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _improved(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value > best if METRIC_DIRECTIONS[metric] == "max" else value < best


def _mean_across_ranks(value: torch.Tensor, rt: Runtime) -> torch.Tensor:
    value = value.detach().float().clone()
    if rt.distributed:
        dist.all_reduce(value)
        value /= rt.world_size
    return value


def write_curve(history: list[dict], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False, float_format="%.6g")


def fit(task, train_store: CaseStore, val_store: CaseStore, cfg: TrainConfig, rt: Runtime, run_dir: str | Path,
        curve_path: str | Path | None, seed: int, fingerprint: str, desc: str = "train") -> FitResult:
    """Train ``task.model`` and return the best weights by ``cfg.val_metric`` on the validation cases."""
    if cfg.batch_size % rt.world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {rt.world_size} processes")
    run_dir = Path(run_dir)
    model = task.model.to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = _scheduler(optimizer, cfg)
    scaler = rt.grad_scaler()
    history, best, best_epoch, best_state, start_epoch, elapsed = [], None, 0, None, 0, 0.0
    best_metrics: dict = {}

    resume_path = run_dir / "last.pt"
    if resume_path.is_file():
        state = checkpoint.load(resume_path, map_location=rt.device)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            history, best, best_epoch = state["history"], state["best"], state["best_epoch"]
            best_state, best_metrics, start_epoch = state["best_state"], state["best_metrics"], state["epoch"]
            elapsed = state["seconds"]
            checkpoint.set_rng_state(state["rng"])
            if rt.is_main:
                log.info("%s: resuming from %s at epoch %d/%d", desc, resume_path, start_epoch + 1, cfg.epochs)
        elif rt.is_main:
            log.warning("%s: ignoring %s (it belongs to a run with other params)", desc, resume_path)

    dataset = PatchDataset(train_store, cfg.patch_size, cfg.patches_per_epoch, cfg.foreground_fraction, seed,
                           flip=cfg.flip)
    sampler = DistributedSampler(dataset, shuffle=False, drop_last=True) if rt.distributed else None
    loader = DataLoader(dataset, batch_size=cfg.batch_size // rt.world_size, sampler=sampler, shuffle=False,
                        num_workers=cfg.num_workers, drop_last=True, pin_memory=rt.device.type == "cuda",
                        persistent_workers=False)
    ddp_model = (DistributedDataParallel(model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None,
                                         broadcast_buffers=False) if rt.distributed else model)

    epochs = tqdm(range(start_epoch, cfg.epochs), desc=desc, initial=start_epoch, total=cfg.epochs,
                  disable=not rt.is_main, dynamic_ncols=True, mininterval=2.0)
    for epoch in epochs:
        t0 = time.perf_counter()
        dataset.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        steps = 0
        for step, batch in enumerate(loader):
            batch = {k: rt.to_device(v) for k, v in batch.items()}
            with rt.autocast():
                loss, logs = task.forward_loss(ddp_model, batch)
            loss_value = _mean_across_ranks(loss, rt)
            if not torch.isfinite(loss_value):
                raise TrainingError(
                    f"{desc}: non-finite loss ({loss_value.item()}) at epoch {epoch + 1}, step {step + 1}; "
                    "lower the learning rate or use fp32"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            steps += 1
            sums["train_loss"] = sums.get("train_loss", 0.0) + float(loss_value)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        scheduler.step()
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        row.update({k: v / max(steps, 1) for k, v in sums.items()})
        last_epoch = epoch + 1 == cfg.epochs
        if rt.is_main and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
            scores = validate(task.predictor(model), val_store, task.val_input, cfg, rt)
            row.update({f"val_{k}": v for k, v in scores.items()})
            value = scores[cfg.val_metric] if cfg.val_metric != "loss" else row["train_loss"]
            if _improved(value, best, cfg.val_metric):
                best, best_epoch = value, epoch + 1
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                best_metrics = {k: v for k, v in row.items()}
        elapsed += time.perf_counter() - t0
        row["seconds"] = elapsed
        history.append(row)
        if rt.is_main:
            epochs.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k in ("train_loss", "val_dice", "val_hd95")})
            if curve_path is not None:
                write_curve(history, curve_path)
            checkpoint.save_atomic({
                "fingerprint": fingerprint, "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "history": history, "best": best, "best_epoch": best_epoch,
                "best_state": best_state, "best_metrics": best_metrics, "seconds": elapsed,
                "rng": checkpoint.rng_state(),
            }, resume_path)
        rt.barrier()
    if best_state is None:  # non-main ranks never validate
        best_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return FitResult(best_state, best_epoch, best_metrics, history, elapsed)


def finish_run(run_dir: str | Path, rt: Runtime) -> None:
    """Remove the resume state once the run's outputs are written (a later run starts fresh)."""
    if rt.is_main:
        (Path(run_dir) / "last.pt").unlink(missing_ok=True)
        try:
            Path(run_dir).rmdir()
        except OSError:
            pass
