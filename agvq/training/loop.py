"""The one training loop every model uses: seeded patches, device/AMP/DDP, validation on whole cropped volumes,
best + last checkpoints, resume after a crash, per-epoch curves and progress bars.

Resume state lives in ``run_dir`` (untracked by DVC, which deletes declared outputs before a stage runs); it is
only reused when its fingerprint (the params that define the run) matches, and removed once the run finishes.
It is written atomically at the end of every epoch and holds everything the rest of the run depends on: model
(codebook buffers included), optimiser, scheduler, grad scaler, every rank's RNG states, the epoch, the curve and
the best weights so far. Patches are a pure function of (seed, epoch, index), so a resumed run ends with the same
weights as an uninterrupted one.

A task may bring its own training samples and validation (the MRI tokenizer trains on image slices and validates
by SSIM): ``task.dataset(store, cfg, seed)`` replaces the tumour-biased PatchDataset, ``task.validate(model, store,
rt, epoch)`` replaces the segmentation protocol, and ``task.state_dict()`` / ``task.load_state_dict()`` carry
whatever else the task records (e.g. reconstructions at a few epochs) in the resume state.

Under DDP (``torchrun``) the global batch ``cfg.batch_size`` is split evenly over the ranks, gradients are averaged
by DistributedDataParallel, the quantizer all-reduces its own EMA statistics (``broadcast_buffers=False``),
validation cases are shared out over the ranks, and only rank 0 writes files.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from agvq.data.dataset import CaseStore, PatchDataset
from agvq.errors import ConfigError, TrainingError
from agvq.io.atomic import atomic_path, ensure_writable
from agvq.config import TrainConfig
from agvq.training import checkpoint
from agvq.training.runtime import Runtime
from agvq.training.validation import ValidationProtocol, validate

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 50 * 2**20
METRIC_DIRECTIONS = {"dice": "max", "hd95": "min", "ssim": "max", "psnr": "max", "synthesis_ssim": "max"}
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}


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
        cosine = 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
        return cosine * (1.0 - cfg.lr_floor) + cfg.lr_floor

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


def _gather(obj, rt: Runtime) -> list:
    """``obj`` of every rank, in rank order (a one-element list in a single process)."""
    if not rt.distributed:
        return [obj]
    out: list = [None] * rt.world_size
    dist.all_gather_object(out, obj)
    return out


def write_curve(history: list[dict], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False, float_format="%.6g")


def train_step(task, model: torch.nn.Module, batch: dict, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, rt: Runtime, grad_clip: float,
               where: str = "") -> tuple[torch.Tensor, dict]:
    """One optimisation step on a batch already on the device: autocast forward, (scaled) backward, optional
    gradient clipping, optimiser step. Returns (loss averaged over ranks, task logs).

    Raises TrainingError naming ``where`` on a non-finite loss, or on a non-finite gradient norm outside fp16
    (where the grad scaler skips such steps by design), so a diverged run stops instead of saving a NaN model.
    """
    with rt.autocast():
        loss, logs = task.forward_loss(model, batch)
    loss_value = _mean_across_ranks(loss, rt)
    if not torch.isfinite(loss_value):
        raise TrainingError(f"non-finite loss ({loss_value.item()}) in {where}; lower the learning rate, "
                            "check the inputs, or use precision fp32")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        if not scaler.is_enabled() and not torch.isfinite(norm):
            raise TrainingError(f"non-finite gradient norm ({norm.item()}) in {where}; lower the learning rate, "
                                "check the inputs, or use precision fp32")
    scaler.step(optimizer)
    scaler.update()
    return loss_value, logs


class _Subset:
    """The cases ``indices`` of a CaseStore (validation is shared out over the ranks one case at a time)."""

    def __init__(self, store: CaseStore, indices: list[int]):
        self.store, self.indices = store, list(indices)
        self.region = store.region

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.store[self.indices[i]]


def validate_sharded(predictor: torch.nn.Module, store: CaseStore, val_input, protocol: ValidationProtocol,
                     rt: Runtime) -> dict:
    """Per-case validation spread over the ranks (case i on rank i % world), averaged in case order, so every rank
    gets the numbers a single process computes."""
    mine = [(i, validate(predictor, _Subset(store, [i]), val_input, protocol, rt))
            for i in range(rt.rank, len(store), rt.world_size)]
    cases = sorted((c for part in _gather(mine, rt) for c in part), key=lambda c: c[0])
    keys = list(cases[0][1]) if cases else []
    return {k: float(np.mean([scores[k] for _, scores in cases])) for k in keys}


def state_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, bit for bit (to check that DDP replicas agree)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_replicas(model: torch.nn.Module, rt: Runtime, desc: str) -> None:
    digests = _gather(state_digest(model), rt)
    if len(set(digests)) > 1:
        raise TrainingError(f"{desc}: the {rt.world_size} DDP processes ended with different weights "
                            "(their codebooks or parameters drifted apart); the run cannot be trusted")


def _batch_norms(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(m, torch.nn.SyncBatchNorm)]


def _prepare_batch_norm(model: torch.nn.Module, rt: Runtime, desc: str) -> torch.nn.Module:
    """Under DDP, batch norm must see the global batch: SyncBatchNorm on GPUs; on CPU (where PyTorch has no
    SyncBatchNorm) statistics stay per process and the running averages are averaged over ranks every epoch."""
    if not rt.distributed or not _batch_norms(model):
        return model
    if rt.device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if rt.is_main:
        log.warning("%s: batch norm under DDP on CPU uses per-process batch statistics (no SyncBatchNorm on CPU); "
                    "running averages are averaged over the processes after every epoch", desc)
    return model


def _average_batch_norm_stats(model: torch.nn.Module, rt: Runtime) -> None:
    for m in _batch_norms(model) if rt.distributed else []:
        for buf in (m.running_mean, m.running_var):
            if buf is not None:
                dist.all_reduce(buf)
                buf /= rt.world_size


def _preflight(model: torch.nn.Module, run_dir: Path, rt: Runtime) -> None:
    """Before any training: the resume folder must be writable with room for two resume states (the old one stays
    until the new one is complete) plus the model file; also clears temp files a killed run left behind."""
    if not rt.is_main:
        return
    state = checkpoint.state_nbytes(model.state_dict())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    resume = 2 * state + 2 * trainable  # model + best copy + the two AdamW moments
    ensure_writable([run_dir / "last.pt"], min_free_bytes=max(MIN_FREE_BYTES, 2 * resume + state))
    for stale in run_dir.glob(".last.pt.*.tmp*"):
        stale.unlink(missing_ok=True)


def _load_resume(path: Path, fingerprint: str, rt: Runtime, desc: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = checkpoint.load(path, map_location=rt.device)
    except ConfigError as exc:
        if rt.is_main:
            log.warning("%s: ignoring an unreadable resume state (%s); starting afresh", desc, exc)
        return None
    if state.get("fingerprint") != fingerprint:
        if rt.is_main:
            log.warning("%s: ignoring %s (it belongs to a run with other params or data); starting afresh",
                        desc, path)
        return None
    return state


def _restore_rng(saved, rt: Runtime, desc: str) -> None:
    states = saved if isinstance(saved, list) else [saved]
    if len(states) != rt.world_size and rt.is_main:
        log.warning("%s: the run was saved with %d process(es) and resumes with %d; data order and weights "
                    "carry over, random draws outside the data pipeline do not", desc, len(states), rt.world_size)
    checkpoint.set_rng_state(states[rt.rank] if len(states) == rt.world_size else states[0])


def fit(task, train_store: CaseStore, val_store: CaseStore, cfg: TrainConfig, protocol: ValidationProtocol,
        rt: Runtime, run_dir: str | Path, curve_path: str | Path | None, seed: int, fingerprint: str,
        desc: str) -> FitResult:
    """Train ``task.model`` and return the best weights by ``cfg.val_metric`` on the validation cases, predicted
    and scored by ``protocol`` (the one infer + evaluate apply).

    On every rank ``best_state`` is the best epoch's weights (CPU tensors); ``run_dir/last.pt`` is the resume state.
    """
    if cfg.batch_size % rt.world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} (the global batch) is not divisible by the "
                          f"{rt.world_size} processes")
    run_dir = Path(run_dir)
    model = task.model.to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    model = _prepare_batch_norm(model, rt, desc)
    _preflight(model, run_dir, rt)
    params = [p for p in model.parameters() if p.requires_grad]
    # the fused kernel updates all parameters in one pass (CPU and CUDA): ~10% of a small model's step on CPU
    optimizer = OPTIMIZERS[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    scheduler = _scheduler(optimizer, cfg)
    scaler = rt.grad_scaler()
    history, best, best_epoch, best_state, start_epoch, elapsed = [], None, 0, None, 0, 0.0
    best_metrics: dict = {}

    resume_path = run_dir / "last.pt"
    state = _load_resume(resume_path, fingerprint, rt, desc)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, best, best_epoch = state["history"], state["best"], state["best_epoch"]
        best_state, best_metrics, start_epoch = state["best_state"], state["best_metrics"], state["epoch"]
        elapsed = state["seconds"]
        _restore_rng(state["rng"], rt, desc)
        if state.get("task_state") is not None and hasattr(task, "load_state_dict"):
            task.load_state_dict(state["task_state"])
        if rt.is_main:
            log.info("%s: resuming from %s at epoch %d/%d", desc, resume_path, start_epoch + 1, cfg.epochs)
        del state

    if hasattr(task, "dataset"):
        dataset = task.dataset(train_store, cfg, seed)
    else:
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
        # a manual bar: wrapping the DataLoader in tqdm would draw from torch's generator and change the run
        bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}", leave=False, dynamic_ncols=True,
                   disable=not rt.is_main, mininterval=2.0)
        for step, batch in enumerate(loader):
            bar.update()
            batch = {k: rt.to_device(v) for k, v in batch.items()}
            where = (f"{desc}, epoch {epoch + 1}/{cfg.epochs}, step {step + 1}/{len(loader)} "
                     f"(global step {epoch * len(loader) + step + 1})")
            loss_value, logs = train_step(task, ddp_model, batch, optimizer, scaler, rt, cfg.grad_clip, where)
            steps += 1
            sums["train_loss"] = sums.get("train_loss", 0.0) + float(loss_value)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        bar.close()
        _average_batch_norm_stats(model, rt)
        scheduler.step()
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        row.update({k: v / max(steps, 1) for k, v in sums.items()})
        if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
            if hasattr(task, "validate"):
                scores = task.validate(model, val_store, rt, epoch + 1)
            else:
                scores = validate_sharded(task.predictor(model), val_store, task.val_input, protocol, rt)
            row.update({f"val_{k}": v for k, v in scores.items()})
            value = scores[cfg.val_metric]
            if _improved(value, best, cfg.val_metric):
                best, best_epoch = value, epoch + 1
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                best_metrics = dict(row)
        elapsed += time.perf_counter() - t0
        row["seconds"] = elapsed
        history.append(row)
        rng = _gather(checkpoint.rng_state(), rt)  # every rank's generators, restored rank by rank
        if rt.is_main:
            epochs.set_postfix({k: f"{v:.3g}" for k, v in row.items()
                                if k in ("train_loss", "val_dice", "val_hd95", "val_ssim")})
            if curve_path is not None:
                write_curve(history, curve_path)
            checkpoint.save_atomic({
                "fingerprint": fingerprint, "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "history": history, "best": best, "best_epoch": best_epoch,
                "best_state": best_state, "best_metrics": best_metrics, "seconds": elapsed, "rng": rng,
                "world_size": rt.world_size,
                "task_state": task.state_dict() if hasattr(task, "state_dict") else None,
            }, resume_path)
        rt.barrier()
    if rt.distributed:
        _check_replicas(model, rt, desc)
    if best_state is None:  # no validation ran (resumed after the last epoch had been saved, with no best)
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
