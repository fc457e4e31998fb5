"""Evaluate the MRI tokenizer on the test split: reconstruction SSIM/PSNR per sequence, codebook use, and the
source -> target synthesis table against the histogram-matching baseline, with one figure per target."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.tokenizer.stage import evaluate_stage  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--model", required=True, help="tokenizer model file (models/tokenizer/tokenizer.pt)")
    parser.add_argument("--prepared", required=True, help="prepared cases folder")
    parser.add_argument("--splits", required=True, help="splits JSON")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--out", required=True, help="summary JSON to write")
    parser.add_argument("--markdown", required=True, help="markdown tables to write")
    parser.add_argument("--slices-csv", required=True, help="per-slice scores CSV to write")
    parser.add_argument("--figures", required=True, help="folder for the source/synthesized/real grid per target")
    args = parser.parse_args()
    params = load_params(args.params)
    report = evaluate_stage(params, args.model, args.prepared, args.splits, args.split, Path(args.out),
                            Path(args.markdown), Path(args.slices_csv), Path(args.figures))
    recon = ", ".join(f"{n} {r['ssim']['mean']:.3f}" for n, r in report["reconstruction"].items())
    print(f"tokenizer ({args.split}): reconstruction SSIM {recon}; "
          f"{report['targets_beating_baseline']}/{len(report['targets'])} targets beat the baseline")


if __name__ == "__main__":
    run_stage(main)
