"""Stage 2 and single-stage models: train one variant's network for one tumour region.

Two-stage variants predict the frozen stage-1 VQ-VAE's code indices (``--vqvae`` required); single-stage variants
(AG-UNet, U-Net baseline) predict the mask directly.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import add_training_args, base_parser, guard_training_paths, load_params, run_stage  # noqa: E402
from agvq.training.run import TrainingPaths  # noqa: E402
from agvq.training.stage2 import train_variant  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--vqvae", help="frozen stage-1 model file of the region (two-stage variants only)")
    parser.add_argument("--seed", required=True, type=int, help="training seed (one of params seeds)")
    add_training_args(parser)
    args = parser.parse_args()
    guard_training_paths(args, "train_cond", inputs=("vqvae",))
    params = load_params(args.params)
    train_variant(args.variant, params.check_region(args.region), params, TrainingPaths.from_args(args), args.vqvae,
                  args.seed)


if __name__ == "__main__":
    run_stage(main)
