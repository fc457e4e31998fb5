"""The shared training loop: crash/kill -9 resume equals an uninterrupted run, bit-identical reruns of the stage
scripts, non-finite loss/gradient stops naming the step, fail-fast output checks, bf16/channels-last paths."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import agvq.models.quantizer as qmod
from agvq.config import RuntimeConfig, TrainConfig
from agvq.data.dataset import CaseStore
from agvq.errors import ConfigError, TrainingError
from agvq.training import checkpoint
from agvq.training.loop import fit, validate_sharded
from agvq.training.runtime import Runtime, seed_everything, setup_runtime
from agvq.training.tasks import VQVAETask
from agvq.training.validation import validate
from tests.helpers_config import cpu_runtime, mask_loss, protocol, train_cfg, vqvae
from tests.helpers_training import cond_argv, make_prepared, run_stage_inprocess, vqvae_argv, write_params

ROOT = Path(__file__).resolve().parents[1]


def metrics_lines(path: Path) -> list[str]:
    """The metrics JSON's lines: all of them, bit for bit (wall time lives in the contract, not the metrics)."""
    return path.read_text().splitlines()


def assert_same_model_file(a: Path, b: Path) -> None:
    ba, bb = checkpoint.load(a), checkpoint.load(b)
    assert ba["state_dict"].keys() == bb["state_dict"].keys()
    for k in ba["state_dict"]:
        assert torch.equal(ba["state_dict"][k], bb["state_dict"][k]), k
    assert ba["metrics"] == bb["metrics"]
    strip = lambda c: {k: v for k, v in c.items() if k != "train_seconds"}  # noqa: E731 (wall time)
    assert ba["config"] == bb["config"] and strip(ba["contract"]) == strip(bb["contract"])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_prepared(root)
    return root


@pytest.fixture(scope="module")
def stage_root(data, tmp_path_factory) -> Path:
    """A folder with tiny params and one uninterrupted stage-1 run (``ref``) made by stages/train_vqvae.py."""
    root = tmp_path_factory.mktemp("stage")
    write_params(root / "params.yaml")
    with pytest.MonkeyPatch.context() as mp:
        run_stage_inprocess("train_vqvae.py", vqvae_argv(root, data, "ref"), mp)
    assert (root / "ref" / "model.pt").is_file() and not (root / "runs" / "ref").exists()
    return root


# ---- in-process loop ------------------------------------------------------------------------------------------

def tiny_task(seed: int = 0) -> VQVAETask:
    seed_everything(seed)
    # a high dead-code threshold re-seeds codes (random draws) in every epoch, so resuming must restore the RNG
    return VQVAETask(vqvae(kmeans_iters=2, dead_code_threshold=12.0), mask_loss())


def tiny_cfg(**kw) -> TrainConfig:
    return train_cfg(**{"epochs": 3, "batch_size": 4, "patches_per_epoch": 8, "patch_size": [16, 16, 16],
                        "lr": 2e-3, **kw})


@pytest.fixture(scope="module")
def stores(data) -> tuple[CaseStore, CaseStore]:
    ids = json.loads((data / "splits.json").read_text())
    return (CaseStore(data / "prepared", ids["train"], "WT", cache=True),
            CaseStore(data / "prepared", ids["val"], "WT", cache=True))


CPU = cpu_runtime()
PROTOCOL = protocol()


def run_fit(task, stores, run_dir, cfg=None, rt=CPU, fingerprint="fp"):
    return fit(task, *stores, cfg or tiny_cfg(), PROTOCOL, rt, run_dir, None, seed=0, fingerprint=fingerprint,
               desc="t")


def strip_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.fixture(scope="module")
def uninterrupted(stores, tmp_path_factory):
    task = tiny_task()
    result = run_fit(task, stores, tmp_path_factory.mktemp("full") / "run")
    return result, {k: v.clone() for k, v in task.model.state_dict().items()}


def test_resume_after_crash_mid_epoch_equals_uninterrupted(stores, uninterrupted, tmp_path):
    ref, ref_state = uninterrupted
    task = tiny_task()
    calls = {"n": 0}
    forward = task.forward_loss

    def crash_on_fourth(model, batch):  # 2 steps per epoch: dies in epoch 2, after its first step
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return forward(model, batch)

    task.forward_loss = crash_on_fourth
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_fit(task, stores, tmp_path / "run")
    saved = checkpoint.load(tmp_path / "run" / "last.pt")
    assert saved["epoch"] == 1 and [p.name for p in (tmp_path / "run").iterdir()] == ["last.pt"]

    resumed = tiny_task(seed=123)  # a fresh process: other init, other RNG; everything comes from last.pt
    result = run_fit(resumed, stores, tmp_path / "run")
    for k, v in ref_state.items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    for k, v in ref.best_state.items():
        assert torch.equal(result.best_state[k], v), k
    assert strip_seconds(result.history) == strip_seconds(ref.history)
    assert (result.best_epoch, result.best_metrics) == (ref.best_epoch, ref.best_metrics)


