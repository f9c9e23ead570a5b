"""Issue 7's benchmark suite: every target, offload next to a baseline measured in the same run.

    python -m bench.run                 every benchmark (make bench)
    python -m bench.run p1 p3           some of them
    python -m bench.run --quick p1      small counts and durations: checks the suite still runs

Prints the machine, then one table: offload's figure, the baseline's, their ratio, the target and
whether it is met; writes the table to bench/RESULTS.md (not with --quick, or --no-save).
See bench/README.md for what each benchmark measures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import batch, drain, enqueue_load, flow, isolation, listing_scale, pickup
from bench.load import require_wrk
from bench.processes import Context
from bench.report import Row, machine, table

Benchmark = Callable[[Context], list[Row]]
BENCHMARKS: dict[str, list[Benchmark]] = {
    "p1": [enqueue_load.p1],
    "p2": [batch.p2],
    "p3": [enqueue_load.p3a, isolation.p3b],
    "p4": [pickup.p4a, drain.p4b, flow.p4c],
    "p5": [listing_scale.p5],
}
RESULTS = Path(__file__).parent / "RESULTS.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", metavar="name", help=f"of {', '.join(BENCHMARKS)}; default: all")
    parser.add_argument("--quick", action="store_true", help="small counts and durations (a smoke test)")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args(argv)
    names: list[str] = args.names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    require_wrk()
    host = machine()
    print(f"machine: {host}", flush=True)
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="offload-bench-") as scratch:
        context = Context(quick=args.quick, scratch=Path(scratch))
        for name in names:
            for benchmark in BENCHMARKS[name]:
                began = time.monotonic()
                print(f"running {benchmark.__module__}.{benchmark.__name__} ...", flush=True)
                found = benchmark(context)
                rows.extend(found)
                print(table(found).split("\n", 2)[2], f"({time.monotonic() - began:.0f} s)", flush=True)
    result = table(rows)
    print(f"\n{result}")
    took = time.monotonic() - started
    print(f"\n{len(rows)} figures in {took:.0f} s; {sum(r.passed is False for r in rows)} targets missed")
    if not args.quick and not args.no_save:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        RESULTS.write_text(
            f"# Benchmark results\n\n`{' '.join(['python -m bench.run', *args.names])}`"
            f" on {when}, {took:.0f} s.\n\nMachine: {host}\n\n{result}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
