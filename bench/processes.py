"""The processes a benchmark runs: the Procfile's own commands, and baseline apps under the same uvicorn.

Everything started here is stopped when its `with` block ends, however it ends.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import redis

from service.dev.harness import (
    LOOPBACK,
    STARTUP_TIMEOUT,
    LoggedProcess,
    child_env,
    new_client,
    procfile_commands,
    running_redis,
    start_logged,
    wait_for_health,
    wait_until,
)
from service.dev.redis_server import free_port

OFFLOAD_APP = "service.web.app:create_app --factory"


@dataclass(frozen=True)
class Context:
    """What every benchmark is given: how big to run, and where to keep logs and data."""

    quick: bool
    scratch: Path

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def web_command(app: str = OFFLOAD_APP) -> str:
    """The Procfile's `web` line, serving `app` instead of offload's: identical server settings."""
    command = procfile_commands()["web"]
    if OFFLOAD_APP not in command:
        raise RuntimeError(f"the Procfile's web line no longer serves {OFFLOAD_APP}: {command}")
    return command.replace(OFFLOAD_APP, app)


@dataclass
class Web:
    url: str
    client: httpx2.Client
    process: LoggedProcess


@contextlib.contextmanager
def running_web(
    log_dir: Path, redis_url: str = "", app: str = OFFLOAD_APP, health: str = "/healthz", name: str = "web"
) -> Iterator[Web]:
    """The Procfile's web command serving `app` on a free loopback port, until the block ends."""
    port = free_port()
    env = child_env(HOST=LOOPBACK, PORT=str(port), **({"REDIS_URL": redis_url} if redis_url else {}))
    process = start_logged(name, web_command(app), log_dir / f"{name}.log", env)
    try:
        with new_client(f"http://{LOOPBACK}:{port}") as client:
            wait_for_health(client, [process], STARTUP_TIMEOUT, path=health)
            yield Web(f"http://{LOOPBACK}:{port}", client, process)
    finally:
        process.stop()


@contextlib.contextmanager
def running_workers(
    log_dir: Path,
    redis_url: str,
    count: int = 1,
    args: str = "",
    name: str = "worker",
    env: dict[str, str] | None = None,
    program: str | None = None,
) -> Iterator[list[LoggedProcess]]:
    """`count` of the Procfile's workers (`args` appended, `env` added), waiting for work, until the
    block ends; `program` instead of the Procfile's worker command, if given."""
    command = f"{program or procfile_commands()['worker']} {args}".strip()
    env = child_env(**{**(env or {}), "REDIS_URL": redis_url})
    started: list[LoggedProcess] = []
    try:
        for n in range(count):
            started.append(start_logged(f"{name}{n}", command, log_dir / f"{name}{n}.log", env))
        wait_for_idle_workers(redis_url, count, started)
        yield started
    finally:
        for process in started:
            process.stop()


def wait_for_idle_workers(redis_url: str, count: int, processes: list[LoggedProcess]) -> None:
    """Until `count` clients of this Redis block waiting for work (an idle RQ worker's BLPOP)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)

    def ready() -> bool:
        if any(p.popen.poll() is not None for p in processes):
            logs = "\n".join(p.tail() for p in processes)
            raise RuntimeError(f"a worker exited while starting\n{logs}")
        return sum("b" in c["flags"] for c in client.client_list()) >= count

    try:
        if not wait_until(ready, STARTUP_TIMEOUT):
            logs = "\n".join(p.tail() for p in processes)
            raise RuntimeError(
                f"{count} workers were not waiting for work within {STARTUP_TIMEOUT} s\n{logs}"
            )
    finally:
        client.close()


@contextlib.contextmanager
def offload_web(ctx: Context) -> Iterator[tuple[Path, Web, redis.Redis]]:
    """A scratch folder, a redis-server, offload's web on it and a client to that Redis, until the
    block ends: what most benchmarks measure against."""
    with (
        tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch,
        running_redis(Path(scratch) / "redis") as server,
        running_web(Path(scratch), server.url) as web,
    ):
        connection = redis.Redis.from_url(server.url)
        try:
            yield Path(scratch), web, connection
        finally:
            connection.close()
