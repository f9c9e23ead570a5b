"""Listing jobs newest first, a page at a time, at a cost set by the page size.

RQ keeps no index by job name or across states, so the enqueue path records every job in
sorted sets scored by enqueue time (service/store/enqueue.py). A page reads one slice of one index,
the job hashes of that slice, and their results: three round trips whatever the total.
Filters the index cannot answer (status; queue together with name) are applied to a slice at
most `SCAN_FACTOR` times the page size, so a page may hold fewer jobs than asked: follow
`next_cursor` until it is null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq.job import Job
from rq.utils import as_text

from service.catalog import Registry
from service.schemas import JobView
from service.serializer import JSON
from service.store.layout import index_key
from service.store.views import job_views, status_of

SCAN_FACTOR = 4
# Entries sharing the cursor's score: enqueue gives every job its own microsecond, so this
# only has to absorb two requests in the same microsecond.
SAME_SCORE_SLACK = 16


class InvalidCursorError(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    score: int
    job_id: str

    def __str__(self) -> str:
        return f"{self.score}:{self.job_id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        score, sep, job_id = text.partition(":")
        if not sep or not score.isdigit() or not job_id:
            raise InvalidCursorError("not a cursor from a previous page")
        return cls(int(score), job_id)


@dataclass
class Page:
    jobs: list[JobView]
    next_cursor: str | None


def list_jobs(
    connection: Redis,
    registry: Registry,
    *,
    limit: int,
    status: str | None = None,
    queue: str | None = None,
    name: str | None = None,
    cursor: Cursor | None = None,
) -> Page:
    """One page of jobs matching every filter given, newest first."""
    key = index_key(name=name, queue=None if name else queue)
    filtered = status is not None or (name is not None and queue is not None)
    budget = limit * SCAN_FACTOR if filtered else limit
    entries = _slice(connection, key, cursor, budget + 1)
    more = len(entries) > budget
    scanned = entries[:budget]
    found = Job.fetch_many([job_id for job_id, _ in scanned], connection=connection, serializer=JSON)
    expired = [job_id for (job_id, _), job in zip(scanned, found, strict=True) if job is None]
    if expired:  # records gone with their TTL; their index entries go now
        connection.zrem(key, *expired)
    matched: list[Job] = []
    last = scanned[-1] if scanned else None
    for (job_id, score), job in zip(scanned, found, strict=True):
        if job is None or not _matches(job, status, queue):
            continue
        matched.append(job)
        if len(matched) == limit:
            last = (job_id, score)
            more = more or (job_id, score) != scanned[-1]
            break
    next_cursor = str(Cursor(last[1], last[0])) if more and last is not None else None
    return Page(jobs=job_views(connection, matched, registry), next_cursor=next_cursor)


def _slice(connection: Redis, key: str, cursor: Cursor | None, count: int) -> list[tuple[str, int]]:
    """Up to `count` index entries after the cursor, newest first."""
    if cursor is None:
        raw: Any = connection.zrevrangebyscore(key, "+inf", "-inf", start=0, num=count, withscores=True)
        return [(as_text(member), int(score)) for member, score in raw]
    raw = connection.zrevrangebyscore(
        key, cursor.score, "-inf", start=0, num=count + SAME_SCORE_SLACK, withscores=True
    )
    entries = [(as_text(member), int(score)) for member, score in raw]
    # Equal scores come in reverse member order: skip those at or before the cursor.
    start = 0
    while start < len(entries) and entries[start][1] == cursor.score and entries[start][0] >= cursor.job_id:
        start += 1
    return entries[start : start + count]


def _matches(job: Job, status: str | None, queue: str | None) -> bool:
    return (status is None or status_of(job) == status) and (queue is None or job.origin == queue)
