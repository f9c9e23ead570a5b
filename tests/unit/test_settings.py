from __future__ import annotations

import pytest

from service.connection import connect
from service.settings import ConfigError, Settings, load_settings


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6380/2")
    monkeypatch.setenv("MAX_BODY_BYTES", "4096")
    settings = load_settings()
    assert settings.redis_url == "redis://example.invalid:6380/2"
    assert settings.max_body_bytes == 4096
    assert settings.redis_tls_verify is True


def test_a_missing_redis_url_is_a_clear_startup_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.chdir(str(tmp_path))  # no .env to fall back on
    with pytest.raises(ConfigError, match="REDIS_URL: Field required"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REDIS_URL", "http://localhost", "REDIS_URL: Value error, must start with redis://"),
        ("MAX_BODY_BYTES", "ten", "MAX_BODY_BYTES: Input should be a valid integer"),
        ("MAX_WAIT_SECONDS", "-1", "MAX_WAIT_SECONDS: Input should be greater than or equal to 0"),
    ],
)
def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_rediss_can_accept_a_self_signed_certificate() -> None:
    strict = connect(Settings(redis_url="rediss://:secret@example.invalid:6380"))
    relaxed = connect(Settings(redis_url="rediss://:secret@example.invalid:6380", redis_tls_verify=False))
    assert strict.connection_pool.connection_kwargs.get("ssl_cert_reqs", "required") == "required"
    assert relaxed.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"


def test_connections_fail_fast() -> None:
    connection = connect(Settings(redis_url="redis://localhost", redis_timeout=1.5))
    kwargs = connection.connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == 1.5
    assert connection.get_retry() is not None
    assert connection.get_retry().get_retries() == 1  # type: ignore[union-attr]
