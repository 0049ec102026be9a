"""What a real server logs: JSON lines (LOG_FORMAT=json) or text, with time, level, logger and
the request's id; one access line per request with method, path, status and duration; at the
level asked for; and never a password or a token."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.servers import register_and_log_in, run_cli, running_server, server_env


def served_log(tmp_path: Path, *serve_args: str, **settings: str) -> tuple[str, dict[str, str]]:
    """Run a server, make a few requests (a sign-up and login among them), stop it: its log,
    and the bearer headers it issued."""
    env = server_env(tmp_path, f"sqlite:///{tmp_path}/logs.db", **settings)
    assert run_cli(env, "migrate").returncode == 0
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log, running_server(env, *serve_args, log=log) as server:
        headers = register_and_log_in(server.url, "logged")
        httpx.get(f"{server.url}/api/v1/users/me", headers={**headers, "X-Request-ID": "trace-1"})
        httpx.get(f"{server.url}/api/v1/resources/999999")
    return log_path.read_text(), headers


def json_lines(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.strip()]


def test_json_lines_carry_time_level_logger_and_request_id(tmp_path: Path) -> None:
    log, headers = served_log(tmp_path, "--log-level", "info", LOG_FORMAT="json")

    lines = json_lines(log)  # every line is a JSON object

    assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "app.access"]
    me = next(line for line in access if line["request_id"] == "trace-1")
    assert (me["method"], me["path"], me["status"]) == ("GET", "/api/v1/users/me", 200)
    assert me["duration_ms"] >= 0
    missing = next(line for line in access if line["path"] == "/api/v1/resources/999999")
    assert missing["status"] == 404
    assert len(missing["request_id"]) == 32  # one was made for it
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    token = headers["Authorization"].split()[1]
    assert PASSWORD not in log
    assert token not in log
    assert token.split(".")[2] not in log


def test_text_lines_by_default_outside_production(tmp_path: Path) -> None:
    log, _ = served_log(tmp_path, "--log-level", "info")
    access = [line for line in log.splitlines() if " app.access " in line]
    assert any(
        line.endswith("ms") and "[trace-1] GET /api/v1/users/me 200 " in line for line in access
    )
    assert all(" INFO " in line for line in access)


@pytest.mark.parametrize(("level", "shown"), [("warning", False), ("debug", True)])
def test_the_log_level_is_obeyed(tmp_path: Path, level: str, shown: bool) -> None:
    log, _ = served_log(tmp_path, "--log-level", level, LOG_FORMAT="json")
    assert any(line["logger"] == "app.access" for line in json_lines(log)) is shown


def test_the_access_log_can_be_turned_off(tmp_path: Path) -> None:
    log, _ = served_log(tmp_path, "--log-level", "info", LOG_FORMAT="json", ACCESS_LOG="false")
    lines = json_lines(log)
    assert lines  # the server still logs
    assert not any(line["logger"] == "app.access" for line in lines)
