"""The evaluate_tokenizer stage: load the model and the split's cases, score them, write JSON, markdown, the
per-slice CSV and one synthesis figure per target sequence."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from agvq.config import Params
from agvq.device import resolve_device, set_threads
from agvq.errors import ConfigError
from agvq.io.atomic import atomic_path, ensure_writable, write_json, write_text
from agvq.io.splits import split_ids
from agvq.tokenizer.data import TokenizerStore
from agvq.tokenizer.evaluate import markdown_report, slice_table, summarize, write_figures
from agvq.tokenizer.model import load_tokenizer


def evaluate_stage(params: Params, model_path, prepared, splits, split: str, out_json: Path, out_md: Path,
                   out_csv: Path, figures_dir: Path) -> dict:
    ensure_writable([out_json, out_md, out_csv, figures_dir / "probe.png"])
    set_threads(params.runtime.threads)
    device = resolve_device(params.runtime.device)
    t0 = time.perf_counter()
    model, bundle = load_tokenizer(model_path)
    model = model.to(device)
    store = TokenizerStore(prepared, split_ids(splits, split), model.percentiles, cache=False)
    unknown = sorted(set(store.modalities) - set(model.sequences))
    if unknown:
        raise ConfigError(f"{model_path} renders {model.sequences}; the prepared cases also have {unknown}")
    with torch.inference_mode():
        df, counts, figures = slice_table(model, store, params.tokenizer.evaluate)
    report = summarize(df, counts, store.modalities, params.tokenizer.evaluate)
    report["split"] = split
    report["model_best_epoch"] = bundle.get("metrics", {}).get("best_epoch")
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    write_json(out_json, report)
    write_text(out_md, markdown_report(report))
    write_figures(figures, figures_dir)
    print(f"evaluated {report['cases']} {split} cases in {time.perf_counter() - t0:.1f} s")
    return report
