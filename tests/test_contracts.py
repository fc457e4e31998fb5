"""Project contracts that keep DVC honest and the layers clean:

* every dvc.yaml stage declares each package file its script runs (derived from the imports with ast), and no
  package path it never runs;
* no module imports from a layer above its own (models, io, data, inference and metrics never import training);
* hyperparameter defaults live in agvq/config only: no function elsewhere in the package gives a params key a
  default value.
"""
from __future__ import annotations

import ast
import re
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
import yaml

from agvq import config as config_pkg
from agvq.config import attention as attention_config
from agvq.config import postprocess, sections, variants
from agvq.config.params import Params
from tests.import_graph import PACKAGE, ROOT, closure, package_layer_imports, suggested_deps

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _stage_entries():
    for name, stage in DVC.items():
        body = stage.get("do", stage)
        yield name, body


def _script(cmd: str) -> str:
    found = re.findall(r"stages/\w+\.py", cmd)
    assert len(found) == 1, f"cannot tell the stage script in {cmd!r}"
    return found[0]


def _covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


@pytest.mark.parametrize("name", list(DVC))
def test_stage_declares_every_package_file_it_runs(name):
    body = dict(_stage_entries())[name]
    script = _script(body["cmd"])
    deps = [str(d) for d in body.get("deps", [])]
    assert script in deps, f"stage {name} does not depend on its script {script}"
    needed = sorted(str(p) for p in closure(script))
    missing = [p for p in needed if not any(_covers(d, p) for d in deps)]
    assert not missing, (f"stage {name} runs {missing} but dvc.yaml does not declare them; deps that fit: "
                         f"{suggested_deps(script)}")


@pytest.mark.parametrize("name", list(DVC))
def test_stage_declares_no_package_path_it_never_runs(name):
    body = dict(_stage_entries())[name]
    used = {str(p) for p in closure(_script(body["cmd"]))}
    unused = [d for d in map(str, body.get("deps", []))
              if (d == PACKAGE or d.startswith(PACKAGE + "/")) and not any(_covers(d, p) for p in used)]
    assert not unused, f"stage {name} declares {unused}, which its script never imports (needless re-runs)"


def test_import_closure_follows_function_level_and_package_imports(tmp_path):
    files = {str(p) for p in closure("stages/evaluate.py")}
    assert "agvq/__init__.py" in files and "agvq/metrics/__init__.py" in files
    assert "agvq/io/nifti.py" in files  # imported inside a function of agvq/metrics/figures.py
    assert not any(f.startswith("agvq/training/") for f in files)


LAYERS = {
    "agvq.errors": 0, "agvq.regions": 0, "agvq.config": 0, "agvq.device": 0, "agvq.processes": 0,
    "agvq.io": 1, "agvq.data": 2, "agvq.models": 3, "agvq.inference": 4, "agvq.metrics": 4, "agvq.postprocessing": 4,
    "agvq.diagnosis": 5, "agvq.training": 5, "agvq.robustness": 5, "agvq.cli": 6, "agvq.presets": 6, "agvq": 7,
    # the MRI tokenizer study: its model sits with the models, rendering/evaluation with inference and metrics
    # (inference fills missing modalities through it), its training with the training loop
    "agvq.tokenizer": 4, "agvq.tokenizer.data": 2, "agvq.tokenizer.model": 3, "agvq.tokenizer.train": 5,
}


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in LAYERS:
            return prefix, LAYERS[prefix]
    raise AssertionError(f"module {module} has no layer in LAYERS; add its package there")


def test_no_module_imports_from_a_higher_layer():
    problems = []
    for module, imported in package_layer_imports().items():
        if module == PACKAGE:
            continue
        own, level = _layer(module)
        for target in imported:
            other, other_level = _layer(target)
            if other_level > level:
                problems.append(f"{module} (layer {own}) imports {target} (layer {other})")
    assert not problems, "\n".join(problems)


def _params_keys() -> set[str]:
    """Every key name of every section of params.yaml (the dataclass fields of agvq.config)."""
    keys: set[str] = set()
    todo = [Params]
    seen = set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for f in fields(cls):
            keys.add(f.name)
    for module in (sections, variants, postprocess, attention_config):
        for obj in vars(module).values():
            if is_dataclass(obj) and isinstance(obj, type) and obj not in seen:
                seen.add(obj)
                keys.update(f.name for f in fields(obj))
    return keys


ALLOWED = {"progress", "names", "where", "partial", "prefix", "need", "map_location", "kind", "code_weights",
           "min_free_bytes", "suffix", "indent", "dtype", "extra", "metrics", "before_commit", "local_rank",
           "dry_run", "params_path", "preset_path", "argv", "extra_files", "check", "require_labels", "fill",
           "shape", "context", "atol", "regions", "noise", "bias"}
"""Keyword defaults that are not hyperparameters (or, like ``require_labels`` / ``shape``, have another meaning
in the function that takes them than the params key of that name; ``regions`` defaults to the canonical
REGIONS order of agvq.regions, a convention rather than a setting; ``noise`` / ``bias`` of agvq.data.synthetic are the
phantom generator's own ranges, not the robustness.levels of those names, nor the V-Net's conv ``bias``)."""


def test_no_params_key_gets_a_default_outside_the_config_package():
    keys = _params_keys() - ALLOWED
    offenders = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        if path.is_relative_to(ROOT / PACKAGE / "config"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                is_none = isinstance(default, ast.Constant) and default.value is None
                if arg.arg in keys and not is_none:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({arg.arg}=...)")
    assert not offenders, "defaults of params keys belong in agvq/config:\n" + "\n".join(offenders)


def test_config_package_exports_every_section():
    for name, obj in vars(sections).items():
        if is_dataclass(obj) and isinstance(obj, type) and not name.endswith("Section"):
            assert hasattr(config_pkg, name), f"agvq.config does not export {name}"


def test_every_params_yaml_key_is_known_and_every_hyperparameter_is_stated():
    """params.yaml parses, and states every train/model/loss key explicitly (so `dvc params diff` sees each)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = config_pkg.parse_params(raw)
    for section_name in ("vqvae", "cond"):
        for sub in ("train", "loss"):
            obj = getattr(getattr(params, section_name), sub)
            stated = set(raw[section_name][sub])
            missing = sorted({f.name for f in fields(obj)} - stated)
            assert not missing, f"params.yaml {section_name}.{sub} does not state {missing}"
    assert set(raw["vqvae"]["quantizer"]) == {f.name for f in fields(params.vqvae.quantizer)}
    assert set(raw["infer"]) == {f.name for f in fields(params.infer)}


def test_path_of_tests_root_is_the_project():
    assert (ROOT / "dvc.yaml").is_file() and Path(__file__).parent == ROOT / "tests"
