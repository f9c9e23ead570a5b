"""Following a job's Server-Sent Events across reconnects: what to yield, when to reconnect, when to stop.

offload's stream (`GET /jobs/{id}/events`) sends `status` first (the job as it is now), then
`status` and `progress` changes, and `end` last; `timeout` when it was open MAX_STREAM_SECONDS,
`unavailable` when Redis went away, `gone` when the job's record did. Its events carry no ids
(there is no Last-Event-ID to resume from): a reconnected stream starts again with the job as it
is now, so `Follow` skips that first event when it shows what was already yielded, and names it
by what changed. `end` comes once: it closes the stream and the following.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from offload_client.calls import JobRef, job_id
from offload_client.errors import NotFoundError, UnreachableError, raise_for_status
from offload_client.generated import JobView
from offload_client.retry import Attempts, Retry

EventKind = Literal["status", "progress", "end", "timeout"]
# The server pings every 15 s; three missed pings mean the connection is dead, though still open.
STREAM_READ_TIMEOUT = 45.0
STREAM_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}


@dataclass(frozen=True)
class JobEvent:
    """A change of the followed job: `status`, `progress`, then `end` (its last view); or `timeout`,
    the job as last seen when `events(job, timeout=...)` ran out."""

    kind: EventKind
    job: JobView


class SSEDecoder:
    """Server-Sent Events from a stream's lines: the WHATWG rules for `event`, `data` and comments."""

    def __init__(self) -> None:
        self.event = ""
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        """The (event, data) this line completes, if any."""
        if not line:  # a blank line dispatches what came before it
            event, data = self.event or "message", self.data
            self.event, self.data = "", []
            return (event, "\n".join(data)) if data else None
        if line.startswith(":"):  # a comment: the server's keep-alive ping
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        return None  # `id` and `retry` fields: offload sends none


class Follow:
    """One `events(job)`: the state both clients' loops consult around each connection."""

    def __init__(
        self, job: JobRef, timeout: float | None, retry: Retry, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = f"/jobs/{job_id(job)}/events"
        self.clock = clock
        self.deadline = None if timeout is None else clock() + timeout
        self.attempts = Attempts(retry, retry=True, clock=clock)
        self.last: JobView | None = None
        self.done = False
        self.decoder = SSEDecoder()
        self.again_at_once = False  # the server closed on its own time limit: reconnect at once

    def ended(self) -> bool:
        """Whether the following is over: the job ended, or the time ran out."""
        return self.done

    def read_timeout(self) -> float:
        left = self.left()
        return STREAM_READ_TIMEOUT if left is None else max(0.001, min(STREAM_READ_TIMEOUT, left))

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock()

    def expired(self) -> JobEvent | None:
        """The `timeout` event once the time is up (and the following stops), else None."""
        left = self.left()
        if left is None or left > 0:
            return None
        self.done = True
        if self.last is None:
            raise UnreachableError(f"no event from {self.path} within the timeout")
        return JobEvent("timeout", self.last)

    def opened(self, response: httpx.Response) -> float | None:
        """None to read this stream; else seconds to wait before reconnecting (a 503)."""
        if response.status_code == 200:
            self.attempts.reset()
            self.decoder = SSEDecoder()
            self.again_at_once = False
            return None
        delay = self.attempts.after_response(response)
        if delay is None:
            raise_for_status(response)  # its typed error (a 2xx other than 200 is none of offload's)
            raise UnreachableError(f"{self.path} answered {response.status_code}, not a stream")
        return delay

    def feed(self, line: str) -> JobEvent | None:
        """The event this line completes, if it is one to yield."""
        message = self.decoder.feed(line)
        if message is None:
            return None
        event, data = message
        if event == "gone":
            raise NotFoundError(f"the job's record is gone: {_detail(data)}", _detail(data))
        if event == "timeout":
            self.again_at_once = True
        if event not in ("status", "progress", "end"):
            return None  # timeout, unavailable (the stream closes next), or one this client predates
        return self._change(event, JobView.model_validate_json(data))

    def _change(self, event: str, view: JobView) -> JobEvent | None:
        last, self.last = self.last, view
        if event == "end":
            self.done = True
            return JobEvent("end", view)
        if last is None:
            return JobEvent("status" if event == "status" else "progress", view)
        if view.status != last.status:
            return JobEvent("status", view)
        if view.progress != last.progress:
            return JobEvent("progress", view)
        return None  # a reconnect's first event, showing nothing new

    def closed(self) -> float:
        """The stream ended without `end`: seconds before reconnecting."""
        if self.again_at_once:
            return 0.0
        # A closed stream (Redis unavailable, the web stopping) is a failure like a dropped one.
        return self.dropped(httpx.RemoteProtocolError(f"{self.path} closed before the job ended"))

    def dropped(self, error: httpx.TransportError) -> float:
        """The connection failed or dropped: seconds before reconnecting; raises once out of tries."""
        left = self.left()
        if left is not None and left <= 0:
            return 0.0  # the loop's next look at `expired` ends it
        return self.attempts.after_error(error)


def _detail(data: str) -> object:
    try:
        return json.loads(data).get("detail", data)
    except (ValueError, AttributeError):
        return data
