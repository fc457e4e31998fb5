"""Robustness study, one variant: predict the test cases clean and under every seeded perturbation and severity of
params ``robustness``, and write the per-case Dice/HD95 table (the evaluate stage's conventions).

Perturbed volumes stay in memory; ``--save-perturbed DIR`` (a new folder) writes them as NIfTI for inspection.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.device import check_precision, resolve_device, set_threads  # noqa: E402
from agvq.inference.predict import CropSettings  # noqa: E402
from agvq.io.splits import split_ids  # noqa: E402
from agvq.metrics.tables import write_case_table  # noqa: E402
from agvq.robustness.study import robustness_cases, select_cases  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--models", required=True, help="folder with <region>.pt model files of one variant")
    parser.add_argument("--raw", required=True, help="raw case folders with ground truth")
    parser.add_argument("--splits", required=True, help="splits JSON (its --split cases are studied)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--out", required=True, help="per-case CSV to write")
    parser.add_argument("--save-perturbed", help="new folder to write the perturbed volumes to (default: none)")
    args = parser.parse_args()
    params = load_params(args.params)
    study = params.robustness
    case_ids = select_cases(split_ids(args.splits, args.split), study.cases)
    set_threads(params.runtime.threads)
    device = resolve_device(params.runtime.device)
    precision = check_precision(params.runtime.precision, device)
    crop = CropSettings(params.preprocess.margin, params.preprocess.stride)
    table = robustness_cases(args.models, args.raw, case_ids, list(params.regions), study, params.infer, crop,
                             params.evaluate.empty_penalty, device, precision, args.save_perturbed)
    write_case_table(table, args.out)
    print(f"wrote {len(table)} rows ({len(case_ids)} cases) to {args.out}")


if __name__ == "__main__":
    run_stage(main)
