"""Device, precision, seeding and (optional) distributed set-up: one code path for CPU, one GPU and torchrun.

Launched by ``torchrun --nproc_per_node=N``, the launcher's standard variables (RANK, WORLD_SIZE, LOCAL_RANK) turn
on DistributedDataParallel with NCCL on GPUs and gloo on CPU; launched by plain ``python`` it is one process.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from agvq.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Runtime:
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

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
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("runtime.device is 'cuda' but no CUDA device is available")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"process {local_rank} of this node has no GPU: only {torch.cuda.device_count()} "
                              "visible; launch at most that many processes per node")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ConfigError(f"runtime.device must be auto, cpu or cuda, got {name!r}")
    return torch.device("cpu")


def setup_runtime(cfg: dict) -> Runtime:
    """Build the Runtime from the ``runtime`` params section; joins the process group under torchrun."""
    precision = str(cfg.get("precision", "fp32"))
    if precision not in PRECISIONS:
        raise ConfigError(f"runtime.precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    threads = int(cfg.get("threads", 0) or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    device = resolve_device(str(cfg.get("device", "auto")), local_rank)
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("runtime.precision fp16 needs a GPU; use bf16 or fp32 on CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"runtime.precision bf16 is not supported by {torch.cuda.get_device_name(device)}; "
                          "use fp16 or fp32")
    if world_size > 1 and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise ConfigError(f"WORLD_SIZE is {world_size} but no rendezvous is set (MASTER_ADDR); launch with "
                              "torchrun --nproc_per_node=N")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    seed_everything(int(cfg.get("seed", 0)))
    deterministic = bool(cfg.get("deterministic", True))
    if device.type == "cuda":
        # The CPU kernels used here are already repeatable (bit-identical reruns are tested); the switch costs a
        # second of start-up per stage, so it is only flipped where it changes kernels: on GPUs.
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not deterministic  # autotuned kernels are faster but not repeatable
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return Runtime(device, precision, bool(cfg.get("channels_last", False)), rank, world_size, local_rank)


def teardown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()
