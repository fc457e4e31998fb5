"""Stage 1: train the mask VQ-VAE of one tumour region (its codebook is the shape vocabulary of stage 2)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import add_training_args, base_parser, guard_training_paths, load_params, run_stage  # noqa: E402
from agvq.training.run import TrainingPaths  # noqa: E402
from agvq.training.stage1 import train_vqvae  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--region", required=True)
    add_training_args(parser)
    args = parser.parse_args()
    guard_training_paths(args, "train_vqvae")
    params = load_params(args.params)
    train_vqvae(params.check_region(args.region), params, TrainingPaths.from_args(args))


if __name__ == "__main__":
    run_stage(main)
