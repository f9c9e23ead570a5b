"""Real processes for the integration tests: a redis-server, the Procfile's processes, /proc probes.

Imported by the integration tests and their conftest. Everything here stops what it started, on
any outcome.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx2
import redis
from honcho.environ import parse_procfile

from service.dev.redis_server import RedisServer, free_port
from service.store.layout import TERMINAL

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
# Every request is bounded; a `?wait=` request gets its wait on top of this.
HTTP_TIMEOUT = 10.0
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")
# What pytest's `record_property` fixture is (pytest exports no name for it).
RecordProperty = Callable[[str, object], None]


def procfile_commands() -> dict[str, str]:
    """The Procfile's commands by process type, parsed as honcho (and the local runner) parse them."""
    processes: dict[str, str] = parse_procfile((ROOT / "Procfile").read_text()).processes
    return {name: str(command) for name, command in processes.items()}


# What the test stacks sign webhook deliveries with; test receivers verify with it.
WEBHOOK_SECRET = "integration-test-webhook-secret"


def child_env(**overrides: str) -> dict[str, str]:
    """This environment with the venv's bin first on PATH, so `uvicorn` and `python` are ours."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["WEBHOOK_SECRET"] = WEBHOOK_SECRET
    env.update(overrides)
    return env


def tail(path: Path, lines: int = 60) -> str:
    """The last lines of a log file, for assertion messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return f"--- last lines of {path} ---\n" + "\n".join(text.splitlines()[-lines:])


# --- processes, seen through /proc (no psutil in the requirements) ---------------------------------


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    cpu_seconds: float  # user and system time so far, all its threads
    nice: int


