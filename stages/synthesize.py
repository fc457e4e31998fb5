"""Stage synthesize: write the embedded synthetic BraTS-like dataset (phantom heads with tumours)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agvq.cli import base_parser, load_params, log, run_stage  # noqa: E402
from agvq.data.synthetic import write_dataset  # noqa: E402
from agvq.errors import ConfigError  # noqa: E402

KEYS = ("count", "shape", "seed", "naming", "no_et_fraction")


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--out", required=True, help="folder to write the cases into (replaced whole)")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel processes (default: synthesize.workers or 1; the output does not depend on it)")
    args = parser.parse_args()
    params = load_params(args.params, "synthesize")
    missing = [k for k in KEYS if k not in params]
    if missing:
        raise ConfigError(f"params file {args.params}: synthesize is missing {missing}")
    workers = args.workers if args.workers is not None else params.get("workers", 1)
    cases = write_dataset(args.out, **{k: params[k] for k in KEYS}, workers=workers)
    log.info("wrote %d synthetic cases (%s naming) to %s", len(cases), params["naming"], args.out)


if __name__ == "__main__":
    run_stage(main)
