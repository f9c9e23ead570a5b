"""The concurrent worker (service/worker/concurrent.py): N jobs at once in one process, sync jobs in
threads and async jobs on one shared loop, each its own claimed run; timeouts, stops and a warm
shutdown end one run, not the others, and a stopped worker's runs go back to their queue."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis import Redis
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.catalog import RegisteredJob, Registry, report_progress
from service.store.layout import queue_key
from service.store.queues import SafeQueue
from service.store.views import job_view
from service.web.routes.listing import _workers
from service.worker import concurrent
from service.worker.concurrent import ConcurrentWorker
from service.worker.main import _concurrency_error, build_worker
from service.worker.recovery import claim_many
from service.worker.runs import Run
from service.worker.worker import OffloadWorker

WAIT = 10  # seconds any wait in these tests gives up after


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def make_worker(connection: Redis, registry: Registry) -> Iterator[Callable[..., ConcurrentWorker]]:
    def create(concurrency: int = 5, grace_seconds: float = 5) -> ConcurrentWorker:
        worker = build_worker(connection, kind="concurrent", registry=registry)
        assert isinstance(worker, ConcurrentWorker)
        worker.concurrency = concurrency
        worker.grace_seconds = grace_seconds
        return worker

    yield create
    # RQ's work loop installs its stop handlers for good: give pytest its own back.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _fetch(connection: Redis, job: Job) -> Job:
    return Job.fetch(job.id, connection=connection, serializer=JSONSerializer)


def _when(condition: Callable[[], bool], then: Callable[[], Any]) -> threading.Thread:
    """In another thread, once `condition` holds (within WAIT seconds), do `then`."""

    def watch() -> None:
        deadline = time.monotonic() + WAIT
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _spy_on_takes(
    monkeypatch: pytest.MonkeyPatch, connection: Redis, seen: Callable[[int, int, int], None]
) -> None:
    """Have every take report (jobs asked for, jobs queued before it, jobs it took) to `seen`."""
    take = SafeQueue.take.__func__  # type: ignore[attr-defined]

    def spy(cls: type[SafeQueue], queues: Any, count: int, *args: Any, **kwargs: Any) -> Any:
        queued = connection.llen(queue_key("default"))
        taken = take(cls, queues, count, *args, **kwargs)
        seen(count, queued, len(taken))
        return taken

    monkeypatch.setattr(SafeQueue, "take", classmethod(spy))


def forever(registry: Registry, kind: str, started: list[str] | None = None) -> RegisteredJob[[], Any]:
    """A job of `kind` (sync or async) that runs until it is stopped, noting in `started` that it ran."""
    if kind == "sync":

        @registry.job(name="forever_sync")
        def forever_sync() -> None:
            if started is not None:
                started.append(kind)
            while True:
                time.sleep(0.05)

        return forever_sync

    @registry.job(name="forever_async")
    async def forever_async() -> None:
        if started is not None:
            started.append(kind)
        await asyncio.sleep(60)

    return forever_async


def test_sync_jobs_run_at_once_each_in_its_own_claimed_run(
    registry: Registry, connection: Redis, make_worker: Callable[..., ConcurrentWorker]
) -> None:
    # Five jobs that can only end once all five are running: one at a time, the barrier breaks.
    barrier = threading.Barrier(5, timeout=WAIT)
    running: list[int] = []

    @registry.job()
    def meet(n: int) -> str:
        running.append(len(_workers(connection)[0].current_jobs))  # as GET /workers lists them
        barrier.wait()
        return threading.current_thread().name

    make_worker_ref = [make_worker(concurrency=5)]
    jobs = [meet.enqueue(connection, n=n) for n in range(5)]
    make_worker_ref[0].work(burst=True, with_scheduler=False)
    done = [_fetch(connection, job) for job in jobs]
    assert [job.get_status() for job in done] == [JobStatus.FINISHED] * 5
    assert len({job.return_value() for job in done}) == 5  # five slot threads
    assert max(running) == 5  # each claimed before it runs: the last to start sees all five
    assert connection.zcard("rq:wip:default") == 0  # every run left the started registry


def test_async_jobs_share_one_event_loop_with_progress(
    registry: Registry, connection: Redis, make_worker: Callable[..., ConcurrentWorker]
) -> None:
    loops: set[int] = set()
    arrived: list[int] = []

    @registry.job()
    async def gather(n: int) -> int:
        loops.add(id(asyncio.get_running_loop()))
        arrived.append(n)
        report_progress(0.5, f"job {n} waiting")
        async with asyncio.timeout(WAIT):  # all twenty are waiting at once, else this times out
            while len(arrived) < 20:
                await asyncio.sleep(0.01)
        return n

    jobs = [gather.enqueue(connection, n=n) for n in range(20)]
    make_worker(concurrency=20).work(burst=True, with_scheduler=False)
    done = [_fetch(connection, job) for job in jobs]
    assert [job.get_status() for job in done] == [JobStatus.FINISHED] * 20
    assert [job.return_value() for job in done] == list(range(20))
    assert len(loops) == 1
    assert done[3].meta["progress"] == {"fraction": 0.5, "message": "job 3 waiting"}


def test_no_more_jobs_run_at_once_than_the_concurrency(
    registry: Registry, connection: Redis, make_worker: Callable[..., ConcurrentWorker]
) -> None:
    lock = threading.Lock()
    now_running = [0]
    most = [0]

    @registry.job()
    def count() -> None:
        with lock:
            now_running[0] += 1
            most[0] = max(most[0], now_running[0])
        time.sleep(0.2)  # long enough that three overlap even when a loaded machine starts them late
        with lock:
            now_running[0] -= 1

    for _ in range(12):
        count.enqueue(connection)
    make_worker(concurrency=3).work(burst=True, with_scheduler=False)
    assert most[0] == 3
    assert connection.llen(queue_key("default")) == 0


def test_with_jobs_waiting_a_take_waits_for_half_the_slots_not_one(
    registry: Registry,
    connection: Redis,
    make_worker: Callable[..., ConcurrentWorker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Runs that end one by one, 50 ms apart: a take for each slot as it frees would ask for one job.
    monkeypatch.setattr(concurrent, "GATHER_SECONDS", WAIT)

    @registry.job()
    def lasting(seconds: float) -> None:
        time.sleep(seconds)

    for n in range(12):
        lasting.enqueue(connection, seconds=0.05 * (n % 4 + 1))
    asked: list[tuple[int, int]] = []  # (jobs asked for, jobs still queued) at each take
    _spy_on_takes(monkeypatch, connection, lambda count, queued, _taken: asked.append((count, queued)))
    make_worker(concurrency=4).work(burst=True, with_scheduler=False)
    assert connection.llen(queue_key("default")) == 0
    assert asked[0] == (4, 12)
    assert all(count >= 2 for count, queued in asked if queued > 0), asked


def test_the_wait_for_half_the_slots_is_bounded(
    make_worker: Callable[..., ConcurrentWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three of four slots busy with long runs: the next take goes after GATHER_SECONDS regardless.
    monkeypatch.setattr(concurrent, "GATHER_SECONDS", 0.2)
    worker = make_worker(concurrency=4)
    busy = [Run(Job(f"busy-{n}", connection=worker.connection), None, None, {}) for n in range(3)]  # type: ignore[arg-type]
    worker._runs = {run.job.id: run for run in busy}
    started = time.monotonic()
    with worker._changed:
        worker._gather()
    assert 0.2 <= time.monotonic() - started < WAIT
    worker._runs = {}


def test_a_run_s_end_wakes_the_main_thread_only_at_a_count_it_waits_for(
    make_worker: Callable[..., ConcurrentWorker],
) -> None:
    # The main thread waits for a free slot (all busy), half the slots free, or none running: an
    # end that makes none of these true would only switch to it and back.
    worker = make_worker(concurrency=8)
    jobs = [Job(f"run-{n}", connection=worker.connection) for n in range(8)]
    runs = [Run(job, None, Execution(f"x-{job.id}", job.id, job.connection), {}) for job in jobs]  # type: ignore[arg-type]
    worker._runs = {run.execution.id: run for run in runs}
    woken: list[int] = []  # slots free at each wake-up
    notify_all = worker._changed.notify_all

    def counted() -> None:
        woken.append(worker.concurrency - len(worker._runs))
        notify_all()

    worker._changed.notify_all = counted  # type: ignore[method-assign]
    for run in runs:
        worker._end(run)
    assert woken == [1, 4, 5, 6, 7, 8]


def test_with_none_waiting_a_job_starts_before_the_worker_looks_for_more(
    registry: Registry,
    connection: Redis,
    make_worker: Callable[..., ConcurrentWorker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A slot thread slow to reach the job (50 ms): the main thread's next take waits for the start.
    monkeypatch.setattr(concurrent, "START_WAIT_SECONDS", WAIT)
    events: list[str] = []

    @registry.job()
    def note() -> None:
        events.append("job started")

    slow_report = OffloadWorker.prepare_job_execution

    def slow_start(self: ConcurrentWorker, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        time.sleep(0.05)
        slow_report(self, job, remove_from_intermediate_queue)

    monkeypatch.setattr(ConcurrentWorker, "prepare_job_execution", slow_start)
    _spy_on_takes(monkeypatch, connection, lambda _count, _queued, taken: events.append(f"took {taken}"))
    note.enqueue(connection)
    make_worker(concurrency=4).work(burst=True, with_scheduler=False)
    assert events[:3] == ["took 1", "job started", "took 0"], events


def test_the_wait_for_a_job_to_start_is_bounded(
    make_worker: Callable[..., ConcurrentWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run whose function never starts (stopped before it did): the worker goes on regardless.
    monkeypatch.setattr(concurrent, "START_WAIT_SECONDS", 0.2)
    worker = make_worker(concurrency=4)
    never = Run(Job("never", connection=worker.connection), None, None, {})  # type: ignore[arg-type]
    started = time.monotonic()
    worker._let_start([never])
    assert 0.2 <= time.monotonic() - started < WAIT


def test_a_worker_with_runs_reads_busy_while_it_waits_for_more(
    registry: Registry, connection: Redis, make_worker: Callable[..., ConcurrentWorker]
) -> None:
    # RQ's dequeue marks its worker idle as it waits for the next job; with a run still running,
    # GET /workers must not read idle.
    release = threading.Event()

    @registry.job()
    def held() -> None:
        release.wait(WAIT)

    held.enqueue(connection)
    worker = make_worker(concurrency=2)
    states: list[str] = []

    def look_then_release() -> None:
        time.sleep(0.3)  # the main thread is back waiting for jobs (its take finds none)
        states.append(worker.get_state())
        states.append(_workers(connection)[0].state)
        release.set()

    _when(lambda: len(worker._runs) == 1, look_then_release)
    _when(lambda: release.is_set() and not worker._runs, lambda: os.kill(os.getpid(), signal.SIGTERM))
    worker.work(burst=False, with_scheduler=False)
    assert states == ["busy", "busy"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_run_past_its_timeout_fails_while_the_others_finish(
    kind: str, registry: Registry, connection: Redis, make_worker: Callable[..., ConcurrentWorker]
) -> None:
    @registry.job(timeout=1)
    def stuck_sync() -> None:
        while True:
            time.sleep(0.05)

    @registry.job(timeout=1)
    async def stuck_async() -> None:
        await asyncio.sleep(60)

    @registry.job()
    def quick() -> int:
        time.sleep(0.2)
        return 1

    stuck = (stuck_sync if kind == "sync" else stuck_async).enqueue(connection)
    others = [quick.enqueue(connection) for _ in range(4)]
    started = time.monotonic()
    make_worker(concurrency=3).work(burst=True, with_scheduler=False)
    assert time.monotonic() - started < WAIT
    failed = _fetch(connection, stuck)
    assert failed.get_status() == JobStatus.FAILED
    view = job_view(failed, registry)
    assert view.error is not None
    assert view.error.type == "JobTimeoutException", view.error
    assert [_fetch(connection, job).get_status() for job in others] == [JobStatus.FINISHED] * 4


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stop_ends_one_running_job_as_stopped(
    kind: str, registry: Registry, connection: Redis, make_worker: Callable[..., ConcurrentWorker]
) -> None:
    @registry.job()
    def quick() -> int:
        return 1

    worker = make_worker(concurrency=2)
    target = forever(registry, kind).enqueue(connection)
    other = quick.enqueue(connection)

    def stop() -> None:
        execution = next(run.execution for run in list(worker._runs.values()) if run.job.id == target.id)
        worker.request_stop_execution(execution.id)

    _when(lambda: any(run.job.id == target.id for run in list(worker._runs.values())), stop)
    worker.work(burst=True, with_scheduler=False)
    assert _fetch(connection, target).get_status() == JobStatus.STOPPED
    assert _fetch(connection, other).get_status() == JobStatus.FINISHED


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_run_stopped_before_its_function_starts_never_starts(
    kind: str,
    registry: Registry,
    connection: Redis,
    make_worker: Callable[..., ConcurrentWorker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The stop lands between the claim and the slot thread: the window a stop raced into, leaving a
    # sync job running forever and an async job's coroutine never awaited.
    started: list[str] = []
    worker = make_worker(concurrency=2)
    target = forever(registry, kind, started).enqueue(connection)

    class StopFirst(queue.SimpleQueue[Run | None]):
        def put(self, run: Run | None, block: bool = True, timeout: float | None = None) -> None:
            if run is not None:  # None: a slot thread's end, as the worker closes
                worker.request_stop_execution(run.execution.id)
            super().put(run, block, timeout)

    monkeypatch.setattr(worker, "_tasks", StopFirst())
    worker.work(burst=True, with_scheduler=False)
    assert _fetch(connection, target).get_status() == JobStatus.STOPPED
    assert started == []


def test_a_stop_that_comes_between_the_claim_and_the_run_stops_it(
    registry: Registry,
    connection: Redis,
    make_worker: Callable[..., ConcurrentWorker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The API reads `started` from the claim and sends its stop before the worker knows the run.
    started: list[str] = []
    worker = make_worker(concurrency=2)
    target = forever(registry, "sync", started).enqueue(connection)

    def claim_then_stop(worker: ConcurrentWorker, jobs: list[Job]) -> Any:
        claimed = claim_many(worker, jobs)
        stop = json.dumps({"command": "stop-job", "job_id": target.id}).encode()
        worker.handle_payload({"data": stop})
        return claimed

    monkeypatch.setattr("service.worker.concurrent.claim_many", claim_then_stop)
    worker.work(burst=True, with_scheduler=False)
    assert _fetch(connection, target).get_status() == JobStatus.STOPPED
    assert started == []


def test_a_warm_shutdown_requeues_what_outlives_the_grace_period(
    registry: Registry,
    connection: Redis,
    make_worker: Callable[..., ConcurrentWorker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(concurrent, "INTERRUPT_WAIT", 0.5)
    finished: list[str] = []

    @registry.job(retries=2)
    def polling() -> None:  # answers an interruption at once
        while True:
            time.sleep(0.05)

    @registry.job(retries=2)
    def blocked() -> None:  # one long C call: only the main thread can requeue it
        try:
            time.sleep(3)
        finally:  # the interruption lands as the call returns
            finished.append("blocked")

    @registry.job()
    async def waiting() -> None:
        await asyncio.sleep(60)

    jobs = [polling.enqueue(connection), blocked.enqueue(connection), waiting.enqueue(connection)]
    waiting_too = waiting.enqueue(connection)  # never taken: no slot before the stop
    worker = make_worker(concurrency=3, grace_seconds=0.3)
    _when(lambda: len(worker._runs) == 3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    worker.work(burst=False, with_scheduler=False)
    for job in [*jobs, waiting_too]:
        back = _fetch(connection, job)
        assert back.get_status() == JobStatus.QUEUED, job.func_name
        assert back.retries_left in (None, 2)  # no retry spent
    assert set(connection.lrange(queue_key("default"), 0, -1)) == {
        job.id.encode() for job in [*jobs, waiting_too]
    }
    assert connection.zcard("rq:wip:default") == 0
    deadline = time.monotonic() + WAIT
    while not finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert finished == ["blocked"]  # its call did return later; what it left is not saved:
    assert _fetch(connection, jobs[1]).get_status() == JobStatus.QUEUED


def test_concurrency_options_that_cannot_work_are_refused() -> None:
    class Args:
        kind: str | None = None

    args = Args()
    assert _concurrency_error(args, None, None) is None  # type: ignore[arg-type]
    assert _concurrency_error(args, 8, None) is None  # type: ignore[arg-type]
    assert "at least 1" in str(_concurrency_error(args, 0, None))  # type: ignore[arg-type]
    assert _concurrency_error(args, 8, 2) is None  # type: ignore[arg-type]  # a pool of concurrent children
    args.kind = "fork"
    assert "--kind concurrent" in str(_concurrency_error(args, 8, None))  # type: ignore[arg-type]


def test_a_stopped_worker_leaves_no_thread_of_its_own_running(
    registry: Registry, connection: Redis, make_worker: Callable[..., ConcurrentWorker]
) -> None:
    @registry.job()
    def quick() -> int:
        return 1

    @registry.job()
    async def quick_async() -> int:
        return 2

    worker = make_worker(concurrency=3)
    for _ in range(3):
        quick.enqueue(connection)
        quick_async.enqueue(connection)
    worker.work(burst=True, with_scheduler=False)
    threads = [*worker._threads, worker._monitor, worker._loop_thread]
    own = [thread for thread in threads if thread is not None]
    assert {thread.name for thread in own} >= {"run-monitor", "job-loop", "slot-0"}
    assert not [thread.name for thread in own if thread.is_alive()]
    assert worker._loop is not None
    assert worker._loop.is_closed()
