"""Taking and claiming jobs (service/store/queues.py, service/worker/recovery.py): no kill loses one."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import pytest
from redis import Redis
from rq import Worker
from rq.command import handle_stop_job_command
from rq.exceptions import DequeueTimeout, StopRequested
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import as_text, now
from rq.worker import BaseWorker, WorkerStatus

from jobs.examples import count_primes, very_long_task, word_count
from service.store import queues as dequeue
from service.store.layout import wake_key
from service.store.options import EnqueueOptions
from service.store.queues import SafeQueue
from service.store.wake import MAX_TOKENS, WakingQueue
from service.worker.main import build_worker
from service.worker.recovery import ClaimLostError
from service.worker.worker import ForkWorker


def intermediate(connection: Redis, queue: str) -> list[str]:
    return [as_text(item) for item in connection.lrange(f"rq:queue:{queue}:intermediate", 0, -1)]


def queued(connection: Redis, queue: str) -> list[str]:
    return [as_text(item) for item in connection.lrange(f"rq:queue:{queue}", 0, -1)]


def sweep(worker: BaseWorker) -> None:
    worker.clean_registries()


def status(connection: Redis, job_id: str) -> str:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer).get_status()


def test_a_worker_takes_the_first_job_of_its_first_queue_with_work_into_its_intermediate_list(
    connection: Redis,
) -> None:
    low = word_count.enqueue(connection, EnqueueOptions(queue="low"), text="a b")
    high = word_count.enqueue(connection, EnqueueOptions(queue="high"), text="a b")
    worker = build_worker(connection, kind="simple")
    taken = worker.dequeue_job_and_maintain_ttl(None)
    assert taken is not None
    job, queue = taken
    assert (job.id, queue.name) == (high.id, "high")
    assert isinstance(queue, SafeQueue)
    # Out of the queue, not yet anywhere a sweep counts as running: in the intermediate list.
    assert queued(connection, "high") == []
    assert intermediate(connection, "high") == [high.id]
    assert queued(connection, "low") == [low.id]


def test_the_claim_records_the_run_marks_it_started_and_leaves_the_intermediate_list_at_once(
    connection: Redis,
) -> None:
    enqueued = word_count.enqueue(connection, text="a b")
    worker = build_worker(connection, kind="simple")
    worker.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    taken = worker.dequeue_job_and_maintain_ttl(None)
    assert taken is not None
    execution = worker.prepare_execution(taken[0])
    assert intermediate(connection, "default") == []
    assert status(connection, enqueued.id) == JobStatus.STARTED
    assert enqueued.id in taken[1].started_job_registry.get_job_ids(cleanup=False)
    assert connection.exists(execution.key)
    assert worker.get_state() == WorkerStatus.BUSY


def test_a_job_canceled_between_its_take_and_its_claim_is_not_run(connection: Redis) -> None:
    enqueued = word_count.enqueue(connection, text="a b")
    worker = build_worker(connection, kind="simple")
    worker.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    taken = worker.dequeue_job_and_maintain_ttl(None)
    assert taken is not None
    Job.fetch(enqueued.id, connection=connection, serializer=JSONSerializer).cancel()
    with pytest.raises(ClaimLostError):
        worker.prepare_execution(taken[0])
    assert status(connection, enqueued.id) == JobStatus.CANCELED
    assert enqueued.id not in taken[1].started_job_registry.get_job_ids(cleanup=False)
    assert not connection.keys("rq:execution:*")
    sweep(worker)  # its id, left on the intermediate list, is dropped: nothing to give back
    assert intermediate(connection, "default") == []
    assert queued(connection, "default") == []


def test_a_job_taken_by_a_worker_that_died_before_its_claim_goes_back_to_the_front_unrun(
    connection: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = word_count.enqueue(connection, text="a b c")
    behind = word_count.enqueue(connection, text="d")
    dead = build_worker(connection, kind="simple", name="dead")
    assert dead.dequeue_job_and_maintain_ttl(None) is not None  # then killed: no claim
    sweeper = build_worker(connection, kind="simple", name="sweeper")
    sweep(sweeper)  # first sight: a live worker may be about to claim it
    assert intermediate(connection, "default") == [lost.id]
    sweep(sweeper)  # within the grace period: still left alone
    assert intermediate(connection, "default") == [lost.id]
    monkeypatch.setattr(dequeue, "INTERMEDIATE_GRACE_SECONDS", -1)
    tokens = connection.llen(wake_key("default"))
    sweep(sweeper)
    assert intermediate(connection, "default") == []
    assert queued(connection, "default") == [lost.id, behind.id]
    assert connection.llen(wake_key("default")) == tokens + 1  # an idle worker wakes for it
    assert status(connection, lost.id) == JobStatus.QUEUED
    sweeper.work(burst=True)
    ended = Job.fetch(lost.id, connection=connection, serializer=JSONSerializer)
    assert ended.get_status() == JobStatus.FINISHED
    assert ended.return_value() == {"words": 3, "unique": 3, "top": [["a", 1], ["b", 1], ["c", 1]]}
    assert len(ended.results()) == 1


def test_a_swept_id_whose_job_is_gone_or_no_longer_queued_is_only_dropped(connection: Redis) -> None:
    canceled = word_count.enqueue(connection, text="a")
    worker = build_worker(connection, kind="simple")
    assert worker.dequeue_job_and_maintain_ttl(None) is not None
    connection.hset(canceled.key, "status", JobStatus.CANCELED.value)
    connection.rpush("rq:queue:default:intermediate", "no-such-job")
    sweep(worker)
    assert intermediate(connection, "default") == []
    assert queued(connection, "default") == []


def test_a_claim_that_comes_after_the_sweep_gave_its_job_back_runs_nothing(
    connection: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueued = word_count.enqueue(connection, text="a b")
    stalled = build_worker(connection, kind="simple", name="stalled")
    stalled.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    taken = stalled.dequeue_job_and_maintain_ttl(None)
    assert taken is not None
    monkeypatch.setattr(dequeue, "INTERMEDIATE_GRACE_SECONDS", -1)
    sweeper = build_worker(connection, kind="simple", name="sweeper")
    sweep(sweeper)
    sweep(sweeper)
    assert queued(connection, "default") == [enqueued.id]
    with pytest.raises(ClaimLostError):
        stalled.prepare_execution(taken[0])
    # Undone: no run recorded, the job still queued for whoever takes it next.
    assert taken[1].started_job_registry.get_job_ids(cleanup=False) == []
    assert status(connection, enqueued.id) == JobStatus.QUEUED
    stalled.execute_job(taken[0], taken[1])  # the worker's own path: it runs nothing, and idles
    assert stalled.get_state() == WorkerStatus.IDLE
    assert status(connection, enqueued.id) == JobStatus.QUEUED
    sweeper.work(burst=True)
    assert len(Job.fetch(enqueued.id, connection=connection, serializer=JSONSerializer).results()) == 1


def test_a_horse_killed_after_it_queued_its_own_retry_does_not_fail_the_job_again(connection: Redis) -> None:
    enqueued = count_primes.enqueue(connection, EnqueueOptions(retries=1), limit=10)
    worker = build_worker(connection)
    worker.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    taken = worker.dequeue_job_and_maintain_ttl(None)
    assert taken is not None
    job, queue = taken
    execution = worker.prepare_execution(job)
    # The horse's side: the run failed, its retry due, its execution deleted; then SIGKILL.
    worker.handle_job_failure(job, queue, exc_string="ValueError: boom", execution=execution)
    stored = Job.fetch(enqueued.id, connection=connection, serializer=JSONSerializer)
    before = (stored.get_status(), stored.retries_left)
    assert before[0] in (JobStatus.QUEUED, JobStatus.SCHEDULED)
    # The worker's side, seeing its horse die.
    killed = "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9); "
    worker.handle_job_failure(job, queue, exc_string=killed, execution=execution)
    after = Job.fetch(enqueued.id, connection=connection, serializer=JSONSerializer)
    assert (after.get_status(), after.retries_left) == before


def test_a_horse_killed_mid_run_still_fails_its_job(connection: Redis) -> None:
    enqueued = very_long_task.enqueue(connection, seconds=1)
    worker = build_worker(connection)
    worker.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    taken = worker.dequeue_job_and_maintain_ttl(None)
    assert taken is not None
    execution = worker.prepare_execution(taken[0])
    killed = "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9); "
    worker.handle_job_failure(taken[0], taken[1], exc_string=killed, execution=execution)
    assert status(connection, enqueued.id) == JobStatus.FAILED


def test_pushes_wake_idle_workers_and_an_empty_look_drops_stale_tokens(connection: Redis) -> None:
    queue = WakingQueue("default", connection=connection, serializer=JSONSerializer)
    for n in range(MAX_TOKENS + 10):
        queue.push_job_id(f"job-{n}")
    assert connection.llen(wake_key("default")) == MAX_TOKENS  # bounded while nobody takes them
    connection.delete(queue.key)
    assert SafeQueue.dequeue_any([SafeQueue("default", connection=connection)], None, connection) is None
    assert connection.llen(wake_key("default")) == 0


def test_an_idle_worker_gives_up_after_its_timeout(
    connection: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(dequeue, "WAKE_POLL_SECONDS", 0.01)
    queues = [SafeQueue(name, connection=connection) for name in ("high", "low")]
    with pytest.raises(DequeueTimeout):
        SafeQueue.dequeue_any(queues, 1, connection)


def test_grace_is_measured_from_the_first_sweep_that_saw_the_id(connection: Redis) -> None:
    queue = SafeQueue("default", connection=connection)
    pending = queue.intermediate_queue
    connection.rpush(pending.key, "some-job")
    assert not pending.should_be_cleaned_up("some-job")  # never seen
    pending.set_first_seen("some-job")
    assert not pending.should_be_cleaned_up("some-job")
    seen = pending.get_first_seen("some-job")
    assert seen is not None
    connection.set(pending.get_first_seen_key("some-job"), (seen - timedelta(seconds=11)).timestamp())
    assert pending.should_be_cleaned_up("some-job")


def test_a_stop_between_the_claim_and_the_fork_kills_the_horse_once_it_exists(
    connection: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed: list[int] = []
    monkeypatch.setattr(os, "getpgid", lambda pid: pid)
    monkeypatch.setattr(os, "killpg", lambda group, sig: killed.append(group))
    enqueued = very_long_task.enqueue(connection, seconds=1)
    worker = build_worker(connection)
    assert isinstance(worker, ForkWorker)
    taken = worker.dequeue_job_and_maintain_ttl(None)
    assert taken is not None
    worker.prepare_execution(taken[0])
    handle_stop_job_command(worker, {"job_id": enqueued.id})  # no horse yet: RQ's killpg(0)
    assert killed == []

    def fork(self: ForkWorker, job: Job, queue: object) -> None:
        self._horse_pid = 4242

    monkeypatch.setattr(Worker, "fork_work_horse", fork)
    worker.fork_work_horse(taken[0], taken[1])
    assert killed == [4242]


def test_every_enqueue_path_wakes_an_idle_worker_of_the_job_s_queue(connection: Redis) -> None:
    word_count.enqueue(connection, EnqueueOptions(queue="high"), text="a")  # RQ's objects, a MULTI
    assert connection.llen(wake_key("high")) == 1
    word_count.enqueue(connection, EnqueueOptions(queue="high", at_front=True), text="b")
    assert connection.llen(wake_key("high")) == 2
    assert connection.llen(wake_key("default")) == 0  # its workers have nothing new


def test_a_sweep_lock_left_by_a_killed_worker_lapses_within_a_minute(connection: Redis) -> None:
    queue = SafeQueue("default", connection=connection, serializer=JSONSerializer)
    assert queue.acquire_maintenance_lock()  # then the worker dies mid-sweep, never releasing it
    assert not queue.acquire_maintenance_lock()
    assert 0 < connection.ttl(queue.registry_cleaning_key) <= dequeue.MAINTENANCE_LOCK_SECONDS <= 60


def test_take_gets_up_to_n_jobs_in_priority_order_in_one_call(connection: Redis) -> None:
    low = word_count.enqueue(connection, EnqueueOptions(queue="low"), text="a")
    first, second = (word_count.enqueue(connection, EnqueueOptions(queue="high"), text=t) for t in "bc")
    queues = [SafeQueue(name, connection=connection, serializer=JSONSerializer) for name in ("high", "low")]
    taken = SafeQueue.take(queues, 2, None, connection, serializer=JSONSerializer)
    assert [(job.id, queue.name) for job, queue in taken] == [(first.id, "high"), (second.id, "high")]
    assert intermediate(connection, "high") == [first.id, second.id]  # recoverable until claimed
    rest = SafeQueue.take(queues, 5, None, connection, serializer=JSONSerializer)
    assert [job.id for job, _queue in rest] == [low.id]
    assert SafeQueue.take(queues, 5, None, connection, serializer=JSONSerializer) == []


def test_take_gives_back_a_job_rq_cannot_read_and_reports_it_when_it_is_alone(connection: Redis) -> None:
    broken, good = (word_count.enqueue(connection, text=t) for t in "ab")
    connection.hset(broken.key, "enqueued_at", "not a time")
    queue = SafeQueue("default", connection=connection, serializer=JSONSerializer)
    taken = SafeQueue.take([queue], 5, None, connection, serializer=JSONSerializer)
    assert [job.id for job, _queue in taken] == [good.id]
    assert queued(connection, "default") == [broken.id]  # back at the front, for the next take
    # Alone, it is raised, as RQ reports (and fails) a job it cannot read.
    with pytest.raises(ValueError, match="not a time") as raised:
        SafeQueue.take([queue], 5, None, connection, serializer=JSONSerializer)
    assert raised.value.job_id == broken.id  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["simple", "fork", "concurrent"])
def test_a_stop_asked_of_an_idle_worker_is_raised_by_its_next_look_not_by_the_signal_handler(
    kind: str, connection: Redis
) -> None:
    # RQ's SIGTERM handler calls _shutdown wherever the main thread is, inside a Redis command too: a
    # raise there left a connection with a reply still to come, or crashed hiredis mid-pack.
    worker = build_worker(connection, kind=kind)
    worker._shutdown_requested_date = now()
    worker._shutdown()  # as the handler does (RQ's request_stop); raises nothing
    assert worker._stop_requested
    job = word_count.enqueue(connection, text="a b")
    with pytest.raises(StopRequested):  # the main thread's own look, before it takes anything
        worker.queue_class.dequeue_any(worker._ordered_queues, 5, connection)
    assert queued(connection, "default") == [job.id]
    assert intermediate(connection, "default") == []


def test_a_stop_asked_while_an_idle_worker_waits_ends_the_wait_at_its_next_look(
    connection: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dequeue, "WAKE_POLL_SECONDS", 0.05)
    worker = build_worker(connection, kind="simple")
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            worker.queue_class.dequeue_any(worker._ordered_queues, 5, connection)
        except BaseException as exc:  # what the wait ended with, for the test
            raised.append(exc)

    waiting = threading.Thread(target=wait, daemon=True)
    waiting.start()
    time.sleep(0.1)  # in its wait
    asked = time.monotonic()
    worker._shutdown_requested_date = now()
    worker._shutdown()
    waiting.join(2)
    assert not waiting.is_alive()
    assert [type(exc) for exc in raised] == [StopRequested]  # not a DequeueTimeout 5 s on
    print(f"stop raised {time.monotonic() - asked:.3f} s after it was asked")
