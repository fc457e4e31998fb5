"""Choose each variant's postprocessing on the VALIDATION split and apply it to its test predictions.

Per variant: every candidate step of params ``postprocess.steps`` is kept only if it improves the validation mean of
``postprocess.metric``; the chosen steps are then applied to ``<pred>/<variant>`` (test split), written as
``<out>/<variant>/seed<k>/<case>.nii.gz`` for every training seed (the steps are chosen on all seeds' validation
predictions together), and the choice with the validation numbers behind it goes to ``--json``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, guard_paths, load_params, run_stage  # noqa: E402
from agvq.io.atomic import write_json  # noqa: E402
from agvq.io.splits import read_splits  # noqa: E402
from agvq.postprocessing.run import postprocess_variants  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--pred", required=True, help="folder of <variant>/ test-split predictions")
    parser.add_argument("--val-pred", required=True, help="folder of <variant>/ validation-split predictions")
    parser.add_argument("--raw", required=True, help="raw case folders (validation labels; test naming only)")
    parser.add_argument("--splits", required=True, help="splits JSON")
    parser.add_argument("--out", required=True, help="folder to write <variant>/<case>.nii.gz to")
    parser.add_argument("--json", required=True, help="chosen postprocessing per variant (JSON) to write")
    args = parser.parse_args()
    guard_paths(args, "postprocess", inputs=("pred", "val_pred", "raw", "splits"), folders=("out",), files=("json",))
    params = load_params(args.params)
    splits = read_splits(args.splits, need=("val", "test"))
    report = postprocess_variants(params.ordered_variants(), args.pred, args.val_pred, args.raw, splits["val"],
                                  splits["test"], args.out, params.postprocess, list(params.regions),
                                  params.evaluate.empty_penalty, params.evaluate.nsd_tolerance, params.seeds)
    write_json(args.json, report)
    for variant, entry in report["variants"].items():
        print(f"{variant}: {' + '.join(entry['steps']) or 'no step'} (validation {report['metric']} "
              f"{entry['baseline']:.4f} -> {entry['score']:.4f})")


if __name__ == "__main__":
    run_stage(main)
