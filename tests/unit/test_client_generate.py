"""The client's typed module is what the app's live /openapi.json generates: a job, an option or a
field of a view added or changed on the server fails here until `make client` is run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal, get_type_hints

import pytest
from fastapi.testclient import TestClient
from pydantic import Field

import offload_client
from offload_client import TERMINAL, generated
from offload_client.generate import generate, main
from offload_client.schema import SchemaError
from service.catalog import Registry
from service.store.layout import TERMINAL as SERVER_TERMINAL

GENERATED = Path(generated.__file__)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """/openapi.json of the app as a deployment builds it, in a fresh process, as `make client` does.

    Not this process's app: importing the soak's jobs (tests/unit/test_bench_soak_jobs.py) adds
    a job to this process's catalogue for good.
    """
    printed = subprocess.run(
        [sys.executable, "-m", "service.dev.openapi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: dict[str, Any] = json.loads(printed.stdout)
    return loaded


def test_the_committed_module_is_what_the_live_schema_generates(schema: dict[str, Any]) -> None:
    assert generate(schema) == GENERATED.read_text(), "the API changed: run `make client` and commit"


def test_the_schema_is_the_one_the_app_serves(client: TestClient, schema: dict[str, Any]) -> None:
    served = client.get("/openapi.json").json()
    # Each operation and component the same; this process may serve one job more (the soak's).
    assert {path: served["paths"][path] for path in schema["paths"]} == schema["paths"]
    for kind, entries in schema["components"].items():
        assert {name: served["components"][kind][name] for name in entries} == entries


def test_it_has_a_method_per_job_of_the_catalogue(schema: dict[str, Any]) -> None:
    names = sorted(path.removeprefix("/jobs/") for path in schema["paths"] if path.count("/") == 2)
    assert list(generated.JOB_NAMES) == [name for name in names if not name.startswith("{")]
    for name in generated.JOB_NAMES:
        assert callable(getattr(generated.Jobs, name))
        assert callable(getattr(generated.Jobs, f"{name}_batch"))


def test_the_client_knows_the_servers_terminal_statuses() -> None:
    assert TERMINAL == SERVER_TERMINAL


def test_input_types_follow_the_jobs_signatures(
    make_client: Callable[..., TestClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry()

    @registry.job()
    def sample(
        when: datetime,
        mode: Literal["fast", "careful"] = "fast",
        tags: list[str] | None = None,
        share: Annotated[float, Field(gt=0, le=1)] = 0.5,
    ) -> None:
        """A job with one of each kind of parameter."""

    source = generate(make_client(registry).get("/openapi.json").json())
    module = imported(source, tmp_path / "sample_jobs.py", monkeypatch)
    sample_input = module.SampleInput
    assert get_type_hints(sample_input) == {
        "when": datetime,
        "mode": Literal["fast", "careful"],
        "tags": Sequence[str] | None,
        "share": float,
    }
    assert "    when: Required[datetime]\n" in source  # for type checkers; at run time all keys are optional
    assert module.JOB_NAMES == ("sample",)
    assert '"""Default: 0.5. Bounds: exclusiveMinimum 0, maximum 1."""' in source


def imported(source: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The generated source as a module (registered, so its string annotations resolve)."""
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, path.stem, module)
    spec.loader.exec_module(module)
    return module


def test_a_job_input_named_like_a_methods_own_keyword_is_refused(schema: dict[str, Any]) -> None:
    schema = json.loads(json.dumps(schema))  # a copy: the fixture serves the whole module
    schema["components"]["schemas"]["WordCountInput"]["properties"]["options"] = {"type": "string"}
    with pytest.raises(SchemaError, match="word_count's input has 'options'"):
        generate(schema)


def test_the_command_reads_a_file_and_writes_the_module(schema: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "openapi.json").write_text(json.dumps(schema))
    assert main([str(tmp_path / "openapi.json"), "--out", str(tmp_path / "jobs.py")]) == 0
    assert (tmp_path / "jobs.py").read_text() == GENERATED.read_text()


def test_the_package_exports_what_its_readme_uses() -> None:
    for name in ("Client", "AsyncClient", "verify_webhook", "JobView", "OffloadError", "Retry"):
        assert name in offload_client.__all__