def test_resume_state_of_other_params_or_unreadable_is_ignored(stores, uninterrupted, tmp_path, caplog):
    ref, ref_state = uninterrupted
    run = tmp_path / "run"
    run_fit(tiny_task(), stores, run, cfg=tiny_cfg(epochs=1), fingerprint="other")  # crash-free, but keep last.pt
    assert (run / "last.pt").is_file()
    task = tiny_task()
    result = run_fit(task, stores, run)
    assert "belongs to a run with other params" in caplog.text
    assert strip_seconds(result.history) == strip_seconds(ref.history)
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:100])  # a truncated file (not one we write)
    (run / ".last.pt.abc.tmp.pt").write_bytes(b"left by a killed run")
    task = tiny_task()
    run_fit(task, stores, run)
    assert "unreadable resume state" in caplog.text and not (run / ".last.pt.abc.tmp.pt").exists()
    for k, v in ref_state.items():
        assert torch.equal(task.model.state_dict()[k], v), k


def test_sharded_validation_equals_plain_validation(stores):
    task = tiny_task()
    val = CaseStore(stores[1].prepared_dir, ["case04", "case05", "case00"], "WT", cache=True)
    expected = validate(task.predictor(task.model), val, task.val_input, PROTOCOL, CPU)
    assert validate_sharded(task.predictor(task.model), val, task.val_input, PROTOCOL, CPU) == expected


def test_nonfinite_loss_stops_naming_the_step(stores, tmp_path):
    task = tiny_task()
    forward, calls = task.forward_loss, {"n": 0}

    def nan_on_third(model, batch):
        calls["n"] += 1
        loss, logs = forward(model, batch)
        return (loss * float("nan") if calls["n"] == 3 else loss), logs

    task.forward_loss = nan_on_third
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) in t, epoch 2/3, step 1/2 \(global step 3\)"):
        run_fit(task, stores, tmp_path / "run")
    assert calls["n"] == 3  # stopped at once, nothing trained on the NaN


def test_nonfinite_gradient_stops_naming_the_step(stores, tmp_path):
    task = tiny_task()
    forward = task.forward_loss

    def nan_gradient(model, batch):  # finite value, NaN gradient: d sqrt(0 * w) / dw = 0 * inf
        loss, logs = forward(model, batch)
        return loss + (next(model.parameters()).sum() * 0).sqrt(), logs

    task.forward_loss = nan_gradient
    with pytest.raises(TrainingError, match=r"non-finite gradient norm \(nan\) in t, epoch 1/3, step 1/2"):
        run_fit(task, stores, tmp_path / "run")


def test_bf16_autocast_and_channels_last_on_cpu(stores, tmp_path, monkeypatch):
    task = tiny_task()
    seen = {"logits": set(), "distances": set()}
    forward, distances = task.forward_loss, qmod._sq_distances

    def record_forward(model, batch):
        assert batch["mask"].is_contiguous(memory_format=torch.channels_last_3d)
        seen["logits"].add(model(batch["mask"]).logits.dtype)
        return forward(model, batch)

    def record_distances(x, codes):
        seen["distances"].add((x.dtype, codes.dtype))
        return distances(x, codes)

    task.forward_loss = record_forward
    monkeypatch.setattr(qmod, "_sq_distances", record_distances)
    rt = Runtime(torch.device("cpu"), "bf16", True, 0, 1, 0)
    result = run_fit(task, stores, tmp_path / "run", cfg=tiny_cfg(epochs=1), rt=rt)
    assert seen["logits"] == {torch.bfloat16} and seen["distances"] == {(torch.float32, torch.float32)}
    conv = task.model.encoder[0].conv.weight
    assert conv.dtype == torch.float32 and conv.is_contiguous(memory_format=torch.channels_last_3d)
    assert np.isfinite(result.history[0]["train_loss"]) and 0 <= result.history[0]["val_dice"] <= 1


def test_fp16_grad_scaler_path_skips_overflowing_steps(stores, tmp_path):
    """fp16 is refused on CPU by setup_runtime (slow there), but the code path runs on CPU when forced: fp16
    autocast, scaled backward, unscale before clipping, and a non-finite gradient skips the step (no error)."""
    task = tiny_task()
    forward, seen = task.forward_loss, {"calls": 0, "dtypes": set()}

    def nan_gradient_once(model, batch):
        seen["calls"] += 1
        seen["dtypes"].add(model(batch["mask"]).logits.dtype)
        loss, logs = forward(model, batch)
        return (loss + (next(model.parameters()).sum() * 0).sqrt() if seen["calls"] == 1 else loss), logs

    task.forward_loss = nan_gradient_once
    result = run_fit(task, stores, tmp_path / "run", cfg=tiny_cfg(epochs=1), rt=cpu_runtime("fp16"))
    assert seen["dtypes"] == {torch.float16} and np.isfinite(result.history[0]["train_loss"])
    scaler = checkpoint.load(tmp_path / "run" / "last.pt")["scaler"]
    assert scaler["scale"] == 2.0**15  # 2^16 halved once by the skipped step


