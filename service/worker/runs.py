"""One running job of a concurrent worker (service/worker/concurrent.py), and how it is ended early.

A run ends early at its timeout, on a stop asked for by a user, or in a shutdown: an async job's
coroutine is cancelled; a sync job gets an exception raised in its thread, as RQ's
TimerDeathPenalty does, which Python delivers when the thread next runs Python code. Once a run
saves its outcome (`finishing`) nothing interrupts it.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from rq import Queue
from rq.executions import Execution
from rq.job import Job
from rq.timeouts import BaseDeathPenalty, JobTimeoutException
from rq.utils import now


class RunsHolder(Protocol):
    """What a death penalty asks of its worker: the run the calling slot thread is on."""

    def current_run(self) -> Run | None: ...


TIMEOUT = "timeout"
STOPPED = "stopped"


class RunInterrupted(BaseException):
    """Raised in a job's thread when its worker ends the run early; BaseException, so `except
    Exception` in a job does not swallow it."""


@dataclass(eq=False)
class Run:
    """One running job of a concurrent worker."""

    job: Job
    queue: Queue
    execution: Execution
    before: dict[str, Any]  # the job as it was before the claim marked it started
    thread_id: int | None = None  # a sync job's thread, while its function runs: where to interrupt it
    deadline: float = math.inf  # monotonic; set while the job's function runs
    future: concurrent.futures.Future[Any] | None = None  # an async job's coroutine on the loop
    finishing: bool = False  # saving its outcome: no longer interrupted
    interrupted: str | None = None  # TIMEOUT, STOPPED, or a shutdown's reason
    requeued: bool = False  # by the main thread, its thread having not answered
    started: datetime = field(default_factory=now)
    is_async: bool = False  # its function is `async def`: ended by cancelling its coroutine
    lock: threading.Lock = field(default_factory=threading.Lock)
    began: threading.Event = field(default_factory=threading.Event)  # its function is being called

    def interrupt(self, reason: str) -> bool:
        """End the run early; False if it is already saving its outcome or was interrupted before."""
        with self.lock:
            if self.finishing or self.interrupted is not None:
                return False
            self.interrupted = reason  # before the cancel: its waiting thread wakes at once
            if self.future is not None:
                if not self.future.cancel():  # the coroutine has just ended: its outcome stands
                    self.interrupted = None
                    return False
            elif self.thread_id is not None:
                exception = JobTimeoutException if reason == TIMEOUT else RunInterrupted
                _raise_in_thread(self.thread_id, exception)
            return True

    def exception(self) -> BaseException:
        if self.interrupted == TIMEOUT:  # RQ's, so it is retried and reported as any timeout
            return JobTimeoutException(f"Task exceeded maximum timeout value ({self.job.timeout} seconds)")
        return RunInterrupted(self.interrupted)


def _raise_in_thread(thread_id: int, exception: type[BaseException] | None) -> None:
    """Have `exception` raised in a thread when it next runs Python code (None: forget a pending one)."""
    target = ctypes.py_object(exception) if exception is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), target)


class RunDeathPenalty(BaseDeathPenalty):
    """RQ's death penalty for a run in a slot thread: a deadline the monitor thread enforces."""

    worker: RunsHolder  # bound per worker (ConcurrentWorker.__init__)

    def setup_death_penalty(self) -> None:
        run = self.worker.current_run()
        if run is None or run.finishing:  # not the job's function: a callback's
            return
        with run.lock:
            # Interrupted before its function started (a stop or a shutdown just after the take):
            # it does not start. Only from here on is an exception raised in this thread: before,
            # it could land in RQ's own bookkeeping, or between an async job's coroutine being
            # made and being handed to the loop.
            if run.interrupted is not None:
                raise run.exception()
            if not run.is_async:
                run.thread_id = threading.get_ident()
        if self._timeout > 0:
            run.deadline = time.monotonic() + self._timeout
        run.began.set()

    def cancel_death_penalty(self) -> None:
        run = self.worker.current_run()
        if run is not None and not run.finishing:
            run.deadline = math.inf
