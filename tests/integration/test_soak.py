"""Accounting under load (bench/soak): two workers killed at random, and nothing lost; once with
forking workers (their horses killed too), once with concurrent ones (stopped with SIGTERM too), once
with pools of two simple children (a child killed alone too, and SIGTERM).

`OFFLOAD_SOAK_JOBS` sets the size (2,000 by default, about a minute on two cores; up to 100,000),
`OFFLOAD_SOAK_SEED` the job mix and the kills' victims (their timing is the machine's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak import SoakConfig, run
from bench.soak.workers import KILL_KINDS
from service.dev.harness import RecordProperty

pytestmark = [pytest.mark.integration, pytest.mark.soak]

SOAK_JOBS = int(os.environ.get("OFFLOAD_SOAK_JOBS", "2000"))
SOAK_SEED = int(os.environ.get("OFFLOAD_SOAK_SEED", "1"))
# About 50 jobs/s on two cores, plus start-up, the last abandoned job's recovery and the books.
TIMEOUT = 150 + SOAK_JOBS // 20


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("kind", sorted(KILL_KINDS))
def test_nothing_lost_through_killed_workers(
    kind: str, tmp_path: Path, record_property: RecordProperty
) -> None:
    report = run(SoakConfig.for_kind(kind, jobs=SOAK_JOBS, seed=SOAK_SEED), tmp_path)
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
    # The chaos happened: workers killed (and horses, or stopped), and RQ had an abandoned job to find.
    assert {kill.kind for kill in report.kills} == set(KILL_KINDS[kind]), details
    assert any(kill.abandoned for kill in report.kills), details
    # Flow control was in the mix: jobs waited for a cap's slot or were held by a rate limit.
    assert report.most_held_back > 0, details
    assert a.count("finished") + a.count("failed") + a.count("canceled") + a.count("stopped") == a.accepted
    assert a.duplicated == 0
    assert a.started_left == 0
