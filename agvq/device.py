"""Device and precision, shared by training, inference and the benchmarks (no distributed set-up here: that is
agvq.training.runtime)."""
from __future__ import annotations

import contextlib

import torch

from agvq.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` -> a torch device (process ``local_rank``'s GPU under torchrun)."""
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


def check_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"runtime.precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("runtime.precision fp16 needs a GPU; use bf16 or fp32 on CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"runtime.precision bf16 is not supported by {torch.cuda.get_device_name(device)}; "
                          "use fp16 or fp32")
    return precision


def autocast(device: torch.device, precision: str):
    """Autocast context for forward passes (a no-op in fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_threads(threads: int) -> None:
    """torch CPU threads (0 keeps torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)