def test_runtime_rejects_bad_precision_and_batch():
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        setup_runtime(RuntimeConfig(device="cpu", precision="fp16"), 0)
    with pytest.raises(ConfigError, match="precision must be one of"):
        setup_runtime(RuntimeConfig(device="cpu", precision="fp8"), 0)
    with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
        fit(tiny_task(), None, None, tiny_cfg(), PROTOCOL, Runtime(torch.device("cpu"), "fp32", False, 0, 3, 0),
            "unused", None, 0, "fp", "t")


def test_full_disk_or_unwritable_run_dir_fails_before_training(stores, tmp_path, monkeypatch):
    task = tiny_task()
    task.forward_loss = lambda *a: pytest.fail("training started")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match="is not writable"):
        run_fit(task, stores, tmp_path / "file" / "run")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=60 * 2**20))
    run_fit(tiny_task(), stores, tmp_path / "ok", cfg=tiny_cfg(epochs=1))  # 60 MiB is room for a tiny model
    big = VQVAETask(vqvae(channels=(8, 256)), mask_loss())  # 3.6 M parameters
    big.forward_loss = task.forward_loss
    with pytest.raises(ConfigError, match=r"only 60\.0 MiB free"):
        run_fit(big, stores, tmp_path / "big")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=2**20))
    with pytest.raises(ConfigError, match=r"only 1\.0 MiB free"):
        run_fit(task, stores, tmp_path / "full")


# ---- the stage scripts ----------------------------------------------------------------------------------------

def test_stage_fails_fast_on_unwritable_output_or_full_disk(stage_root, data, monkeypatch, capsys):
    monkeypatch.setattr(VQVAETask, "forward_loss", lambda *a: pytest.fail("training started"))
    (stage_root / "blocker").write_text("a file where a folder should be")
    argv = vqvae_argv(stage_root, data, "blocker/x")
    with pytest.raises(SystemExit) as exc:
        run_stage_inprocess("train_vqvae.py", argv, monkeypatch)
    assert exc.value.code == 2
    assert "error: output folder" in capsys.readouterr().err
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10 * 2**20))
    with pytest.raises(SystemExit):
        run_stage_inprocess("train_vqvae.py", vqvae_argv(stage_root, data, "full"), monkeypatch)
    assert "MiB free on the disk" in capsys.readouterr().err


def test_stage_reports_divergence_in_one_line(data, tmp_path, monkeypatch, capsys):
    write_params(tmp_path / "params.yaml", {"vqvae": {"train": {"lr": 1.0e+30, "epochs": 2}}})
    with pytest.raises(SystemExit) as exc:
        run_stage_inprocess("train_vqvae.py", vqvae_argv(tmp_path, data, "nan"), monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and err.startswith("error: non-finite") and "(global step " in err, err
    assert not (tmp_path / "nan" / "model.pt").exists() and not (tmp_path / "nan" / "metrics.json").exists()


def test_stage_reruns_are_bit_identical(stage_root, data, monkeypatch):
    run_stage_inprocess("train_vqvae.py", vqvae_argv(stage_root, data, "again"), monkeypatch)
    assert metrics_lines(stage_root / "again" / "metrics.json") == metrics_lines(stage_root / "ref" / "metrics.json")
    assert_same_model_file(stage_root / "again" / "model.pt", stage_root / "ref" / "model.pt")
    vq = stage_root / "ref" / "model.pt"
    for name in ("cond1", "cond2"):
        run_stage_inprocess("train_cond.py", cond_argv(stage_root, data, vq, name), monkeypatch)
    assert metrics_lines(stage_root / "cond1" / "metrics.json") == metrics_lines(stage_root / "cond2" / "metrics.json")
    assert_same_model_file(stage_root / "cond1" / "model.pt", stage_root / "cond2" / "model.pt")
    assert checkpoint.load(stage_root / "cond1" / "model.pt")["kind"] == "code_predictor"


def test_kill9_mid_run_then_rerun_resumes_to_identical_weights(stage_root, data):
    cmd = [sys.executable, str(ROOT / "stages" / "train_vqvae.py"), *vqvae_argv(stage_root, data, "killed")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    last = stage_root / "runs" / "killed" / "last.pt"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(0.02)  # into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    epoch = checkpoint.load(last)["epoch"]
    assert 1 <= epoch < 6 and not (stage_root / "killed" / "model.pt").exists()
    curve = (stage_root / "killed" / "curve.csv").read_text().splitlines()  # complete rows only, never a torn file
    assert len(curve) - 1 in (epoch, epoch + 1) and all(line.count(",") == curve[0].count(",") for line in curve)

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming from {last}" in rerun.stderr
    assert not last.parent.exists()  # resume state removed once the outputs are written
    assert_same_model_file(stage_root / "killed" / "model.pt", stage_root / "ref" / "model.pt")
    assert metrics_lines(stage_root / "killed" / "metrics.json") == metrics_lines(stage_root / "ref" / "metrics.json")
