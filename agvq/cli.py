"""Helpers shared by the thin scripts in stages/: params loading and one-line error reporting."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from agvq.config import Params
from agvq.config import load_params as _load_params
from agvq.errors import CaseError, ConfigError, TrainingError

log = logging.getLogger("agvq")


def load_params(path: str | Path) -> Params:
    """The validated params of a stage (agvq.config): built once, every problem one ConfigError line."""
    return _load_params(path)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    return parser


def add_training_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Paths every training stage takes (data in; model, metrics, curve and resume state out)."""
    parser.add_argument("--prepared", required=True, help="prepared cases folder")
    parser.add_argument("--splits", required=True, help="splits JSON")
    parser.add_argument("--out", required=True, help="model file to write (.pt; contract .json beside it)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--curve", required=True, help="per-epoch curve CSV to write")
    parser.add_argument("--run-dir", required=True, help="resume state folder (kept out of DVC's outputs)")
    return parser


def run_stage(main: Callable[[], Any]) -> None:
    """Run a stage entry point; a CaseError/ConfigError/TrainingError becomes one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (CaseError, ConfigError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
