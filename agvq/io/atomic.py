"""Atomic writes: write to a temporary sibling, fsync, then rename, so a crash never leaves a truncated file."""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed.

    ``suffix`` defaults to the target's suffixes (so libraries that infer formats from the name still work).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the permissions open() would
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory next to ``path``; on success it replaces ``path`` whole, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _finite(obj):
    """Replace NaN/inf floats by None so the JSON stays valid for DVC (it rejects NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _finite(obj.item())
    return obj


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically; non-finite floats become null, numpy scalars plain numbers."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(obj), indent=indent, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def ensure_writable(paths, min_free_bytes: int = 50 * 2**20) -> None:
    """Fail fast, before hours of training, if an output folder is unwritable or its disk nearly full."""
    from agvq.errors import ConfigError

    for path in paths:
        parent = Path(path).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ConfigError(f"output folder {parent} is not writable ({exc.strerror or exc})") from None
        free = shutil.disk_usage(parent).free
        if free < min_free_bytes:
            raise ConfigError(
                f"only {free / 2**20:.1f} MiB free on the disk of {parent}; need at least {min_free_bytes / 2**20:.0f} MiB"
            )
