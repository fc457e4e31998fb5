"""Predict BraTS label maps with one variant's region models, on the test split or on any folder of new scans.

Writes ``<out>/<case>.nii.gz`` on each case's original grid with its affine, in the case's own label convention.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from agvq.cli import base_parser, load_params, run_stage  # noqa: E402
from agvq.errors import ConfigError  # noqa: E402
from agvq.inference.predict import InferConfig, run_inference  # noqa: E402
from agvq.regions import REGIONS  # noqa: E402
from agvq.training.runtime import resolve_device  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--models", required=True, help="folder with <region>.pt model files of one variant")
    parser.add_argument("--raw", required=True, help="raw case folders (BraTS 2021 or 2023 naming)")
    parser.add_argument("--out", required=True, help="folder to write predictions to")
    parser.add_argument("--splits", help="splits JSON; predict its --split cases (default: every case in --raw)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    args = parser.parse_args()
    params = load_params(args.params)
    case_ids = None
    if args.splits:
        try:
            case_ids = json.loads(Path(args.splits).read_text())[args.split]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot read the {args.split} ids of {args.splits} ({exc})") from None
    cfg = InferConfig.from_params(params.get("infer"), params.get("preprocess") or {})
    runtime = params.get("runtime") or {}
    if int(runtime.get("threads", 0) or 0) > 0:
        torch.set_num_threads(int(runtime["threads"]))
    device = resolve_device(str(runtime.get("device", "auto")))
    regions = params.get("regions", list(REGIONS))
    written = run_inference(args.models, args.raw, args.out, case_ids, regions, cfg, device)
    print(f"wrote {len(written)} predictions to {args.out}")


if __name__ == "__main__":
    run_stage(main)
