"""Benchmark: predicting one BraTS-size case with the main variant against a MONAI SegResNet baseline, in one run.

    python benchmarks/inference.py [--shape 240 240 155] [--threads 1] [--repeat 2] [--rois 96 128]
                                   [--match total|region] [--device cpu|cuda] [--tta none|flip|both]

The main variant (params ``variants.agvqvae``: CodePredictor with ``cond.model.backbone`` + the stage-1 MaskVQVAE
of ``vqvae.model``, untrained weights, which do not change the cost) is saved as three region model files and run
through our whole path: ``load_region_models`` once, then per case ``predict_case`` (read and check the NIfTI
files, crop to the brain, z-score, sliding window per region with the training patch size and the ``infer``
overlap/blend/batch size of params, decode through the frozen codebook, ET in TC in WT, paste back) and
``write_volume``. The baseline is a MONAI ``SegResNet`` (3 sigmoid outputs, one network for all regions) whose
``init_filters`` gives a parameter count closest to our three region models together (``--match total``) or to one
of them (``--match region``), run the MONAI way on the uncropped volume: load the 4 modalities, NormalizeIntensity
(nonzero, channel-wise), ``sliding_window_inference`` over the whole 240x240x155 grid, sigmoid > 0.5, label map,
write. It runs with our patch size and overlap (like for like), and with larger ROIs (``--rois``), the usual way to
run SegResNet. With ``--tta flip`` / ``both`` our path also runs with ``infer.tta: flip`` (the mean of the 8 axis
flips), and the time of each of our runs is given as a ratio to SegResNet at roi 96^3 on the uncropped volume (what
a user would run) and, for TTA, to our run without it.

Each job runs in a fresh process with the same torch thread count; the time is the best of ``--repeat`` runs
(the machine may be shared), the memory is the resident-set growth over the first run (VmHWM - VmRSS before it;
models loaded and warmed up before), and on a GPU the peak CUDA memory allocated.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from agvq.config import load_params, to_dict  # noqa: E402
from agvq.data.synthetic import write_dataset  # noqa: E402
from agvq.io.discovery import discover_cases  # noqa: E402
from agvq.io.nifti import read_volume, write_volume  # noqa: E402
from agvq.regions import REGIONS, get_convention, regions_to_labels  # noqa: E402

VARIANT = "agvqvae"


def _proc_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    """Make VmHWM restart from the current RSS (Linux >= 4.0), so the peak of the next run is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_main_variant(params, region: str, in_channels: int, seed: int = 0):
    """(CodePredictor, MaskVQVAE) of the main variant, untrained, as the training stages build them."""
    from agvq.models.factory import build_model
    from agvq.training.stage1 import build_vqvae

    torch.manual_seed(seed)
    vq_cfg = params.vqvae_for(region)
    vq = build_vqvae(vq_cfg)
    net = build_model(params.variant(VARIANT), params.cond_for(VARIANT, region).model, in_channels,
                      vq_cfg.model.num_embeddings)
    return net.eval(), vq.eval()


def save_main_variant(params, folder: Path, modalities: list[str]) -> int:
    """Write ``<folder>/<region>.pt`` as the training stages do; returns the parameters used at inference for all
    regions (code predictor, stage-1 decoder and codebook; the stage-1 encoder is not run)."""
    from agvq.io.model_file import model_file, save_atomic

    used = 0
    for i, region in enumerate(REGIONS):
        net, vq = build_main_variant(params, region, len(modalities), seed=i)
        vq_cfg, cond = params.vqvae_for(region), params.cond_for(VARIANT, region)
        patch = list(cond.train.patch_size)
        vq_contract = {"kind": "vqvae", "region": region, "in_channels": 1, "modalities": modalities,
                       "patch_size": list(vq_cfg.train.patch_size), "stride": vq.stride,
                       "num_embeddings": vq_cfg.model.num_embeddings, "latent_dim": vq_cfg.model.latent_dim}
        contract = {"kind": net.kind, "region": region, "in_channels": len(modalities), "modalities": modalities,
                    "patch_size": patch, "variant": VARIANT, "two_stage": True,
                    "switches": params.variant(VARIANT).switch_values(), "stride": net.stride}
        save_atomic(model_file(net.kind, net, contract, {}, {"vqvae": model_file("vqvae", vq, vq_contract)}),
                    folder / f"{region}.pt")
        used += n_params(net) + n_params(vq.decoder) + vq.quantizer.embedding.numel()
    return used


def segresnet(init_filters: int, in_channels: int, seed: int = 0):
    from monai.networks.nets import SegResNet

    torch.manual_seed(seed)
    groups = 8 if init_filters % 8 == 0 else 4
    return SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=len(REGIONS), init_filters=init_filters,
                     norm=("GROUP", {"num_groups": groups})).eval()


def pick_init_filters(target: int, in_channels: int) -> int:
    """The multiple of 4 whose SegResNet parameter count is closest to ``target``."""
    return min(range(4, 65, 4), key=lambda f: abs(n_params(segresnet(f, in_channels)) - target))


