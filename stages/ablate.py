"""The paper's two tables (method comparison and AS x SM ablation) from every variant's test-split evaluation, with
the published BraTS 2021 numbers beside ours, each variant with and without its postprocessing (``<variant>+pp``
rows), paired bootstrap comparisons of the main variant with each other row over cases and seeds, the effect of
each variant's postprocessing (JSON + markdown), and a bar plot of HD95 and Dice per variant and region."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from agvq.cli import base_parser, guard_paths, load_params, run_stage  # noqa: E402
from agvq.errors import ConfigError  # noqa: E402
from agvq.io.atomic import write_json, write_text  # noqa: E402
from agvq.metrics.ablation import ablation_report  # noqa: E402
from agvq.metrics.ablation_plot import bar_plot  # noqa: E402
from agvq.metrics.postprocessed import (effect_markdown, effect_summary, postprocessed_name,  # noqa: E402
                                        postprocessing_effect, with_postprocessed)
from agvq.metrics.published import load_published  # noqa: E402


def _chosen_steps(path: str) -> dict:
    try:
        report = json.loads(Path(path).read_text())
        return {v: list(entry["steps"]) for v, entry in report["variants"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the postprocessing choices {path} ({type(exc).__name__}: {exc})") from None


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--eval-dir", required=True, help="folder of <variant>[+pp].json and <variant>[+pp]_cases.csv")
    parser.add_argument("--published", help="YAML of the paper's published numbers (shown beside ours)")
    parser.add_argument("--postprocessing", help="the postprocess stage's JSON: add the <variant>+pp rows and the "
                                                 "effect of postprocessing (their evaluations must be in --eval-dir)")
    parser.add_argument("--json", required=True, help="ablation metrics JSON to write")
    parser.add_argument("--markdown", required=True, help="markdown tables to write")
    parser.add_argument("--plot", required=True, help="bar plot PNG to write")
    args = parser.parse_args()
    guard_paths(args, "ablate", inputs=("eval_dir", "published"), files=("json", "markdown", "plot"))
    params = load_params(args.params)
    s, regions = params.ablate, list(params.regions)
    lists = {"comparison": list(s.comparison), "ablation": list(s.ablation)}
    if not any(lists.values()):
        lists = {"ablation": params.ordered_variants()}
    variants = params.variants
    if args.postprocessing:  # each row followed by its postprocessed one
        variants = with_postprocessed(params.variants)
        lists = {k: [n for v in names for n in (v, postprocessed_name(v))] for k, names in lists.items()}
    published = load_published(args.published) if args.published else None
    report = ablation_report(args.eval_dir, variants, lists, regions, s.main_variant, s.bootstrap, s.seed,
                             s.confidence, published)
    summary, markdown = report.summary, report.markdown
    if args.postprocessing:
        chosen = _chosen_steps(args.postprocessing)
        names = list(dict.fromkeys(n for names in (s.comparison, s.ablation) for n in names)) or \
            params.ordered_variants()
        effect = postprocessing_effect(args.eval_dir, names, regions, s.bootstrap, s.seed, s.confidence)
        summary = {**summary, "postprocessing": {"steps": chosen, "effect": effect_summary(effect)}}
        markdown += "\n" + effect_markdown(effect, regions, s.confidence, s.bootstrap, s.seed, chosen)
    write_json(args.json, summary)
    write_text(args.markdown, markdown)
    bar_plot(report.intervals, pd.concat(report.tables.values(), ignore_index=True), args.plot, s.confidence)


if __name__ == "__main__":
    run_stage(main)
