"""rq-dashboard's Flask app, on the web's Redis client, with the views offload replaces or adds.

rq-dashboard 0.9.0 ignores the JSON serializer offload stores jobs with in a few views, and puts a
job's input into its page as HTML; those views are replaced here, per app (nothing global). The
page that pauses queues is offload's own (service/web/dashboard_pause.py).
service/web/dashboard.py serves it behind its gate.
"""

from __future__ import annotations

import html
from functools import partial
from pathlib import Path
from typing import Any

import rq_dashboard
from flask import Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.registry import FailedJobRegistry
from rq.worker import BaseWorker
from rq_dashboard import web as rq_web

from service.catalog import Registry
from service.serializer import JSON
from service.store.control import requeue
from service.store.errors import JobNotFoundError, JobStateError, UnknownQueueError
from service.web.dashboard_pause import install_pause_page

# What rq-dashboard 0.9.0's workers.json shows of a worker as is.
WORKER_FIELDS = (
    "name",
    "pid",
    "last_heartbeat",
    "birth_date",
    "successful_job_count",
    "failed_job_count",
    "total_working_time",
    "version",
    "python_version",
)


def build_flask_app(connection: Redis, registry: Registry, redis_shown: str, *, read_only: bool) -> Flask:
    """rq-dashboard's blueprint in an app of its own, on `connection`, reading JSON jobs."""
    # rq-dashboard 0.9.0 takes its serializer from a module-level setting only (what its --json
    # option and RQ_DASHBOARD_JSON_SERIALIZER set). Every job offload stores is JSON.
    rq_web.config.serializer = JSON
    static = Path(rq_web.__file__).parent / "static"
    app = Flask(__name__, static_folder=str(static))
    app.config.from_object(rq_dashboard.default_settings)
    app.config.update(
        # Shown in its instance picker only; the connection is `connection` (see _one_instance).
        RQ_DASHBOARD_REDIS_URL=(redis_shown,),
        # Hides its delete and empty buttons; the gate refuses every action anyway.
        RQ_DASHBOARD_DISABLE_DELETE=read_only,
    )
    app.register_blueprint(rq_dashboard.blueprint)
    app.redis_conn = connection  # type: ignore[attr-defined]  # where rq-dashboard's views look
    # Its own hook opens a new client from the URL on every request: no TLS options (REDIS_TLS_VERIFY),
    # a connection pool per request. Replaced in this app only; the blueprint stays as it is.
    hooks = app.before_request_funcs["rq_dashboard"]
    hooks[:] = [_one_instance if hook is rq_web.push_rq_connection else hook for hook in hooks]

    views = app.view_functions
    views["rq_dashboard.requeue_job_view"] = partial(_requeue_job, connection, registry)
    views["rq_dashboard.requeue_all"] = partial(_requeue_all, connection, registry)
    views["rq_dashboard.job_info"] = _job_info
    views["rq_dashboard.list_workers"] = partial(_list_workers, connection)
    install_pause_page(app, connection, read_only=read_only)
    app.register_error_handler(NoSuchJobError, _no_such_job)
    app.register_error_handler(UnknownQueueError, _unknown_queue)
    app.register_error_handler(RedisConnectionError, _redis_down)
    app.register_error_handler(RedisTimeoutError, _redis_down)
    return app


def _one_instance() -> None:
    """There is one Redis, the web's: other instance numbers are not found."""
    if (request.view_args or {}).get("instance_number", 0) != 0:
        abort(404)


def _requeue_job(connection: Redis, registry: Registry, job_id: str) -> ResponseReturnValue:
    """As POST /jobs/{id}/requeue: failed, stopped or canceled jobs, their stale progress cleared.

    rq-dashboard's own requeues with the pickle serializer, and only failed jobs.
    """
    try:
        requeue(connection, job_id, registry)
    except JobStateError as exc:
        return jsonify(status="ERROR", detail=exc.detail), 409
    except JobNotFoundError as exc:
        return jsonify(status="ERROR", detail=exc.detail), 404
    return jsonify(status="OK")


def _requeue_all(connection: Redis, registry: Registry, queue_name: str) -> ResponseReturnValue:
    failed = FailedJobRegistry(queue_name, connection=connection, serializer=JSON)
    count = 0
    for job_id in failed.get_job_ids(cleanup=False):
        try:
            requeue(connection, job_id, registry)
        except (JobStateError, JobNotFoundError):  # requeued or deleted meanwhile
            continue
        count += 1
    return jsonify(status="OK", count=count)


def _job_info(instance_number: int, job_id: str) -> ResponseReturnValue:
    # Its job page puts these fields into the page as HTML, and a job's input (in its description)
    # or error message can be anyone's text: escaped here, they show as text.
    info = rq_web.job_info.__wrapped__(instance_number, job_id)
    return jsonify(_escaped(info)), {"Cache-Control": "no-store"}


def _list_workers(connection: Redis, instance_number: int) -> ResponseReturnValue:
    # Its own reads a busy worker's job with the pickle serializer, and fails on JSON jobs.
    workers = [
        {
            **{field: getattr(worker, field, "") for field in WORKER_FIELDS},
            "queues": [queue.name for queue in worker.queues],
            "state": str(worker.get_state()),
            "current_job": _current_job(worker),
        }
        for worker in Worker.all(connection=connection, serializer=JSON)
    ]
    workers.sort(key=lambda w: (w["state"], w["queues"], w["name"]))
    return jsonify(workers=workers), {"Cache-Control": "no-store"}


def _current_job(worker: BaseWorker) -> dict[str, Any] | str:
    try:
        job = worker.get_current_job()
    except NoSuchJobError:  # ended and deleted since the worker said it runs it
        job = None
    if job is None:
        return "idle"
    current: dict[str, Any] = rq_web.serialize_current_job(job)
    current["call_string"] = html.escape(current["call_string"], quote=False)  # shown as HTML
    others = len(worker.get_current_executions()) - 1  # a --concurrency worker runs several
    if others > 0:
        current["call_string"] += f" (and {others} more running)"
    return current


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value, quote=False)
    if isinstance(value, dict):
        return {key: _escaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    return value


def _no_such_job(exc: Exception) -> ResponseReturnValue:
    return jsonify(detail="no such job (it never existed or its record expired)"), 404


def _unknown_queue(exc: Exception) -> ResponseReturnValue:
    assert isinstance(exc, UnknownQueueError)
    return jsonify(detail=exc.detail), 404


def _redis_down(exc: Exception) -> ResponseReturnValue:
    return jsonify(detail=f"Redis is unavailable, try again shortly ({exc})"), 503
