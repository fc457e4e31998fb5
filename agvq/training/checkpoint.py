"""Checkpoints: atomic saves, RNG-state capture, and the self-describing model file other stages load.

A model file is a plain dict of tensors and JSON-like values (loadable with ``torch.load(weights_only=True)``):
``{"format", "kind", "config", "state_dict", "contract", "metrics", "extra"}``. No pickled classes.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agvq.errors import ConfigError
from agvq.io.atomic import atomic_path

FORMAT = "agvq-model/1"


def save_atomic(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ConfigError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from None


def rng_state() -> dict:
    """This process's Python, NumPy, torch CPU and (when CUDA is in use) current-GPU generator states."""
    py_version, py_key, py_gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": list(py_key) + [py_gauss if py_gauss is not None else -1],
        "python_version": py_version,
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # never start CUDA just to read its generator
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured (the CUDA state onto the current device)."""
    py = list(state["python"])
    gauss = py.pop()
    random.setstate((state["python_version"], tuple(int(v) for v in py), None if gauss == -1 else gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):  # older resume states held every device's state
            torch.cuda.set_rng_state_all([c.cpu() for c in cuda])
        else:
            torch.cuda.set_rng_state(cuda.cpu())


def state_nbytes(state: dict) -> int:
    """Bytes of the tensors in a (nested) state dict: what saving it costs on disk, give or take the metadata."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_nbytes(v) for v in state)
    return 0


def model_file(kind: str, model: torch.nn.Module, contract: dict, metrics: dict | None = None,
               extra: dict | None = None) -> dict:
    """Bundle a trained model with what is needed to rebuild and use it."""
    return {
        "format": FORMAT,
        "kind": kind,
        "config": model.config(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "contract": contract,
        "metrics": metrics or {},
        "extra": extra or {},
    }


def check_model_file(bundle: dict, path: str | Path, kind: str | tuple[str, ...] | None = None) -> dict:
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an agvq model file (format {FORMAT})")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and bundle["kind"] not in kinds:
        raise ConfigError(f"{path} holds a {bundle['kind']!r} model, expected {' or '.join(kinds)}")
    return bundle
