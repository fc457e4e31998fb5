"""Benchmark: preprocessing K BraTS-size cases against merely loading the same files with nibabel, in one run.

    python benchmarks/preprocess.py [--cases 4] [--workers 2] [--shape 240 240 155] [--repeat 2]

Writes K synthetic cases (agvq.data.synthetic phantoms, 4 int16 modalities + seg, BraTS 2021 layout) to a temp
folder, warms the page cache, then times, best of ``--repeat`` (the machine is shared, so the minimum is the least
disturbed measurement):

* floor: ``np.asanyarray(nib.load(f).dataobj)`` for every file (the cheapest nibabel load: no dtype conversion),
  serially and with the same worker pool as the stage; also ``get_fdata()`` (nibabel's usual float64 load);
* the stage's reader, ``agvq.io.nifti.read_volume``, which also verifies the whole gzip stream (CRC-32 and
  length; nibabel alone stops before the checksum), serially;
* ours: ``preprocess_dataset`` (validate, crop, z-score, masks, compressed npz + JSON, atomic output folder),
  with ``--workers`` processes and with one.

Prints the ratios, a per-case cost breakdown and the peak memory of one case (fresh process each: resident-set
growth and tracemalloc peak), for the stage's per-case work and for the nibabel load alone.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from agvq.config import PreprocessConfig  # noqa: E402
from agvq.io.prepared import write_prepared  # noqa: E402
from agvq.data.preprocess import prepare_from_header, preprocess_dataset  # noqa: E402
from agvq.data.synthetic import write_dataset  # noqa: E402
from agvq.io.discovery import discover_cases  # noqa: E402
from agvq.io.nifti import read_volume  # noqa: E402
from agvq.io.validation import load_image, load_seg, validate_case  # noqa: E402

MODS = ["flair", "t1", "t1ce", "t2"]


def load_native(paths: list[str]) -> int:
    return sum(np.asanyarray(nib.load(p).dataobj).size for p in paths)


def load_verified(paths: list[str]) -> int:
    return sum(read_volume(p).data.size for p in paths)


def load_fdata(paths: list[str]) -> int:
    return sum(nib.load(p).get_fdata().size for p in paths)


def timed_map(fn, items, workers: int) -> float:
    t0 = time.perf_counter()
    if workers <= 1:
        for item in items:
            fn(item)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(fn, items))
    return time.perf_counter() - t0


def timed_stage(raw: Path, out: Path, workers: int, args) -> float:
    t0 = time.perf_counter()
    cfg = PreprocessConfig(modalities=tuple(MODS), margin=args.margin, stride=args.stride, workers=workers,
                           compress_level=args.compress_level)
    preprocess_dataset(raw, out, cfg, progress=False)
    return time.perf_counter() - t0


def _proc_status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (per address space, unlike ru_maxrss which a spawned child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_memory(job: str, raw: str, case_index: int, out: str, args_tuple) -> tuple[float, float]:
    """(resident-set growth MB, tracemalloc peak MB) of one case's work in this (fresh) process."""
    margin, stride, level = args_tuple
    case = discover_cases(raw)[case_index]
    paths = [str(p) for p in list(case.images.values()) + [case.seg]]
    base = _proc_status_mb("VmRSS")
    tracemalloc.start()
    if job == "stage":
        arrays, props = prepare_from_header(validate_case(case, MODS), MODS, margin, stride)
        write_prepared(out, arrays, props, level)
        del arrays
    else:
        arrays = [np.asanyarray(nib.load(p).dataobj) for p in paths]
        del arrays
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return _proc_status_mb("VmHWM") - base, traced


def in_fresh_process(*args) -> tuple[float, float]:
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(peak_memory, *args).result()


