"""The diagnosis report of the two-stage model: JSON for `dvc metrics` and a short markdown table per finding."""
from __future__ import annotations

from pathlib import Path

from agvq.config import Params
from agvq.data.dataset import CaseStore
from agvq.errors import ConfigError
from agvq.diagnosis.two_stage import POSITIONS, code_accuracy, reconstruction_ceiling, region_false_positives
from agvq.inference.predict import load_region_models
from agvq.io.prepared import load_case


def diagnose(params: Params, models_dir: Path, compare_dir: Path | None, prepared: Path, val_ids: list[str]) -> dict:
    """Validation-split diagnosis of the two-stage models in ``models_dir`` (one ``<region>.pt`` per region),
    with the false positives of the single-stage models in ``compare_dir`` beside them."""
    import torch

    cpu = torch.device("cpu")
    if not params.variant(params.diagnose.variant).two_stage:
        raise ConfigError(f"diagnose.variant {params.diagnose.variant!r} is not a two-stage variant")
    protocol, penalty = params.infer, params.evaluate.empty_penalty
    models = load_region_models(models_dir, params.regions, cpu)
    others = load_region_models(compare_dir, params.regions, cpu) if compare_dir is not None else {}
    masks = {case: load_case(prepared, case).masks for case in val_ids}
    out: dict = {"split": "val", "cases": len(val_ids), "regions": {}}
    for region in params.regions:
        model = models[region]
        store = CaseStore(prepared, val_ids, region, cache=False)
        entry = {
            "reconstruction_ceiling": reconstruction_ceiling(model.predictor.vqvae, store, model.patch_size,
                                                             protocol, penalty),
            "code_accuracy": code_accuracy(model.predictor, store, model.patch_size, protocol).as_dict(),
            "false_positives": region_false_positives(model.predictor, store, masks, model.patch_size, protocol,
                                                      region),
        }
        if region in others:
            entry["false_positives_single_stage"] = region_false_positives(
                others[region].predictor, store, masks, others[region].patch_size, protocol, region)
        out["regions"][region] = entry
    return out


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def diagnosis_markdown(report: dict, variant: str, compare: str | None) -> str:
    lines = [f"# Diagnosis of `{variant}` on the validation split ({report['cases']} cases)", "",
             "## Stage-1 ceiling and code accuracy", "",
             "| Region | recon Dice (ceiling) | recon HD95 | codes used | code acc. background | code acc. boundary "
             "| code acc. interior | boundary positions | wrong boundary codes that decode to the same block |",
             "|:---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for region, e in report["regions"].items():
        c, a = e["reconstruction_ceiling"], e["code_accuracy"]
        lines.append(f"| {region} | {c['dice']:.3f} | {c['hd95']:.2f} | {c['used_codes']}/{c['num_embeddings']} | "
                     + " | ".join(_pct(a[p]["accuracy"]) for p in POSITIONS)
                     + f" | {a['boundary']['positions']} | {_pct(a['boundary']['wrong_but_same_block'])} |")
    lines += ["", "## Where the false positives sit", "",
              "Shares of each model's false-positive voxels of the region: inside the true tumour core (ET only: "
              "necrosis taken for enhancement), in the true whole tumour outside the core (oedema), outside the "
              "whole tumour; median distance to the true region; cases whose predicted volume exceeds the true "
              "one.", "",
              "| Region | model | FP voxels | in TC | in WT | outside WT | median dist. (mm) | cases over-predicted |",
              "|:---|:---|---:|---:|---:|---:|---:|---:|"]
    for region, e in report["regions"].items():
        for label, key in ((variant, "false_positives"), (compare, "false_positives_single_stage")):
            if key not in e:
                continue
            f = e[key]
            dist = "–" if f["median_of_case_median_distance_mm"] is None else f"{f['median_of_case_median_distance_mm']:.2f}"
            lines.append(f"| {region} | `{label}` | {f['false_positive_voxels']} | {_pct(f['in_TC'])} | "
                         f"{_pct(f['in_WT'])} | {_pct(f['outside_WT'])} | {dist} | "
                         f"{f['cases_predicting_more_than_truth']}/{f['cases']} |")
    return "\n".join(lines) + "\n"
