"""Property-based: whatever schemathesis sends, the API answers without a server error.

Every example runs in a SAVEPOINT of its own (the kit's `savepoint`), so examples never see
each other's writes.
"""

from typing import Any

import respx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app.main import app

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_input_makes_a_server_error(
    case: Any,
    app_with_test_session: Any,
    savepoint: Any,
    auth_headers: dict[str, str],
    external_api: respx.MockRouter,
) -> None:
    external_api.get(path__regex=r"^/resources/\d+$").respond(
        json={"status": "success", "data": {}}
    )
    with savepoint():
        case.call_and_validate(headers=auth_headers, checks=[not_a_server_error])
