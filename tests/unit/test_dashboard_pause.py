"""The dashboard's pause page (service/web/dashboard_pause.py): behind the dashboard's gate, same-site
forms only, none when read-only, linked from rq-dashboard's navbar."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from service.store.pause import paused_queues
from service.web.dashboard import CROSS_SITE, READ_ONLY
from tests.unit.test_dashboard import AUTH, CREDENTIALS, SAME_SITE

PAGE = "/dashboard/offload/queues"


@pytest.fixture
def dashboard(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(**CREDENTIALS)


def state_of(page: str, queue: str) -> str:
    found = re.search(rf'data-queue="{queue}"><td>{queue}</td><td data-role="state">(\w+)</td>', page)
    assert found, page
    return found.group(1)


def test_the_page_pauses_and_resumes_a_queue_by_a_same_site_form(
    dashboard: TestClient, connection: Redis
) -> None:
    page = dashboard.get(PAGE, headers=AUTH)
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert state_of(page.text, "low") == "running"
    assert f'<form method="post" action="{PAGE}/low/pause">' in page.text

    answer = dashboard.post(f"{PAGE}/low/pause", headers=SAME_SITE, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == PAGE  # relative: behind https it stays https
    assert paused_queues(connection) == {"low"}
    page = dashboard.get(PAGE, headers=AUTH)
    assert state_of(page.text, "low") == "paused"
    assert f'action="{PAGE}/low/resume"' in page.text
    assert {queue["name"]: queue["paused"] for queue in dashboard.get("/queues").json()}["low"] is True

    dashboard.post(f"{PAGE}/low/resume", headers=SAME_SITE)
    assert paused_queues(connection) == frozenset()


@pytest.mark.parametrize("source", [{"Origin": "http://evil.invalid"}, {}])
def test_a_form_of_another_site_cannot_pause(
    dashboard: TestClient, connection: Redis, source: dict[str, str]
) -> None:
    response = dashboard.post(f"{PAGE}/low/pause", headers={**AUTH, **source})
    assert response.status_code == 403
    assert response.json() == {"detail": CROSS_SITE}
    assert paused_queues(connection) == frozenset()


def test_it_needs_the_dashboards_credentials(dashboard: TestClient, connection: Redis) -> None:
    assert dashboard.get(PAGE).status_code == 401
    assert dashboard.post(f"{PAGE}/low/pause", headers={"Origin": "http://testserver"}).status_code == 401
    assert paused_queues(connection) == frozenset()


def test_an_unknown_queue_is_404(dashboard: TestClient) -> None:
    response = dashboard.post(f"{PAGE}/nope/pause", headers=SAME_SITE)
    assert response.status_code == 404
    assert "no queue named 'nope'" in response.json()["detail"]


def test_read_only_shows_the_states_without_buttons_and_refuses_the_actions(
    make_client: Callable[..., TestClient], connection: Redis
) -> None:
    read_only = make_client(**CREDENTIALS, dashboard_read_only=True)
    page = read_only.get(PAGE, headers=AUTH)
    assert page.status_code == 200
    assert state_of(page.text, "default") == "running"
    assert "<form" not in page.text
    response = read_only.post(f"{PAGE}/default/pause", headers=SAME_SITE)
    assert response.status_code == 403
    assert response.json() == {"detail": READ_ONLY}
    assert paused_queues(connection) == frozenset()


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/0/view/workers", "/dashboard/0/view/jobs"])
def test_rq_dashboards_navbar_links_to_it(dashboard: TestClient, path: str) -> None:
    page = dashboard.get(path, headers=AUTH).text
    assert f'<a href="{PAGE}" class="nav-link">Pause queues</a>' in page
