"""Preprocess: validate every raw case, crop to the brain, z-score, derive WT/TC/ET masks, write seeded splits."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.data.preprocess import preprocess_dataset  # noqa: E402
from agvq.data.splits import make_splits  # noqa: E402
from agvq.io.atomic import write_json  # noqa: E402
from agvq.io.splits import write_splits  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--raw", required=True, help="raw folder of BraTS cases (either naming)")
    parser.add_argument("--out", required=True, help="prepared cases folder to write (replaced whole)")
    parser.add_argument("--splits", required=True, help="splits JSON to write")
    parser.add_argument("--report", required=True, help="preprocess report JSON to write")
    args = parser.parse_args()
    cfg = load_params(args.params).preprocess
    splits: dict = {}

    def commit_splits(case_ids: list[str]) -> None:  # runs before the prepared folder is committed
        splits.update(make_splits(case_ids, cfg.split.val_fraction, cfg.split.test_fraction, cfg.split.seed))

    report = preprocess_dataset(args.raw, args.out, cfg, before_commit=commit_splits)
    write_splits(args.splits, splits)
    write_json(args.report, report)
    counts = report["counts"]
    print(f"preprocess: {counts['prepared']} prepared, {counts['skipped']} skipped of {counts['found']} found "
          f"in {report['elapsed_seconds']:.1f} s; splits train/val/test = "
          f"{len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])}")
    for item in report["skipped"]:
        print(f"skipped {item['case']}: {item['file'] or '-'}: {item['problem']}")


if __name__ == "__main__":
    run_stage(main)
