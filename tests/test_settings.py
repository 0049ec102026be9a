import secrets
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings


def test_production_refuses_a_missing_or_weak_key() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY must be set"):
        Settings(environment="production", secret_key="")
    with pytest.raises(ValidationError, match="SECRET_KEY must be set"):
        Settings(environment="production", secret_key="short")
    key = secrets.token_urlsafe(32)
    assert Settings(environment="production", secret_key=key).signing_key == key


@pytest.mark.parametrize(
    "placeholder",
    ["k" * 64, "changeme" * 5, "your-secret-key-here-your-secret-key", "0123456789" * 4],
)
def test_production_refuses_a_long_placeholder_key(placeholder: str) -> None:
    with pytest.raises(ValidationError, match="looks like a placeholder") as refused:
        Settings(environment="production", secret_key=placeholder)
    assert placeholder not in str(refused.value.errors(include_input=False))


@pytest.mark.parametrize("make", [secrets.token_urlsafe, secrets.token_hex])
@pytest.mark.parametrize("size", [16, 32, 48])
def test_production_takes_a_made_key(make: Callable[[int], str], size: int) -> None:
    for _ in range(20):  # random, so more than once
        key = make(size)
        if len(key) >= 32:
            assert Settings(environment="production", secret_key=key).secret_key == key


def test_a_missing_key_is_made_once_and_kept(tmp_path: Path) -> None:
    first = Settings(environment="development", secret_key="", data_dir=tmp_path).signing_key
    second = Settings(environment="development", secret_key="", data_dir=tmp_path).signing_key

    assert first == second
    assert len(first) >= 32
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_tests_get_a_throwaway_key(tmp_path: Path) -> None:
    key = Settings(environment="test", secret_key="", data_dir=tmp_path).signing_key
    assert len(key) >= 32
    assert not any(tmp_path.iterdir())


def test_database_defaults_to_a_file_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(database_url="", data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path}/resource-api.db"


def test_cors_origins_from_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]


def test_threads_must_outnumber_connections() -> None:
    with pytest.raises(ValidationError, match="THREAD_POOL_SIZE must exceed"):
        Settings(db_pool_size=10, db_max_overflow=10, thread_pool_size=20)
    assert Settings(db_pool_size=10, db_max_overflow=10, thread_pool_size=21).thread_pool_size


def test_cors_origins_are_allowed_from_a_browser() -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app(Settings(environment="test", cors_origins=["https://ui.example"]))
    with TestClient(app) as client:
        preflight = client.options(
            "/api/v1/resources",
            headers={
                "Origin": "https://ui.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        other = client.get("/health", headers={"Origin": "https://evil.example"})
        listed = client.get("/health", headers={"Origin": "https://ui.example"})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://ui.example"
    assert "access-control-allow-origin" not in other.headers
    assert "X-Total-Count" in listed.headers["access-control-expose-headers"]
