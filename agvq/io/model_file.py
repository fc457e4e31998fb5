"""The self-describing model file that training writes and inference, evaluation and benchmarks load.

A model file is a plain dict of tensors and JSON-like values (loadable with ``torch.load(weights_only=True)``):
``{"format", "kind", "config", "state_dict", "contract", "metrics", "extra"}``. No pickled classes. ``config``
rebuilds the network (``agvq.models.factory.rebuild``); ``contract`` says what it was trained for (region,
modalities, patch size, variant); a two-stage file embeds its frozen stage-1 model file in ``extra["vqvae"]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agvq.errors import ConfigError
from agvq.io.atomic import atomic_path

FORMAT = "agvq-model/1"


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary sibling, then rename (a crash never leaves a truncated file).

    The file is opened here, not by torch: a full disk then raises OSError (a one-line OutputError), where torch's
    own writer would raise an opaque RuntimeError."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def load(path: str | Path, map_location="cpu") -> dict:
    """A file written by :func:`save_atomic`, read without unpickling classes; one-line ConfigError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model file {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ConfigError(f"model file {path} cannot be read ({type(exc).__name__}: {exc})") from None


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
    """``bundle`` if it is a model file (of ``kind``, when given); ConfigError naming ``path`` otherwise."""
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an agvq model file (format {FORMAT})")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and bundle["kind"] not in kinds:
        raise ConfigError(f"{path} holds a {bundle['kind']!r} model, expected {' or '.join(kinds)}")
    return bundle


def load_model_file(path: str | Path, kind: str | tuple[str, ...] | None = None) -> dict:
    return check_model_file(load(path), path, kind)
