"""Evaluate one variant's test-split predictions: per-case Dice/HD95 CSV and a JSON summary (BraTS conventions)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.errors import ConfigError  # noqa: E402
from agvq.metrics.evaluate import evaluate_predictions, ground_truth  # noqa: E402
from agvq.metrics.figures import draw_evaluation  # noqa: E402
from agvq.metrics.tables import summarize, write_case_table, write_summary  # noqa: E402
from agvq.regions import check_region  # noqa: E402


def _test_ids(path: Path) -> list[str]:
    try:
        ids = json.loads(path.read_text())["test"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the test ids from splits file {path} ({type(exc).__name__}: {exc})") from None
    if not ids:
        raise ConfigError(f"splits file {path} has no test cases")
    return list(ids)


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--pred", required=True, help="folder of <case>.nii.gz predictions")
    parser.add_argument("--raw", required=True, help="raw case folders (ground truth)")
    parser.add_argument("--splits", required=True, help="splits JSON (its test ids are evaluated)")
    parser.add_argument("--out-csv", required=True, help="per-case CSV to write")
    parser.add_argument("--out-json", required=True, help="summary JSON to write")
    parser.add_argument("--figure", help="qualitative PNG to write (truth and prediction overlays)")
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = load_params(args.params, "evaluate")
    try:
        regions = [check_region(r) for r in params["regions"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"params 'regions' is invalid ({exc})") from None
    if "empty_penalty" not in cfg:
        raise ConfigError("params section 'evaluate' has no empty_penalty")
    penalty = float(cfg["empty_penalty"])
    test_ids = _test_ids(Path(args.splits))
    cases = evaluate_predictions(args.pred, args.raw, test_ids, regions, penalty, int(cfg.get("workers", 1)))
    write_case_table(cases, args.out_csv)
    write_summary(summarize(cases, regions, penalty), args.out_json)
    if args.figure:
        draw_evaluation(cases, args.pred, ground_truth(args.raw, test_ids), args.figure, int(cfg.get("figure_cases", 3)))


if __name__ == "__main__":
    run_stage(main)
