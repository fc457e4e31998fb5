"""The splits file: ``{"seed", "train", "val", "test"}`` case-id lists (written by preprocess, read by every stage
that trains, predicts or evaluates). Validation picks checkpoints; test is touched only by infer/evaluate."""
from __future__ import annotations

import json
from pathlib import Path

from agvq.errors import ConfigError
from agvq.io.atomic import write_json

SPLITS: tuple[str, ...] = ("train", "val", "test")


def write_splits(path: str | Path, splits: dict) -> None:
    missing = [k for k in SPLITS if k not in splits]
    if missing:
        raise ValueError(f"splits lack {missing}")
    write_json(path, splits)


def read_splits(path: str | Path, need: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """The splits file at ``path``; each split named in ``need`` must hold at least one case.

    A split the file does not list is empty. Every problem (missing file, invalid JSON, a malformed list, a case in
    two splits, an empty split that ``need`` names) is one ConfigError line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"splits file {path} not found (run the preprocess stage first)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"splits file {path} cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"splits file {path} must hold a mapping of {list(SPLITS)}")
    out: dict[str, list[str]] = {}
    for key in SPLITS:
        ids = data.get(key, [])  # a split not listed is empty (e.g. a file of test cases only)
        if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
            raise ConfigError(f"splits file {path}: {key!r} must be a list of case ids")
        out[key] = list(ids)
    seen: dict[str, str] = {}
    for key in SPLITS:
        for case in out[key]:
            if case in seen:
                raise ConfigError(f"splits file {path} lists case {case} in both {seen[case]!r} and {key!r}")
            seen[case] = key
    for key in need:
        if not out[key]:
            raise ConfigError(f"splits file {path} has no {key} cases")
    return out


def split_ids(path: str | Path, split: str) -> list[str]:
    """The case ids of one split (at least one)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return read_splits(path, need=(split,))[split]


def read_user_splits(path: str | Path, fold: int) -> dict:
    """A split file the user holds: ours (``{"train", "val", "test"}``) or nnU-Net's ``splits_final.json`` (a list
    of folds, each ``{"train": [...], "val": [...]}``; ``fold`` picks one). Returns the three lists (a split the
    file lacks is empty) and ``"fold"`` (None for our format). Problems are one ConfigError line naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"split file {path} (preprocess.split.file) not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"split file {path} cannot be read ({type(exc).__name__}: {exc})") from None
    chosen = None
    if isinstance(data, list):
        if not data:
            raise ConfigError(f"split file {path} lists no folds")
        if not 0 <= fold < len(data):
            raise ConfigError(f"split file {path} has {len(data)} fold(s); preprocess.split.fold {fold} is not one")
        chosen, data = fold, data[fold]
    if not isinstance(data, dict) or not any(k in data for k in SPLITS):
        raise ConfigError(f"split file {path} must hold {{'train', 'val', 'test'}} lists or nnU-Net's list of "
                          f"{{'train', 'val'}} folds")
    out: dict = {"fold": chosen}
    seen: dict[str, str] = {}
    for key in SPLITS:
        ids = data.get(key, [])
        if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
            raise ConfigError(f"split file {path}: {key!r} must be a list of case ids")
        for case in ids:
            if case in seen:
                raise ConfigError(f"split file {path} lists case {case} in both {seen[case]!r} and {key!r}")
            seen[case] = key
        out[key] = list(ids)
    return out
