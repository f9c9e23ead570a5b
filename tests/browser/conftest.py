"""Browser-test fixtures: Debian's Chromium driven by Playwright, against the real stack.

No Chromium here: the tests skip, saying how to install it; with OFFLOAD_REQUIRE_BROWSER=1 (CI)
they fail instead, so a machine without it cannot pass for one that ran them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from service.dev.harness import ROOT, Stack, running_redis, running_stack

REQUIRE_BROWSER = "OFFLOAD_REQUIRE_BROWSER"
# Screenshots are kept here (git-ignored) for a person or CI to look at.
ARTIFACTS = ROOT / "test-artifacts" / "browser"
USERNAME = "browser-test"
PASSWORD = "browser-test-password"
# Chromium's own traffic (updates, sync, field trials, ...) has nowhere to go on a closed network,
# and would only slow it down: it talks to the stack on loopback and to nothing else.
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container: Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT_MS = 30_000
# The longest any one step (a page load, a click, an expectation) may take.
STEP_TIMEOUT_MS = 15_000


def chromium_path() -> Path | None:
    """Debian's Chromium (scripts/install-system-packages), or another one on PATH."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def chromium() -> Path:
    path = chromium_path()
    if path is None:
        message = "no Chromium on this machine: run `make browser` (scripts/install-system-packages)"
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{message}; {REQUIRE_BROWSER}=1 requires the browser tests to run")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    """One headless Chromium for a module's tests, closed (with its processes) at the end."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real redis-server and the Procfile's web and worker, the dashboard's credentials set."""
    credentials = {"DASHBOARD_USERNAME": USERNAME, "DASHBOARD_PASSWORD": PASSWORD}
    with (
        running_redis(tmp_path_factory.mktemp("redis")) as server,
        running_stack(server.url, tmp_path_factory.mktemp("logs"), env=credentials) as running,
    ):
        yield running


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A fresh browser context, logged in to the dashboard by HTTP Basic auth."""
    context = browser.new_context(
        base_url=stack.base_url,
        http_credentials={"username": USERNAME, "password": PASSWORD},
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as test-artifacts/browser/<name>.png and say where."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")
    return path
