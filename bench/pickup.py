"""P4a: from the client's POST to the job's start, with an idle worker waiting for work.

Sequential calls from one keep-alive client: note the wall clock, `POST /jobs/word_count`, read
the job once it ended, and take its `started_at` (set by the worker as the job starts; the same
machine's clock) minus the time of sending. With the simple worker (`--kind simple`: jobs run in
the worker's process) and, for reference, the Procfile's default (the concurrent kind: a slot
thread per job) and the forking worker (a child per job).
The baseline beside each is when the POST's own answer (202) arrived, in the same calls.
"""

from __future__ import annotations

import http.client
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx2

from bench.processes import Context, running_web, running_workers
from bench.report import Better, Row, median
from service.dev.harness import running_redis

# The Procfile's worker as it comes (the concurrent kind), and the two others by name.
KINDS = {"simple": "--kind simple", "concurrent": "", "fork": "--kind fork"}


def pickup_ms(client: httpx2.Client, calls: int) -> tuple[list[float], list[float]]:
    """Per call: ms from sending the POST to the job's start, and to the POST's answer.

    The POST goes out through the standard library's `http.client`, a thinner client than httpx's
    (about 0.4 ms less of this machine's two cores a call): the figure is offload's, the client's
    own cost aside. The job is then read through `client`.
    """
    started: list[float] = []
    answered: list[float] = []
    url = urlsplit(str(client.base_url))
    post = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=20)
    try:
        for n in range(calls):
            body = json.dumps({"text": f"call {n}"})
            sent = time.time()
            post.request("POST", "/jobs/word_count", body, {"Content-Type": "application/json"})
            response = post.getresponse()
            text = response.read()
            answered.append((time.time() - sent) * 1000)
            assert response.status == 202, text
            job = client.get(response.headers["Location"], params={"wait": 10}, timeout=20).json()
            assert job["status"] == "finished", job
            started.append((datetime.fromisoformat(job["started_at"]).timestamp() - sent) * 1000)
    finally:
        post.close()
    return started, answered


def p4a(ctx: Context) -> list[Row]:
    calls = ctx.pick(100, 20)
    rows = []
    with (
        tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch,
        running_redis(Path(scratch) / "redis") as server,
        running_web(Path(scratch), server.url) as web,
    ):
        for kind, args in KINDS.items():
            with running_workers(Path(scratch), server.url, 1, args, name=f"{kind}-worker"):
                pickup_ms(web.client, 5)  # warm up
                started, answered = pickup_ms(web.client, calls)
            rows.append(
                Row("P4a" if kind == "simple" else "P4a ref", f"POST → job start p50, {kind} worker",
                    median(started), median(answered), "POST answered (202) p50, same calls",
                    Better.LOWER, 3.0 if kind == "simple" else None, absolute=True, unit="ms")
            )  # fmt: skip
    return rows
