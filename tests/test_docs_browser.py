"""The docs pages work in a real browser that can reach nothing but the server (as offline):
Swagger UI lists the operations and "Try it out" on a public route gets its 200; ReDoc lists
them too. The scripts come from the app (app.api.docs), and the page's CSP lets them run."""

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.browser import Page, chromium_page
from tests.servers import Server, run_cli, running_server, server_env

OPERATIONS = 14  # a few of the API's, counted low: new operations must not break the test


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("docs")
    env = server_env(data, f"sqlite:///{data}/docs.db")
    assert run_cli(env, "migrate").returncode == 0
    with running_server(env) as server:
        yield server


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium_page() as page:
        yield page


def test_swagger_ui_renders_and_tries_a_public_route(server: Server, page: Page) -> None:
    page.open(f"{server.url}/docs")
    assert page.wait_for("document.querySelectorAll('.opblock').length") >= OPERATIONS
    health = """[...document.querySelectorAll('.opblock')].find(
        block => block.querySelector('.opblock-summary-path')?.dataset.path === '/health')"""
    page.evaluate(f"{health}.querySelector('.opblock-summary-control').click()")
    page.wait_for(f"!!{health}.querySelector('.try-out__btn')")
    page.evaluate(f"{health}.querySelector('.try-out__btn').click()")
    page.wait_for(f"!!{health}.querySelector('.execute')")
    page.evaluate(f"{health}.querySelector('.execute').click()")
    status = page.wait_for(
        f"{health}.querySelector('.live-responses-table tbody .response-col_status')?.textContent"
    )
    assert status.strip() == "200"


def test_redoc_renders_the_operations(server: Server, page: Page) -> None:
    page.open(f"{server.url}/redoc")
    count = "document.querySelectorAll('[data-section-id^=\"operation/\"]').length"
    assert page.wait_for(count) >= OPERATIONS
    assert "Resource API" in page.evaluate("document.querySelector('h1')?.textContent ?? ''")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_pages_load_nothing_from_another_host(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assert "http://" not in page.text
    assert "https://" not in page.text
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert client.get(asset).status_code == 200, asset
