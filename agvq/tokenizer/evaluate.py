"""Test-split evaluation of the tokenizer: reconstruction of every scored axial slice of every sequence, synthesis
of each sequence from each other one and from all the others together, against the trivial baseline (the source
histogram-matched to the target inside the brain), codebook use, the markdown table and the synthesis figures.

Scores are per slice (SSIM and PSNR by torchmetrics on the [0, 1] scale, data range 1; agvq.metrics.image).
Statistics are over cases, the independent units: each case's mean over its slices, then the mean over cases with
a percentile bootstrap interval; differences to the baseline are paired by case.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from agvq.config import TokenizerEvalConfig
from agvq.metrics.ablation import bootstrap_ci
from agvq.metrics.image import LPIPS_NOTE, match_histogram, psnr_per_image, ssim_per_image
from agvq.tokenizer.data import TokenizerStore, scored_slices
from agvq.tokenizer.figures import synthesis_figure
from agvq.tokenizer.model import MRITokenizer
from agvq.tokenizer.synthesis import render_many

DATA_RANGE = 1.0
ALL_OTHERS = "others"  # the source name of "every other sequence together"
TOKENIZER, BASELINE = "tokenizer", "histogram"


def combined_baseline(image: np.ndarray, sources: list[int], target: int, brain: np.ndarray) -> np.ndarray:
    """The baseline from several sources: each histogram-matched to the target, averaged, matched again."""
    mean = np.mean([match_histogram(image[s], image[target], brain) for s in sources], axis=0)
    return match_histogram(mean, image[target], brain)


def _scores(pred: np.ndarray, real: np.ndarray, zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice SSIM and PSNR of the axial slices ``zs`` ((X, Y, len(zs)) arrays)."""
    p = torch.from_numpy(np.ascontiguousarray(np.moveaxis(pred, -1, 0))[:, None].astype(np.float32))
    r = torch.from_numpy(np.ascontiguousarray(np.moveaxis(real, -1, 0))[:, None].astype(np.float32))
    return ssim_per_image(p, r, DATA_RANGE).numpy(), psnr_per_image(p, r, DATA_RANGE).numpy()


def _rows(case: str, kind: str, method: str, source: str, target: str, zs, ssim, psnr) -> list[dict]:
    return [{"case": case, "kind": kind, "method": method, "source": source, "target": target, "slice": int(z),
             "ssim": float(s), "psnr": float(p)} for z, s, p in zip(zs, ssim, psnr)]


def slice_table(model: MRITokenizer, store: TokenizerStore, cfg: TokenizerEvalConfig
                ) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, list[dict]]]:
    """Every score of the test cases: (per-slice table, code histogram per sequence, figure rows per target)."""
    names = store.modalities
    rows: list[dict] = []
    counts = {n: np.zeros(model.quantizer.num_embeddings) for n in names}
    figures: dict[str, list[dict]] = {n: [] for n in names}
    for i in tqdm(range(len(store)), desc="evaluate tokenizer", unit="case", mininterval=2.0):
        case = store[i]
        image, brain = case.image, case.brain
        zs = scored_slices(brain, cfg.min_brain_fraction)
        if len(zs) == 0:
            continue
        requests = [((k,), name) for k, name in enumerate(names)]  # reconstructions
        requests += [((s,), target) for target in names for s in range(len(names)) if names[s] != target]
        if len(names) > 2:
            requests += [(tuple(s for s in range(len(names)) if names[s] != target), target) for target in names]
        rendered, codes = render_many(model, image, brain, requests, zs)
        for k, name in enumerate(names):
            counts[name] += codes[k]
        for (sources, target), out in zip(requests, rendered):
            t = names.index(target)
            real = image[t][..., zs]
            if sources == (t,):
                rows += _rows(case.case, "reconstruction", TOKENIZER, target, target, zs, *_scores(out, real, zs))
                continue
            source = names[sources[0]] if len(sources) == 1 else ALL_OTHERS
            if len(sources) == 1:
                base = match_histogram(image[sources[0]], image[t], brain)[..., zs]
            else:
                base = combined_baseline(image, list(sources), t, brain)[..., zs]
            rows += _rows(case.case, "synthesis", TOKENIZER, source, target, zs, *_scores(out, real, zs))
            rows += _rows(case.case, "synthesis", BASELINE, source, target, zs, *_scores(base, real, zs))
            if len(sources) > 1 and len(figures[target]) < cfg.figure_slices:
                j = int(brain[..., zs].reshape(-1, len(zs)).sum(0).argmax())
                figures[target].append({
                    "caption": f"{case.case} z={int(zs[j])}",
                    "sources": {names[s]: image[s][..., zs[j]] for s in sources},
                    "synthesized": out[..., j], "baseline": base[..., j], "real": real[..., j]})
    if not rows:
        raise ValueError(f"no test slice has a brain share of at least {cfg.min_brain_fraction:g}")
    return pd.DataFrame(rows), counts, figures


