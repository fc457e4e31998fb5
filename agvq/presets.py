"""Parameter presets: deep-merge a preset YAML (e.g. ``presets/brats2021.yaml``) into params.yaml, keeping the
file's comments, key order and list styles, so ``git diff params.yaml`` shows exactly the values that changed.

    python -m agvq.presets apply presets/brats2021.yaml [--params params.yaml] [--dry-run]

Mappings merge key by key; any other value (scalars, lists) replaces the old one whole. Keys the preset adds are
listed as added.
"""
from __future__ import annotations

import argparse
import difflib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from agvq.config.schema import merge_into, plain
from agvq.errors import ConfigError
from agvq.io.atomic import write_text


def _yaml() -> YAML:
    y = YAML()  # round-trip: comments, order, flow/block styles and number formats survive
    y.width = 4096  # never re-wrap long lines
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _load(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    try:
        data = _yaml().load(path.read_text())
    except YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} {path} must hold a mapping of params sections, got {type(data).__name__}")
    return data


def merge(target: Any, preset: Mapping) -> list[tuple[str, Any, Any]]:
    """Merge ``preset`` into the mapping ``target`` in place; returns (dotted key, old or None, new) per change."""
    return merge_into(target, preset)


def _dump(data: Any) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def _keep_layout(original: str, roundtrip: str, updated: str) -> str:
    """``updated`` with every line it shares with ``roundtrip`` (the unchanged file as ruamel writes it) replaced by
    the original line, so hand alignment inside untouched lines survives; only changed lines take ruamel's form."""
    orig, rt, new = original.splitlines(keepends=True), roundtrip.splitlines(keepends=True), \
        updated.splitlines(keepends=True)
    if len(orig) != len(rt):  # not line-aligned: ruamel's whole output is still a faithful file
        return updated
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, rt, new, autojunk=False).get_opcodes():
        out += orig[i1:i2] if tag == "equal" else new[j1:j2]
    return "".join(out)


def apply_preset(preset_path: str | Path, params_path: str | Path = "params.yaml",
                 dry_run: bool = False) -> list[tuple[str, Any, Any]]:
    """Deep-merge the preset into params.yaml (written atomically unless ``dry_run``); returns the changes."""
    params = _load(params_path, "params file")
    original, roundtrip = Path(params_path).read_text(), _dump(params)
    changes = merge(params, _load(preset_path, "preset"))
    if changes and not dry_run:
        write_text(params_path, _keep_layout(original, roundtrip, _dump(params)))
    return changes


def merged_params(params_path: str | Path, preset_path: str | Path | None) -> dict:
    """params.yaml with the preset merged in, as plain dicts (nothing is written)."""
    params = _load(params_path, "params file")
    if preset_path is not None:
        merge(params, _load(preset_path, "preset"))
    return plain(params)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agvq.presets", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    apply = sub.add_parser("apply", help="deep-merge a preset into the params file")
    apply.add_argument("preset", help="preset YAML, e.g. presets/brats2021.yaml")
    apply.add_argument("--params", default="params.yaml", help="params file to update (default: params.yaml)")
    apply.add_argument("--dry-run", action="store_true", help="only list the changes")
    args = parser.parse_args(argv)
    changes = apply_preset(args.preset, args.params, dry_run=args.dry_run)
    verb = "would change" if args.dry_run else "changed"
    print(f"{args.preset}: {verb} {len(changes)} value(s) in {args.params}")
    for path, old, new in changes:
        print(f"  {path}: {'(new)' if old is None else old} -> {new}")


if __name__ == "__main__":
    from agvq.cli import run_stage

    run_stage(main)
