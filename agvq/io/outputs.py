"""Output folders and output sets that never destroy what the stage did not make.

* A folder a stage writes whole (``prepared/``, ``predictions/<variant>/``, ``raw/synthetic/``) is built in a locked
  temporary sibling and carries a manifest, ``.agvq-output.json``: the stage's name and the files it wrote. An
  existing output folder is replaced only when it is empty or carries the same stage's manifest and holds no file
  beyond it; otherwise the stage refuses with one line saying how to proceed. A symlinked output is written
  through (the link is kept, its target replaced).
* :func:`check_separate` refuses an output that equals, contains or lies inside an input (or another output).
* :func:`staged_outputs` writes several outputs all or nothing: every folder and file is staged first, and only
  when all are complete are they renamed into place (an error leaves the previous outputs intact).
* Temporaries a killed run left beside an output are removed by the next run of the stage that writes it.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from agvq.errors import OutputError
from agvq.io.atomic import (FULL_DISK, UMASK, StagedFile, is_locked, json_text, lock, make_parent, output_error,
                            remove_stale, resolve_output)

MANIFEST = ".agvq-output.json"
"""The manifest file inside every output folder: ``{"stage", "files"}`` (deterministic: no times, no hosts)."""


# ------------------------------------------------------------------------------------------ manifests
def read_manifest(folder: Path) -> dict | None:
    """The manifest of ``folder``, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("stage"), str) or not isinstance(data.get("files"), list):
        return None
    return data


def folder_files(folder: Path) -> list[str]:
    """Relative POSIX paths of every file (and symbolic link) under ``folder``, sorted; the manifest excluded."""
    out = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out.extend((rel / name).as_posix() for name in files)
        out.extend((rel / name).as_posix() for name in dirs if (Path(root) / name).is_symlink())
    return sorted(f for f in out if f != MANIFEST)


def check_replaceable(folder: str | os.PathLike, stage: str, shown=None) -> None:
    """Raise OutputError unless ``stage`` may replace ``folder``: it does not exist, is empty, or carries the
    manifest of ``stage`` and no file the manifest does not list."""
    shown = os.fspath(folder) if shown is None else shown
    folder = resolve_output(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise OutputError(f"output {shown} exists and is not a folder; remove it or choose another output folder")
    with os.scandir(folder) as it:
        if next(it, None) is None:
            return
    manifest = read_manifest(folder)
    if manifest is None or manifest["stage"] != stage:
        by = f" (it was written by the {manifest['stage']} stage)" if manifest else ""
        raise OutputError(f"output folder {shown} already exists and was not written by the {stage} stage{by}; "
                          f"move its files away or choose another output folder (a stage replaces only a folder "
                          f"it wrote)")
    extra = sorted(set(folder_files(folder)) - set(manifest["files"]))
    if extra:
        listed = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise OutputError(f"output folder {shown} holds files the {stage} stage did not write ({listed}); move "
                          f"them away or choose another output folder")


# --------------------------------------------------------------------------------------- path overlap
def _relation(a: Path, b: Path) -> str | None:
    if a == b:
        return "is"
    if a in b.parents:
        return "contains"
    if b in a.parents:
        return "lies inside"
    return None


def check_separate(inputs: dict[str, str | os.PathLike | None], outputs: dict[str, str | os.PathLike | None]) -> None:
    """Raise OutputError (one line naming both paths) when an output equals, contains or lies inside an input or
    another output. Keys label the paths in the message (e.g. the command-line option); None values are ignored."""
    ins = [(k, os.fspath(v), resolve_output(v)) for k, v in inputs.items() if v is not None]
    outs = [(k, os.fspath(v), resolve_output(v)) for k, v in outputs.items() if v is not None]
    for i, (name, shown, path) in enumerate(outs):
        for other, other_shown, other_path in ins + outs[i + 1:]:
            relation = _relation(path, other_path)
            if relation is None:
                continue
            kind = "input" if (other, other_shown, other_path) in ins else "output"
            what = "is the same path as" if relation == "is" else relation
            raise OutputError(f"output {name} {shown} {what} the {kind} {other} {other_shown}; choose an output "
                              f"path outside the stage's inputs and other outputs")


# ------------------------------------------------------------------------------------- staged folders
def _stale_folder(stage: str):
    def check(folder: Path) -> bool:
        manifest = read_manifest(folder)
        return manifest is not None and manifest["stage"] == stage and not is_locked(folder / MANIFEST)
    return check


def remove_stale_outputs(path: str | os.PathLike, stage: str | None = None) -> list[Path]:
    """Remove what a killed run left beside the output ``path``: temporaries of the file, or (with ``stage``) the
    staging folders of that stage whose writer is gone. Returns the removed paths."""
    return remove_stale(resolve_output(path), _stale_folder(stage) if stage else None)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(a))


