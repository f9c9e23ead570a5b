"""Run the whole stack locally: the Procfile's processes, plus an embedded Redis if none is set.

python -m service.dev [-c worker=2]      (what `make run` calls)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import honcho.environ
import honcho.manager
from honcho.environ import expand_processes, parse_procfile

from service.dev.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
# Where the embedded Redis keeps its files; OFFLOAD_DATA_DIR moves them (tests use a fresh one).
DEFAULT_DATA_DIR = ROOT / ".data"
# Heroku sends SIGTERM, then SIGKILL 30 s later; honcho's own wait is 5 s. Match Heroku, so a
# job that finishes within 30 s of Ctrl-C finishes here too.
GRACE_SECONDS = 30


def _dotenv(path: Path) -> dict[str, str]:
    return dict(honcho.environ.parse(path.read_text())) if path.is_file() else {}


def _concurrency(values: Sequence[str]) -> dict[str, int]:
    counts = {}
    for value in values:
        name, _, count = value.partition("=")
        if not count.isdigit() or int(count) < 1:
            raise SystemExit(f"-c takes NAME=COUNT, e.g. worker=2; got {value!r}")
        counts[name] = int(count)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        action="append",
        default=[],
        metavar="NAME=N",
        help="processes of a type to run, e.g. -c worker=2",
    )
    parser.add_argument("-f", "--procfile", type=Path, default=ROOT / "Procfile")
    args = parser.parse_args(argv)
    processes = parse_procfile(args.procfile.read_text()).processes
    concurrency = _concurrency(args.concurrency)
    unknown = set(concurrency) - set(processes)
    if unknown:
        raise SystemExit(f"unknown process types {sorted(unknown)}; the Procfile has {sorted(processes)}")

    # `.env` as `heroku local` and `honcho start` read it; the real environment wins.
    env = {**_dotenv(ROOT / ".env"), **os.environ}
    env.setdefault("HOST", "127.0.0.1")
    env.setdefault("PORT", "8000")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # The Procfile says `uvicorn` and `python`: make them this interpreter's, venv or not.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if not env.get("WEBHOOK_SECRET"):
        # Local runs sign webhook deliveries too; a deployment sets its own secret.
        env["WEBHOOK_SECRET"] = secrets.token_urlsafe(32)
        print(f"offload: WEBHOOK_SECRET={env['WEBHOOK_SECRET']} (generated for this run)", flush=True)
    if not env.get("API_KEYS"):
        # The API wants a key even locally; an admin key for this run, printed for curl and /docs.
        key = secrets.token_urlsafe(24)
        env["API_KEYS"] = json.dumps([{"name": "local", "key": key, "scopes": ["admin"]}])
        print(f"offload: API key {key} (admin, generated for this run): export OFFLOAD_KEY={key}", flush=True)
    generated = not env.get("DASHBOARD_PASSWORD")
    if generated:
        # The dashboard is served only with credentials; a local run gets some without setup.
        env["DASHBOARD_PASSWORD"] = secrets.token_urlsafe(24)
    env["DASHBOARD_USERNAME"] = env.get("DASHBOARD_USERNAME") or "admin"
    redis_server = None
    if not env.get("REDIS_URL"):
        data_dir = Path(env.get("OFFLOAD_DATA_DIR") or DEFAULT_DATA_DIR) / "redis"
        redis_server = RedisServer(data_dir, port=free_port(6379)).start()
        env["REDIS_URL"] = redis_server.url
        print(f"offload: embedded Redis at {redis_server.url} (data in {data_dir})", flush=True)
    else:
        print("offload: using REDIS_URL from the environment", flush=True)
    password = (
        f"password {env['DASHBOARD_PASSWORD']}, generated for this run"
        if generated
        else "password from the environment"
    )
    print(
        f"offload: dashboard at http://{env['HOST']}:{env['PORT']}/dashboard/  "
        f"(user {env['DASHBOARD_USERNAME']}, {password})",
        flush=True,
    )
    print(
        f"offload: API docs at http://{env['HOST']}:{env['PORT']}/docs  (Ctrl-C stops everything)", flush=True
    )

    honcho.manager.KILL_WAIT = GRACE_SECONDS
    manager = honcho.manager.Manager()
    try:
        for process in expand_processes(processes, concurrency=concurrency, env=env):
            # honcho hands each process type its own PORT; only web serves HTTP, on ours.
            process.env["PORT"] = env["PORT"]
            manager.add_process(process.name, process.cmd, quiet=process.quiet, env=process.env, cwd=ROOT)
        manager.loop()
    finally:
        if redis_server is not None:
            redis_server.stop()
            print("offload: embedded Redis stopped", flush=True)
    return manager.returncode or 0