def _case_means(df: pd.DataFrame, metric: str) -> pd.Series:
    return df.groupby("case")[metric].mean()


def _ci(df: pd.DataFrame, metric: str, cfg: TokenizerEvalConfig) -> dict:
    """Mean over cases of the per-case slice means, with its bootstrap CI; ``slices`` counts the slices."""
    values = _case_means(df, metric).to_numpy()
    out = bootstrap_ci(values[np.isfinite(values)], cfg.bootstrap, cfg.seed, cfg.confidence)
    return {"mean": out["mean"], "ci_low": out["ci_low"], "ci_high": out["ci_high"], "cases": out["n"],
            "slices": int(len(df))}


def _perplexity(counts: np.ndarray) -> float:
    p = counts / max(counts.sum(), 1.0)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def summarize(df: pd.DataFrame, counts: dict[str, np.ndarray], names: list[str], cfg: TokenizerEvalConfig) -> dict:
    """The JSON report: reconstruction per sequence, the synthesis table, the per-target verdict, codebook use."""
    finite = df.replace([np.inf, -np.inf], np.nan)
    recon = {}
    for name in names:
        rows = finite[(finite["kind"] == "reconstruction") & (finite["target"] == name)]
        recon[name] = {"ssim": _ci(rows, "ssim", cfg), "psnr": _ci(rows, "psnr", cfg),
                       "codes_used": int((counts[name] > 0).sum()), "perplexity": _perplexity(counts[name])}
    synthesis = []
    syn = finite[finite["kind"] == "synthesis"]
    for target in names:
        for source in [n for n in names if n != target] + [ALL_OTHERS]:
            pair = syn[(syn["source"] == source) & (syn["target"] == target)]
            if pair.empty:
                continue
            entry: dict = {"source": source, "target": target}
            for method in (TOKENIZER, BASELINE):
                rows = pair[pair["method"] == method]
                entry[method] = {"ssim": _ci(rows, "ssim", cfg), "psnr": _ci(rows, "psnr", cfg), "lpips": None}
            for metric in ("ssim", "psnr"):
                diff = (_case_means(pair[pair["method"] == TOKENIZER], metric)
                        - _case_means(pair[pair["method"] == BASELINE], metric)).dropna().to_numpy()
                ci = bootstrap_ci(diff, cfg.bootstrap, cfg.seed, cfg.confidence)
                entry[f"{metric}_difference"] = {"mean": ci["mean"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"]}
            synthesis.append(entry)
    verdict = {}
    for target in names:
        entries = [e for e in synthesis if e["target"] == target]
        if not entries:
            continue
        best_model = max(entries, key=lambda e: e[TOKENIZER]["ssim"]["mean"])
        best_base = max(entries, key=lambda e: e[BASELINE]["ssim"]["mean"])
        fused = next((e for e in entries if e["source"] == ALL_OTHERS), best_model)
        verdict[target] = {
            "tokenizer_source": fused["source"], "tokenizer_ssim": fused[TOKENIZER]["ssim"]["mean"],
            "best_baseline_source": best_base["source"], "best_baseline_ssim": best_base[BASELINE]["ssim"]["mean"],
            "beats_best_baseline": bool(fused[TOKENIZER]["ssim"]["mean"] > best_base[BASELINE]["ssim"]["mean"]),
        }
    total = sum(counts.values())
    return {
        "split": "test", "cases": int(df["case"].nunique()), "data_range": DATA_RANGE,
        "intensity_scale": "per case and sequence, brain percentiles (low, high) -> [0, 1], 0 outside the brain",
        "slices": f"axial slices whose brain share is at least {cfg.min_brain_fraction:g}",
        "statistics": (f"mean over cases of per-case slice means; {100 * cfg.confidence:g}% percentile bootstrap "
                       f"interval over cases ({cfg.bootstrap} resamples); differences paired by case"),
        "lpips": LPIPS_NOTE,
        "reconstruction": recon,
        "reconstruction_ssim_min": min(r["ssim"]["mean"] for r in recon.values()),
        "codes_used": int((total > 0).sum()), "num_embeddings": int(total.size), "perplexity": _perplexity(total),
        "synthesis": synthesis,
        "targets": verdict,
        "targets_beating_baseline": int(sum(v["beats_best_baseline"] for v in verdict.values())),
    }


def _cell(stats: dict, decimals: int) -> str:
    return f"{stats['mean']:.{decimals}f} [{stats['ci_low']:.{decimals}f}, {stats['ci_high']:.{decimals}f}]"


def markdown_report(report: dict) -> str:
    """Reconstruction per sequence, then the source -> target synthesis table (PSNR, SSIM, LPIPS per method)."""
    pct = report["statistics"].split("%")[0].split()[-1]
    lines = [f"## Reconstruction ({report['split']} split, {report['cases']} cases; mean [{pct}% CI over cases])", "",
             "| Sequence | SSIM | PSNR (dB) | Codes used | Perplexity |", "|:---|---:|---:|---:|---:|"]
    for name, r in report["reconstruction"].items():
        lines.append(f"| {name} | {_cell(r['ssim'], 3)} | {_cell(r['psnr'], 2)} | {r['codes_used']} | "
                     f"{r['perplexity']:.1f} |")
    lines += ["", f"Codebook: {report['codes_used']} of {report['num_embeddings']} codes used on the test slices, "
              f"perplexity {report['perplexity']:.1f}.", "",
              "## Synthesis: source → target", "",
              "| Source → Target | PSNR tokenizer | PSNR histogram | SSIM tokenizer | SSIM histogram | "
              "ΔSSIM [CI] | LPIPS |",
              "|:---|---:|---:|---:|---:|---:|:---:|"]
    for e in report["synthesis"]:
        source = "all others" if e["source"] == ALL_OTHERS else e["source"]
        d = e["ssim_difference"]
        mark = " †" if d["ci_low"] > 0 or d["ci_high"] < 0 else ""
        lines.append(f"| {source} → {e['target']} | {_cell(e[TOKENIZER]['psnr'], 2)} | "
                     f"{_cell(e[BASELINE]['psnr'], 2)} | {_cell(e[TOKENIZER]['ssim'], 3)} | "
                     f"{_cell(e[BASELINE]['ssim'], 3)} | {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
                     f"{mark} | n/a |")
    lines += ["", "ΔSSIM: tokenizer − histogram baseline, paired by case; † marks an interval that excludes 0.",
              "Histogram baseline: the source sequence mapped to the target's own intensity histogram inside the "
              "brain (it uses the real target's histogram, which a missing sequence would not have).",
              f"LPIPS: n/a. {report['lpips']}.", "",
              "## Per target: tokenizer (all other sequences together) vs the best baseline", "",
              "| Target | Tokenizer SSIM | Best baseline (source) | Beats it |", "|:---|---:|---:|:---:|"]
    for target, v in report["targets"].items():
        source = "all others" if v["best_baseline_source"] == ALL_OTHERS else v["best_baseline_source"]
        lines.append(f"| {target} | {v['tokenizer_ssim']:.3f} | {v['best_baseline_ssim']:.3f} ({source}) | "
                     f"{'yes' if v['beats_best_baseline'] else 'no'} |")
    return "\n".join(lines) + "\n"


def write_figures(figures: dict[str, list[dict]], out_dir: str | Path) -> list[Path]:
    out = []
    for target, rows in figures.items():
        if rows:
            path = Path(out_dir) / f"{target}.png"
            synthesis_figure(rows, target, path)
            out.append(path)
    return out
