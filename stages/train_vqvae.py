"""Stage 1: train the mask VQ-VAE of one tumour region (its codebook is the shape vocabulary of stage 2)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.regions import check_region  # noqa: E402
from agvq.training.stage1 import train_vqvae  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--region", required=True)
    parser.add_argument("--prepared", required=True, help="prepared cases folder")
    parser.add_argument("--splits", required=True, help="splits JSON")
    parser.add_argument("--out", required=True, help="model file to write (.pt; contract .json beside it)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--curve", required=True, help="per-epoch curve CSV to write")
    parser.add_argument("--run-dir", required=True, help="resume state folder (kept out of DVC's outputs)")
    args = parser.parse_args()
    params = load_params(args.params)
    train_vqvae(check_region(args.region), params["vqvae"], params["runtime"], args)


if __name__ == "__main__":
    run_stage(main)
