"""The clock process: enqueues the catalogue's periodic jobs on schedule, one clock at a time.

python -m service.clock      (the Procfile's `clock`)

Built on RQ's cron (`rq.cron`): its CronJob decides when a job is due and keeps the history that
tools read (`rq:cron_job:<name>:jobs`, `rq:cron_jobs`); its CronScheduler registers the running
clock (`rq:cron_schedulers`: birth, heartbeat, death). Two things differ from `rq cron`:

- A run is enqueued by the registered job's own `enqueue`, the API's path: the JSON serializer,
  the input validated, the job's defaults. RQ's CronJob would build `Queue(name)` with pickle,
  whose jobs offload's workers refuse to run.
- Exactly one clock enqueues: the one holding a lease in Redis (`SET NX PX`, renewed each round,
  released on exit). Another clock stands by and takes over when the lease is released or lapses.
  Each renewal records its time (`CLOCK_TICK_KEY`), which `/metrics` shows as
  `offload_clock_last_tick_timestamp_seconds`: RQ's own record of a clock is deleted when it stops
  and pruned two minutes after its last heartbeat, so it cannot tell how long the clock is silent.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from types import FrameType

from redis import Redis
from rq.cron import CronJob, CronScheduler
from rq.exceptions import SchedulerNotFound
from rq.utils import now

from service import tracing
from service.catalog import Registry, load_catalog
from service.connection import connect
from service.logs import configure_logging
from service.schedules import last_enqueued, scheduled_jobs
from service.settings import load_settings
from service.store.layout import CLOCK_TICK_KEY, LEASE_KEY

log = logging.getLogger("service.clock")  # not __name__: `python -m` makes that "__main__"

# A clock that stops renewing (killed, frozen, cut off from Redis) loses the lease this long after
# its last renewal; a standby then takes over. The holder renews, and a standby asks, every third.
LEASE_SECONDS = 30.0


class ClockStopped(BaseException):
    """Raised by the signal handler to end a sleep, or at once on a second signal.

    A BaseException, so that no `except Exception` between the signal and the loop swallows it.
    """


class Lease:
    """A lease on one Redis key: held by one token at a time, until released or it lapses.

    Each renewal also writes its time in `ticked_key`, in the same script: the holder's renewals
    are its rounds, so that key says when the leading clock last showed it was alive.
    """

    # Compare-and-act in one step, so a clock never renews or deletes a lease another one took.
    _RENEW = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[2], ARGV[3]) "
        "return redis.call('pexpire', KEYS[1], ARGV[2]) end"
    )
    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"

    def __init__(
        self,
        connection: Redis,
        token: str,
        seconds: float,
        key: str = LEASE_KEY,
        ticked_key: str = CLOCK_TICK_KEY,
    ) -> None:
        self.connection = connection
        self.token = token
        self.key = key
        self.ticked_key = ticked_key
        self.milliseconds = max(1, round(seconds * 1000))
        self._renew = connection.register_script(self._RENEW)
        self._release = connection.register_script(self._RELEASE)

    def acquire(self) -> bool:
        """Renew the lease if it is ours, else take it if it is free."""
        return self.renew() or bool(self.connection.set(self.key, self.token, nx=True, px=self.milliseconds))

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours."""
        # The clock's own time, as the enqueues' timestamps are: alerts compare it with their own.
        args: list[str | int] = [self.token, self.milliseconds, f"{time.time():.3f}"]
        return bool(self._renew(keys=[self.key, self.ticked_key], args=args))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])

    def holder(self) -> str | None:
        token = self.connection.get(self.key)
        return token.decode() if isinstance(token, bytes) else token


