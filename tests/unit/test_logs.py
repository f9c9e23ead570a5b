"""Logs: one line per request and per job run, as text or JSON, with request ids."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from redis import Redis

from service.connection import connect
from service.dev.redis_server import free_port
from service.logs import HANDLER_NAME, TEXT_FORMAT, JsonFormatter, TextFormatter, configure_logging, fields
from service.settings import ConfigError, Settings, load_settings
from service.web.app import create_app

TOKEN = "metrics-token-that-must-never-be-logged"
SECRET = "webhook-secret-that-must-never-be-logged"


def lines_of(caplog: pytest.LogCaptureFixture, logger: str, message: str) -> list[dict[str, Any]]:
    """The fields of each record of `logger` with `message`."""
    return [
        dict(getattr(record, "fields", {})) | {"level": record.levelname}
        for record in caplog.records
        if record.name == logger and record.getMessage() == message
    ]


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return lines_of(caplog, "offload.http", "request")


@pytest.fixture
def logged() -> Iterator[Callable[[str], io.StringIO]]:
    """`logged("json")` configures logging as a process does, into a buffer; undone afterwards."""
    root, server = logging.getLogger(), logging.getLogger("uvicorn")
    saved = (root.level, list(server.handlers), server.propagate)
    streams: list[io.StringIO] = []

    def configure(log_format: str) -> io.StringIO:
        stream = io.StringIO()
        configure_logging("json" if log_format == "json" else "text", "INFO", stream)
        streams.append(stream)
        return stream

    yield configure
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(saved[0])
    server.handlers[:] = saved[1]
    server.propagate = saved[2]


def test_records_collect_no_caller_thread_or_process(logged: Callable[[str], io.StringIO]) -> None:
    # Neither format shows them, and a worker logs two records a job: none walks the stack for them.
    logged("text")
    captured: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Capture()
    log = logging.getLogger("offload.test")
    log.addHandler(handler)
    try:
        log.warning("a line")
    finally:
        log.removeHandler(handler)
    [record] = captured
    assert record.funcName == "(unknown function)"
    assert (record.thread, record.process, record.processName) == (None, None, None)


def test_one_line_per_request_with_its_route_status_and_duration(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    job_id = client.post("/jobs/word_count", json={"text": "a"}).json()["id"]
    caplog.clear()
    response = client.get(f"/jobs/{job_id}", params={"wait": 0})
    [line] = request_lines(caplog)
    assert line["method"] == "GET"
    assert line["route"] == "/jobs/{job_id}"
    assert line["path"] == f"/jobs/{job_id}"  # no query string: it may carry a callback URL
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["level"] == "INFO"


def test_a_sane_request_id_is_honoured_and_echoed(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    given = "3f2b6a0e-8c1d-4f5e-9a7b-1c2d3e4f5a6b"
    response = client.get("/healthz", headers={"X-Request-ID": given})
    assert response.headers["x-request-id"] == given
    assert request_lines(caplog)[-1]["request_id"] == given


@pytest.mark.parametrize("given", [None, "", "has spaces", "x" * 201, "new\nline", 'quote"d', "ünïcode"])
def test_a_missing_or_odd_request_id_is_replaced(
    client: TestClient, caplog: pytest.LogCaptureFixture, given: str | None
) -> None:
    caplog.set_level(logging.INFO)
    headers = {} if given is None else {b"x-request-id": given.encode()}
    response = client.get("/healthz", headers=headers)
    generated = response.headers["x-request-id"]
    assert str(uuid.UUID(generated)) == generated
    assert request_lines(caplog)[-1]["request_id"] == generated


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    for response in (client.get("/no/such/path"), client.get("/jobs/nope"), client.post("/jobs/nope")):
        assert response.status_code == 404
        assert response.headers["x-request-id"]


def test_json_lines_parse_and_carry_the_fields(
    client: TestClient, logged: Callable[[str], io.StringIO], run_jobs: Callable[[], None]
) -> None:
    stream = logged("json")
    private = "private input 7731"
    response = client.post("/jobs/word_count", json={"text": private}, headers={"X-Request-ID": "req-1"})
    run_jobs()
    assert private not in stream.getvalue()  # RQ would log a job's arguments; offload's worker does not
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]) for line in lines)
    [request] = [line for line in lines if line["message"] == "request"]
    assert request["route"] == "/jobs/word_count"
    assert request["status"] == 202
    assert request["request_id"] == "req-1"
    ended = next(line for line in lines if line["message"] == "job ended")
    assert ended["job_id"] == response.json()["id"]
    assert ended["outcome"] == "finished"
    # RQ's own lines come through the same handler, as JSON too.
    assert any(line["logger"] == "rq.worker" for line in lines)


def test_a_traceback_stays_inside_its_json_line(logged: Callable[[str], io.StringIO]) -> None:
    stream = logged("json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("offload.test").exception("it broke", extra=fields(step=3))
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["message"] == "it broke"
    assert line["step"] == 3
    assert "RuntimeError: boom" in line["exception"]


def test_text_lines_read_as_key_value_pairs(client: TestClient, logged: Callable[[str], io.StringIO]) -> None:
    stream = logged("text")
    client.get("/healthz", headers={"X-Request-ID": "req-2"})
    [line] = [text for text in stream.getvalue().splitlines() if " request " in text]
    assert re.search(
        r" offload\.http INFO request method=GET route=/healthz path=/healthz status=200 "
        r"duration_ms=\d+\.\d request_id=req-2$",
        line,
    ), line
    logging.getLogger("offload.test").warning("note", extra=fields(text="two words", empty=""))
    assert stream.getvalue().splitlines()[-1].endswith('note text="two words" empty=""')


def test_text_lines_match_the_standard_formatter_and_json_values() -> None:
    # The text formatter's shortcuts (the time formatted once a second, numbers without the JSON
    # encoder) write what logging's own formatter and json.dumps write.
    values: dict[str, Any] = {
        "count": 7,
        "big": 10**20,
        "ratio": 0.1,
        "tiny": 1e-07,
        "huge": 1e16,
        "flag": True,
        "nothing": None,
        "nan": float("nan"),
        "inf": float("-inf"),
        "words": "two words",
        "listed": [1, "a"],
    }
    standard = logging.Formatter(TEXT_FORMAT)
    ours = TextFormatter()
    # Within a second, into the next, a minute on, and back (a clock set back).
    seconds = (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.0005, 1_700_000_061.25, 1_700_000_000.5)
    for created in seconds:
        record = logging.LogRecord("offload.test", logging.INFO, __file__, 1, "at %s", ("noon",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        record.fields = values
        pairs = " ".join(f"{key}={_json_token(value)}" for key, value in values.items())
        assert ours.format(record) == f"{standard.format(record)} {pairs}"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        failed = logging.LogRecord("offload.test", logging.ERROR, __file__, 1, "it broke", (), sys.exc_info())
    failed.fields = {"step": 3}
    first, *rest = ours.format(failed).splitlines()
    assert first.endswith("offload.test ERROR it broke step=3")
    assert rest[-1] == "RuntimeError: boom"


def _json_token(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if re.search(r'[\s"=]', text) else text


def test_lines_logged_while_serving_a_request_carry_its_id(
    settings: Settings, logged: Callable[[str], io.StringIO]
) -> None:
    stream = logged("json")
    down = connect(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}))
    try:
        with TestClient(create_app(settings, down)) as client:
            response = client.get("/queues", headers={"X-Request-ID": "req-3"})
            scrape = client.get("/metrics", headers={"X-Request-ID": "req-4"})
    finally:
        down.close()
    assert (response.status_code, scrape.status_code) == (503, 200)
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    warning = next(line for line in lines if line["logger"] == "service.web.errors")
    assert warning["request_id"] == "req-3"
    assert "Redis unavailable" in warning["message"]
    # Logged from the thread that read Redis for the scrape: the id follows it there.
    in_thread = next(line for line in lines if line["logger"] == "service.web.metrics")
    assert in_thread["request_id"] == "req-4"


def test_the_apps_factory_sets_up_the_process_logging(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, logged: Callable[[str], io.StringIO]
) -> None:
    monkeypatch.chdir(str(tmp_path))  # no .env
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    create_app()  # as uvicorn's --factory calls it; it connects to nothing until it starts
    root = logging.getLogger()
    [handler] = [h for h in root.handlers if h.get_name() == HANDLER_NAME]
    assert isinstance(handler.formatter, JsonFormatter)
    assert root.level == logging.WARNING


def test_secrets_are_never_logged(
    make_client: Callable[..., TestClient], logged: Callable[[str], io.StringIO]
) -> None:
    stream = logged("json")
    client = make_client(metrics_token=SecretStr(TOKEN), webhook_secret=SecretStr(SECRET))
    client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    client.post("/jobs/word_count", json={"text": "a"}, params={"callback_url": "https://u:p@example.com/h"})
    logging.getLogger("offload.test").info("settings", extra=fields(settings=client.app.state.settings))  # type: ignore[attr-defined]
    text = stream.getvalue()
    assert "/metrics" in text
    assert TOKEN not in text
    assert SECRET not in text
    assert "u:p@" not in text


def test_uvicorns_logger_is_handed_to_ours_and_its_access_log_left_off(
    logged: Callable[[str], io.StringIO],
) -> None:
    access = logging.getLogger("uvicorn.access")
    before = (list(access.handlers), access.propagate)
    stream = logged("json")
    logging.getLogger("uvicorn.error").info("Started server process [1]")
    assert json.loads(stream.getvalue())["logger"] == "uvicorn.error"
    assert (list(access.handlers), access.propagate) == before


def test_configuring_twice_keeps_one_handler_and_others_handlers(
    logged: Callable[[str], io.StringIO], caplog: pytest.LogCaptureFixture
) -> None:
    logged("text")
    logged("json")
    root = logging.getLogger()
    assert [h.get_name() for h in root.handlers].count(HANDLER_NAME) == 1
    assert caplog.handler in root.handlers


def test_job_runs_are_logged_at_start_and_end(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    done = client.post("/jobs/word_count", json={"text": "a"}).json()["id"]
    failed = client.post("/jobs/always_fails", json={}, params={"retries": 0}).json()["id"]
    retried = client.post("/jobs/always_fails", json={}, params={"retries": 1, "queue": "high"}).json()["id"]
    run_jobs()
    started = {line["job_id"]: line for line in lines_of(caplog, "offload.job", "job started")}
    ended = {line["job_id"]: line for line in lines_of(caplog, "offload.job", "job ended")}
    assert set(started) == set(ended) == {done, failed, retried}
    assert started[done]["job"] == "word_count"
    assert started[done]["queue"] == "default"
    assert started[retried]["queue"] == "high"
    assert started[done]["worker"]
    assert {job_id: line["outcome"] for job_id, line in ended.items()} == {
        done: "finished",
        failed: "failed",
        retried: "retried",
    }
    assert all(line["duration_ms"] >= 0 for line in ended.values())
    assert ended[failed]["level"] == "WARNING"  # a final failure stands out
    assert ended[retried]["level"] == ended[done]["level"] == "INFO"


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("LOG_FORMAT", "JSON", "log_format", "json"),
        ("LOG_FORMAT", "text", "log_format", "text"),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ],
)
def test_log_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: str
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6379/0")
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(), field) == expected


def test_an_unknown_log_format_is_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6379/0")
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_settings()
