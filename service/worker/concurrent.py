"""A worker that runs up to N jobs at once in its own process (`--concurrency N`).

The main thread is RQ's work loop: it waits for a free slot, takes a job (the take script and the
claim of service/store/queues.py and recovery.py, as every kind does) and hands the run to a slot
thread. Sync jobs run in that thread; an `async def` job's coroutine runs on one event loop that all
the worker's async jobs share, its slot thread only waiting for it. Each run is its own RQ
execution, so `GET /workers`, the started registry and recovery see every job that is running.
While jobs wait in its queues, the main thread lets half the slots come free (GATHER_SECONDS at
most) before it takes again, so takes, claims and ends go in batches rather than a job at a time.
With none waiting, it lets the jobs it just handed out start (START_WAIT_SECONDS at most) before it
looks for more: its look is Python holding the GIL the slot threads need. The worker reads busy
while any run is running, though its main thread waits for jobs.

A monitor thread refreshes the heartbeats of every run and ends a run at its timeout. Ending a run
early (its timeout, a stop asked for by a user, a shutdown) cancels an async job's coroutine; a sync
job gets an exception raised in its thread (service/worker/runs.py): a job blocked in one long C
call (a socket read without a timeout) ends only when that call returns. Once a run is saving its
outcome nothing interrupts it.

A warm shutdown (SIGTERM) takes no more jobs; running ones have the grace period to finish, then
are put back at the front of their queue as they were (shutdown.requeue), none lost; a second
signal does that at once. A run whose thread does not answer within INTERRUPT_WAIT is requeued by
the main thread, and its late outcome is dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import math
import queue as queues
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from rq import Queue
from rq.command import parse_payload
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from service.store.atomic import GroupCommit
from service.store.end import End, end_runs
from service.worker.job import registered_job
from service.worker.recovery import CLAIM_LOST, ClaimLostError, claim_many, expire_stale, heartbeat_ttl
from service.worker.runs import (
    STOPPED,
    TIMEOUT,
    Run,
    RunDeathPenalty,
    _raise_in_thread,
)
from service.worker.shutdown import DEFAULT_GRACE_SECONDS, RUN_FIELDS, requeue
from service.worker.worker import OffloadWorker

if TYPE_CHECKING:
    from redis.client import Pipeline

DEFAULT_CONCURRENCY = 10
MONITOR_SECONDS = 0.2  # how often timeouts are checked (heartbeats go every JOB_MONITORING_INTERVAL)
INTERRUPT_WAIT = 3.0  # how long an interrupted run's thread has to record its requeue itself
STOP_MEMORY = 60.0  # how long a stop for a job not running here (yet) is remembered
CLOSE_WAIT = 2.0  # how long a closing worker waits for each of its threads
# With jobs waiting, how long the next take may wait for half the slots to come free: a slot's
# longest idle spell between two runs, under a backlog only.
GATHER_SECONDS = 0.01
# With none waiting (the last take got fewer than it asked for), how long the main thread lets the
# jobs it just handed out start before it looks for more: the next look is a take script and RQ's
# loop, Python that holds the GIL the slot thread needs to start the job.
START_WAIT_SECONDS = 0.002
# How often the main thread, waiting for a free slot, looks for a stop asked by a signal (the handler
# only notes it: OffloadWorker._shutdown).
STOP_LOOK_SECONDS = 0.5


class _Dispatch(BaseWorker):
    """Where OffloadWorker.execute_job's `super()` lands: the claim and hand-off, not a run in place."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._dispatch(job, queue)

    def _dispatch(self, job: Job, queue: Queue) -> None:
        raise NotImplementedError


