"""Device, precision, seeding and (optional) distributed set-up: one code path for CPU, one GPU and torchrun.

Launched by ``torchrun --nproc_per_node=N``, the launcher's standard variables (RANK, WORLD_SIZE, LOCAL_RANK) turn
on DistributedDataParallel with NCCL on GPUs and gloo on CPU; launched by plain ``python`` it is one process.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from agvq.config import RuntimeConfig
from agvq.device import PRECISIONS, autocast, check_precision, resolve_device, set_threads
from agvq.errors import ConfigError


@dataclass
class Runtime:
    device: torch.device
    precision: str
    channels_last: bool
    rank: int
    world_size: int
    local_rank: int

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def amp_dtype(self):
        return PRECISIONS[self.precision]

    def autocast(self):
        """Autocast context for the forward pass (a no-op in fp32)."""
        return autocast(self.device, self.precision)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16 needs loss scaling; bf16 and fp32 do not (the scaler is then a pass-through)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_runtime(cfg: RuntimeConfig, seed: int) -> Runtime:
    """Build the Runtime from the ``runtime`` params section and seed every generator with ``seed``; joins the
    process group under torchrun (whose launcher variables are the only environment it reads)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    set_threads(cfg.threads)
    device = resolve_device(cfg.device, local_rank)
    precision = check_precision(cfg.precision, device)
    if world_size > 1 and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise ConfigError(f"WORLD_SIZE is {world_size} but no rendezvous is set (MASTER_ADDR); launch with "
                              "torchrun --nproc_per_node=N")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    seed_everything(int(seed))
    deterministic = cfg.deterministic
    if device.type == "cuda":
        # The CPU kernels used here are already repeatable (bit-identical reruns are tested); the switch costs a
        # second of start-up per stage, so it is only flipped where it changes kernels: on GPUs.
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not deterministic  # autotuned kernels are faster but not repeatable
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return Runtime(device, precision, cfg.channels_last, rank, world_size, local_rank)


def teardown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()
