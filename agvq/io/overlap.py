"""Refusing an output folder that would overwrite or swallow an input (a user's files are never replaced)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from agvq.errors import ConfigError


def refuse_overlap(out: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> None:
    """ConfigError when the output folder equals, contains or lies inside one of the input folders."""
    out_path = Path(out).resolve()
    for item in inputs:
        src = Path(item).resolve()
        if out_path == src or out_path.is_relative_to(src) or src.is_relative_to(out_path):
            raise ConfigError(f"output folder {out} overlaps the input {item}; choose another output folder")