class Clock(CronScheduler):
    """RQ's cron scheduler for the registry's scheduled jobs, enqueueing only while it holds the lease."""

    def __init__(
        self,
        connection: Redis,
        registry: Registry | None = None,
        lease_seconds: float = LEASE_SECONDS,
        logging_level: str | int = logging.INFO,
    ) -> None:
        super().__init__(connection, logging_level=logging_level)
        self.scheduled = scheduled_jobs(registry or load_catalog())
        self._cron_jobs = [*self.scheduled]  # RQ's list, of the same jobs
        self.lease = Lease(connection, self.name, lease_seconds)
        self.round_seconds = lease_seconds / 3
        self._stop_requested = False
        self._sleeping = False

    def start(self) -> None:
        """Stand by until this clock holds the lease, enqueue due jobs while it does; until a signal."""
        handlers = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        names = ", ".join(f"{job.name} ({job.describe()})" for job in self.scheduled) or "none"
        log.info("clock %s starting; scheduled jobs: %s", self.name, names)
        standing_by = False
        try:
            while not self._stop_requested:
                if self.lease.acquire():
                    standing_by = False
                    self._lead()
                    continue
                if not standing_by:
                    log.info("clock %s standing by: %s holds the lease", self.name, self.lease.holder())
                    standing_by = True
                self._sleep(self.round_seconds)
        except ClockStopped:
            pass
        finally:
            self.lease.release()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            log.info("clock %s stopped", self.name)

    def tick(self) -> float | None:
        """One round: renew the lease, enqueue what is due, heartbeat.

        Returns the seconds until the next round, or None once another clock holds the lease.
        """
        if not self.lease.acquire():  # renewed; or taken again if it lapsed with nobody taking it
            return None
        if self.enqueue_jobs():
            self.save()  # RQ's record of this clock's jobs, with their last and next run
        self.heartbeat()
        return min(self.calculate_sleep_interval(), self.round_seconds)

    def resume(self) -> None:
        """Pick the schedule up where the last clock left it (see `ScheduledJob.resume`)."""
        last = last_enqueued(self.connection, [job.name for job in self.scheduled])
        for job in self.scheduled:
            job.resume(last[job.name])

    def enqueue_jobs(self) -> list[CronJob]:
        """RQ's round, except that one job failing to enqueue stops neither the others nor the clock."""
        due = [job for job in self._cron_jobs if job.should_run()]
        for job in due:
            try:
                enqueued_at = job.enqueue(self.connection).enqueued_at
            except Exception:
                log.exception("could not enqueue %s; it is tried again on its next run", job.name)
                enqueued_at = None
            # The enqueue's own time, which the history records too, so the catalogue agrees.
            job.set_enqueue_time(enqueued_at or now())
        return due

    def _lead(self) -> None:
        log.info("clock %s holds the lease: it enqueues the scheduled jobs", self.name)
        self.resume()
        self.register_birth()
        try:
            while not self._stop_requested:
                pause = self.tick()
                if pause is None:
                    log.warning("clock %s lost the lease to %s; standing by", self.name, self.lease.holder())
                    return
                self._sleep(pause)
        finally:
            with contextlib.suppress(SchedulerNotFound):
                self.register_death()

    def _sleep(self, seconds: float) -> None:
        """Sleep, unless a stop was asked for; a stop signal during the sleep ends it at once."""
        self._sleeping = True
        try:
            if not self._stop_requested:
                time.sleep(seconds)
        finally:
            self._sleeping = False

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Warm stop: a round under way (an enqueue and its bookkeeping) ends first; a second
        signal stops at once."""
        again, self._stop_requested = self._stop_requested, True
        if again or self._sleeping:
            raise ClockStopped
        log.info("clock %s: %s, stopping after this round", self.name, signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run offload's clock: enqueue the catalogue's periodic jobs (REDIS_URL from the "
        "environment). Run one; a second one stands by and takes over if the first stops."
    )
    parser.add_argument("--log-level", help="default: LOG_LEVEL, else INFO")
    args = parser.parse_args(argv)
    settings = load_settings()
    level = (args.log_level or settings.log_level).upper()
    configure_logging(settings.log_format, level)  # RQ's cron lines too, in LOG_FORMAT
    tracing.configure("offload-clock")  # each run it enqueues starts a trace (README "Tracing")
    # Patient: every Redis command waits out an outage, so the clock carries on by itself after one.
    clock = Clock(connect(settings, patient=True), load_catalog(settings.jobs_module), logging_level=level)
    with contextlib.suppress(ClockStopped):  # a second signal while it was letting go of the lease
        clock.start()
