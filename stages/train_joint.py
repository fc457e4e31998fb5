"""Single-stage baselines trained as one model for all regions (one sigmoid output per region), with one seed."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import add_training_args, base_parser, guard_training_paths, load_params, run_stage  # noqa: E402
from agvq.training.run import TrainingPaths  # noqa: E402
from agvq.training.stage2 import train_joint  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--seed", required=True, type=int, help="training seed (one of params seeds)")
    add_training_args(parser)
    args = parser.parse_args()
    guard_training_paths(args, "train_joint")
    train_joint(args.variant, load_params(args.params), TrainingPaths.from_args(args), args.seed)


if __name__ == "__main__":
    run_stage(main)
