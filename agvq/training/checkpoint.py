"""Resume state of a training run: RNG-state capture and restore, and the size of a state on disk. Saving and
loading go through the model-file I/O of agvq.io.model_file (atomic ``torch.save``, ``weights_only`` loads)."""
from __future__ import annotations

import random

import numpy as np
import torch

from agvq.io.model_file import load, save_atomic  # noqa: F401  (re-exported for the loop)

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
