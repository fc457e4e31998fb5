"""Helpers shared by the thin scripts in stages/: params loading, output-path guards and one-line error reporting.

Every stage runs under :func:`run_stage`: a CaseError / ConfigError / OutputError / TrainingError, or any other
OSError (a full disk, an unreadable file), is one line on stderr and exit code 2; Ctrl-C exits 130 and SIGTERM 143,
both after the stage's temporaries are removed (they unwind the same way as an error).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from agvq.config import Params
from agvq.config import load_params as _load_params
from agvq.errors import CaseError, ConfigError, TrainingError
from agvq.io.atomic import ensure_writable
from agvq.io.outputs import check_replaceable, check_separate, remove_stale_outputs

log = logging.getLogger("agvq")


def load_params(path: str | Path) -> Params:
    """The validated params of a stage (agvq.config): built once, every problem one ConfigError line."""
    return _load_params(path)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    return parser


TRAINING_INPUTS = ("prepared", "splits")
TRAINING_OUTPUTS = ("out", "metrics", "curve", "run_dir")
"""The paths of :func:`add_training_args` by role, for :func:`guard_paths`."""


def add_training_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Paths every training stage takes (data in; model, metrics, curve and resume state out)."""
    parser.add_argument("--prepared", required=True, help="prepared cases folder")
    parser.add_argument("--splits", required=True, help="splits JSON")
    parser.add_argument("--out", required=True, help="model file to write (.pt; contract .json beside it)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--curve", required=True, help="per-epoch curve CSV to write")
    parser.add_argument("--run-dir", required=True, help="resume state folder (kept out of DVC's outputs)")
    return parser


def guard_paths(args: argparse.Namespace, stage: str, inputs: Iterable[str] = (), folders: Iterable[str] = (),
                files: Iterable[str] = (), extra_inputs: dict[str, str | None] | None = None) -> None:
    """Check a stage's output paths before any work (names are ``args`` attributes, shown as ``--option``):

    an output that equals, contains or lies inside an input or another output is refused; an existing output
    folder is refused unless ``stage`` wrote it (agvq.io.outputs.check_replaceable); every output's folder must be
    writable with some room on its disk. Each problem is one OutputError line. Temporaries that a killed run of
    the stage left beside its outputs are removed.
    """
    def option(name: str) -> str:
        return "--" + name.replace("_", "-")

    ins = {option(n): getattr(args, n) for n in inputs}
    ins.update(extra_inputs or {})
    outs = {option(n): getattr(args, n) for n in (*folders, *files)}
    check_separate(ins, outs)
    for name in folders:
        if getattr(args, name) is not None:
            check_replaceable(getattr(args, name), stage)
    ensure_writable([p for p in outs.values() if p is not None])
    for name in (*folders, *files):
        if getattr(args, name) is not None:
            remove_stale_outputs(getattr(args, name), stage if name in folders else None)


def guard_training_paths(args: argparse.Namespace, stage: str, inputs: Iterable[str] = ()) -> None:
    """:func:`guard_paths` for the paths of :func:`add_training_args` (plus ``inputs``, e.g. an input model)."""
    guard_paths(args, stage, inputs=TRAINING_INPUTS + tuple(inputs), files=TRAINING_OUTPUTS)


class Terminated(BaseException):
    """SIGTERM (e.g. ``kill``, a scheduler's pre-emption) raised in the main thread, so clean-up runs as for Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _os_error_line(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def run_stage(main: Callable[[], Any]) -> None:
    """Run a stage entry point: known errors and OSErrors become one line on stderr and exit code 2; Ctrl-C exits 130
    and SIGTERM 143, each after the stage's temporaries were removed."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        main()
    except (CaseError, ConfigError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"error: {_os_error_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print("error: terminated (SIGTERM); temporary files removed", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
