"""Attention study: predict the test split with one study variant's region models and evaluate the predictions, as
the infer and evaluate stages do, on the regions of ``attention_study.regions`` only.

Writes ``<pred>/<case>.nii.gz`` (BraTS label maps on the original grid), the per-case Dice/HD95 CSV and a JSON summary.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, guard_paths, load_params, run_stage  # noqa: E402
from agvq.device import check_precision, resolve_device, set_threads  # noqa: E402
from agvq.inference.predict import CropSettings, run_inference  # noqa: E402
from agvq.io.splits import split_ids  # noqa: E402
from agvq.metrics.evaluate import evaluate_predictions  # noqa: E402
from agvq.metrics.tables import summarize, write_case_table, write_summary  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--models", required=True, help="folder with the <region>.pt (or joint.pt) model files of one "
                                                         "study variant (its attention_study.model_seed)")
    parser.add_argument("--raw", required=True, help="raw case folders (BraTS 2021 or 2023 naming, with labels)")
    parser.add_argument("--splits", required=True, help="splits JSON (its --split ids are predicted and evaluated)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--pred", required=True, help="folder to write the predictions to")
    parser.add_argument("--out-csv", required=True, help="per-case CSV to write")
    parser.add_argument("--out-json", required=True, help="summary JSON to write")
    args = parser.parse_args()
    guard_paths(args, "evaluate_attention", inputs=("models", "raw", "splits"), files=("out_csv", "out_json"))
    params = load_params(args.params)
    regions = list(params.attention_study.regions)
    case_ids = split_ids(args.splits, args.split)
    set_threads(params.runtime.threads)
    device = resolve_device(params.runtime.device)
    precision = check_precision(params.runtime.precision, device)
    crop = CropSettings(params.preprocess.margin, params.preprocess.stride)
    run_inference(args.models, args.raw, args.pred, case_ids, regions, params.infer, crop, device, precision)
    cfg = params.evaluate
    cases = evaluate_predictions(args.pred, args.raw, case_ids, regions, cfg.empty_penalty, cfg.workers,
                                 cfg.nsd_tolerance)
    write_case_table(cases, args.out_csv)
    write_summary(summarize(cases, regions, cfg.empty_penalty), args.out_json)
    print(f"evaluated {len(case_ids)} cases of {args.models} on {', '.join(regions)}")


if __name__ == "__main__":
    run_stage(main)
