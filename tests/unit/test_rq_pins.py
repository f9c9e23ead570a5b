"""Every RQ member offload overrides, or reads though it is private, pinned to RQ 3.0's signature.

An RQ upgrade that renames, removes or re-signs one of them fails here, in `make test`, before it
can change a worker's behaviour quietly. requirements.txt allows the RQ versions this test has
passed on (3.0.x). To upgrade RQ: bump the range, read RQ's change to each member that fails here,
adapt offload's override, then update its entry below.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import fakeredis
from rq import Queue, Worker, worker_pool
from rq.cron import CronScheduler
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

import service

# "module.Class.member": the signature of RQ's member that an offload class overrides.
OVERRIDDEN = {
    "rq.cron.CronJob.__init__": "(self, queue_name: 'str', func: 'Callable | None' = None, func_name: 'str | None' = None, args: 'tuple | None' = None, kwargs: 'dict | None' = None, interval: 'int | None' = None, cron: 'str | None' = None, job_timeout: 'int | None' = None, result_ttl: 'int' = 500, ttl: 'int | None' = None, failure_ttl: 'int | None' = None, meta: 'dict | None' = None, webhooks: 'Sequence[Webhook] | None' = None, name: 'str' = '')",
    "rq.cron.CronJob.enqueue": "(self, connection: 'Redis') -> 'Job'",
    "rq.cron.CronScheduler.__init__": "(self, connection: 'Redis', logging_level: 'str | int' = 20, name: 'str' = '')",
    "rq.cron.CronScheduler._request_stop": "(self, signum, frame)",
    "rq.cron.CronScheduler.enqueue_jobs": "(self) -> 'list[CronJob]'",
    "rq.cron.CronScheduler.start": "(self)",
    "rq.intermediate_queue.IntermediateQueue.__init__": "(self, queue_key: 'str', connection: 'Redis')",
    "rq.intermediate_queue.IntermediateQueue.cleanup": "(self, worker: 'BaseWorker', queue: 'Queue') -> 'None'",
    "rq.intermediate_queue.IntermediateQueue.should_be_cleaned_up": "(self, job_id: 'str') -> 'bool'",
    "rq.job.Job._execute": "(self) -> 'Any'",
    "rq.job.Job.restore": "(self, raw_data) -> 'Any'",
    "rq.job.Job.failure_callback": "(self) -> 'FailureCallbackType | None'",
    "rq.job.Job.func": "(self)",
    "rq.job.Job.stopped_callback": "(self) -> 'Callable[[Job, Redis], Any] | None'",
    "rq.job.Job.success_callback": "(self) -> 'SuccessCallbackType | None'",
    "rq.queue.Queue.acquire_maintenance_lock": "(self) -> 'bool'",
    "rq.queue.Queue.dequeue_any": "(cls, queues: 'Iterable[Queue]', timeout: 'int | None', connection: 'Redis', job_class: 'type[Job] | None' = None, serializer: 'Serializer | str | None' = None, death_penalty_class: 'type[BaseDeathPenalty] | None' = None) -> 'tuple[Job, Queue] | None'",
    "rq.queue.Queue.intermediate_queue": "(self) -> 'IntermediateQueue'",
    "rq.queue.Queue.push_job_id": "(self, job_id: 'str', pipeline: 'Pipeline | None' = None, at_front: 'bool' = False)",
    "rq.queue.Queue.schedule_job": "(self, job: 'Job', datetime: 'datetime', pipeline: 'Pipeline | None' = None, unique: 'bool' = False) -> 'Job'",
    "rq.timeouts.BaseDeathPenalty.cancel_death_penalty": "(self)",
    "rq.timeouts.BaseDeathPenalty.setup_death_penalty": "(self)",
    "rq.worker.base.BaseWorker.__init__": "(self, queues: 'str | Queue | Sequence[str] | Sequence[Queue]', name: 'str | None' = None, default_result_ttl=500, connection: 'Redis | None' = None, exception_handlers=None, maintenance_interval: 'int' = 600, default_worker_ttl: 'int | None' = None, worker_ttl: 'int | None' = None, job_class: 'type[Job] | str | None' = None, queue_class: 'type[Queue] | str | None' = None, log_job_description: 'bool' = True, job_monitoring_interval=30, disable_default_exception_handler: 'bool' = False, prepare_for_work: 'bool' = True, serializer: 'Serializer | str | None' = None, work_horse_killed_handler: 'Callable[[Job, int, int, struct_rusage], None] | None' = None)",
    "rq.worker.base.BaseWorker._shutdown": "(self)",
    "rq.worker.base.BaseWorker.check_for_suspension": "(self, burst: 'bool')",
    "rq.worker.base.BaseWorker.dequeue_job_and_maintain_ttl": "(self, timeout: 'int | None', max_idle_time: 'int | None' = None) -> 'tuple[Job, Queue] | None'",
    "rq.worker.base.BaseWorker.execute_job": "(self, job: 'Job', queue: 'Queue')",
    "rq.worker.base.BaseWorker.get_heartbeat_ttl": "(self, job: 'Job', working_time: 'float' = 0.0) -> 'int'",
    "rq.worker.base.BaseWorker.handle_execution_ended": "(self, job: 'Job', queue: 'Queue', heartbeat_ttl: 'int')",
    "rq.worker.base.BaseWorker.handle_job_failure": "(self, job: 'Job', queue: 'Queue', started_job_registry=None, exc_string='', execution: 'Execution | None' = None)",
    "rq.worker.base.BaseWorker.handle_job_retry": "(self, job: 'Job', queue: 'Queue', retry: 'Retry', started_job_registry: 'StartedJobRegistry', execution: 'Execution')",
    "rq.worker.base.BaseWorker.log_result_lifespan": "attribute: bool",
    "rq.worker.base.BaseWorker.handle_job_success": "(self, job: 'Job', queue: 'Queue', started_job_registry: 'StartedJobRegistry', execution: 'Execution')",
    "rq.worker.base.BaseWorker.handle_payload": "(self, message)",
    "rq.worker.base.BaseWorker.handle_warm_shutdown_request": "(self)",
    "rq.worker.base.BaseWorker.heartbeat": "(self, timeout: 'int | None' = None, pipeline: 'Pipeline | None' = None)",
    "rq.worker.base.BaseWorker.increment_successful_job_count": "(self, pipeline: 'Pipeline | None' = None)",
    "rq.worker.base.BaseWorker.prepare_execution": "(self, job: 'Job') -> 'Execution'",
    "rq.worker.base.BaseWorker.prepare_job_execution": "(self, job: 'Job', remove_from_intermediate_queue: 'bool' = False) -> 'None'",
    "rq.worker.base.BaseWorker.request_force_stop": "(self, signum: 'int', frame: 'FrameType | None')",
    "rq.worker.base.BaseWorker.request_stop_execution": "(self, execution_id: 'str')",
    "rq.worker.base.BaseWorker.set_state": "(self, state: 'str', pipeline: 'Pipeline | None' = None)",
    "rq.worker.base.BaseWorker.setup_work_horse_signals": "(self)",
    "rq.worker.base.BaseWorker.teardown": "(self)",
    "rq.worker.worker_classes.Worker.fork_work_horse": "(self, job: 'Job', queue: 'Queue')",
    "rq.worker.worker_classes.Worker.kill_horse": "(self, sig: 'signal.Signals' = <Signals.SIGKILL: 9>)",
    "rq.worker.worker_classes.Worker.monitor_work_horse": "(self, job: 'Job', queue: 'Queue', execution: 'Execution')",
    "rq.worker_pool.WorkerPool.__init__": "(self, queues: 'Iterable[str | Queue]', connection: 'Redis', num_workers: 'int' = 1, worker_class: 'type[BaseWorker]' = <class 'rq.worker.worker_classes.Worker'>, serializer: 'Serializer' = <class 'rq.serializers.DefaultSerializer'>, job_class: 'type[Job]' = <class 'rq.job.Job'>, queue_class: 'type[Queue]' = <class 'rq.queue.Queue'>, exception_handlers=None, *args, **kwargs)",
    "rq.worker_pool.WorkerPool.check_workers": "(self, respawn: 'bool' = True) -> 'None'",
    "rq.worker_pool.WorkerPool.get_worker_process": "(self, name: 'str', burst: 'bool', _sleep: 'float' = 0, logging_level: 'str' = 'INFO') -> 'BaseProcess'",
    "rq.worker_pool.WorkerPool.handle_dead_worker": "(self, worker_data: 'WorkerData')",
}

# The private RQ methods offload calls, by signature: service/worker/finish.py writes a job's
# successful end with RQ's own pieces of `handle_job_success`.
PRIVATE_METHODS = {
    "rq.job.Job._handle_success": "(self, result_ttl, pipeline: 'Pipeline', worker_name: 'str' = '', execution_id: 'str | None' = None, execution_started_at: 'datetime | None' = None, execution_ended_at: 'datetime | None' = None)",
}
# Private attributes offload reads (or, `_stop_requested` and a job's `_status`, sets), by name.
PRIVATE_WORKER_ATTRIBUTES = ("_stopped_job_id", "_shutdown_requested_date", "_stop_requested")
# What the pool (service/worker/pool.py) reads of RQ's WorkerPool besides the members it overrides.
POOL_ATTRIBUTES = ("_queue_names", "_burst", "status", "worker_dict", "name", "connection")
PRIVATE_JOB_ATTRIBUTES = (
    "_status",
    "_dependency_ids",
    "_success_callback_name",
    "_failure_callback_name",
    "_stopped_callback_name",
)


def _signature(member: Any) -> str:
    if not callable(member) and not isinstance(member, (property, classmethod, staticmethod)):
        return f"attribute: {type(member).__name__}"  # a setting offload's class gives its own value
    function: Any = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
    return str(inspect.signature(function))


def overridden_members() -> dict[str, str]:
    """What offload's classes override of RQ's, found by walking service/: nothing is listed by hand."""
    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(service.__path__, "service."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            rq_bases = [base for base in cls.__mro__[1:] if base.__module__.startswith("rq.")]
            for name in vars(cls):
                if name.startswith("__") and name != "__init__":
                    continue
                base = next((base for base in rq_bases if name in vars(base)), None)
                if base is not None:
                    found[f"{base.__module__}.{base.__qualname__}.{name}"] = _signature(vars(base)[name])
    return found


def test_every_override_of_an_rq_member_is_pinned_to_its_signature() -> None:
    assert overridden_members() == OVERRIDDEN


def test_private_rq_methods_offload_calls_keep_their_signatures() -> None:
    found = {path: _signature(getattr(Job, path.rsplit(".", 1)[1])) for path in PRIVATE_METHODS}
    assert found == PRIVATE_METHODS


def test_private_rq_attributes_offload_reads_still_exist() -> None:
    connection = fakeredis.FakeRedis()
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    worker = Worker([queue], connection=connection, serializer=JSONSerializer)
    job = Job.create(print, connection=connection, serializer=JSONSerializer)
    for name in PRIVATE_WORKER_ATTRIBUTES:
        assert hasattr(worker, name), name
    for name in PRIVATE_JOB_ATTRIBUTES:
        assert hasattr(job, name), name
    assert hasattr(CronScheduler(connection), "_cron_jobs")
    pool = WorkerPool(["default"], connection=connection)
    for name in POOL_ATTRIBUTES:
        assert hasattr(pool, name), name
    assert WorkerPool.Status.STOPPED
    # The pool forks its children as RQ's does, and reads RQ's record of each.
    assert worker_pool.ForkProcess is not None
    assert worker_pool.WorkerData._fields == ("name", "pid", "process")
