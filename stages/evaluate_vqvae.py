"""Evaluate one region's stage-1 VQ-VAE on held-out cases: reconstruction Dice/HD95 and codebook usage."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, guard_paths, load_params, run_stage  # noqa: E402
from agvq.data.dataset import CaseStore  # noqa: E402
from agvq.io.atomic import write_json  # noqa: E402
from agvq.io.splits import split_ids  # noqa: E402
from agvq.metrics.reconstruction import reconstruction_report  # noqa: E402
from agvq.models.loading import load_vqvae  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--model", required=True, help="stage-1 model file (models/vqvae/<region>.pt)")
    parser.add_argument("--prepared", required=True, help="prepared cases folder")
    parser.add_argument("--splits", required=True, help="splits JSON")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    args = parser.parse_args()
    guard_paths(args, "evaluate_vqvae", inputs=("model", "prepared", "splits"), files=("out",))
    params = load_params(args.params)
    vqvae, bundle = load_vqvae(args.model)
    region = bundle["contract"]["region"]
    store = CaseStore(args.prepared, split_ids(args.splits, args.split), region, cache=False)
    report = reconstruction_report(vqvae, store, bundle["contract"]["patch_size"], params.infer,
                                   params.evaluate.empty_penalty)
    write_json(args.out, {"region": region, "split": args.split, **report})
    print(f"{region}: reconstruction Dice {report['dice']:.4f}, codes used {report['used_fraction']:.1%}")


if __name__ == "__main__":
    run_stage(main)
