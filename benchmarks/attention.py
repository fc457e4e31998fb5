"""Training-step time and parameters of the attention study's variants against their plain references (MONAI's
U-Net for the unet_* variants), measured in the same run on the default patches, printed as ratios.

Each step is the training loop's own ``train_step`` (forward, backward, clipping, AdamW) on a synthetic batch of the
variant's ``cond.train`` patch size and batch size (see benchmarks/train_step.py, whose ``measure`` this reuses).
The ratio times the reference's training seconds estimates what the study adds to ``dvc repro``. On a CPU shared
with other jobs use ``--threads 1``.

    python benchmarks/attention.py --threads 1
    python benchmarks/attention.py --variants unet_cbam unet_pam --steps 5
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agvq.config import load_params  # noqa: E402
from agvq.device import resolve_device  # noqa: E402
from agvq.io.atomic import write_json  # noqa: E402
from agvq.models.factory import build_model  # noqa: E402
from agvq.training.runtime import Runtime, seed_everything  # noqa: E402
from agvq.training.stage1 import build_vqvae  # noqa: E402
from agvq.training.tasks import CodeTask, SegmentationTask  # noqa: E402
from train_step import measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def task_of(params, name: str, region: str):
    spec, cond = params.variant(name), params.cond_for(name, region)
    seed_everything(0)
    if spec.two_stage:
        vq = params.vqvae_for(region)
        model = build_model(spec, cond.model, 4, vq.model.num_embeddings)
        return CodeTask(model, build_vqvae(vq), cond.loss)
    return SegmentationTask(build_model(spec, cond.model, 4), cond.loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--variants", nargs="*", help="study variants (default: all of attention_study.variants)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    device = resolve_device("auto")
    rt = Runtime(device, "fp32", False, 0, 1, 0)
    region = params.attention_study.regions[0]
    names = args.variants or list(params.attention_variants)
    refs = {n: params.attention_reference(n) for n in names}
    rows = {}
    for name in list(dict.fromkeys(refs.values())) + names:
        train = params.cond_for(name, region).train
        rows[name] = measure(lambda n=name: task_of(params, n, region), rt, train.batch_size, tuple(train.patch_size),
                             args.steps, args.warmup)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {where}; patch {rows[names[0]]['patch'][0]}^3 x {rows[names[0]]['batch']}, region {region}")
    for name in names:
        r, ref = rows[name], rows[refs[name]]
        ratio = r["step_s"] / ref["step_s"]
        rows[name]["ratio_vs_reference"] = round(ratio, 3)
        print(f"{name:14s} {r['params_m']:7.3f} M params ({refs[name]} {ref['params_m']:.3f} M)  "
              f"{r['step_s']:7.4f} s/step vs {ref['step_s']:7.4f}  ratio {ratio:5.2f}")
    if args.out:
        write_json(args.out, {"device": where, "region": region, "rows": rows})


if __name__ == "__main__":
    main()
