"""The dashboard in headless Chromium, on the real stack: log in, read, requeue.

The job requeued is one an operator stopped mid-run (`POST /jobs/{id}/cancel`): requeued from the
dashboard, it runs again and finishes, so "requeue" is seen doing what it is for.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from service.dev.harness import RecordProperty, Stack, wait_until
from tests.browser.conftest import screenshot
from tests.integration.test_procfile_stack import enqueue

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ERROR_TEXT = "the dashboard shows this error"
# The dashboard's columns, left to right, as GET /queues names them.
COLUMNS = ("queued", "deferred", "scheduled", "started", "finished", "failed", "canceled")
# Long enough to be seen running (stopped, then on the workers page, loaded while the requeued run
# runs on a machine that may be busy), short enough for a test.
RUN_SECONDS = 8


def status(stack: Stack, job_id: str) -> str:
    response = stack.client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    value: str = response.json()["status"]
    return value


def stopped_job(stack: Stack) -> dict[str, Any]:
    """A job stopped by the API while it ran: in the failed registry, ready to run again."""
    job = enqueue(stack, "very_long_task", {"seconds": RUN_SECONDS})
    assert wait_until(lambda: status(stack, job["id"]) == "started", 20), stack.logs()
    response = stack.client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stopped", response.text
    return job


def test_dashboard_shows_counts_and_errors_and_requeues(
    page: Page, stack: Stack, record_property: RecordProperty
) -> None:
    begun = time.monotonic()
    failed = enqueue(stack, "always_fails", {"message": ERROR_TEXT}, retries=0)
    assert stack.wait_for_job(failed["id"], 20)["status"] == "failed"
    stopped = stopped_job(stack)

    # Queues: the counts GET /queues gives, for each queue the dashboard lists.
    page.goto("/dashboard/")
    rows = page.locator("table#queues tr[data-role=queue]")
    expect(rows.first).to_be_visible()
    api = {queue["name"]: queue["counts"] for queue in stack.client.get("/queues").json()}
    shown = {
        cells[0]: [int(cell) for cell in cells[1:]]
        for cells in (row.locator("td").all_inner_texts() for row in rows.all())
    }
    assert "default" in shown, shown
    for name, counts in shown.items():
        assert counts == [api[name][column] for column in COLUMNS], (name, counts, api[name])
    assert shown["default"][COLUMNS.index("failed")] == 2  # the failed job and the stopped one
    screenshot(page, "queues")

    # The failed job's page, reached by the link the API gives, shows its error.
    assert failed["dashboard_url"] == f"/dashboard/0/view/job/{failed['id']}"
    page.goto(failed["dashboard_url"])
    expect(page.locator("#job-data pre.exc_info")).to_contain_text(f"IntentionalFailureError: {ERROR_TEXT}")
    expect(page.locator("#job-data")).to_contain_text("failed")
    screenshot(page, "failed-job")

    # Requeue the stopped job from the failed list: the row goes once the POST succeeded.
    page.goto("/dashboard/0/view/jobs/default/failed/8/asc/1")
    row = page.locator(f"tr[data-job-id='{stopped['id']}']")
    row.locator("[data-role=requeue-job-btn]").click()
    expect(row).to_have_count(0)
    assert wait_until(lambda: status(stack, stopped["id"]) == "started", 20), stack.logs()

    # While it runs, the workers page shows the worker busy with it (a JSON job, read as JSON).
    page.goto("/dashboard/0/view/workers")
    expect(page.locator("table#workers")).to_contain_text("very_long_task")
    screenshot(page, "workers-busy")

    finished = stack.wait_for_job(stopped["id"], RUN_SECONDS + 20)
    assert finished["status"] == "finished", finished
    assert finished["error"] is None, finished  # the stop's error went with the requeue
    assert finished["progress"]["fraction"] == 1, finished
    page.goto(stopped["dashboard_url"])
    expect(page.locator("#job-data")).to_contain_text("finished")
    screenshot(page, "requeued-job-finished")

    seconds = time.monotonic() - begun
    record_property("browser_scenario_seconds", round(seconds, 2))
    print(f"browser scenario took {seconds:.1f} s")


def test_a_cross_site_form_cannot_act(page: Page, stack: Stack) -> None:
    """A page elsewhere posting to the dashboard, the browser holding its credentials, gets 403."""
    failed = enqueue(stack, "always_fails", {"message": "stays failed"}, retries=0)
    assert stack.wait_for_job(failed["id"], 20)["status"] == "failed"
    action = f"{stack.base_url}/dashboard/job/{failed['id']}/requeue"
    # A page of no site of ours (about:blank) with a form aimed at the dashboard's requeue.
    page.set_content(f'<form method="post" action="{action}"><button>win a prize</button></form>')
    with page.expect_response(action) as answer:
        page.click("button")
    assert answer.value.status == 403, answer.value.text()
    assert status(stack, failed["id"]) == "failed"


def test_a_queue_is_paused_and_resumed_from_the_dashboard(page: Page, stack: Stack) -> None:
    """From rq-dashboard's navbar to offload's pause page: its buttons hold a queue's jobs, then free them."""
    page.goto("/dashboard/")
    page.get_by_role("link", name="Pause queues").click()
    low = page.locator("tr[data-queue=low]")
    expect(low.locator("[data-role=state]")).to_have_text("running")
    low.locator("[data-role=pause-queue]").click()
    expect(low.locator("[data-role=state]")).to_have_text("paused")
    assert {queue["name"]: queue["paused"] for queue in stack.client.get("/queues").json()}["low"] is True

    held = enqueue(stack, "word_count", {"text": "held by the dashboard"}, queue="low")
    ran = enqueue(stack, "word_count", {"text": "not held"})
    assert stack.wait_for_job(ran["id"], 20)["status"] == "finished", stack.logs()
    assert status(stack, held["id"]) == "queued"
    page.reload()
    expect(low.locator("td").nth(2)).to_have_text("1")  # queued
    screenshot(page, "queue-paused")

    low.locator("[data-role=resume-queue]").click()
    expect(low.locator("[data-role=state]")).to_have_text("running")
    assert stack.wait_for_job(held["id"], 20)["status"] == "finished", stack.logs()
