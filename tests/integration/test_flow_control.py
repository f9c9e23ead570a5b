"""Flow control on real Redis with four worker processes of mixed kinds (fork, simple, two concurrent).

The jobs (tests/integration/flow_jobs.py) record their own start and end times in Redis; the limits
are measured from those: never more than the cap running at once per key, never more starts than
the rate in any window, a flood of one key not holding back another key's jobs, and a job's
`retry_after` running it again later with its retries unspent.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis

from service.dev.harness import (
    LoggedProcess,
    Stack,
    child_env,
    procfile_commands,
    running_redis,
    running_stack,
    start_logged,
    wait_until,
)
from tests.integration.flow_jobs import CAP, JOBS_MODULE, RATE, RUNS_KEY

pytestmark = pytest.mark.integration

WORKER_KINDS = (
    "--kind fork",
    "--kind simple",
    "--kind concurrent --concurrency 4",
    "--kind concurrent --concurrency 3",
)


@pytest.fixture(scope="module")
def flow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, redis.Redis]]:
    """The web and four workers of mixed kinds on one real Redis, all stopped at the end."""
    base = tmp_path_factory.mktemp("flow")
    env = {"JOBS_MODULE": JOBS_MODULE}
    with running_redis(base / "redis") as server, running_stack(server.url, base, ("web",), env) as stack:
        workers: list[LoggedProcess] = []
        try:
            for n, kind in enumerate(WORKER_KINDS):
                command = f"{procfile_commands()['worker']} {kind}"
                workers.append(
                    start_logged(
                        f"worker{n}", command, base / f"worker{n}.log", child_env(REDIS_URL=server.url, **env)
                    )
                )
                stack.processes[f"worker{n}"] = workers[-1]
            connection = redis.Redis.from_url(server.url)
            registered = wait_until(lambda: len(stack.client.get("/workers").json()) == len(WORKER_KINDS), 20)
            assert registered, stack.logs()
            yield stack, connection
            connection.close()
        finally:
            for worker in workers:
                worker.stop()


def post_batch(stack: Stack, name: str, items: list[dict[str, Any]]) -> list[str]:
    response = stack.client.post(f"/jobs/{name}/batch", json=items)
    assert response.status_code == 202, response.text
    return [job["id"] for job in response.json()]


def wait_all(stack: Stack, job_ids: list[str], seconds: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    ended = [stack.wait_for_job(job_id, max(0.1, deadline - time.monotonic())) for job_id in job_ids]
    assert [job["status"] for job in ended] == ["finished"] * len(job_ids), stack.logs()
    return ended


def runs(connection: redis.Redis, kind: str) -> list[dict[str, Any]]:
    entries: list[bytes] = connection.lrange(RUNS_KEY, 0, -1)  # type: ignore[assignment]
    return [entry for raw in entries if (entry := json.loads(raw))["kind"] == kind]


def most_at_once(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Per key, the most jobs running at once, from their recorded starts and ends."""
    events: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for entry in entries:
        # at equal times an end comes before a start: the job that ended was not running then
        events[entry["key"]].append((entry["at"], 1 if entry["event"] == "start" else -1))
    most: dict[str, int] = {}
    for key, changes in events.items():
        running = peak = 0
        for _at, change in sorted(changes):
            running += change
            peak = max(peak, running)
        most[key] = peak
    return most


def test_no_key_ever_runs_more_than_its_cap(flow_stack: tuple[Stack, redis.Redis]) -> None:
    stack, connection = flow_stack
    customers = ("c1", "c2", "c3")
    sync = post_batch(stack, "capped_sleep", [{"customer_id": c, "seconds": 0.2} for c in customers * 8])
    async_ = post_batch(stack, "capped_wait", [{"customer_id": c, "seconds": 0.2} for c in customers[:2] * 8])
    plain = post_batch(stack, "plain", [{"n": n} for n in range(20)])
    waiting = stack.client.get(f"/jobs/{sync[-1]}").json()
    if waiting["status"] == "rate_limited":  # most likely: 8 per customer, 2 slots each
        assert waiting["held"]["reason"] == "concurrency"
        assert waiting["held"]["key"] == "c3"
    wait_all(stack, sync + async_ + plain, 45)
    for kind in ("capped", "capped_async"):
        most = most_at_once(runs(connection, kind))
        print(f"{kind}: most running at once per key {most}")
        assert max(most.values()) <= CAP, most
        assert CAP in most.values(), most  # the workers did run a key's jobs side by side
    assert stack.client.get("/metrics").status_code == 200


