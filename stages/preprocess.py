"""Preprocess: validate every raw case, crop to the brain, z-score, derive WT/TC/ET masks, write stable splits.

The prepared folder, the splits file and the report are written all or nothing; an existing prepared folder is
replaced only if this stage wrote it.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, guard_paths, load_params, run_stage  # noqa: E402
from agvq.data.preprocess_run import run_preprocess  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--raw", required=True, help="raw folder of BraTS cases (either naming)")
    parser.add_argument("--out", required=True, help="prepared cases folder to write (replaced whole)")
    parser.add_argument("--splits", required=True, help="splits JSON to write")
    parser.add_argument("--report", required=True, help="preprocess report JSON to write")
    args = parser.parse_args()
    cfg = load_params(args.params).preprocess
    guard_paths(args, "preprocess", inputs=("raw",), folders=("out",), files=("splits", "report"),
                extra_inputs={"preprocess.split.file": cfg.split.file})
    report, splits = run_preprocess(args.raw, args.out, args.splits, args.report, cfg)
    counts = report["counts"]
    print(f"preprocess: {counts['prepared']} prepared, {counts['skipped']} skipped of {counts['found']} found "
          f"in {report['elapsed_seconds']:.1f} s; splits train/val/test = "
          f"{len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])}")
    for item in report["skipped"]:
        print(f"skipped {item['case']}: {item['file'] or '-'}: {item['problem']}")


if __name__ == "__main__":
    run_stage(main)
