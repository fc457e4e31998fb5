"""Predict BraTS label maps with one variant's region models, on the test split or on any folder of new scans.

Writes ``<out>/<case>.nii.gz`` on each case's original grid with its affine, in the case's own label convention,
and with ``--report`` a JSON of the predicted and skipped cases (``infer.on_error``). An existing ``--out`` folder is
replaced only if this stage wrote it. ``--models`` holds ``<region>.pt`` files (or one ``joint.pt``); with
``--per-seed`` it holds one ``seed<k>/`` folder per training seed of params ``seeds``, each seed's predictions go to
``<out>/seed<k>/`` and the report has one entry per seed.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, guard_paths, load_params, run_stage  # noqa: E402
from agvq.device import check_precision, resolve_device, set_threads  # noqa: E402
from agvq.inference.predict import CropSettings, run_inference, run_inference_seeds  # noqa: E402
from agvq.io.splits import split_ids  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--models", required=True, help="folder with <region>.pt model files of one variant")
    parser.add_argument("--raw", required=True, help="raw case folders (BraTS 2021 or 2023 naming)")
    parser.add_argument("--out", required=True, help="folder to write predictions to")
    parser.add_argument("--splits", help="splits JSON; predict its --split cases (default: every case in --raw)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--per-seed", action="store_true",
                        help="--models holds seed<k>/ folders (params seeds): predict with each into <out>/seed<k>/")
    parser.add_argument("--report", help="JSON report to write: predicted cases, skipped cases and why")
    parser.add_argument("--tokenizer", help="MRI tokenizer model file; infer.missing_modality: synthesize fills a "
                                            "missing modality with its synthesis")
    args = parser.parse_args()
    guard_paths(args, "infer", inputs=("models", "raw", "splits"), folders=("out",), files=("report",))
    params = load_params(args.params)
    case_ids = split_ids(args.splits, args.split) if args.splits else None
    set_threads(params.runtime.threads)
    device = resolve_device(params.runtime.device)
    precision = check_precision(params.runtime.precision, device)
    crop = CropSettings(params.preprocess.margin, params.preprocess.stride)
    if args.per_seed:
        written = run_inference_seeds(args.models, args.raw, args.out, params.seeds, case_ids, params.regions,
                                      params.infer, crop, device, precision, report=args.report,
                                      tokenizer_path=args.tokenizer)
        for seed, cases in written.items():
            print(f"seed {seed}: wrote {len(cases)} predictions to {args.out}/seed{seed}")
        return
    written = run_inference(args.models, args.raw, args.out, case_ids, params.regions, params.infer, crop,
                            device, precision, report=args.report, tokenizer_path=args.tokenizer)
    print(f"wrote {len(written)} predictions to {args.out}")

if __name__ == "__main__":
    run_stage(main)