class StagedFolder:
    """A locked temporary folder beside ``target`` (with the stage's in-progress manifest) that :meth:`commit`
    puts in its place, replacing the old folder only as :func:`check_replaceable` allows."""

    def __init__(self, path: str | os.PathLike, stage: str):
        self.shown, self.stage = os.fspath(path), stage
        self.target = resolve_output(path)
        check_replaceable(self.target, stage, self.shown)
        make_parent(self.target, self.shown)
        remove_stale(self.target, _stale_folder(stage))
        try:
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent))
        except OSError as exc:
            raise output_error(exc, self.shown) from None
        self.fd = None
        try:
            os.chmod(self.tmp, 0o777 & ~UMASK)  # mkdtemp creates 0700
            self.fd = os.open(self.tmp / MANIFEST, os.O_RDWR | os.O_CREAT, 0o666 & ~UMASK)
            lock(self.fd)
            self._write_manifest([])
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise output_error(exc, self.shown) from None
            raise

    def _write_manifest(self, files: list[str]) -> None:
        data = json_text({"stage": self.stage, "files": files}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def finish(self) -> None:
        """Write the final manifest (every file now in the folder) to disk."""
        self._write_manifest(folder_files(self.tmp))
        os.fsync(self.fd)

    def commit(self) -> None:
        check_replaceable(self.target, self.stage, self.shown)  # files may have appeared while the stage ran
        if self.target.exists():
            if not _exchange(self.tmp, self.target):
                grave = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent))
                os.rename(self.target, grave)  # rename(2) replaces the empty folder
                os.rename(self.tmp, self.target)
                self.tmp = grave
            shutil.rmtree(self.tmp, ignore_errors=True)  # the old output (it carries this stage's manifest)
        else:
            os.rename(self.tmp, self.target)
        self.close()

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def owns(self, filename) -> bool:
        return filename is not None and (Path(os.fspath(filename)) == self.tmp
                                         or self.tmp in Path(os.fspath(filename)).parents)


class StagedOutputs:
    """Outputs of one stage, staged together and committed all or nothing (see :func:`staged_outputs`)."""

    def __init__(self, stage: str):
        self.stage = stage
        self._items: list[StagedFolder | StagedFile] = []

    def folder(self, path: str | os.PathLike) -> Path:
        """Stage the output folder ``path``; returns the temporary folder to write its files into."""
        item = StagedFolder(path, self.stage)
        self._items.append(item)
        return item.tmp

    def file(self, path: str | os.PathLike, suffix: str | None = None) -> Path:
        """Stage the output file ``path``; returns the temporary path to write it to."""
        item = StagedFile(path, suffix)
        self._items.append(item)
        return item.tmp

    def write_json(self, path: str | os.PathLike, obj) -> None:
        self.write_text(path, json_text(obj))

    def write_text(self, path: str | os.PathLike, text: str) -> None:
        tmp = self.file(path)
        try:
            tmp.write_text(text)
        except OSError as exc:
            raise output_error(exc, os.fspath(path)) from None

    def commit(self) -> None:
        try:
            for item in self._items:
                if isinstance(item, StagedFolder):
                    item.finish()
        except OSError as exc:
            self.abort()
            raise output_error(exc, item.shown) from None
        for i, item in enumerate(self._items):  # renames only: nothing here needs disk space
            try:
                item.commit()
            except BaseException as exc:
                for rest in self._items[i:]:
                    rest.abort()
                self._items = []
                if isinstance(exc, OSError):
                    raise output_error(exc, item.shown) from None
                raise
        self._items = []

    def abort(self) -> None:
        for item in self._items:
            item.abort()
        self._items = []

    def describe(self, exc: OSError) -> OutputError | None:
        """An OutputError line for ``exc`` when it is a write failure of one of these outputs."""
        for item in self._items:
            if item.owns(exc.filename):
                return output_error(exc, item.shown)
        if exc.errno in FULL_DISK and self._items:
            return output_error(exc, self._items[0].shown)
        return None


@contextlib.contextmanager
def staged_outputs(stage: str):
    """Stage outputs of ``stage`` (``.folder(path)``, ``.file(path)``, ``.write_json(path, obj)``) and commit them
    together when the block succeeds; on any error (or Ctrl-C / SIGTERM) every temporary is removed and the
    previous outputs stay as they were. Write failures come out as one-line OutputErrors."""
    staged = StagedOutputs(stage)
    try:
        yield staged
    except OSError as exc:
        described = staged.describe(exc)
        staged.abort()
        if described is not None:
            raise described from None
        raise
    except BaseException:
        staged.abort()
        raise
    staged.commit()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, stage: str):
    """Yield a temporary folder that replaces the output folder ``path`` of ``stage`` whole on success (only if
    :func:`check_replaceable` allows) and is removed on error."""
    with staged_outputs(stage) as staged:
        yield staged.folder(path)
