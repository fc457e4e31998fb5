"""Presets: deep merge into params.yaml keeping comments and layout; the brats2021 preset is a valid paper-size run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agvq.config import parse_params
from agvq.errors import ConfigError
from agvq.models.factory import build_model
from agvq.presets import apply_preset, main, merged_params
from agvq.training.stage1 import build_vqvae

ROOT = Path(__file__).resolve().parents[1]

PARAMS = """\
# top comment
runtime:
  device: auto        # auto | cpu | cuda
  launcher: python
model:
  channels: [16, 32]  # widths
  depth: 4
variants:
  a:   {two_stage: true,  arch: transformer}
  bb:  {two_stage: false, arch: unet}
train:
  lr: 1.0e-3
"""

PRESET = """\
runtime: {device: cuda}
model:
  channels: [32, 64]
  norm: group
extra:
  raw: /data/x
"""


def test_merge_keeps_comments_layout_and_untouched_lines(tmp_path):
    params, preset = tmp_path / "params.yaml", tmp_path / "preset.yaml"
    params.write_text(PARAMS)
    preset.write_text(PRESET)
    changes = apply_preset(preset, params)
    assert changes == [("runtime.device", "auto", "cuda"), ("model.channels", [16, 32], [32, 64]),
                       ("model.norm", None, "group"), ("extra", None, {"raw": "/data/x"})]
    text = params.read_text()
    assert "  device: cuda        # auto | cpu | cuda\n" in text  # comment kept on a changed line
    assert "  channels: [32, 64]  # widths\n" in text  # flow list stays a flow list
    for line in ("# top comment\n", "  a:   {two_stage: true,  arch: transformer}\n", "  lr: 1.0e-3\n"):
        assert line in text  # untouched lines byte for byte (hand alignment, number format)
    assert yaml.safe_load(text) == {
        "runtime": {"device": "cuda", "launcher": "python"},
        "model": {"channels": [32, 64], "depth": 4, "norm": "group"},
        "variants": {"a": {"two_stage": True, "arch": "transformer"}, "bb": {"two_stage": False, "arch": "unet"}},
        "train": {"lr": 1e-3}, "extra": {"raw": "/data/x"}}
    assert apply_preset(preset, params) == [] and params.read_text() == text  # idempotent


def test_dry_run_empty_preset_and_errors(tmp_path):
    params, preset = tmp_path / "params.yaml", tmp_path / "preset.yaml"
    params.write_text(PARAMS)
    preset.write_text(PRESET)
    assert len(apply_preset(preset, params, dry_run=True)) == 4 and params.read_text() == PARAMS
    preset.write_text("# nothing\n")
    assert apply_preset(preset, params) == [] and params.read_text() == PARAMS
    with pytest.raises(ConfigError, match="preset .*missing.yaml not found"):
        apply_preset(tmp_path / "missing.yaml", params)
    preset.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        apply_preset(preset, params)
    preset.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        apply_preset(preset, params)


def test_real_params_round_trip_is_byte_identical(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "same.yaml").write_text(yaml.safe_dump({"runtime": yaml.safe_load(params.read_text())["runtime"]}))
    assert apply_preset(tmp_path / "same.yaml", params) == []
    (tmp_path / "one.yaml").write_text("vqvae: {train: {epochs: 99}}\n")
    apply_preset(tmp_path / "one.yaml", params)
    before, after = (ROOT / "params.yaml").read_text().splitlines(), params.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 1 and "epochs: 99" in changed[0][1]


def test_brats2021_preset_is_the_paper_setting(tmp_path):
    p = parse_params(merged_params(ROOT / "params.yaml", ROOT / "presets" / "brats2021.yaml"))
    vq, cond = p.vqvae_for("WT"), p.cond_for("agvqvae", "WT")
    assert (vq.model.num_embeddings, vq.model.latent_dim, vq.quantizer.decay) == (512, 32, 0.99)
    bb = cond.model.backbone
    assert (bb.depth, bb.dim, bb.heads, bb.soft_mask_blocks) == (8, 256, 8, (5, 6))
    assert p.runtime.device == "cuda" and p.runtime.precision == "bf16"
    assert p.runtime.launcher.startswith("torchrun ") and p.data.raw.startswith("/")
    for section in (vq, cond):
        assert section.train.patch_size == (128, 128, 128) and section.train.epochs >= 100
    assert tuple(s // 16 for s in cond.train.patch_size) == bb.pos_grid
    # every model of the pipeline builds at these sizes (weights only; no forward pass)
    assert sum(t.numel() for t in build_vqvae(vq).parameters()) > 0
    sizes = {}
    for name, spec in p.variants.items():
        extra = (512,) if spec.two_stage else ()
        cond = p.cond_for(name, "WT")
        net = build_model(spec, cond.model, 4, *extra, patch_size=cond.train.patch_size,
                          out_channels=len(p.regions) if spec.joint else 2)
        sizes[name] = sum(t.numel() for t in net.parameters())
    assert 5e6 < sizes["agvqvae"] < 5e7 and sizes["agvqvae_no_sm"] < sizes["agvqvae"]


def test_command_line(tmp_path, capsys):
    params, preset = tmp_path / "params.yaml", tmp_path / "preset.yaml"
    params.write_text(PARAMS)
    preset.write_text(PRESET)
    main(["apply", str(preset), "--params", str(params), "--dry-run"])
    assert "would change 4 value(s)" in capsys.readouterr().out and params.read_text() == PARAMS
    proc = subprocess.run([sys.executable, "-m", "agvq.presets", "apply", str(preset), "--params", str(params)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "model.channels: [16, 32] -> [32, 64]" in proc.stdout
    assert yaml.safe_load(params.read_text())["runtime"]["device"] == "cuda"
    proc = subprocess.run([sys.executable, "-m", "agvq.presets", "apply", str(tmp_path / "nope.yaml"),
                           "--params", str(params)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: preset")
