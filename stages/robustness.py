"""Robustness report: Dice/HD95 per region under each perturbation and severity, the change against the clean input
with bootstrap CIs, paired bootstrap CIs of the difference in change between the two-stage main variant and each
other variant (JSON + markdown), and a plot of metric against severity."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.io.atomic import write_json, write_text  # noqa: E402
from agvq.robustness.plot import robustness_plot  # noqa: E402
from agvq.robustness.report import robustness_report  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--cases-dir", required=True, help="folder of <variant>_cases.csv (robustness_predict)")
    parser.add_argument("--json", required=True, help="summary JSON to write")
    parser.add_argument("--markdown", required=True, help="markdown report to write")
    parser.add_argument("--plot", required=True, help="PNG to write")
    args = parser.parse_args()
    params = load_params(args.params)
    report = robustness_report(args.cases_dir, params.variants, list(params.regions), params.robustness)
    write_json(args.json, report.summary)
    write_text(args.markdown, report.markdown)
    robustness_plot(report.tables, params.variants, params.robustness, args.plot)


if __name__ == "__main__":
    run_stage(main)