def test_no_window_holds_more_starts_than_the_rate(flow_stack: tuple[Stack, redis.Redis]) -> None:
    stack, connection = flow_stack
    connection.delete(RUNS_KEY)
    rated = post_batch(stack, "rated", [{"account_id": a} for a in ("a1", "a2") * 12])
    plain = post_batch(stack, "plain", [{"n": n} for n in range(10)])  # behind them in the same queue

    def held_one() -> dict[str, Any] | None:
        seen: dict[str, Any] = stack.client.get(f"/jobs/{rated[-1]}").json()
        return seen if seen["held"] is not None else None

    held = wait_until(held_one, 5, interval=0.05)
    assert held is not None, stack.logs()
    assert (held["status"], held["held"]["reason"], held["held"]["key"]) == ("queued", "rate_limit", "a2")
    assert held["held"]["limit"] == f"{RATE}/second per account_id"
    assert held["held"]["eligible_at"] is not None
    metrics = stack.client.get("/metrics").text
    assert 'offload_jobs{queue="default",status="held"}' in metrics
    wait_all(stack, plain, 10)
    wait_all(stack, rated, 30)

    # Each start as its worker recorded it (the claim, just after the take that counted it): a job's
    # own clock may lag its take by more than the 100 ms slack when a fork worker's horse (at
    # SCHED_IDLE) waits for a core on a loaded machine.
    key_of = {entry["job"]: entry["key"] for entry in runs(connection, "rated")}
    starts: dict[str, list[float]] = defaultdict(list)
    for job_id in rated:
        started_at = stack.client.get(f"/jobs/{job_id}").json()["started_at"]
        starts[key_of[job_id]].append(datetime.fromisoformat(started_at).timestamp())
    plain_done = max(entry["at"] for entry in runs(connection, "plain"))
    for key, times in starts.items():
        times.sort()
        gaps = [times[i + RATE] - times[i] for i in range(len(times) - RATE)]
        print(
            f"{key}: {len(times)} starts over {times[-1] - times[0]:.2f} s; tightest window {min(gaps):.3f} s"
        )
        assert len(times) == 12
        # any RATE + 1 starts span at least a second: no one-second window holds more than RATE
        assert min(gaps) >= 1.0, gaps
        assert plain_done < times[-1]  # the held jobs held up nothing behind them


def test_a_flood_of_one_key_does_not_hold_back_another(flow_stack: tuple[Stack, redis.Redis]) -> None:
    stack, connection = flow_stack
    connection.delete(RUNS_KEY)
    flood = [job for _ in range(3) for job in post_batch(stack, "fair", [{"customer_id": "A"}] * 100)]
    few = post_batch(stack, "fair", [{"customer_id": "B"}] * 10)
    wait_all(stack, few, 30)
    a_starts = sorted(entry["at"] for entry in runs(connection, "fair") if entry["key"] == "A")
    b_last = max(entry["at"] for entry in runs(connection, "fair") if entry["key"] == "B")
    ahead = sum(1 for at in a_starts if at < b_last)
    print(f"B's 10 jobs all started while {ahead} of A's {len(flood)} had started")
    # B waits behind at most CAP of A's jobs a turn, not behind A's whole flood
    assert ahead <= 60, ahead
    wait_all(stack, flood, 45)


def test_retry_after_runs_the_job_again_later_with_its_retries_unspent(
    flow_stack: tuple[Stack, redis.Redis],
) -> None:
    stack, connection = flow_stack
    connection.delete(RUNS_KEY)
    [job_id] = post_batch(stack, "backs_off", [{"after": 1}])

    def rescheduled() -> dict[str, Any] | None:
        seen: dict[str, Any] = stack.client.get(f"/jobs/{job_id}").json()
        return seen if seen["retry_after"] is not None else None

    later = wait_until(rescheduled, 10, interval=0.05)
    assert later is not None, stack.logs()
    assert later["retry_after"]["reason"] == "upstream said 429"
    assert later["retries_left"] == 1  # unspent
    assert later["status"] == "scheduled"
    ended = stack.wait_for_job(job_id, 15)
    assert ended["status"] == "finished", stack.logs()
    assert ended["retries_left"] == 1
    asked, started = (entry["at"] for entry in runs(connection, "backs_off"))
    assert started - asked >= 1.0


def test_idle_workers_do_not_spin_while_jobs_are_held(flow_stack: tuple[Stack, redis.Redis]) -> None:
    stack, connection = flow_stack
    rated = post_batch(stack, "rated", [{"account_id": "idle"}] * (RATE + 2))
    assert wait_until(lambda: connection.zcard("offload:held-due") == 1, 5, interval=0.05)

    def takes() -> int:  # every script call: scripts go by their SHA (service/connection.py, script)
        stats: dict[str, Any] = connection.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("eval", "evalsha"))

    before, began = takes(), time.monotonic()
    time.sleep(2)
    rate = (takes() - before) / (time.monotonic() - began)
    print(f"four idle workers, jobs held: {rate:.1f} scripts a second")
    assert rate < 40, rate  # each idle worker looks about twice a second
    wait_all(stack, rated, 15)
