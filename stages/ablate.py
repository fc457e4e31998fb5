"""Ablation report: every variant's test-split evaluation in the paper's table layout, with and without its
postprocessing (``<variant>+pp`` rows), paired bootstrap comparisons of the main variant with each other row and of
each variant's postprocessing with its raw predictions (JSON + markdown), and a bar plot of HD95 and Dice."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.errors import ConfigError  # noqa: E402
from agvq.io.atomic import write_json, write_text  # noqa: E402
from agvq.metrics.ablation import ablation_report, bar_plot  # noqa: E402
from agvq.metrics.postprocessed import (effect_markdown, effect_summary, postprocessing_effect,  # noqa: E402
                                        with_postprocessed)


def _chosen_steps(path: str) -> dict:
    try:
        report = json.loads(Path(path).read_text())
        return {v: list(entry["steps"]) for v, entry in report["variants"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the postprocessing choices {path} ({type(exc).__name__}: {exc})") from None


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--eval-dir", required=True, help="folder of <variant>[+pp].json and <variant>[+pp]_cases.csv")
    parser.add_argument("--postprocessing", help="the postprocess stage's JSON: add the <variant>+pp rows and the "
                                                 "effect of postprocessing (their evaluations must be in --eval-dir)")
    parser.add_argument("--json", required=True, help="ablation metrics JSON to write")
    parser.add_argument("--markdown", required=True, help="markdown tables to write")
    parser.add_argument("--plot", required=True, help="bar plot PNG to write")
    args = parser.parse_args()
    params = load_params(args.params)
    s, regions = params.ablate, list(params.regions)
    variants = with_postprocessed(params.variants) if args.postprocessing else params.variants
    report = ablation_report(args.eval_dir, variants, regions, s.main_variant, s.bootstrap, s.seed, s.confidence)
    summary, markdown = report.summary, report.markdown
    if args.postprocessing:
        chosen = _chosen_steps(args.postprocessing)
        effect = postprocessing_effect(args.eval_dir, params.ordered_variants(), regions, s.bootstrap, s.seed,
                                       s.confidence)
        summary = {**summary, "postprocessing": {"steps": chosen, "effect": effect_summary(effect)}}
        markdown += "\n" + effect_markdown(effect, regions, s.confidence, s.bootstrap, s.seed, chosen)
    write_json(args.json, summary)
    write_text(args.markdown, markdown)
    bar_plot(report.intervals, report.table, args.plot, s.confidence)


if __name__ == "__main__":
    run_stage(main)
