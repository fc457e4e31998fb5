"""Train the MRI tokenizer: an image VQ-VAE with one codebook common to every sequence (params ``tokenizer``)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import add_training_args, base_parser, load_params, run_stage  # noqa: E402
from agvq.tokenizer.train import train_tokenizer  # noqa: E402
from agvq.training.run import TrainingPaths  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    add_training_args(parser)
    parser.add_argument("--curves-figure", required=True, help="PNG of loss and validation SSIM per epoch")
    parser.add_argument("--epochs-figure", required=True, help="PNG of one validation slice reconstructed at a "
                                                               "few epochs")
    args = parser.parse_args()
    params = load_params(args.params)
    metrics = train_tokenizer(params, TrainingPaths.from_args(args), Path(args.curves_figure),
                              Path(args.epochs_figure))
    if metrics:
        print(f"tokenizer: best epoch {metrics['best_epoch']}, validation SSIM {metrics['val_ssim']:.4f}")


if __name__ == "__main__":
    run_stage(main)
