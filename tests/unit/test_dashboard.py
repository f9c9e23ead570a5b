"""The dashboard at /dashboard/ on fakeredis: credentials, same-origin actions, read-only mode,
its pages under the prefix, and JSON jobs read, requeued and deleted as the API does."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from redis import Redis
from rq.registry import FailedJobRegistry
from starlette.routing import Mount
from starlette.websockets import WebSocketDisconnect

from service.catalog import load_catalog
from service.settings import ConfigError, Settings, load_settings
from service.web.app import create_app
from service.web.dashboard import CROSS_SITE, DISABLED, READ_ONLY, Dashboard
from service.worker.main import build_worker
from tests.unit.flow_catalog import flow

USER, PASSWORD = "operator", "a long enough password"
# The links its pages hold that its scripts turn into POSTs.
ACTION = re.compile(r"^/dashboard/(job|queue|requeue)/")
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
SAME_SITE = {**AUTH, "Origin": "http://testserver"}
CREDENTIALS = {"dashboard_username": SecretStr(USER), "dashboard_password": SecretStr(PASSWORD)}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def dashboard(make_client: Callable[..., TestClient]) -> TestClient:
    """The app with the dashboard enabled."""
    return make_client(**CREDENTIALS)


@pytest.fixture
def read_only(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(**CREDENTIALS, dashboard_read_only=True)


def enqueue(client: TestClient, name: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
    response = client.post(f"/jobs/{name}", json=body, params=params)
    assert response.status_code == 202, response.text
    view: dict[str, Any] = response.json()
    return view


def status(client: TestClient, job_id: str) -> str:
    value: str = client.get(f"/jobs/{job_id}").json()["status"]
    return value


def mounted(app: FastAPI) -> Dashboard:
    for route in app.routes:
        if isinstance(route, Mount) and isinstance(route.app, Dashboard):
            return route.app
    raise AssertionError("no dashboard mounted")


# --- off, and credentials -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/dashboard/", "/dashboard/0/view/queues", "/dashboard/static/css/main.css"]
)
def test_without_credentials_configured_it_is_not_served(
    make_client: Callable[..., TestClient], path: str
) -> None:
    client = make_client(dashboard_username=None, dashboard_password=None)
    response = client.get(path, headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"detail": DISABLED}


def test_without_credentials_configured_jobs_link_nowhere(make_client: Callable[..., TestClient]) -> None:
    client = make_client(dashboard_username=None, dashboard_password=None)
    assert enqueue(client, "word_count", {"text": "a"})["dashboard_url"] is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(USER, "wrong password here"),
        basic("someone", PASSWORD),
        basic(USER, PASSWORD + "x"),
        {"Authorization": f"Basic {base64.b64encode(USER.encode()).decode()}"},  # no colon
        {"Authorization": "Basic !!not base64!!"},
        {"Authorization": f"Bearer {PASSWORD}"},
    ],
    ids=["none", "wrong-password", "wrong-user", "longer-password", "no-colon", "garbage", "bearer"],
)
def test_wrong_or_missing_credentials_are_401(dashboard: TestClient, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/dashboard/"), ("POST", "/dashboard/queue/default/compact")]:
        response = dashboard.request(method, path, headers={**headers, "Origin": "http://testserver"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith('Basic realm="offload dashboard"')


def test_websockets_are_closed(dashboard: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect), dashboard.websocket_connect("/dashboard/", headers=AUTH):
        pass


# --- pages, links, static files under the prefix --------------------------------------------------


def test_every_page_and_asset_it_links_is_served_under_the_prefix(
    dashboard: TestClient, run_jobs: Callable[[], None]
) -> None:
    failed = enqueue(dashboard, "always_fails", {}, retries=0)
    run_jobs()
    pages = [
        "/dashboard/",
        "/dashboard/0/view/workers",
        "/dashboard/0/view/jobs",
        "/dashboard/0/view/jobs/default/failed/8/asc/1",
        failed["dashboard_url"],
    ]
    linked: set[str] = set()
    for page in pages:
        response = dashboard.get(page, headers=AUTH)
        assert response.status_code == 200, page
        assert response.headers["x-frame-options"] == "DENY"
        for link in re.findall(r'(?:href|src)="([^"<]+)"', response.text):
            if not link.startswith(("http", "#")) and not ACTION.match(link):
                assert link.startswith("/dashboard/"), (page, link)
                linked.add(link)
        # The scripts build their data URLs from this prefix.
        assert 'var url = "/dashboard/";' in response.text
    assert {"/dashboard/static/js/jquery-3.5.1.min.js", "/dashboard/static/favicon.ico"} <= linked
    assert 'id="delete-job-btn"' in dashboard.get(failed["dashboard_url"], headers=AUTH).text
    for link in sorted(linked):
        assert dashboard.get(link, headers=AUTH, follow_redirects=True).status_code == 200, link
    queues = dashboard.get("/dashboard/0/data/queues.json", headers=AUTH).json()["queues"]
    urls = [value for queue in queues for key, value in queue.items() if key.endswith("_url")]
    assert urls
    assert all(url.startswith("/dashboard/0/view/jobs/") for url in urls)


@pytest.mark.parametrize(
    ("path", "location"), [("/dashboard", "/dashboard/"), ("/dashboard/0/view/queues", "/dashboard/")]
)
def test_redirects_are_relative_and_under_the_prefix(dashboard: TestClient, path: str, location: str) -> None:
    # Relative, so that behind an https router a redirect never names http.
    response = dashboard.get(path, headers=AUTH, follow_redirects=False)
    assert response.status_code in (301, 302, 307, 308)
    assert response.headers["location"] == location


def test_a_single_redis_instance(dashboard: TestClient) -> None:
    assert dashboard.get("/dashboard/1/view/queues", headers=AUTH).status_code == 404


def test_the_job_view_links_to_the_jobs_page(dashboard: TestClient) -> None:
    view = enqueue(dashboard, "word_count", {"text": "a b"})
    assert view["dashboard_url"] == f"/dashboard/0/view/job/{view['id']}"
    assert dashboard.get(f"/jobs/{view['id']}").json()["dashboard_url"] == view["dashboard_url"]
    assert dashboard.get("/jobs").json()["jobs"][0]["dashboard_url"] == view["dashboard_url"]
    assert dashboard.get(view["dashboard_url"], headers=AUTH).status_code == 200


def test_event_streams_link_to_it_too(dashboard: TestClient, run_jobs: Callable[[], None]) -> None:
    view = enqueue(dashboard, "word_count", {"text": "a b"})
    run_jobs()
    stream = dashboard.get(f"/jobs/{view['id']}/events").text  # ended: one `end` event
    (data,) = [line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")]
    assert json.loads(data)["dashboard_url"] == view["dashboard_url"]


def test_jobs_held_by_flow_control_have_their_pages(
    make_client: Callable[..., TestClient], connection: Redis
) -> None:
    """A job waiting for a cap's slot (RQ's `rate_limited`) or held by its rate limit is in none of
    the registries the dashboard lists; its own page and data still answer."""
    app = make_client(flow, **CREDENTIALS)

    def pages_answer(view: dict[str, Any], status: str) -> None:
        assert app.get(view["dashboard_url"], headers=AUTH).status_code == 200
        data = app.get(f"/dashboard/0/data/job/{view['id']}.json", headers=AUTH).json()
        assert data["status"] == status
        for page in ("/dashboard/0/view/queues", "/dashboard/0/data/queues.json"):
            assert app.get(page, headers=AUTH).status_code == 200

    waiting = [enqueue(app, "capped", {"n": n}) for n in range(3)][2]
    assert waiting["status"] == "rate_limited"
    pages_answer(waiting, "rate_limited")
    held = [enqueue(app, "limited", {"n": n}) for n in range(3)][2]
    build_worker(connection, kind="simple", registry=flow).work(burst=True, with_scheduler=False)
    assert app.get(f"/jobs/{held['id']}").json()["held"]["reason"] == "rate_limit"
    pages_answer(held, "queued")


def test_an_unknown_job_is_404(dashboard: TestClient) -> None:
    for path in ["/dashboard/0/view/job/nope", "/dashboard/0/data/job/nope.json"]:
        assert dashboard.get(path, headers=AUTH).status_code == 404


# --- JSON jobs --------------------------------------------------------------------------------------


def test_a_failed_json_jobs_data_shows_its_error_as_text(
    dashboard: TestClient, run_jobs: Callable[[], None]
) -> None:
    view = enqueue(dashboard, "always_fails", {"message": "<img src=x onerror=alert(1)>"}, retries=0)
    run_jobs()
    info = dashboard.get(f"/dashboard/0/data/job/{view['id']}.json", headers=AUTH).json()
    assert info["status"] == "failed"
    # The job page puts these into its HTML: a job's input or error must not become markup there.
    assert "IntentionalFailureError: &lt;img src=x onerror=alert(1)&gt;" in info["exc_info"]
    assert "<img" not in info["description"]
    assert "<img" not in info["metadata"]


def test_the_workers_page_reads_a_busy_workers_json_job(dashboard: TestClient, connection: Redis) -> None:
    view = enqueue(dashboard, "word_count", {"text": "<b>bold</b>"})
    worker = build_worker(connection, kind="simple", registry=load_catalog())
    worker.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    taken = worker.dequeue_job_and_maintain_ttl(None)  # as the worker takes it: then claims it
    assert taken is not None
    assert taken[0].id == view["id"]
    worker.prepare_execution(taken[0])
    response = dashboard.get("/dashboard/0/data/workers.json", headers=AUTH)
    assert response.status_code == 200, response.text
    (shown,) = response.json()["workers"]
    assert shown["current_job"]["job_id"] == view["id"]
    assert shown["current_job"]["call_string"].startswith("jobs.examples.word_count(text='&lt;b&gt;")


def test_requeue_runs_a_failed_job_again_as_the_api_does(
    dashboard: TestClient, run_jobs: Callable[[], None]
) -> None:
    view = enqueue(dashboard, "always_fails", {"message": "once"}, retries=0)
    run_jobs()
    response = dashboard.post(f"/dashboard/job/{view['id']}/requeue", headers=SAME_SITE)
    assert response.json() == {"status": "OK"}
    requeued = dashboard.get(f"/jobs/{view['id']}").json()
    assert (requeued["status"], requeued["error"]) == ("queued", None)
    run_jobs()
    assert status(dashboard, view["id"]) == "failed"


def test_requeue_runs_a_canceled_job(dashboard: TestClient, run_jobs: Callable[[], None]) -> None:
    view = enqueue(dashboard, "word_count", {"text": "a b c"})
    dashboard.post(f"/jobs/{view['id']}/cancel")
    assert dashboard.post(f"/dashboard/job/{view['id']}/requeue", headers=SAME_SITE).status_code == 200
    run_jobs()
    assert dashboard.get(f"/jobs/{view['id']}").json()["result"]["words"] == 3


def test_requeueing_a_job_that_did_not_fail_is_409(dashboard: TestClient) -> None:
    view = enqueue(dashboard, "word_count", {"text": "a"})
    response = dashboard.post(f"/dashboard/job/{view['id']}/requeue", headers=SAME_SITE)
    assert response.status_code == 409
    assert response.json()["status"] == "ERROR"


def test_requeue_all_takes_a_post(
    dashboard: TestClient, connection: Redis, run_jobs: Callable[[], None]
) -> None:
    ids = [enqueue(dashboard, "always_fails", {}, retries=0)["id"] for _ in range(2)]
    run_jobs()
    refused = dashboard.get("/dashboard/requeue/default", headers=SAME_SITE)
    assert (refused.status_code, refused.headers["allow"]) == (405, "POST")
    assert all(status(dashboard, job_id) == "failed" for job_id in ids)
    response = dashboard.post("/dashboard/requeue/default", headers=SAME_SITE)
    assert response.json() == {"status": "OK", "count": 2}
    assert all(status(dashboard, job_id) == "queued" for job_id in ids)
    assert FailedJobRegistry("default", connection=connection).get_job_ids() == []


def test_delete_empty_and_compact_work_on_json_jobs(
    dashboard: TestClient, run_jobs: Callable[[], None]
) -> None:
    finished = enqueue(dashboard, "word_count", {"text": "a"})
    failed = enqueue(dashboard, "always_fails", {}, retries=0)
    run_jobs()
    enqueue(dashboard, "word_count", {"text": "a"})  # compact rewrites the queue: RQ wants one
    for path in [
        f"/dashboard/job/{finished['id']}/delete",
        "/dashboard/queue/default/failed/empty",
        "/dashboard/queue/default/compact",
    ]:
        assert dashboard.post(path, headers=SAME_SITE).json() == {"status": "OK"}, path
    assert dashboard.get(f"/jobs/{finished['id']}").status_code == 404
    assert dashboard.get(f"/jobs/{failed['id']}").status_code == 404


def test_redis_down_is_503(dashboard: TestClient, fake_server: fakeredis.FakeServer) -> None:
    fake_server.connected = False
    response = dashboard.get("/dashboard/0/data/queues.json", headers=AUTH)
    assert response.status_code == 503
    assert "Redis is unavailable" in response.json()["detail"]


def test_it_uses_the_apps_redis_client_with_its_tls_options() -> None:
    # rq-dashboard's own hook would connect from the URL, without REDIS_TLS_VERIFY=false.
    settings = Settings(
        redis_url="rediss://:pw@redis.invalid:6380",
        redis_tls_verify=False,
        dashboard_username=SecretStr(USER),
        dashboard_password=SecretStr(PASSWORD),
    )
    app = create_app(settings)
    with TestClient(app):  # the lifespan builds the clients; nothing here talks to Redis
        wsgi = mounted(app).wsgi
        assert wsgi is not None
        flask_app: Any = wsgi.app
        assert flask_app.redis_conn is app.state.connection
        assert flask_app.redis_conn.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"
        # Its Redis picker shows the URL, without the password.
        assert flask_app.config["RQ_DASHBOARD_REDIS_URL"] == ("rediss://redis.invalid:6380",)
    assert mounted(app).wsgi is None


# --- actions: same origin only, never when read-only -------------------------------------------------

ACTIONS = [
    "/dashboard/job/{id}/requeue",
    "/dashboard/job/{id}/delete",
    "/dashboard/requeue/default",
    "/dashboard/queue/default/failed/empty",
    "/dashboard/queue/default/compact",
]


@pytest.fixture
def failed_job(dashboard: TestClient, run_jobs: Callable[[], None]) -> Iterator[str]:
    job_id = enqueue(dashboard, "always_fails", {}, retries=0)["id"]
    run_jobs()
    yield job_id
    # Whatever was tried, the job is as it was.
    assert status(dashboard, job_id) == "failed"


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(
    "source",
    [
        {"Origin": "http://evil.invalid"},
        {"Origin": "null"},
        {"Referer": "http://evil.invalid/dashboard/"},
        {"Origin": "http://testserver.evil.invalid"},
        {},
    ],
    ids=["evil-origin", "null-origin", "evil-referer", "lookalike-origin", "no-origin"],
)
def test_actions_from_elsewhere_are_refused(
    dashboard: TestClient, failed_job: str, action: str, source: dict[str, str]
) -> None:
    response = dashboard.post(action.format(id=failed_job), headers={**AUTH, **source})
    assert response.status_code == 403
    assert response.json() == {"detail": CROSS_SITE}
    assert response.headers["x-frame-options"] == "DENY"


def test_a_same_site_referer_is_enough(dashboard: TestClient, failed_job: str) -> None:
    enqueue(dashboard, "word_count", {"text": "a"})
    headers = {**AUTH, "Referer": "http://testserver/dashboard/0/view/jobs"}
    assert dashboard.post("/dashboard/queue/default/compact", headers=headers).status_code == 200


@pytest.mark.parametrize("action", ACTIONS)
def test_read_only_refuses_every_action(
    read_only: TestClient, run_jobs: Callable[[], None], action: str
) -> None:
    job_id = enqueue(read_only, "always_fails", {}, retries=0)["id"]
    run_jobs()
    for method in ["POST", "GET"] if action.startswith("/dashboard/requeue/") else ["POST"]:
        response = read_only.request(method, action.format(id=job_id), headers=SAME_SITE)
        assert response.status_code == 403
        assert response.json() == {"detail": READ_ONLY}
    assert status(read_only, job_id) == "failed"


def test_read_only_still_shows_everything_without_delete_buttons(
    read_only: TestClient, run_jobs: Callable[[], None]
) -> None:
    view = enqueue(read_only, "always_fails", {}, retries=0)
    run_jobs()
    page = read_only.get(view["dashboard_url"], headers=AUTH)
    assert page.status_code == 200
    assert 'id="delete-job-btn"' not in page.text
    assert read_only.get(f"/dashboard/0/data/job/{view['id']}.json", headers=AUTH).status_code == 200


# --- configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DASHBOARD_USERNAME": "admin"}, "DASHBOARD_PASSWORD: Value error, DASHBOARD_USERNAME is set"),
        ({"DASHBOARD_PASSWORD": PASSWORD}, "DASHBOARD_PASSWORD: Value error, set DASHBOARD_USERNAME too"),
        ({"DASHBOARD_USERNAME": "admin", "DASHBOARD_PASSWORD": "short"}, "at least 12 characters"),
        ({"DASHBOARD_USERNAME": "a:b", "DASHBOARD_PASSWORD": PASSWORD}, "DASHBOARD_USERNAME: Value error"),
    ],
)
def test_half_or_weak_credentials_are_a_startup_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost")
    for name in ("DASHBOARD_USERNAME", "DASHBOARD_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_credentials_and_read_only_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost")
    monkeypatch.setenv("DASHBOARD_USERNAME", "")  # empty is unset
    monkeypatch.setenv("DASHBOARD_PASSWORD", "")
    assert load_settings().dashboard_username is None
    monkeypatch.setenv("DASHBOARD_USERNAME", USER)
    monkeypatch.setenv("DASHBOARD_PASSWORD", PASSWORD)
    monkeypatch.setenv("DASHBOARD_READ_ONLY", "true")
    settings = load_settings()
    assert settings.dashboard_password is not None
    assert settings.dashboard_password.get_secret_value() == PASSWORD
    assert settings.dashboard_read_only is True
    assert PASSWORD not in repr(settings)