# ------------------------------------------------------------------------------------------- the two jobs
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, key: str, clock: dict, device: torch.device):
    """``fn`` that adds its run time (device synchronised) to ``clock[key]``."""
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        result = fn(*a, **k)
        _sync(device)
        clock[key] = clock.get(key, 0.0) + time.perf_counter() - t0
        return result
    return wrapper


def run_ours(case, models, modalities, cfg, out: Path, device) -> dict[str, float]:
    """Our path for one case: ``predict_case`` then ``write_volume``, as ``predict_cases`` does; the time spent in
    ``prepare_case`` and ``predict_masks`` is recorded through wrappers around them (a breakdown only)."""
    from agvq.inference import predict as predict_module

    clock: dict[str, float] = {}
    originals = predict_module.prepare_case, predict_module.predict_probabilities
    predict_module.prepare_case = _timed(originals[0], "read+crop+zscore", clock, device)
    predict_module.predict_probabilities = _timed(originals[1], "sliding windows (3 regions)", clock, device)
    try:
        t0 = time.perf_counter()
        infer_cfg, crop = cfg
        labels, props = predict_module.predict_case(case, models, modalities, infer_cfg, crop, device, "fp32")
        write_volume(out / f"{case.case}.nii.gz", labels, np.asarray(props["affine"]), props["spacing"])
        total = time.perf_counter() - t0
    finally:
        predict_module.prepare_case, predict_module.predict_probabilities = originals
    clock["compose+paste+write"] = total - sum(clock.values())
    clock["grid"] = "x".join(str(b - a) for a, b in zip(props["crop_start"], props["crop_stop"]))
    return clock


def run_segresnet(case, net, modalities, roi, overlap, sw_batch, blend, out: Path, device) -> dict[str, float]:
    from monai.inferers import sliding_window_inference
    from monai.transforms import NormalizeIntensity

    t0 = time.perf_counter()
    vols = [read_volume(case.images[m]) for m in modalities]
    image = np.stack([v.data.astype(np.float32) for v in vols])
    image = NormalizeIntensity(nonzero=True, channel_wise=True)(image)
    t1 = time.perf_counter()
    with torch.inference_mode():
        x = torch.as_tensor(np.asarray(image))[None].to(device)
        logits = sliding_window_inference(x, roi, sw_batch, net, overlap=overlap, mode=blend)
        masks = (torch.sigmoid(logits[0]) > 0.5).cpu().numpy()
    _sync(device)
    t2 = time.perf_counter()
    labels = regions_to_labels(dict(zip(REGIONS, masks)), get_convention(case.convention))
    write_volume(out / f"{case.case}.nii.gz", labels, vols[0].affine, vols[0].spacing)
    t3 = time.perf_counter()
    return {"read+zscore": t1 - t0, "sliding windows": t2 - t1, "compose+write": t3 - t2,
            "grid": "x".join(str(s) for s in image.shape[1:])}


def job(kind: str, opts: dict) -> dict:
    """One measurement in a fresh process: best time over ``repeat`` runs, RSS growth of the first run."""
    torch.set_num_threads(opts["threads"])
    device = torch.device(opts["device"])
    case = discover_cases(opts["raw"])[0]
    out = Path(opts["out"]) / kind
    out.mkdir(parents=True, exist_ok=True)
    modalities = opts["modalities"]
    if kind.startswith("ours"):
        from agvq.config import InferConfig
        from agvq.inference.predict import CropSettings, load_region_models

        t0 = time.perf_counter()
        models = load_region_models(opts["models"], REGIONS, device)
        load_s = time.perf_counter() - t0
        cfg = (InferConfig(**opts["infer"]), CropSettings(opts["margin"], opts["stride"]))
        patch = next(iter(models.values())).patch_size
        warm = torch.zeros(1, len(modalities), *patch, device=device)
        with torch.inference_mode():
            for m in models.values():
                m.predictor(warm)

        def run():
            return run_ours(case, models, modalities, cfg, out, device)
    else:
        roi = tuple(opts["roi"])
        net = segresnet(opts["init_filters"], len(modalities)).to(device)
        load_s = 0.0
        with torch.inference_mode():
            net(torch.zeros(1, len(modalities), *roi, device=device))
        inf = opts["infer"]

        def run():
            return run_segresnet(case, net, modalities, roi, inf["overlap"], inf["sw_batch_size"], inf["blend"],
                                 out, device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _reset_peak()
    before = _proc_mb("VmRSS")
    best, parts = float("inf"), {}
    for i in range(opts["repeat"]):
        t0 = time.perf_counter()
        p = run()
        sec = time.perf_counter() - t0
        if i == 0:
            rss = _proc_mb("VmHWM") - before
        if sec < best:
            best, parts = sec, p
    cuda_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"seconds": best, "parts": parts, "rss_mb": rss, "cuda_mb": cuda_mb, "load_s": load_s}


