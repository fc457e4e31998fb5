"""The paper's two tables (method comparison and AS x SM ablation) from every variant's test-split evaluation, with
the published BraTS 2021 numbers beside ours, paired bootstrap comparisons of the main variant with each other
variant over cases and seeds (JSON + markdown), and a bar plot of HD95 and Dice per variant and region."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from agvq.cli import base_parser, guard_paths, load_params, run_stage  # noqa: E402
from agvq.io.atomic import write_json, write_text  # noqa: E402
from agvq.metrics.ablation import ablation_report  # noqa: E402
from agvq.metrics.ablation_plot import bar_plot  # noqa: E402
from agvq.metrics.published import load_published  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--eval-dir", required=True, help="folder of <variant>.json and <variant>_cases.csv")
    parser.add_argument("--published", help="YAML of the paper's published numbers (shown beside ours)")
    parser.add_argument("--json", required=True, help="ablation metrics JSON to write")
    parser.add_argument("--markdown", required=True, help="markdown tables to write")
    parser.add_argument("--plot", required=True, help="bar plot PNG to write")
    args = parser.parse_args()
    guard_paths(args, "ablate", inputs=("eval_dir", "published"), files=("json", "markdown", "plot"))
    params = load_params(args.params)
    s = params.ablate
    lists = {"comparison": list(s.comparison), "ablation": list(s.ablation)}
    if not any(lists.values()):
        lists = {"ablation": params.ordered_variants()}
    published = load_published(args.published) if args.published else None
    report = ablation_report(args.eval_dir, params.variants, lists, list(params.regions), s.main_variant,
                             s.bootstrap, s.seed, s.confidence, published)
    write_json(args.json, report.summary)
    write_text(args.markdown, report.markdown)
    bar_plot(report.intervals, pd.concat(report.tables.values(), ignore_index=True), args.plot, s.confidence)


if __name__ == "__main__":
    run_stage(main)
