"""Issue 12's peer comparison: offload next to Celery, Dramatiq, arq, SAQ, taskiq and raw RQ, one run.

    python -m bench.peers                          everything (make bench-peers), about 10 minutes
    python -m bench.peers --quick                  small counts, one round: does it still run?
    python -m bench.peers --systems offload,arq --scenarios drain,pickup

Scenarios: (a) `drain` no-op jobs queued ahead, one worker process; (b) `io` jobs that each wait
0.5 s on I/O, one process; (c) `pickup` POST → job start p50, idle worker; (d) `http` enqueue
requests a second of the system's FastAPI app under wrk. Rounds go through every system in turn
(who goes first rotates), so the noise of a shared machine falls on all; medians reported.
Writes the table to bench/PEERS.md (not with --quick, or --no-save). See bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench.load import require_wrk
from bench.peers import arq, celery, dramatiq, rq, saq, taskiq
from bench.peers.offload import Offload
from bench.peers.scenarios import WORKER_START, Run, drain_seconds, enqueue_per_second, pickup_ms
from bench.peers.system import SCENARIOS, System, WorkerSetting
from bench.peers.table import Cell, Column, Line, render
from bench.report import machine
from service.dev.harness import running_redis

SYSTEMS: dict[str, System] = {
    system.name: system
    for system in (Offload(), celery.PEER, dramatiq.PEER, arq.PEER, saq.PEER, taskiq.PEER, rq.PEER)
}
PEERS_MD = Path(__file__).parents[1] / "PEERS.md"
IO_SECONDS = 0.5


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated; default: all")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated; default: all")
    parser.add_argument("--quick", action="store_true", help="small counts, one round (a smoke test)")
    parser.add_argument("--rounds", type=int, help="default 3 (1 with --quick)")
    parser.add_argument("--drain-jobs", type=int, help="(a)'s no-op jobs; default 5,000")
    parser.add_argument("--io-jobs", type=int, help="(b)'s jobs; default 200")
    parser.add_argument(
        "--io-jobs-per-slot", type=int, default=10,
        help="(b): a worker running fewer jobs at once gets at most this many per slot, its time scaled "
        "to the full count (offload and raw RQ: 10 jobs, 5 s, instead of 100 s); default 10",
    )  # fmt: skip
    parser.add_argument("--pickup-calls", type=int, help="(c)'s calls; default 100")
    parser.add_argument("--http-seconds", type=float, help="(d)'s wrk run; default 5")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {PEERS_MD.name}")
    args = parser.parse_args(argv)
    for option, known in (("systems", SYSTEMS), ("scenarios", SCENARIOS)):
        chosen = [name for name in getattr(args, option).split(",") if name]
        unknown = sorted(set(chosen) - set(known))
        if unknown or not chosen:
            parser.error(f"unknown {option} {unknown}; choose from {', '.join(known)}")
        setattr(args, option, [name for name in known if name in chosen])
    quick = args.quick
    defaults = {"rounds": (3, 1), "drain_jobs": (5000, 300), "io_jobs": (200, 40),
                "pickup_calls": (100, 10), "http_seconds": (5.0, 1.0)}  # fmt: skip
    for name, (full, small) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    return args


def io_count(args: argparse.Namespace, setting: WorkerSetting) -> int:
    return min(int(args.io_jobs), int(args.io_jobs_per_slot) * setting.slots)


def drain_count(args: argparse.Namespace, setting: WorkerSetting) -> int:
    return min(int(args.drain_jobs), setting.drain_cap or int(args.drain_jobs))


def pickup_count(args: argparse.Namespace, setting: WorkerSetting) -> int:
    return min(int(args.pickup_calls), setting.pickup_cap or int(args.pickup_calls))


@dataclass(frozen=True)
class Measurement:
    """One figure of one round: a cell's next sample, in the table's unit."""

    scenario: str
    label: str  # the row's worker setting, or the system's name for its web app (http)
    args: argparse.Namespace
    run: Run
    system: System
    setting: WorkerSetting | None

    def __call__(self) -> float:
        args, run, system, setting = self.args, self.run, self.system, self.setting
        if setting is None:
            return enqueue_per_second(run, system, float(args.http_seconds))
        if self.scenario == "drain":
            count = drain_count(args, setting)
            return count / drain_seconds(run, system, setting, "tick", count, 0.0, timeout=120.0)
        if self.scenario == "io":
            count = io_count(args, setting)
            budget = 3 * IO_SECONDS * count / setting.slots + 30
            seconds = drain_seconds(run, system, setting, setting.io_job, count, IO_SECONDS, timeout=budget)
            return seconds * int(args.io_jobs) / count
        return pickup_ms(run, system, setting, pickup_count(args, setting))


def measurements(args: argparse.Namespace, run: Run, system: System) -> list[Measurement]:
    """One round of `system`: each worker setting in each of its scenarios, then its web app."""
    found = [
        Measurement(scenario, setting.label, args, run, system, setting)
        for setting in system.workers
        for scenario in args.scenarios
        if scenario in setting.scenarios
    ]
    if "http" in args.scenarios:
        found.append(Measurement("http", system.name, args, run, system, None))
    return found


def columns(args: argparse.Namespace) -> list[Column]:
    titles = {
        "drain": f"(a) no-op drain, {args.drain_jobs:,} jobs: jobs/s ↑",
        "io": f"(b) {args.io_jobs} jobs of {IO_SECONDS:g} s I/O: s to drain ↓",
        "pickup": f"(c) POST → job start p50, {args.pickup_calls} calls: ms ↓",
        "http": "(d) POST enqueue, wrk c64: req/s ↑",
    }
    return [Column(key, titles[key]) for key in args.scenarios]


Cells = dict[tuple[str, str], Cell]  # by (scenario, row label)


def measure_all(args: argparse.Namespace, run: Run, systems: list[System], cells: Cells) -> None:
    """Every round through every system; a measurement that fails is not tried again."""
    for n in range(args.rounds):
        for scenario in args.scenarios:
            todo = [
                m for system in systems for m in measurements(args, run, system) if m.scenario == scenario
            ]
            shift = n % len(todo) if todo else 0
            for measure in todo[shift:] + todo[:shift]:  # who goes first rotates
                cell = cells.setdefault((scenario, measure.label), Cell())
                if cell.error is not None:
                    continue
                began = time.monotonic()
                try:
                    cell.samples.append(measure())
                except Exception as exc:
                    cell.error = f"{measure.label}, {scenario}: {str(exc).splitlines()[0][:300]}"
                    traceback.print_exc()
                figure = "FAILED" if cell.error is not None else f"{cell.samples[-1]:.5g}"
                print(f"round {n + 1} {scenario:6} {measure.label:45} {figure:>10} "
                      f"({time.monotonic() - began:.1f} s)", flush=True)  # fmt: skip


def lines(args: argparse.Namespace, systems: list[System], cells: Cells) -> list[Line]:
    found = []
    for system in systems:
        for n, setting in enumerate(system.workers):
            row = {key: cells[key, setting.label] for key in SCENARIOS if (key, setting.label) in cells}
            if "drain" in row and drain_count(args, setting) < args.drain_jobs:
                row["drain"].note = f"measured on {drain_count(args, setting):,} jobs"
            if "pickup" in row and pickup_count(args, setting) < args.pickup_calls:
                row["pickup"].note = f"{pickup_count(args, setting)} calls"
            if "io" in row and io_count(args, setting) < args.io_jobs:
                row["io"].note = (f"measured on {io_count(args, setting)} jobs ({setting.slots} at a time), "
                                  f"time scaled to {args.io_jobs}")  # fmt: skip
            if (("http", system.name)) in cells:
                row["http"] = cells["http", system.name] if n == 0 else Cell(note="the same web app as above")
            found.append(Line(system.name, setting.label, row, setting.note))
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    require_wrk()
    host = machine()
    print(f"machine: {host}", flush=True)
    started = time.monotonic()
    systems = [SYSTEMS[name] for name in args.systems]
    cells: Cells = {}
    versions: dict[str, str] = {}
    ready: list[System] = []
    for system in systems:
        try:
            versions[system.name] = system.prepare()
            ready.append(system)
        except Exception as exc:  # a peer that cannot be installed is reported, not left out
            versions[system.name] = f"not installed: {exc}"
            for setting in system.workers:
                for key in SCENARIOS:
                    cells[key, setting.label] = Cell(error=f"{system.name} not installed: {exc}")
            cells["http", system.name] = Cell(error=f"{system.name} not installed: {exc}")
        print(f"{system.name}: {versions[system.name]}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="offload-peers-") as scratch,
        running_redis(Path(scratch) / "redis") as server,
    ):
        # Longer than any BLPOP the scenarios wait in (redis-py's default would cut a worker's start).
        connection = redis.Redis.from_url(server.url, socket_timeout=WORKER_START + 30)
        try:
            measure_all(args, Run(server.url, connection, Path(scratch) / "logs"), ready, cells)
        finally:
            connection.close()
    took = time.monotonic() - started
    result = render(columns(args), lines(args, systems, cells))
    print(f"\n{result}\n\n{took:.0f} s")
    if not args.quick and not args.no_save:
        write_report(argv, host, took, versions, result)
    return 0


def write_report(
    argv: list[str] | None, host: str, took: float, versions: dict[str, str], result: str
) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python -m bench.peers", *(sys.argv[1:] if argv is None else argv)])
    listed = "\n".join(f"- {name}: {text}" for name, text in versions.items())
    PEERS_MD.write_text(
        f"# Peer comparison\n\n`{command}` on {when}, {took:.0f} s. What each column measures, and how: "
        f"[README.md](README.md#peer-comparison).\n\nMachine: {host}\n\nVersions:\n{listed}\n\n"
        f"Each cell: the median of the rounds (lowest-highest round in brackets).\n\n{result}\n"
    )


if __name__ == "__main__":
    sys.exit(main())
