"""The OpenAPI document is the contract, and it is honest: readable operation ids, every error
status each route can answer documented as a problem, the right `Allow` on a 405, and
schemathesis, with every check and every phase, finds nothing against a live server."""

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.problems import PROBLEM_MEDIA_TYPE
from tests.problems import assert_problem
from tests.servers import (
    register_and_log_in,
    run_cli,
    running_demo_upstream,
    running_server,
    server_env,
)

API = "/api/v1"
ONE_RESOURCE = f"{API}/resources/{{resource_id}}"
OPERATION_ID = r"^[a-z]+(-[a-z]+)+$"
CONTRACT_RUN_SECONDS = 50


@pytest.fixture
def operations(fastapi_app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in fastapi_app.openapi()["paths"].items()
        for method, operation in methods.items()
    ]


def test_operation_ids_are_readable_and_unique(operations: list) -> None:
    ids = [operation["operationId"] for _, _, operation in operations]
    assert all(re.fullmatch(OPERATION_ID, id_) for id_ in ids), ids
    assert len(set(ids)) == len(ids)
    assert {"resources-list", "resources-create-bulk", "users-me", "auth-login"} <= set(ids)


def test_every_operation_documents_its_problems(operations: list) -> None:
    for method, path, operation in operations:
        responses = operation["responses"]
        errors = {int(status) for status in responses if status[0] in "45"}
        assert 500 in errors, (method, path)
        for status in errors:
            content = responses[str(status)]["content"]
            assert list(content) == [PROBLEM_MEDIA_TYPE], (method, path, status)
            model = "ValidationProblem" if status == 422 else "Problem"
            assert content[PROBLEM_MEDIA_TYPE]["schema"] == {
                "$ref": f"#/components/schemas/{model}"
            }


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("get", f"{API}/resources/{{resource_id}}", {404, 422, 429, 500, 503}),
        (
            "delete",
            f"{API}/resources/{{resource_id}}",
            {401, 403, 404, 409, 412, 422, 429, 500, 503},
        ),
        ("post", f"{API}/resources/bulk", {400, 401, 409, 413, 422, 429, 500, 503}),
        ("post", f"{API}/users", {400, 409, 413, 422, 429, 500, 503}),
        ("get", "/health", {500}),
    ],
)
def test_the_documented_statuses_are_what_the_route_can_answer(
    fastapi_app: FastAPI, method: str, path: str, statuses: set[int]
) -> None:
    responses = fastapi_app.openapi()["paths"][path][method]["responses"]
    assert {int(status) for status in responses if status[0] in "45"} == statuses


def test_the_problem_schemas_are_components(fastapi_app: FastAPI) -> None:
    schemas = fastapi_app.openapi()["components"]["schemas"]
    assert {"Problem", "ValidationProblem", "FieldError"} <= set(schemas)
    assert "errors" in schemas["ValidationProblem"]["properties"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", f"{API}/resources/bulk", "POST"),
        ("GET", f"{API}/resources/bulk", "POST"),
        ("DELETE", f"{API}/resources", "GET, HEAD, POST"),
        ("POST", f"{API}/resources/7", "DELETE, GET, HEAD, PATCH, PUT"),
        ("PUT", "/health", "GET, HEAD"),
    ],
)
def test_a_405_allows_every_method_the_path_serves(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)
    assert_problem(response, 405, "Method Not Allowed")
    assert response.headers["allow"] == allow
    for allowed in allow.split(", "):  # and each method named is served, none refused
        assert client.request(allowed, path).status_code != 405


@pytest.fixture
def live_api(tmp_path: Path, scratch_database_url: str) -> Iterator[str]:
    """A live server, with a demo upstream for external-data."""
    with running_demo_upstream() as upstream:
        env = server_env(
            tmp_path,
            scratch_database_url,
            RATE_LIMITS_ENABLED="false",
            EXTERNAL_API_URL=upstream.url,
        )
        assert run_cli(env, "migrate").returncode == 0
        with running_server(env) as server:
            yield server.url


def contract_run(base: str, user: str, seconds: int, *selection: str) -> None:
    """Schemathesis with every check and every phase, as `user` (signed up here), on the
    operations `selection` picks; fails with schemathesis's report."""
    headers = register_and_log_in(base, user)
    with tempfile.TemporaryDirectory() as reports:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(Path(__file__).with_name("schemathesis.toml")),
                "run",
                f"{base}/openapi.json",
                "--checks=all",
                "--phases=examples,coverage,fuzzing,stateful",
                f"--max-time={seconds}",
                # One worker: CPython 3.11 can fail to compile in two threads at once
                # ("AST constructor recursion depth mismatch"), which schemathesis does.
                "--workers=1",
                f"--header=Authorization:{headers['Authorization']}",
                f"--report-dir={reports}",
                *selection,
            ],
            cwd=Path(__file__).parent.parent,  # where `tests.schemathesis_hooks` imports from
            capture_output=True,
            text=True,
            timeout=seconds * 4,
            check=False,
        )
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]


# These end the run's token (or its account), so they get a run, and a user, of their own.
ENDS_THE_CALLER = ("auth-logout", "auth-logout-everywhere", "users-delete-me")


def test_schemathesis_finds_nothing_with_every_check_and_phase(live_api: str) -> None:
    rest = [f"--exclude-operation-id={operation}" for operation in ENDS_THE_CALLER]
    contract_run(live_api, "contract", CONTRACT_RUN_SECONDS, *rest)
    ending = [f"--include-operation-id={operation}" for operation in ENDS_THE_CALLER]
    contract_run(live_api, "leaver", 10, *ending)
    assert httpx.get(f"{live_api}/ready").status_code == 200  # and the server is still well
