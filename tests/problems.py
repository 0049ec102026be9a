"""What every error answer must be: an RFC 9457 problem naming the request."""

from http import HTTPStatus
from typing import Any

import httpx

from app.problems import PROBLEM_MEDIA_TYPE


def assert_problem(response: httpx.Response, status: int, detail: str | None = None) -> Any:
    """Check the answer is the problem `status` (with `detail`, when given); its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert body["type"] == "about:blank"
    assert body["title"] == HTTPStatus(status).phrase
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if detail is not None:
        assert body["detail"] == detail
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-request-id"]
    return body
