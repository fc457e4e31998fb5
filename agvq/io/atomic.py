"""Atomic file writes: write to a locked temporary sibling, fsync, then rename, so a crash never leaves a truncated
file, and the next run removes what a killed run left behind.

* A temporary of ``dir/name`` is ``dir/.name.XXXXXXXX.tmp[suffixes]`` (``tempfile`` names). While its writer
  lives it holds an exclusive ``flock`` on it, so :func:`remove_stale` can tell a live temporary from one that an
  interrupted (``kill -9``) run left, and removes only the latter.
* An output path that is a symbolic link is written through (the link is kept and its target replaced), never
  swapped for a regular file.
* Write failures (unwritable folder, an output path under a regular file, a full disk) become one-line
  :class:`~agvq.errors.OutputError` messages naming the output.

Folders written whole (with a manifest of the stage that wrote them) are in :mod:`agvq.io.outputs`.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from agvq.errors import OutputError

try:
    import fcntl
except ImportError:  # not POSIX: no locks; a temporary counts as stale once it is a day old
    fcntl = None

UMASK = os.umask(0)
os.umask(UMASK)
_UNLOCKED_STALE_AGE_S = 86400.0
FULL_DISK = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def resolve_output(path: str | os.PathLike) -> Path:
    """The path a stage really writes for ``path``: symbolic links (of the path and its folders) followed."""
    return Path(os.path.realpath(os.fspath(path)))


_STAGING = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def in_staging(path: Path) -> bool:
    """Whether ``path`` lies inside a temporary folder of :mod:`agvq.io.outputs` (a folder being staged)."""
    return any(_STAGING.match(p.name) for p in path.parents)


def temp_pattern(name: str) -> re.Pattern:
    """Names of this module's temporaries of an output called ``name`` (files and folders)."""
    return re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp(\..+)?$")


def lock(fd: int) -> None:
    """Hold an exclusive lock on ``fd`` until it is closed (marks a temporary as in use by a live process)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def is_locked(path: Path) -> bool:
    """Whether a live process holds the lock of :func:`lock` on ``path`` (without fcntl: whether it is recent)."""
    if fcntl is None:
        return time.time() - path.lstat().st_mtime < _UNLOCKED_STALE_AGE_S
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # cannot tell: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def remove_stale(target: Path, stale_folder=None) -> list[Path]:
    """Remove the temporaries of ``target`` that an interrupted run left beside it; returns what was removed.

    Only entries named by :func:`temp_pattern` are touched: files that no live process holds locked, empty
    folders, and folders that ``stale_folder(folder)`` accepts (:mod:`agvq.io.outputs` checks there that the
    folder carries the stage's manifest and that its writer is gone).
    """
    removed: list[Path] = []
    pattern = temp_pattern(target.name)
    try:
        with os.scandir(target.parent) as it:
            entries = [e for e in it if pattern.match(e.name)]
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        try:
            if entry.is_symlink():
                continue
            if entry.is_dir():
                with os.scandir(path) as it:
                    empty = next(it, None) is None
                if not empty and (stale_folder is None or not stale_folder(path)):
                    continue
                shutil.rmtree(path)
            elif entry.is_file() and not is_locked(path):
                path.unlink()
            else:
                continue
        except OSError:
            continue
        removed.append(path)
    return removed


def output_error(exc: OSError, shown) -> OutputError:
    """One line for a failure to write the output ``shown``."""
    if exc.errno in FULL_DISK:
        return OutputError(f"cannot write {shown}: the disk is full ({exc.strerror or exc}); free some space or "
                           f"choose an output on another disk")
    blocking = _file_in_the_way(resolve_output(shown))
    if isinstance(exc, (NotADirectoryError, FileExistsError)) and blocking is not None:
        return OutputError(f"cannot write {shown}: {blocking} is a file, not a folder; choose an output path "
                           f"outside it")
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(shown) else ""
    return OutputError(f"cannot write {shown}: {exc.strerror or exc}{where}")


def _file_in_the_way(target: Path) -> Path | None:
    """The nearest existing folder-to-be of ``target`` that is not a folder (a regular file), if any."""
    for parent in target.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def make_parent(target: Path, shown) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, shown) from None


class StagedFile:
    """A locked temporary beside ``target`` that :meth:`commit` renames onto it (or :meth:`abort` removes)."""

    def __init__(self, path: str | os.PathLike, suffix: str | None = None):
        self.shown = os.fspath(path)
        self.target = resolve_output(path)
        # Inside a folder being staged, errors go up as they are: the folder's stage names the output in its message.
        self.in_staging = in_staging(self.target)
        self.fd = None
        if self.target.is_dir():
            raise OutputError(f"output {self.shown} is a folder; the stage writes a file there (choose a file path)")
        try:
            if not self.in_staging:  # a staging folder that is gone was aborted: do not bring it back
                self.target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(self.target)
            suffix = "".join(self.target.suffixes) if suffix is None else suffix
            self.fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp" + suffix,
                                            dir=self.target.parent)
        except OSError as exc:
            raise self.error(exc) from None
        self.tmp = Path(tmp)
        lock(self.fd)
        os.chmod(self.tmp, 0o666 & ~UMASK)  # mkstemp creates 0600; give the file the permissions open() would

    def error(self, exc: OSError) -> OSError | OutputError:
        """The error to raise for a failure writing this file: a one-line OutputError, or ``exc`` in staging."""
        return exc if self.in_staging else output_error(exc, self.shown)

    def commit(self) -> None:
        try:
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.target)
        except OSError as exc:
            self.abort()
            raise self.error(exc) from None
        os.close(self.fd)
        self.fd = None

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def owns(self, filename) -> bool:
        return filename is not None and Path(os.fspath(filename)) == self.tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed.

    ``suffix`` defaults to the target's suffixes (so libraries that infer formats from the name still work). A
    symlinked ``path`` is written through. A write error (full disk, unwritable folder) is an OutputError line.
    """
    staged = StagedFile(path, suffix)
    try:
        yield staged.tmp
    except OSError as exc:
        staged.abort()
        if exc.errno in FULL_DISK or staged.owns(exc.filename):
            raise staged.error(exc) from None
        raise
    except BaseException:
        staged.abort()
        raise
    staged.commit()


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


def json_text(obj, indent: int = 2) -> str:
    """``obj`` as JSON text; non-finite floats become null, numpy scalars plain numbers."""
    return json.dumps(_finite(obj), indent=indent, sort_keys=False) + "\n"


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically; non-finite floats become null, numpy scalars plain numbers."""
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(obj, indent))


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def ensure_writable(paths, min_free_bytes: int = 50 * 2**20) -> None:
    """Fail fast, before hours of work, if an output folder is unwritable or its disk nearly full.

    Each path's folder is created (as the stage would) and probed with a temporary file; an output folder under a
    regular file, an unwritable folder and a disk with under ``min_free_bytes`` free are OutputError lines.
    """
    for path in paths:
        target = resolve_output(path)
        parent = target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            blocking = _file_in_the_way(target)
            why = f"{blocking} is a file, not a folder" if blocking is not None else exc.strerror or exc
            raise OutputError(f"output folder {parent} is not writable ({why}); choose another output path or fix "
                              f"its permissions") from None
        free = shutil.disk_usage(parent).free
        if free < min_free_bytes:
            raise OutputError(
                f"only {free / 2**20:.1f} MiB free on the disk of {parent}; need at least {min_free_bytes / 2**20:.0f} MiB"
            )
