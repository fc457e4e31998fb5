"""Evaluate one variant's predictions (test split by default): per-case CSV and JSON summary of Dice, HD95, NSD,
sensitivity, specificity and the lesion-wise Dice / HD95 of the official BraTS package (BraTS conventions).

With ``--per-seed``, ``--pred`` holds one ``seed<k>/`` folder per training seed of params ``seeds``: the table gets a
``seed`` column, and the summary the per-seed means and their spread."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from agvq.cli import base_parser, guard_paths, load_params, run_stage  # noqa: E402
from agvq.io.splits import split_ids  # noqa: E402
from agvq.metrics.evaluate import evaluate_predictions, ground_truth  # noqa: E402
from agvq.metrics.figures import draw_evaluation  # noqa: E402
from agvq.metrics.tables import summarize, write_case_table, write_summary  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--pred", required=True, help="folder of <case>.nii.gz predictions")
    parser.add_argument("--raw", required=True, help="raw case folders (ground truth)")
    parser.add_argument("--splits", required=True, help="splits JSON (its --split ids are evaluated)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--out-csv", required=True, help="per-case CSV to write")
    parser.add_argument("--out-json", required=True, help="summary JSON to write")
    parser.add_argument("--figure", help="qualitative PNG to write (truth and prediction overlays)")
    parser.add_argument("--per-seed", action="store_true",
                        help="--pred holds seed<k>/ folders (params seeds); evaluate every seed")
    args = parser.parse_args()
    guard_paths(args, "evaluate", inputs=("pred", "raw", "splits"), files=("out_csv", "out_json", "figure"))
    params = load_params(args.params)
    cfg, regions = params.evaluate, list(params.regions)
    case_ids = split_ids(args.splits, args.split)
    seeds = list(params.seeds) if args.per_seed else [None]
    tables = []
    for seed in seeds:
        pred = Path(args.pred) / f"seed{seed}" if seed is not None else Path(args.pred)
        table = evaluate_predictions(pred, args.raw, case_ids, regions, cfg.empty_penalty, cfg.workers,
                                     cfg.nsd_tolerance)
        tables.append(table.assign(seed=seed if seed is not None else 0))
    cases = pd.concat(tables, ignore_index=True)
    write_case_table(cases, args.out_csv)
    write_summary(summarize(cases, regions, cfg.empty_penalty), args.out_json)
    if args.figure:
        first = Path(args.pred) / f"seed{seeds[0]}" if seeds[0] is not None else Path(args.pred)
        draw_evaluation(tables[0], first, ground_truth(args.raw, case_ids), args.figure, cfg.figure_cases)


if __name__ == "__main__":
    run_stage(main)
