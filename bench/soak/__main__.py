"""`python -m bench.soak`: run one soak and print its books; exit status 1 when an invariant fails."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import bench.soak
from bench.soak.run import SoakConfig, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=bench.soak.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = SoakConfig()
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="jobs to enqueue (e.g. 100000)")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--batch", type=int, default=defaults.batch, help="jobs per POST (at most 1000)")
    parser.add_argument("--fail-fraction", type=float, default=defaults.fail_fraction)
    parser.add_argument("--cancel-fraction", type=float, default=defaults.cancel_fraction)
    parser.add_argument("--job-ms", type=float, default=defaults.job_ms, help="each job's sleep")
    parser.add_argument(
        "--kill-every",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=defaults.kill_every,
        help="seconds between two kills, drawn uniformly",
    )
    parser.add_argument("--max-kills", type=int, default=None, help="default: keep killing while jobs wait")
    parser.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--log-level", default=defaults.log_level, help="of the web and the workers")
    parser.add_argument("--keep", type=Path, help="keep Redis data and logs in this folder")
    parser.add_argument("--verbose", action="store_true", help="list every kill")
    args = parser.parse_args(argv)
    config = SoakConfig(
        jobs=args.jobs,
        workers=args.workers,
        batch=args.batch,
        fail_fraction=args.fail_fraction,
        cancel_fraction=args.cancel_fraction,
        job_ms=args.job_ms,
        kill_every=tuple(args.kill_every),
        max_kills=args.max_kills,
        drain_timeout=args.drain_timeout,
        seed=args.seed,
        log_level=args.log_level,
    )
    with tempfile.TemporaryDirectory() as scratch:
        report = run(config, args.keep or Path(scratch))
    print(report.summary())
    if args.verbose:
        print("kills:\n" + report.kill_log())
    sys.stdout.flush()
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