def in_fresh_process(kind: str, opts: dict) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(job, kind, opts).result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=str(Path(__file__).resolve().parents[1] / "params.yaml"))
    ap.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155])
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every job")
    ap.add_argument("--repeat", type=int, default=2, help="timing rounds per job; the best is reported")
    ap.add_argument("--rois", type=int, nargs="*", default=[96, 128], help="extra SegResNet ROI sizes (cubes)")
    ap.add_argument("--match", choices=["total", "region"], default="total",
                    help="SegResNet size matched to our 3 region models together or to one of them")
    ap.add_argument("--init-filters", type=int, default=0, help="SegResNet init_filters (0: matched by --match)")
    ap.add_argument("--sw-batch-size", type=int, default=0, help="override params infer.sw_batch_size (both)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tta", default="both", choices=["none", "flip", "both"],
                    help="our path without TTA, with flip TTA (infer.tta: flip), or both")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    params = load_params(args.params)
    infer = to_dict(params.infer)
    if args.sw_batch_size:
        infer["sw_batch_size"] = args.sw_batch_size
    modalities = list(params.preprocess.modalities)
    patch = list(params.cond_for(VARIANT, "WT").train.patch_size)
    with tempfile.TemporaryDirectory(prefix="agvq_bench_infer_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        s = params.synthesize
        write_dataset(tmp / "raw", 1, tuple(args.shape), args.seed, s.naming, s.no_et_fraction, 1, progress=False)
        print(f"1 synthetic case of {tuple(args.shape)} x {len(modalities)} modalities written in "
              f"{time.perf_counter() - t0:.1f} s; device {args.device}, {args.threads} torch thread(s), "
              f"best of {args.repeat}")
        (tmp / "models").mkdir()
        ours_params = save_main_variant(params, tmp / "models", modalities)
        target = ours_params if args.match == "total" else ours_params // len(REGIONS)
        f = args.init_filters or pick_init_filters(target, len(modalities))
        base_params = n_params(segresnet(f, len(modalities)))
        print(f"ours ({VARIANT}, 3 region models): {ours_params / 1e6:.2f} M parameters used at inference "
              f"({ours_params / len(REGIONS) / 1e6:.2f} M per region); patch {patch}, overlap {infer['overlap']}, "
              f"blend {infer['blend']}, sw_batch_size {infer['sw_batch_size']}")
        print(f"SegResNet init_filters={f} (matched to {args.match}): {base_params / 1e6:.2f} M parameters, "
              f"one network with 3 sigmoid outputs")

        opts = {"raw": str(tmp / "raw"), "out": str(tmp / "pred"), "models": str(tmp / "models"),
                "modalities": modalities, "infer": infer, "margin": params.preprocess.margin,
                "stride": params.preprocess.stride, "threads": args.threads, "device": args.device,
                "repeat": args.repeat, "init_filters": f}
        results = {}
        if args.tta in ("none", "both"):
            results["ours"] = in_fresh_process("ours", {**opts, "infer": {**infer, "tta": "none"}})
        if args.tta in ("flip", "both"):
            results["ours + TTA flip"] = in_fresh_process("ours+tta", {**opts, "infer": {**infer, "tta": "flip"}})
        for roi in [patch] + [[r] * 3 for r in sorted(set(args.rois) | {96})]:
            name = f"SegResNet roi {roi[0]}^3" if len(set(roi)) == 1 else f"SegResNet roi {roi}"
            results[name] = in_fresh_process("segresnet", {**opts, "roi": roi})

        ours = results.get("ours") or results["ours + TTA flip"]
        print(f"\n{'job':<24}{'seconds':>9}{'RSS +MB':>9}{'CUDA MB':>9}{'ratio ours/job':>16}   breakdown (s)")
        for name, r in results.items():
            cuda = f"{r['cuda_mb']:.0f}" if r["cuda_mb"] is not None else "-"
            ratio = ours["seconds"] / r["seconds"]
            detail = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in r["parts"].items())
            print(f"{name:<24}{r['seconds']:>9.2f}{r['rss_mb']:>9.0f}{cuda:>9}{ratio:>16.2f}   {detail}")
        print(f"(ours also loaded its 3 model files once in {ours['load_s']:.2f} s, outside the per-case time)")
        like = results[f"SegResNet roi {patch[0]}^3"] if len(set(patch)) == 1 else results[f"SegResNet roi {patch}"]
        if "ours" in results:
            print(f"\nRATIO ours / SegResNet (same patch {patch[0]}, same overlap): "
                  f"{ours['seconds'] / like['seconds']:.2f} (time), "
                  f"{ours['rss_mb'] / max(like['rss_mb'], 1e-6):.2f} (peak RSS growth)   goal: time ratio <= 1")
        base = results["SegResNet roi 96^3"]
        for name in ("ours", "ours + TTA flip"):
            if name in results:
                print(f"RATIO {name} / SegResNet roi 96^3 on the uncropped volume: "
                      f"{results[name]['seconds'] / base['seconds']:.2f} (time per case)")
        if "ours" in results and "ours + TTA flip" in results:
            print(f"RATIO TTA cost, ours + TTA flip / ours: "
                  f"{results['ours + TTA flip']['seconds'] / results['ours']['seconds']:.2f} (time per case; "
                  f"8 passes of the sliding window per region)")

if __name__ == "__main__":
    main()
