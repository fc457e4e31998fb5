"""Ensemble several variants' predictions: mean of their per-region probability maps, thresholded at params
``infer.threshold``, composed into BraTS label maps (a helper, not a pipeline stage).

    python stages/ensemble.py --inputs predictions/agvqvae predictions/agunet --out predictions/ensemble

The input folders need the ``<case>_probabilities.npz`` files of ``infer.save_probabilities: true``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.inference.ensemble import ensemble_folders  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--inputs", nargs="+", required=True, help="prediction folders with probability maps")
    parser.add_argument("--out", required=True, help="folder to write <case>.nii.gz to")
    parser.add_argument("--weights", nargs="+", type=float, help="one weight per input (default: equal)")
    parser.add_argument("--save-probabilities", action="store_true", help="also write the averaged maps")
    args = parser.parse_args()
    params = load_params(args.params)
    cases = ensemble_folders(args.inputs, args.out, params.infer.threshold, args.weights, args.save_probabilities)
    print(f"wrote {len(cases)} ensembled label maps of {len(args.inputs)} inputs to {args.out}")


if __name__ == "__main__":
    run_stage(main)