def breakdown(raw: Path, out: Path, args) -> dict[str, float]:
    """Per-case seconds (serial, in this process, mean over cases): headers, load+checks, compute, write."""
    parts = {"headers": 0.0, "load+checks": 0.0, "prepare (load+compute)": 0.0, "write npz+json": 0.0}
    cases = discover_cases(raw)
    for case in cases:
        t0 = time.perf_counter()
        header = validate_case(case, MODS)
        t1 = time.perf_counter()
        for m in MODS:
            load_image(header, m)
        load_seg(header)
        t2 = time.perf_counter()
        arrays, props = prepare_from_header(header, MODS, args.margin, args.stride)
        t3 = time.perf_counter()
        write_prepared(out, arrays, props, args.compress_level)
        t4 = time.perf_counter()
        for k, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[k] += dt / len(cases)
    parts["compute = prepare - load"] = parts["prepare (load+compute)"] - parts["load+checks"]
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=4, help="number of cases K")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for the stage and the parallel floor")
    ap.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155])
    ap.add_argument("--repeat", type=int, default=2, help="timing rounds; the best is reported")
    ap.add_argument("--margin", type=int, default=2)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--compress-level", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="agvq_bench_") as tmp:
        tmp = Path(tmp)
        raw = tmp / "raw"
        t0 = time.perf_counter()
        write_dataset(raw, args.cases, tuple(args.shape), args.seed, "brats2021", 0.15, max(args.workers, 1),
                      progress=False)
        cases = discover_cases(raw)
        file_lists = [[str(p) for p in list(c.images.values()) + [c.seg]] for c in cases]
        in_mb = sum(os.path.getsize(p) for fl in file_lists for p in fl) / 2**20 / len(cases)
        print(f"{len(cases)} cases of {tuple(args.shape)} written in {time.perf_counter() - t0:.1f} s "
              f"({in_mb:.1f} MB of .nii.gz per case); workers={args.workers}, repeat={args.repeat}")
        timed_map(load_native, file_lists, 1)  # warm the page cache

        best: dict[str, float] = {}
        for _ in range(args.repeat):
            runs = {
                "floor: nibabel dataobj, serial": lambda: timed_map(load_native, file_lists, 1),
                f"floor: nibabel dataobj, {args.workers} workers": lambda: timed_map(load_native, file_lists,
                                                                                     args.workers),
                "nibabel get_fdata, serial": lambda: timed_map(load_fdata, file_lists, 1),
                "verified read (read_volume), serial": lambda: timed_map(load_verified, file_lists, 1),
                f"preprocess, {args.workers} workers": lambda: timed_stage(raw, tmp / "out", args.workers, args),
                "preprocess, 1 worker": lambda: timed_stage(raw, tmp / "out", 1, args),
            }
            for name, run in runs.items():
                best[name] = min(best.get(name, float("inf")), run())
        out_mb = sum(p.stat().st_size for p in (tmp / "out").glob("*.npz")) / 2**20 / len(cases)

        k = len(cases)
        print(f"\n{'timing (best of ' + str(args.repeat) + ')':<40}{'total s':>9}{'s/case':>9}")
        for name, sec in best.items():
            print(f"{name:<40}{sec:>9.2f}{sec / k:>9.3f}")
        floor_serial = best["floor: nibabel dataobj, serial"]
        floor_par = best[f"floor: nibabel dataobj, {args.workers} workers"]
        ours_par, ours_one = best[f"preprocess, {args.workers} workers"], best["preprocess, 1 worker"]
        print(f"\nRATIO preprocess ({args.workers} workers) / nibabel loading (serial loop): "
              f"{ours_par / floor_serial:.2f}   (goal <= 1.5)")
        print(f"ratio preprocess ({args.workers} workers) / nibabel loading ({args.workers} workers): "
              f"{ours_par / floor_par:.2f}")
        print(f"ratio preprocess (1 worker) / nibabel loading (serial loop): {ours_one / floor_serial:.2f}")
        print(f"ratio preprocess ({args.workers} workers) / nibabel get_fdata (serial loop): "
              f"{ours_par / best['nibabel get_fdata, serial']:.2f}")
        print(f"ratio verified read (whole gzip stream checked) / nibabel loading (serial loop): "
              f"{best['verified read (read_volume), serial'] / floor_serial:.3f}")
        print(f"output {out_mb:.1f} MB npz per case (compress level {args.compress_level})")

        print("\nper-case breakdown (serial, s):")
        for name, sec in breakdown(raw, tmp / "parts", args).items():
            print(f"  {name:<28}{sec:>7.3f}")

        mem_args = (args.margin, args.stride, args.compress_level)
        stage_rss, stage_traced = in_fresh_process("stage", str(raw), 0, str(tmp / "mem"), mem_args)
        load_rss, load_traced = in_fresh_process("load", str(raw), 0, str(tmp / "mem"), mem_args)
        print(f"\npeak memory per case: preprocess {stage_rss:.0f} MB resident growth "
              f"({stage_traced:.0f} MB traced peak); nibabel load alone {load_rss:.0f} MB "
              f"({load_traced:.0f} MB traced); a worker pool holds one case per worker")


if __name__ == "__main__":
    main()
