"""What the driver knows of a system under test: how to enqueue its jobs, run its worker, serve its web.

A `Peer` runs in its own venv (bench/peers/venvs.py) from the files in bench/peers/apps/; offload
(bench/peers/offload.py) runs from this checkout. Both answer the same four questions, so each
scenario (bench/peers/scenarios.py) drives them alike.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench.peers.venvs import cache_root, ensure_venv, installed
from service.dev.harness import ROOT, child_env

APPS = Path(__file__).parent / "apps"
SCENARIOS = ("drain", "io", "pickup", "http")
ENQUEUE_TIMEOUT = 180.0


@dataclass(frozen=True)
class WorkerSetting:
    """One way to run a system's worker in one process: a row of the table."""

    label: str  # e.g. "Celery prefork -c 2"
    command: tuple[str, ...]  # a peer's: argv, its program from the peer's venv; offload's: Procfile args
    slots: int  # jobs it runs at once: how many io_wait jobs scenario (b) gives it
    env: tuple[tuple[str, str], ...] = ()
    scenarios: tuple[str, ...] = SCENARIOS[:3]  # which of the worker scenarios it runs in
    drain_cap: int | None = None  # (a) gives it at most this many jobs: a fork per job is slow
    pickup_cap: int | None = None  # (c) makes at most this many calls: a slow poll takes long
    io_job: str = "io_wait"  # (b)'s job: offload has a sync and an async one (peers: their own kind)
    note: str = ""  # a footnote for the table


class System(Protocol):
    """A job system as the scenarios drive it."""

    @property
    def name(self) -> str: ...

    @property
    def workers(self) -> tuple[WorkerSetting, ...]: ...

    def prepare(self) -> str:
        """Make ready to run (a peer: its venv); returns the versions under test."""
        ...

    def enqueue(self, redis_url: str, job: str, count: int, seconds: float, log: Path) -> None:
        """One `tick` (the start mark), then `count` of `job`, through the system's own client."""
        ...

    def worker_command(self, setting: WorkerSetting) -> tuple[str | list[str], dict[str, str]]:
        """The command and environment of `setting`'s worker, before REDIS_URL."""
        ...

    def web(self) -> tuple[str, dict[str, str]]:
        """The uvicorn app to serve (with the Procfile's web command) and its environment."""
        ...


@dataclass(frozen=True)
class Peer:
    """A peer job system: its pinned packages, its app module in apps/, its worker settings."""

    name: str
    pins: tuple[str, ...]
    app: str  # module in apps/, e.g. "celery_app"
    workers: tuple[WorkerSetting, ...]
    packages: tuple[str, ...]  # whose installed versions the report names
    venv_root: Path | None = field(default=None, compare=False)

    @property
    def home(self) -> Path:
        return (self.venv_root or cache_root()) / self.name

    def prepare(self) -> str:
        home = ensure_venv(self.name, self.pins, self.venv_root)
        return ", ".join(
            f"{name} {version}" for name, version in sorted(installed(home, self.packages).items())
        )

    def env(self) -> dict[str, str]:
        """Its venv's programs first on PATH, its app files importable; nothing of offload's venv."""
        bin_dir = str(self.home / "bin")
        return child_env(PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
                         PYTHONPATH=str(APPS), VIRTUAL_ENV=str(self.home))  # fmt: skip

    def enqueue(self, redis_url: str, job: str, count: int, seconds: float, log: Path) -> None:
        command = [str(self.home / "bin" / "python"), str(APPS / "enqueue.py"), self.app, job, str(count)]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            done = subprocess.run(
                [*command, "--seconds", f"{seconds:g}"],
                cwd=ROOT,
                env={**self.env(), "REDIS_URL": redis_url},
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=ENQUEUE_TIMEOUT,
            )
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: enqueueing {count} {job} failed ({done.returncode}); see {log}")

    def worker_command(self, setting: WorkerSetting) -> tuple[str | list[str], dict[str, str]]:
        program, *args = setting.command
        return [str(self.home / "bin" / program), *args], {**self.env(), **dict(setting.env)}

    def web(self) -> tuple[str, dict[str, str]]:
        return f"{self.app}:create_app --factory", self.env()
