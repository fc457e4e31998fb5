"""Attention study report: every study variant against its plain reference on the test split (Dice and HD95 per
region with bootstrap CIs, paired bootstrap differences, parameter counts, training seconds), as JSON, markdown and
a plot of the differences."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.io.atomic import write_json, write_text  # noqa: E402
from agvq.metrics.attention_study import attention_report, difference_plot  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--eval-dir", required=True, help="folder of the study variants' <variant>.json / _cases.csv")
    parser.add_argument("--reference-eval-dir", required=True, help="folder of the evaluate stage's outputs")
    parser.add_argument("--models", required=True, help="folder of <variant>/<region>.json model contracts")
    parser.add_argument("--json", required=True, help="study metrics JSON to write")
    parser.add_argument("--markdown", required=True, help="markdown report to write")
    parser.add_argument("--plot", required=True, help="PNG of the paired differences to write")
    args = parser.parse_args()
    params = load_params(args.params)
    s = params.attention_study
    references = {name: params.attention_reference(name) for name in params.attention_variants}
    specs = {name: params.variant(name) for name in [*references, *references.values()]}
    report = attention_report(args.eval_dir, args.reference_eval_dir, args.models, specs, references, s.regions,
                              s.bootstrap, s.seed, s.confidence, s.model_seed)
    write_json(args.json, report.summary)
    write_text(args.markdown, report.markdown)
    difference_plot(report, args.plot)


if __name__ == "__main__":
    run_stage(main)
