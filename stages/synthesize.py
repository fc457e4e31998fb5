"""Stage synthesize: write the embedded synthetic BraTS-like dataset (phantom heads with tumours)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, guard_paths, load_params, log, run_stage  # noqa: E402
from agvq.data.synthetic import write_dataset  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--out", required=True, help="folder to write the cases into (replaced whole)")
    args = parser.parse_args()
    guard_paths(args, "synthesize", folders=("out",))
    cfg = load_params(args.params).synthesize
    cases = write_dataset(args.out, cfg.count, cfg.shape, cfg.seed, cfg.naming, cfg.no_et_fraction, cfg.workers)
    log.info("wrote %d synthetic cases (%s naming) to %s", len(cases), cfg.naming, args.out)


if __name__ == "__main__":
    run_stage(main)
