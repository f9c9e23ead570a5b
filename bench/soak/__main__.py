"""`python -m bench.soak`: run one soak and print its books; exit status 1 when an invariant fails."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import bench.soak
from bench.soak.run import SoakConfig, run
from bench.soak.workers import KILL_KINDS


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
    parser.add_argument("--job-ms", type=float, help="each job's sleep (default: 5, concurrent 50)")
    parser.add_argument(
        "--kill-every",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="seconds between two kills, drawn uniformly (default: 2 5, concurrent 0.5 2)",
    )
    parser.add_argument("--max-kills", type=int, default=None, help="default: keep killing while jobs wait")
    parser.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--kind", choices=sorted(KILL_KINDS), default=defaults.kind, help="the workers' --kind"
    )
    parser.add_argument("--log-level", default=defaults.log_level, help="of the web and the workers")
    parser.add_argument("--keep", type=Path, help="keep Redis data and logs in this folder")
    parser.add_argument("--verbose", action="store_true", help="list every kill")
    args = parser.parse_args(argv)
    given = {"job_ms": args.job_ms, "kill_every": tuple(args.kill_every) if args.kill_every else None}
    config = SoakConfig.for_kind(
        args.kind,
        jobs=args.jobs,
        workers=args.workers,
        batch=args.batch,
        fail_fraction=args.fail_fraction,
        cancel_fraction=args.cancel_fraction,
        max_kills=args.max_kills,
        drain_timeout=args.drain_timeout,
        seed=args.seed,
        log_level=args.log_level,
        **{name: value for name, value in given.items() if value is not None},
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
