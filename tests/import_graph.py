"""The project files a script runs: the transitive closure of its imports inside the ``agvq`` package, read with
``ast`` (function-level imports included, since they run too), plus the ``__init__.py`` of every package on the
way (importing ``agvq.io.nifti`` executes ``agvq/__init__.py`` and ``agvq/io/__init__.py``)."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "agvq"


def module_path(name: str) -> Path | None:
    """File of module ``name`` (``agvq.io.nifti`` -> agvq/io/nifti.py or agvq/io/nifti/__init__.py)."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def direct_imports(path: Path) -> frozenset[str]:
    """Modules of the package that ``path`` imports directly."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    here = _module_name(path) if path.is_relative_to(ROOT / PACKAGE) else ""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".") if here else []
                parts = parts if is_pkg else parts[:-1]
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                if module_path(name) is not None:
                    out.add(name)
    return frozenset(out)


def closure(script: str | Path) -> set[Path]:
    """Every package file executed when ``script`` runs, as paths relative to the project root."""
    start = ROOT / script
    seen: set[str] = set()
    files: set[Path] = set()
    todo = list(direct_imports(start))
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # parents are imported first
            prefix = ".".join(parts[:i])
            if prefix in seen:
                continue
            seen.add(prefix)
            path = module_path(prefix)
            if path is None:
                continue
            files.add(path.relative_to(ROOT))
            todo.extend(direct_imports(path))
    return files


def package_layer_imports() -> dict[str, set[str]]:
    """Module name -> the package modules it imports directly, for every module of the package."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        out[_module_name(path)] = set(direct_imports(path))
    return out


def suggested_deps(script: str | Path) -> list[str]:
    """The narrowest dvc.yaml deps that cover ``script``'s closure: a package folder when the script runs every
    module in it (sub-folders included), its files otherwise."""
    files = {str(p) for p in closure(script)}

    def covered(folder: Path) -> bool:
        return all(str(p.relative_to(ROOT)) in files for p in folder.rglob("*.py"))

    out: list[str] = []

    def walk(folder: Path) -> None:
        if folder != ROOT / PACKAGE and covered(folder):
            out.append(str(folder.relative_to(ROOT)))
            return
        for p in sorted(folder.iterdir()):
            if p.is_dir() and any(p.rglob("*.py")):
                walk(p)
            elif p.suffix == ".py" and str(p.relative_to(ROOT)) in files:
                out.append(str(p.relative_to(ROOT)))

    walk(ROOT / PACKAGE)
    return [str(script)] + out


def update_dvc_yaml(path: str | Path) -> list[str]:
    """Rewrite the package deps of every stage of ``path`` (dvc.yaml) to :func:`suggested_deps` of its script,
    keeping its other deps (data, models, reference files) in order after them; returns the stages changed."""
    import re

    path = Path(path)
    lines = path.read_text().split("\n")
    out, changed, stage, i = [], [], None, 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  (\w+):$", line)
        if m:
            stage = m.group(1)
        dm = re.match(r"^(\s+)deps:$", line)
        if not dm:
            out.append(line)
            i += 1
            continue
        indent = dm.group(1) + "  - "
        old = []
        i += 1
        while i < len(lines) and lines[i].startswith(indent):
            old.append(lines[i][len(indent):])
            i += 1
        script = next(d for d in old if re.fullmatch(r"stages/\w+\.py", d))
        others = [d for d in old if d != script and not (d == PACKAGE or d.startswith(PACKAGE + "/"))]
        new = suggested_deps(script) + others
        if new != old:
            changed.append(stage)
        out.append(line)
        out += [indent + d for d in new]
    path.write_text("\n".join(out))
    return changed


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--update"]:
        print("updated stages:", update_dvc_yaml(sys.argv[2] if len(sys.argv) > 2 else ROOT / "dvc.yaml"))
    else:
        for arg in sys.argv[1:]:
            print(f"{arg}:")
            for dep in suggested_deps(arg):
                print(f"      - {dep}")
