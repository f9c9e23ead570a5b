"""Accounting under load (bench/soak): two workers killed at random, and nothing lost.

`OFFLOAD_SOAK_JOBS` sets the size (2,000 by default, about a minute on two cores; up to 100,000),
`OFFLOAD_SOAK_SEED` the job mix and the kills' victims (their timing is the machine's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak import SoakConfig, run
from service.dev.harness import RecordProperty

pytestmark = [pytest.mark.integration, pytest.mark.soak]

SOAK_JOBS = int(os.environ.get("OFFLOAD_SOAK_JOBS", "2000"))
SOAK_SEED = int(os.environ.get("OFFLOAD_SOAK_SEED", "1"))
# About 50 jobs/s on two cores, plus start-up, the last abandoned job's recovery and the books.
TIMEOUT = 150 + SOAK_JOBS // 20


@pytest.mark.timeout(TIMEOUT)
def test_nothing_lost_through_killed_workers(tmp_path: Path, record_property: RecordProperty) -> None:
    report = run(SoakConfig(jobs=SOAK_JOBS, seed=SOAK_SEED), tmp_path)
    details = f"{report.summary()}\nkills:\n{report.kill_log()}\nlogs in {report.log_dir}"
    a = report.accounting
    for name, value in {
        "soak_accepted": a.accepted,
        "soak_finished": a.count("finished"),
        "soak_failed": a.count("failed"),
        "soak_canceled": a.count("canceled"),
        "soak_kills": len(report.kills),
        "soak_abandoned": sum(kill.abandoned for kill in report.kills),
        "soak_wall_seconds": round(report.wall_seconds, 1),
        "soak_jobs_per_second": round(report.jobs_per_second, 1),
    }.items():
        record_property(name, value)

    # Nothing lost, nothing ended twice, nothing stuck; each ending the one its input asked for.
    problems = report.problems()
    assert not problems, details
    assert a.accepted == SOAK_JOBS, details
    # The chaos happened: workers and horses killed, and RQ had an abandoned job to find.
    assert {kill.kind for kill in report.kills} == {"worker", "horse"}, details
    assert any(kill.abandoned for kill in report.kills), details
    assert a.count("finished") + a.count("failed") + a.count("canceled") + a.count("stopped") == a.accepted
    assert a.duplicated == 0
    assert a.started_left == 0