class ConcurrentWorker(OffloadWorker, _Dispatch):
    """Up to `concurrency` jobs at once: sync jobs in slot threads, async jobs on one event loop."""

    concurrency: int = DEFAULT_CONCURRENCY  # WORKER_CONCURRENCY, --concurrency (main)
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    # Runs to start before stopping, as RQ's `max_jobs` (a pool's --max-jobs-per-child): RQ's own
    # counts its loop's turns, and one turn here starts a batch.
    max_runs: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.death_penalty_class = type("RunDeathPenalty", (RunDeathPenalty,), {"worker": self})
        # Async jobs' coroutines go to the shared loop (OffloadJob._execute), not asyncio.run.
        self.job_class = type(  # type: ignore[assignment]
            "ConcurrentJob", (self.job_class,), {"run_coroutine": staticmethod(self.await_coroutine)}
        )
        self._runs: dict[str, Run] = {}  # by execution id
        self._changed = threading.Condition()  # a run started or ended
        self._local = threading.local()  # the run a slot thread is on
        self._tasks: queues.SimpleQueue[Run | None] = queues.SimpleQueue()  # None: a slot thread's end
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._closing = False
        self._monitor: threading.Thread | None = None
        self._grace_ends = math.inf  # monotonic, once a warm shutdown started
        self._taken: list[tuple[Job, Queue]] = []  # taken with the job RQ's loop got, for _dispatch
        self._stops: dict[str, float] = {}  # job id: when a stop came for it before its run existed
        self._backlog = False  # the last take got all it asked for
        self._runs_started = 0
        self._commits: GroupCommit[End] = GroupCommit(lambda ends: end_runs(self.connection, ends))

    # -- the work loop (main thread) -------------------------------------------------------

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        with self._changed:
            while len(self._runs) >= self.concurrency:
                if self._stop_requested:
                    raise StopRequested()
                self._changed.wait(STOP_LOOK_SECONDS)
            if self._backlog:
                self._gather()
        if self._stop_requested:
            raise StopRequested()
        taken = self._take_free_slots()
        if taken:
            return taken
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def _gather(self) -> None:
        """With jobs waiting, let half the slots come free (GATHER_SECONDS at most) before the next
        take, rather than take for each slot as it frees: the take, the claim and the runs' ends then
        go a batch per round trip, not a job or two. Called holding `_changed`."""
        deadline = time.monotonic() + GATHER_SECONDS
        while self._runs and self.concurrency - len(self._runs) < self._half and not self._stop_requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._changed.wait(left)

    def _take_free_slots(self) -> tuple[Job, Queue] | None:
        """As many jobs as there are free slots, in one round trip (none waiting: None, and RQ's
        dequeue waits for one). The first is returned to RQ's loop; the others go with it to
        `_dispatch`, in the same step, so none of them waits taken but unrun."""
        free = self.concurrency - len(self._runs)
        if self.max_runs is not None:
            free = min(free, self.max_runs - self._runs_started)
        self._backlog = False  # until a take says otherwise
        if free < 2:
            return None
        taken = self.queue_class.take(  # type: ignore[attr-defined]  # SafeQueue's (build_worker)
            self._ordered_queues,
            free,
            None,
            self.connection,
            job_class=self.job_class,
            serializer=self.serializer,
            death_penalty_class=self.death_penalty_class,
        )
        self._backlog = len(taken) == free  # as many as asked for: likely more waiting
        if not taken:
            return None
        first: tuple[Job, Queue] = taken[0]
        self._taken = taken[1:]
        version = self.get_redis_server_version()  # type: ignore[no-untyped-call]
        for job, _queue in taken:
            job.redis_server_version = version  # as RQ's dequeue sets it
        return first

    def _dispatch(self, job: Job, queue: Queue) -> None:
        """Claim the job, and any taken with it, in one round trip, and hand each to a slot thread."""
        more, self._taken = self._taken, []
        batch = [(job, queue)] + [(each, where) for each, where in more if not expire_stale(self, each)]
        befores = []
        for each, _where in batch:
            before = {name: getattr(each, name) for name in RUN_FIELDS}
            # Its thread changes this very object (progress in meta): a requeue restores it from here.
            before["meta"] = copy.deepcopy(each.meta)
            befores.append(before)
        executions = claim_many(self, [each for each, _where in batch])
        handed: list[Run] = []
        for (each, where), before, execution in zip(batch, befores, executions, strict=True):
            if execution is None:  # canceled, deleted or given back meanwhile: not ours
                if each is not job:
                    self.log.warning(CLAIM_LOST, each.id)
                continue
            self.executions[execution.id] = execution
            self._runs_started += 1
            registered = registered_job(each)
            is_async = registered is not None and registered.is_async
            run = Run(each, where, execution, before, is_async=is_async)
            with self._changed:
                self._runs[execution.id] = run
                stopped = self._stops.pop(each.id, None) is not None
            if stopped:  # a stop came between its claim and now: it never starts
                run.interrupt(STOPPED)
            self._start_threads()
            self._tasks.put(run)
            handed.append(run)
        if self.max_runs is not None and self._runs_started >= self.max_runs:
            self.log.info("worker %s: %d jobs started, stopping once they end", self.name, self._runs_started)
            self._stop_requested = True  # RQ's loop stops before its next take; teardown lets them end
        if executions[0] is None:
            raise ClaimLostError(job.id)  # OffloadWorker.execute_job says so
        self.set_state(WorkerStatus.BUSY)  # a run that just ended may have marked the worker idle
        if not self._backlog:
            self._let_start(handed)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """Not idle while runs are running: RQ's dequeue marks its worker idle as it waits for the next
        job, which a worker running one job at a time is; this one is busy until its last run ends
        (`_end`), and a round trip is spared at each look for more."""
        if state == WorkerStatus.IDLE and pipeline is None and self._runs:
            return
        super().set_state(state, pipeline)

    def _let_start(self, runs: list[Run]) -> None:
        """Wait until the runs just handed to slot threads call their functions (START_WAIT_SECONDS at
        most): with no job waiting, a job's start comes before the worker's look for the next."""
        deadline = time.monotonic() + START_WAIT_SECONDS
        for run in runs:
            left = deadline - time.monotonic()
            if left <= 0 or not run.began.wait(left):
                return

    def commit(self, end: End) -> bool:
        """A run's end shares its round trip with the ends of the other runs finishing meanwhile."""
        return self._commits.run(end)

    def _start_threads(self) -> None:
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, name="run-monitor", daemon=True)
            self._monitor.start()
        busy = len(self._runs)
        while len(self._threads) < min(busy, self.concurrency):  # one per slot in use, kept
            thread = threading.Thread(target=self._serve, name=f"slot-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()  # type: ignore[no-untyped-call]
        self._grace_ends = time.monotonic() + self.grace_seconds

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """A second signal: requeue the running jobs now; a third (or none running): RQ's cold stop."""
        first = self._shutdown_requested_date
        if first is not None and (now() - first).total_seconds() < 1:
            return  # honcho's Ctrl-C sends SIGINT and SIGTERM: one request
        if self._runs and self._grace_ends > time.monotonic():
            self._grace_ends = time.monotonic()
            return
        super().request_force_stop(signum, frame)

    def teardown(self) -> None:
        """Before RQ's: let the running jobs finish within the grace period, else requeue them; then
        end this worker's threads and loop, so none is left running as the interpreter exits."""
        self._finish_runs()
        self._close()
        super().teardown()  # type: ignore[no-untyped-call]

    def _close(self) -> None:
        self._closing = True
        stuck = {run.thread_id for run in self._runs.values()}  # in a long C call, requeued: not joined
        for _thread in self._threads:
            self._tasks.put(None)
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        threads = [t for t in self._threads if t.ident not in stuck] + [
            t for t in (self._monitor, self._loop_thread) if t
        ]
        for thread in threads:
            thread.join(CLOSE_WAIT)
        if loop is not None and not loop.is_running():
            loop.close()

    def _finish_runs(self) -> None:
        with self._changed:
            while self._runs and time.monotonic() < self._grace_ends:
                self._changed.wait(min(1.0, max(self._grace_ends - time.monotonic(), 0.01)))
            runs = list(self._runs.values())
        if not runs:
            return
        reason = "grace period over" if math.isfinite(self._grace_ends) else "worker stopping"
        for run in runs:
            run.interrupt(reason)
        deadline = time.monotonic() + INTERRUPT_WAIT
        with self._changed:
            while self._runs and time.monotonic() < deadline:
                self._changed.wait(0.1)
            stuck = list(self._runs.values())
        for run in stuck:  # its thread is in a long C call: requeued here, its outcome dropped
            with run.lock:
                if run.finishing:
                    continue
                run.finishing = run.requeued = True
            requeue(self, run.job, run.queue, run.execution, run.before, run.interrupted, run.started)
            self._end(run)

    # -- slot threads ----------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            run = self._tasks.get()
            if run is None:  # the worker is closing
                return
            self._local.run = run
            try:
                self.perform_job(run.job, run.queue, run.execution)
            except BaseException:  # RQ's perform_job handles the job's own; this is a lost save
                self.log.exception("job %s: its run ended without its outcome saved", run.job.id)
            finally:
                _raise_in_thread(threading.get_ident(), None)
                self._local.run = None
                self._end(run)

    def current_run(self) -> Run | None:
        """The run this thread is on (None outside a slot thread)."""
        run: Run | None = getattr(self._local, "run", None)
        return run

    def await_coroutine(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run an async job's coroutine on the shared loop; this slot thread waits for its end."""
        run = self.current_run()
        future = asyncio.run_coroutine_threadsafe(coroutine, self._event_loop())
        if run is None:
            return future.result()
        with run.lock:
            run.future = future
            cancel = run.interrupted is not None
        if cancel:
            future.cancel()
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise run.exception() from None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._changed:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(target=loop.run_forever, name="job-loop", daemon=True)
                self._loop_thread.start()
                self._loop = loop
            return self._loop

    def _end(self, run: Run) -> None:
        with self._changed:
            if self._runs.pop(run.execution.id, None) is None:
                return
            idle = not self._runs
            if self._awaited():
                self._changed.notify_all()
        self.executions.pop(run.execution.id, None)
        if idle:
            try:
                self.set_state(WorkerStatus.IDLE)
            except RedisError as exc:
                self.log.warning("could not mark worker idle: %s", exc)

    def _awaited(self) -> bool:
        """Whether the main thread may be waiting for the number of runs now running: a free slot
        (all were busy), half the slots free (`_gather`), or none running (`_finish_runs`). Other
        ends wake nobody: each would be a switch to the main thread and back. Called holding
        `_changed`."""
        free = self.concurrency - len(self._runs)
        return free == 1 or free >= self._half or not self._runs

    @property
    def _half(self) -> int:
        """Free slots `_gather` waits for before a take under a backlog."""
        return (self.concurrency + 1) // 2

    # -- RQ's members, per run -------------------------------------------------------------

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return heartbeat_ttl(self.job_monitoring_interval, job, working_time)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        run = self.current_run()
        if run is not None:
            with run.lock:  # from here on the run saves its outcome, uninterrupted
                run.finishing = True
                if run.thread_id is not None:
                    _raise_in_thread(run.thread_id, None)
                returned = sys.exc_info()[0] is None  # else RQ is saving the run's exception
                late = run.interrupted is not None and returned
            if late:  # interrupted just as the job returned: the interruption stands
                raise run.exception()
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    def handle_job_success(self, job: Job, *args: Any, **kwargs: Any) -> None:
        if self._still_ours():
            super().handle_job_success(job, *args, **kwargs)

    def handle_job_retry(self, job: Job, *args: Any, **kwargs: Any) -> None:
        if self._still_ours():
            super().handle_job_retry(job, *args, **kwargs)

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: Any = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        run = self.current_run()
        if run is None or not self._still_ours():
            return
        if run.interrupted not in (None, TIMEOUT, STOPPED):  # a shutdown's: back to its queue
            requeue(self, job, queue, run.execution, run.before, run.interrupted, run.started)
            return
        with self._stopping(run):
            super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    def _still_ours(self) -> bool:
        run = self.current_run()
        return run is None or not run.requeued

    _stop_lock = threading.Lock()

    @contextmanager
    def _stopping(self, run: Run) -> Iterator[None]:
        """RQ marks a run stopped by `_stopped_job_id`, one per worker: set it for this run alone."""
        if run.interrupted != STOPPED:
            yield
            return
        with self._stop_lock:
            self._stopped_job_id = run.job.id
            try:
                yield
            finally:
                self._stopped_job_id = None

    def handle_payload(self, message: dict[str, Any]) -> None:
        """RQ's commands; `stop-job` for any of the running jobs (RQ's looks at one), including one
        claimed (`started` to the API) and not yet handed to a slot: it is stopped as it is."""
        payload = parse_payload(message)
        job_id = payload.get("job_id")
        if payload.get("command") != "stop-job" or not isinstance(job_id, str):
            super().handle_payload(message)  # type: ignore[no-untyped-call]
            return
        with self._changed:
            run = next((run for run in self._runs.values() if run.job.id == job_id), None)
            if run is None:  # _dispatch looks here as it hands the job on
                clock = time.monotonic()
                self._stops = {job: at for job, at in self._stops.items() if clock - at < STOP_MEMORY}
                self._stops[job_id] = clock
        if run is not None:
            self.request_stop_execution(run.execution.id)

    def request_stop_execution(self, execution_id: str) -> None:
        run = self._runs.get(execution_id)
        if run is None:
            self.log.warning("Not running execution %s, command ignored.", execution_id)
            return
        run.interrupt(STOPPED)

    def _watch(self) -> None:
        """The monitor thread: each run's timeout, and its heartbeat every job_monitoring_interval."""
        beat_at = time.monotonic()
        while not self._closing:
            time.sleep(MONITOR_SECONDS)
            runs = list(self._runs.values())
            clock = time.monotonic()
            for run in runs:
                if run.deadline <= clock:
                    run.interrupt(TIMEOUT)
            if clock - beat_at < self.job_monitoring_interval:
                continue
            beat_at = clock
            for run in runs:
                if run.finishing:
                    continue
                try:
                    self.maintain_heartbeats(run.job, run.execution)
                except RedisError as exc:  # the next one may get through; recovery covers the rest
                    self.log.warning("job %s: heartbeat not sent: %s", run.job.id, exc)
