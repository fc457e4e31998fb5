"""Training throughput and peak memory of every model kind, at the default (params.yaml) and paper
(presets/brats2021.yaml) sizes, on the available device; our conditional network against a MONAI SegResNet of
similar parameter count on the same patches; and the wall time of the full paper-scale pipeline derived from it.

Each step is the training loop's own ``train_step`` (autocast forward, backward, grad clipping, AdamW) on a
synthetic batch (4-channel noise MRI, ellipsoid masks); stage 2 includes the frozen stage-1 encoder that makes its
targets. Peak memory: CUDA ``max_memory_allocated``; on CPU the rise of the process's peak resident set over its
size before the model was built (Linux ``VmHWM``). Every measurement runs in its own process. Timings: best-of-two
means over ``--steps`` steps after ``--warmup`` steps. On a CPU shared with other jobs use ``--threads 1``: idle-
waiting OpenMP threads then make timings swing by 10x.

    python benchmarks/train_step.py                          # default and paper sizes on the available device
    python benchmarks/train_step.py --sizes default          # just the CPU-sized models
    python benchmarks/train_step.py --paper-patch 64 --paper-batch 1 --out result.json
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import SegResNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.io.atomic import write_json  # noqa: E402
from agvq.models.factory import build_model  # noqa: E402
from agvq.presets import merged_params  # noqa: E402
from agvq.training.loop import train_step  # noqa: E402
from agvq.config import parse_params  # noqa: E402
from agvq.device import resolve_device  # noqa: E402
from agvq.training.runtime import Runtime, seed_everything  # noqa: E402
from agvq.training.stage1 import build_vqvae  # noqa: E402
from agvq.training.tasks import CodeTask, JointSegmentationTask, SegmentationTask, VQVAETask  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("vqvae", "code_predictor", "agunet", "unet", "unetr", "swinunetr", "segresnet_joint")
JOINT = ("unet", "unetr", "swinunetr", "segresnet_joint")  # one model, one sigmoid output per region


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or on Linux CPU the rise of VmHWM (reset on entry)."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.base = _status("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.peak = _status("VmHWM") - self.base


def mask_batch(batch: int, patch, seed: int = 0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(p) for p in patch], indexing="ij")).astype(np.float32)
    out = np.zeros((batch, 1, *patch), np.float32)
    for i in range(batch):
        c = g.uniform(0.3, 0.7, 3) * np.array(patch)
        r = g.uniform(0.1, 0.3, 3) * np.array(patch)
        out[i, 0] = ((((grid - c[:, None, None, None]) / r[:, None, None, None]) ** 2).sum(0) <= 1)
    return torch.from_numpy(out)


VARIANT_OF = {"code_predictor": "agvqvae", "agunet": "agunet", "unet": "unet", "unetr": "unetr",
              "swinunetr": "swinunetr", "segresnet_joint": "segresnet"}


def make_task(kind: str, params, in_channels: int = 4):
    """Task (model + loss) of one model kind as the stages build it from ``params`` (region WT)."""
    vq = params.vqvae_for("WT")
    seed_everything(0)
    if kind == "vqvae":
        return VQVAETask(build_vqvae(vq), vq.loss)
    if kind not in VARIANT_OF:
        raise ValueError(kind)
    name = VARIANT_OF[kind]
    spec, cond = params.variant(name), params.cond_for(name, "WT")
    if kind == "code_predictor":
        frozen = build_vqvae(vq)
        return CodeTask(build_model(spec, cond.model, in_channels, vq.model.num_embeddings), frozen, cond.loss)
    if spec.joint:
        return JointSegmentationTask(build_model(spec, cond.model, in_channels, patch_size=cond.train.patch_size,
                                                 out_channels=len(params.regions)), cond.loss)
    return SegmentationTask(build_model(spec, cond.model, in_channels, patch_size=cond.train.patch_size), cond.loss)


def train_settings(kind: str, params):
    return params.vqvae_for("WT").train if kind == "vqvae" else params.cond_for(VARIANT_OF.get(kind, "agvqvae"),
                                                                                "WT").train


def _segresnet(filters: int, in_channels: int) -> SegResNet:
    return SegResNet(spatial_dims=3, init_filters=filters, in_channels=in_channels, out_channels=2,
                     norm=("GROUP", {"num_groups": math.gcd(filters, 8)}))


def segresnet_like(n_params: float, in_channels: int = 4) -> SegResNet:
    """MONAI SegResNet (2-class, MONAI's default blocks) whose ``init_filters`` brings its parameter count closest
    to ``n_params`` (group norm with gcd(filters, 8) groups, so any width is allowed)."""
    sizes = {}
    for f in range(2, 129):
        sizes[f] = count(_segresnet(f, in_channels))
        if sizes[f] > n_params:
            break
    return _segresnet(min(sizes, key=lambda f: abs(sizes[f] - n_params)), in_channels)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure(make, rt: Runtime, batch: int, patch, steps: int, warmup: int, mask_channels: int = 1) -> dict:
    """Seconds per training step (best of two means over ``steps``) and peak memory (model, optimiser state,
    activations) of the task ``make()`` builds (``mask_channels``: regions of a joint model)."""
    masks = mask_batch(batch, patch)
    data = {"image": rt.to_device(torch.randn(batch, 4, *patch) + masks),
            "mask": rt.to_device(masks.repeat(1, mask_channels, 1, 1, 1))}
    with PeakMemory(rt.device) as mem:
        task = make()
        model = task.model.to(rt.device)
        if getattr(task, "vqvae", None) is not None:
            task.vqvae.to(rt.device)
        if rt.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        scaler = rt.grad_scaler()
        model.train()
        means = []
        for rounds in range(2):
            for _ in range(warmup if rounds == 0 else 0):
                train_step(task, model, data, optimizer, scaler, rt, 1.0, "benchmark warm-up")
            if rt.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                train_step(task, model, data, optimizer, scaler, rt, 1.0, "benchmark")
            if rt.device.type == "cuda":
                torch.cuda.synchronize()
            means.append((time.perf_counter() - t0) / steps)
    step = min(means)
    return {"params_m": round(count(model) / 1e6, 3), "batch": batch, "patch": list(patch),
            "step_s": round(step, 4), "patches_per_s": round(batch / step, 3), "peak_mb": round(mem.peak / 2**20, 1)}


def shape_of(kind: str, size: str, params, args, device: torch.device) -> tuple[int, tuple]:
    """(batch, patch) of one measurement: params' training shape; at paper size optionally overridden, and
    batch 1 on CPU."""
    train = train_settings(kind, params)
    batch, patch = train.batch_size, tuple(train.patch_size)
    if size == "paper":
        patch = (args.paper_patch,) * 3 if args.paper_patch else patch
        batch = args.paper_batch or (batch if device.type == "cuda" else 1)
    return batch, patch


def run_one(args, rt: Runtime, params) -> dict:
    """One measurement in this (fresh) process."""
    batch, patch = shape_of(args.one, args.size, params, args, rt.device)
    if args.one == "segresnet":
        return measure(lambda: SegmentationTask(segresnet_like(args.match_params)), rt, batch, patch, args.steps,
                       args.warmup)
    return measure(lambda: make_task(args.one, params), rt, batch, patch, args.steps, args.warmup,
                   len(params.regions) if args.one in JOINT else 1)


def run_isolated(kind: str, size: str, argv: list[str], match_params: int = 0) -> dict:
    """``run_one`` in a child process, so each model's peak memory and timing start from a clean process."""
    cmd = [sys.executable, __file__, *argv, "--one", kind, "--size", size, "--match-params", str(match_params)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} at {size} size failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def estimate_hours(params, rates: dict[str, float]) -> tuple[float, list[str]]:
    """Training time of every model of the pipeline at ``params`` from measured patches/s per kind."""
    regions, seeds = len(params.regions), len(params.seeds)
    joint = {v: k for k, v in VARIANT_OF.items() if k in JOINT}
    kinds = ["code_predictor"] * len(params.two_stage_variants) * seeds + [
        "agunet"] * len(params.single_stage_variants) * seeds
    kinds = ["vqvae"] * regions + [k for k in kinds for _ in range(regions)] + [
        joint[params.variant(v).arch] for v in params.joint_variants for _ in range(seeds)]
    lines, total = [], 0.0
    for kind in dict.fromkeys(kinds):
        train = train_settings(kind, params)
        n = kinds.count(kind)
        hours = train.epochs * train.patches_per_epoch / rates[kind] / 3600
        total += n * hours
        lines.append(f"  {n:2d} x {kind:15s} {train.epochs} epochs x {train.patches_per_epoch} patches / "
                     f"{rates[kind]:.3g} patches/s = {hours:.2f} h each")
    return total, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--preset", default=str(ROOT / "presets" / "brats2021.yaml"))
    parser.add_argument("--sizes", nargs="+", default=["default", "paper"], choices=["default", "paper"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default=None, help="fp32 | bf16 | fp16 (default: fp32 on CPU, bf16 on GPU)")
    parser.add_argument("--paper-patch", type=int, default=None, help="cube side at paper size (default: preset's)")
    parser.add_argument("--paper-batch", type=int, default=None, help="batch at paper size (default: preset's "
                                                                       "per-GPU batch on GPU, 1 on CPU)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON")
    parser.add_argument("--one", choices=KINDS + ("segresnet",), help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=["default", "paper"], help=argparse.SUPPRESS)
    parser.add_argument("--match-params", type=int, default=0, help=argparse.SUPPRESS)
    args, argv = parser.parse_args(), sys.argv[1:]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rt = Runtime(device, args.precision or ("bf16" if device.type == "cuda" else "fp32"), False, 0, 1, 0)
    sizes = {"default": parse_params(merged_params(args.params, None)),
             "paper": parse_params(merged_params(args.params, args.preset))}
    if args.one:
        print(json.dumps(run_one(args, rt, sizes[args.size])))
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}, precision {rt.precision}, torch {torch.__version__}")
    results: dict = {"device": name, "precision": rt.precision, "sizes": {}}
    for size in args.sizes:
        rows = {}
        for kind in KINDS + ("segresnet",):
            match = int(rows["code_predictor"]["params_m"] * 1e6) if kind == "segresnet" else 0
            rows[kind] = r = run_isolated(kind, size, argv, match)
            print(f"{size:7s} {kind:15s} {r['params_m']:7.3f} M params  patch {r['patch'][0]}^3 x {r['batch']}  "
                  f"{r['step_s']:8.3f} s/step  {r['patches_per_s']:8.2f} patches/s  peak {r['peak_mb']:8.1f} MB",
                  flush=True)
        ratio = rows["code_predictor"]["step_s"] / rows["segresnet"]["step_s"]
        rows["ratio_code_predictor_vs_segresnet"] = round(ratio, 3)
        print(f"{size}: conditional network / SegResNet ({rows['segresnet']['params_m']:.3f} M vs "
              f"{rows['code_predictor']['params_m']:.3f} M params) step time ratio = {ratio:.2f}")
        results["sizes"][size] = rows
    if "paper" in results["sizes"]:
        rows, preset = results["sizes"]["paper"], sizes["paper"]
        total, lines = estimate_hours(preset, {k: rows[k]["patches_per_s"] for k in KINDS})
        print(f"paper-scale pipeline on {name}: training time = sum over models of "
              "epochs x patches_per_epoch / (patches/s)")
        print("\n".join(lines))
        same = all(rows[k]["patch"] == list(train_settings(k, preset).patch_size) for k in KINDS)
        print(f"  total {total:.1f} device-hours for one process (torchrun on N GPUs: about total / N, ideal "
              "scaling); excludes validation, preprocessing, inference, data-loading stalls"
              + ("" if same else "; NOTE: measured at a smaller patch than the preset's, so this underestimates"))
        results["paper_pipeline_hours"] = round(total, 2)
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    main()
