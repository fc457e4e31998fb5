"""Ablation report: every variant's test-split evaluation in the paper's table layout, paired bootstrap comparisons of
the main variant with each other variant (JSON + markdown), and a bar plot of HD95 and Dice per variant and region."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.errors import ConfigError  # noqa: E402
from agvq.io.atomic import write_json, write_text  # noqa: E402
from agvq.metrics.ablation import ablation_report, bar_plot  # noqa: E402
from agvq.regions import check_region  # noqa: E402


def _settings(params: dict, cfg: dict) -> tuple[dict, list[str], dict]:
    variants = params.get("variants")
    if not isinstance(variants, dict) or not variants or not all(isinstance(v, dict) for v in variants.values()):
        raise ConfigError("params 'variants' must map each variant name to its settings")
    try:
        regions = [check_region(r) for r in params["regions"]]
        settings = {"main": str(cfg["main_variant"]), "n_boot": int(cfg["bootstrap"]), "seed": int(cfg["seed"]),
                    "confidence": float(cfg.get("confidence", 0.95))}
    except KeyError as exc:
        raise ConfigError(f"params lack {exc} (need 'regions' and ablate.main_variant/bootstrap/seed)") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"params 'regions' or section 'ablate' is invalid ({exc})") from None
    if settings["n_boot"] < 1 or not 0.0 < settings["confidence"] < 1.0:
        raise ConfigError("ablate.bootstrap must be >= 1 and ablate.confidence strictly between 0 and 1")
    return variants, regions, settings


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--eval-dir", required=True, help="folder of <variant>.json and <variant>_cases.csv")
    parser.add_argument("--json", required=True, help="ablation metrics JSON to write")
    parser.add_argument("--markdown", required=True, help="markdown tables to write")
    parser.add_argument("--plot", required=True, help="bar plot PNG to write")
    args = parser.parse_args()
    variants, regions, s = _settings(load_params(args.params), load_params(args.params, "ablate"))
    report = ablation_report(args.eval_dir, variants, regions, s["main"], s["n_boot"], s["seed"], s["confidence"])
    write_json(args.json, report.summary)
    write_text(args.markdown, report.markdown)
    bar_plot(report.intervals, report.table, args.plot, s["confidence"])


if __name__ == "__main__":
    run_stage(main)
