"""The deployment files agree with the code: Procfile, app.json, .python-version, the runner."""

from __future__ import annotations

import json
from pathlib import Path

from honcho.environ import parse_procfile

from service.dev.run import _dotenv
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_app_json_runs_every_procfile_process_with_one_clock() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    processes = parse_procfile((ROOT / "Procfile").read_text()).processes
    assert set(app["formation"]) == set(processes) == {"web", "worker", "clock"}
    assert app["formation"]["clock"]["quantity"] == 1
    assert [addon["plan"].split(":")[0] for addon in app["addons"]] == ["heroku-redis"]


def test_app_json_sets_only_settings_the_code_reads() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    # FORWARDED_ALLOW_IPS is uvicorn's own (the web's `--forwarded-allow-ips`).
    known = {name.upper() for name in Settings.model_fields} | {"FORWARDED_ALLOW_IPS"}
    assert set(app["env"]) <= known, set(app["env"]) - known
    secrets = {name for name, spec in app["env"].items() if spec.get("generator") == "secret"}
    assert "WEBHOOK_SECRET" in secrets


def test_procfile_lines_exec_their_program_and_honour_port() -> None:
    processes = parse_procfile((ROOT / "Procfile").read_text()).processes
    assert all(command.startswith("exec ") for command in processes.values())
    assert "--port ${PORT:-8000}" in processes["web"]


def test_python_version_is_pinned_for_heroku() -> None:
    assert (ROOT / ".python-version").read_text().strip() == "3.11"


def test_the_runner_reads_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("REDIS_URL=redis://127.0.0.1:6390/1\n# a comment\nLOG_FORMAT='json'\n")
    assert _dotenv(dotenv) == {"REDIS_URL": "redis://127.0.0.1:6390/1", "LOG_FORMAT": "json"}
    assert _dotenv(tmp_path / "missing") == {}
