"""The app factory's process-wide setup: only for an app that owns its process."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

from service.settings import Settings
from service.web import app as app_module
from service.web.app import create_app


def started(app: FastAPI) -> None:
    async def start_and_stop() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(start_and_stop())


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Calls to freeze the heap, which stays as it is."""
    calls: list[bool] = []
    monkeypatch.setattr(app_module, "freeze_startup_heap", lambda: calls.append(True))
    return calls


def test_the_factory_built_app_freezes_its_startup_heap_once_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, frozen: list[bool]
) -> None:
    monkeypatch.chdir(str(tmp_path))  # no .env
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/0")
    monkeypatch.setattr(app_module, "configure_logging", lambda *args: None)  # the test's own logging
    app = create_app()  # as uvicorn's --factory calls it
    assert frozen == []
    started(app)
    assert frozen == [True]


def test_an_app_given_its_settings_leaves_the_collector_alone(frozen: list[bool]) -> None:
    started(create_app(Settings(redis_url="redis://127.0.0.1:6390/0")))
    assert frozen == []
