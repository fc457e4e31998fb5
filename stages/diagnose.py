"""Diagnose the two-stage model on the VALIDATION split: stage-1 reconstruction ceiling, code accuracy at boundary
vs interior latent positions, and where false positives sit (beside a single-stage model's)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, guard_paths, load_params, run_stage  # noqa: E402
from agvq.diagnosis.report import diagnose, diagnosis_markdown  # noqa: E402
from agvq.io.atomic import write_json, write_text  # noqa: E402
from agvq.io.splits import split_ids  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--models", required=True, help="folder of the two-stage <region>.pt files (one seed)")
    parser.add_argument("--compare", help="folder of a single-stage model's <region>.pt files, for the false positives")
    parser.add_argument("--prepared", required=True, help="prepared cases folder")
    parser.add_argument("--splits", required=True, help="splits JSON (its val cases are used)")
    parser.add_argument("--json", required=True, help="diagnosis JSON to write")
    parser.add_argument("--markdown", required=True, help="diagnosis markdown to write")
    args = parser.parse_args()
    guard_paths(args, "diagnose", inputs=("models", "compare", "prepared", "splits"), files=("json", "markdown"))
    params = load_params(args.params)
    report = diagnose(params, Path(args.models), Path(args.compare) if args.compare else None, Path(args.prepared),
                      split_ids(args.splits, "val"))
    write_json(args.json, {k: v for k, v in report.items()})
    write_text(args.markdown, diagnosis_markdown(report, Path(args.models).parent.name,
                                                 Path(args.compare).parent.name if args.compare else None))
    print(diagnosis_markdown(report, Path(args.models).parent.name, None).splitlines()[0])


if __name__ == "__main__":
    run_stage(main)