def proc_stat(pid: int) -> ProcStat | None:
    """A process's state, parentage, CPU time and niceness, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name sits in parentheses and may hold spaces or parentheses itself; the fields
    # after it start with the third, the state (proc(5)).
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return ProcStat(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[3]), ticks, int(fields[16]))


def all_processes() -> list[ProcStat]:
    stats = (proc_stat(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [stat for stat in stats if stat is not None]


def descendants(pid: int) -> set[int]:
    """Every process below `pid` by parent links (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for stat in all_processes():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: set[int] = set()
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop()
        if child not in found:
            found.add(child)
            pending.extend(children.get(child, []))
    return found


def session_members(session: int) -> set[int]:
    return {stat.pid for stat in all_processes() if stat.session == session}


def is_alive(pid: int) -> bool:
    """True while the process runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    stat = proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def kill_all(pids: set[int], sig: signal.Signals = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.1) -> T | None:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def wait_for_blocked_client(redis_url: str, timeout: float) -> bool:
    """Until some client of this Redis blocks on a command: an idle RQ worker waiting in BLPOP."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        return bool(wait_until(lambda: any("b" in c["flags"] for c in client.client_list()), timeout))
    finally:
        client.close()


# --- a process started in its own session, logging to a file --------------------------------------


@dataclass
class LoggedProcess:
    """A shell command in a new session (its own process group), output to `log_path`."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to the process group; SIGKILL to all left in the session after `timeout`.

        The shell (`sh -c`, as honcho runs a Procfile line) dies at once on SIGTERM while the
        program it started shuts down warm, so this waits for the whole session, not the leader.
        RQ's work horse moves to a process group of its own (`os.setpgrp`) but keeps the session.
        """
        sid = self.popen.pid  # start_new_session: the leader's pid is the session and group id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, signal.SIGTERM)

        def ended() -> bool:
            self.popen.poll()  # reap the leader, which is ours
            return not any(is_alive(pid) for pid in session_members(sid))

        if not wait_until(ended, timeout):
            kill_all(session_members(sid))
            wait_until(ended, timeout)
        if self.popen.poll() is None:  # never leave our own child unreaped
            self.popen.kill()
            self.popen.wait()


def start_logged(name: str, command: str | list[str], log_path: Path, env: dict[str, str]) -> LoggedProcess:
    """Start `command` (a string runs in `sh -c`, as honcho runs a Procfile line) in a new session."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:  # the child holds its own descriptor; ours closes at once
        popen = subprocess.Popen(
            command,
            shell=isinstance(command, str),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return LoggedProcess(name, popen, log_path)


class StartRedis(Protocol):
    """The `start_redis` fixture: a started redis-server, stopped at teardown."""

    def __call__(self, data_dir: Path, port: int | None = None) -> RedisServer: ...


class StartStack(Protocol):
    """The `start_stack` fixture: web + worker on `redis_url` (`env` added to theirs), stopped at teardown."""

    def __call__(self, redis_url: str, env: dict[str, str] | None = None) -> Stack: ...


# --- the stack: web and worker from the Procfile -----------------------------------------------------


@dataclass
class Stack:
    """The Procfile's web and worker against one Redis, and an HTTP client for the web."""

    base_url: str
    redis_url: str
    processes: dict[str, LoggedProcess]
    client: httpx2.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = new_client(self.base_url)

    def logs(self, lines: int = 40) -> str:
        """The tail of every process's log, for assertion messages."""
        return "\n".join(process.tail(lines) for process in self.processes.values())

    def wait_for_job(self, job_id: str, seconds: float) -> dict[str, Any]:
        """GET the job with `?wait=` in slices (the API caps one wait at 25 s) until it ends."""
        deadline = time.monotonic() + seconds
        while True:
            wait = max(0.0, min(20.0, deadline - time.monotonic()))
            response = self.client.get(f"/jobs/{job_id}", params={"wait": wait}, timeout=HTTP_TIMEOUT + wait)
            assert response.status_code == 200, f"{response.status_code} {response.text}\n{self.logs()}"
            job: dict[str, Any] = response.json()
            if job["status"] in TERMINAL or time.monotonic() >= deadline:
                return job


def new_client(base_url: str) -> httpx2.Client:
    # trust_env=False: a proxy from the environment must not sit between us and loopback.
    return httpx2.Client(base_url=base_url, timeout=HTTP_TIMEOUT, trust_env=False)


def wait_for_health(
    client: httpx2.Client, processes: list[LoggedProcess], timeout: float, path: str = "/healthz"
) -> None:
    """Until GET `path` answers 200; fail with the logs if a process exits or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        exited = [p for p in processes if p.popen.poll() is not None]
        if exited:
            logs = "\n".join(p.tail() for p in processes)
            names = ", ".join(f"{p.name} (rc={p.popen.returncode})" for p in exited)
            raise AssertionError(f"exited before {path} answered: {names}\n{logs}")
        try:
            response = client.get(path, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        except httpx2.TransportError as exc:
            last = repr(exc)
        time.sleep(0.1)
    logs = "\n".join(p.tail() for p in processes)
    raise AssertionError(f"{path} did not answer 200 within {timeout} s (last: {last})\n{logs}")


@contextlib.contextmanager
def running_stack(
    redis_url: str,
    log_dir: Path,
    names: tuple[str, ...] = ("web", "worker"),
    env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Start the Procfile's `names` (web first) and wait for /healthz; stop them all on exit.

    `env` adds to (or overrides) the processes' environment, e.g. the dashboard's credentials.
    """
    commands = procfile_commands()
    port = free_port()
    env = child_env(**{**(env or {}), "REDIS_URL": redis_url, "HOST": LOOPBACK, "PORT": str(port)})
    processes: dict[str, LoggedProcess] = {}
    stack: Stack | None = None
    try:
        for name in names:
            processes[name] = start_logged(name, commands[name], log_dir / f"{name}.log", env)
        stack = Stack(f"http://{LOOPBACK}:{port}", redis_url, processes)
        wait_for_health(stack.client, list(processes.values()), STARTUP_TIMEOUT)
        yield stack
    finally:
        if stack is not None:
            stack.client.close()
        for process in reversed(processes.values()):
            process.stop()


@contextlib.contextmanager
def running_redis(data_dir: Path, port: int | None = None) -> Iterator[RedisServer]:
    """A real redis-server on loopback, stopped on exit whatever happened."""
    server = RedisServer(data_dir, port=port)
    try:
        yield server.start()
    finally:
        server.stop()
