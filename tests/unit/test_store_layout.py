"""The Redis layout's names (service/store/layout.py): RQ's keys from RQ, and the callbacks it names."""

from __future__ import annotations

import importlib

import fakeredis
import pytest
from rq import Queue
from rq.job import Job
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry

from service.store import layout
from service.worker import webhooks


@pytest.mark.parametrize(("option", "path"), layout.CALLBACK_HOOKS.items())
def test_each_callback_path_names_the_worker_s_function(option: str, path: str) -> None:
    module, _, name = path.rpartition(".")
    assert getattr(importlib.import_module(module), name) is getattr(webhooks, name)


def test_rq_keys_are_rq_s_own() -> None:
    assert layout.job_key("abc") == Job.key_for("abc")
    assert layout.queue_key("low") == Queue("low", connection=fakeredis.FakeRedis()).key
    assert Job.key_for("abc") == layout.JOB_KEY_PREFIX + "abc"
    connection = fakeredis.FakeRedis()
    queue = Queue("low", connection=connection)
    job = Job.create(print, id="abc", connection=connection)
    assert layout.queues_set_key() == queue.redis_queues_keys
    assert layout.scheduled_key("low") == ScheduledJobRegistry(queue=queue).key
    assert layout.deferred_key("low") == DeferredJobRegistry(queue=queue).key
    assert layout.dependents_key("abc") == job.dependents_key
    assert layout.dependencies_key("abc") == job.dependencies_key


def test_job_ids_are_checked_as_the_pattern_says() -> None:
    import re

    pattern = re.compile(layout.JOB_ID_PATTERN)
    for text in ("abc", "A-b_9", "x" * 128, "", "x" * 129, "a b", "é", "a/b"):
        assert layout.is_job_id(text) == bool(pattern.fullmatch(text)), text


def test_statuses_and_queues_are_defined_once() -> None:
    assert layout.TERMINAL | layout.NOT_YET_RUN | {"started"} == set(layout.STATUSES)
    assert set(layout.QUEUES) < set(layout.WORKER_QUEUES)
