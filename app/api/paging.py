"""Paging headers: an RFC 8288 `Link` and `X-Total-Count`, and the opaque cursors of paging
by key.

Two ways through a list. By position (`skip`, the default): `X-Total-Count` and links to the
first, previous, next and last pages. By key (a `cursor`, or `count=false`): each page ends
with a `next` link whose cursor names the last resource shown, so the next page is found in
the index however deep it is; nothing is counted unless asked.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import Request, Response

from app.errors import Unprocessable
from app.models import MAX_ID, Resource
from app.schemas import API_TIME, storable_text_problem
from app.services import resources
from app.services.resources import Page, ShownResource

Sort = Literal["id", "-id", "name", "-name", "created_at", "-created_at"]
# A cursor is its sort's letter and the place it continues after: for id, the last id in base
# 36 ("i" is the cursors given out before there were other sorts); otherwise the last key and
# id, as JSON in URL-safe base64. Opaque to clients, and checked like any input.
SORT_LETTERS: dict[str, str] = {
    "id": "i", "-id": "j", "name": "n", "-name": "o", "created_at": "c", "-created_at": "d"
}  # fmt: skip
CURSOR_PATTERN = f"^[{''.join(SORT_LETTERS.values())}][0-9A-Za-z_-]{{1,1500}}$"
BAD_CURSOR = "Invalid cursor: not one that this list gave for this sort"
CURSOR_LOC = ("query", "cursor")
BASE36 = re.compile("[0-9a-z]{1,12}")
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def order_of(sort: Sort) -> resources.ResourceOrder:
    return resources.ResourceOrder(sort.removeprefix("-"), descending=sort.startswith("-"))


def encode_cursor(sort: Sort, last: Resource | ShownResource) -> str:
    key = order_of(sort).key
    if key == "id":
        digits, rest = "", last.id
        while True:
            rest, digit = divmod(rest, 36)
            digits = DIGITS[digit] + digits
            if not rest:
                return SORT_LETTERS[sort] + digits
    value = last.name if key == "name" else API_TIME.dump_python(last.created_at, mode="json")
    place = json.dumps([value, last.id], ensure_ascii=False).encode()
    return SORT_LETTERS[sort] + base64.urlsafe_b64encode(place).decode().rstrip("=")


def decode_cursor(cursor: str, sort: Sort) -> tuple[Any, int]:
    """The place (key, id) a cursor of `sort` continues after; Unprocessable for any other
    string. An id past the largest there can be reads as the largest."""
    if not cursor.startswith(SORT_LETTERS[sort]):
        raise Unprocessable(BAD_CURSOR, CURSOR_LOC)
    body, key = cursor[1:], order_of(sort).key
    if key == "id":
        if not BASE36.fullmatch(body):
            raise Unprocessable(BAD_CURSOR, CURSOR_LOC)
        last_id = min(int(body, 36), MAX_ID)
        return last_id, last_id
    try:
        value, last_id = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        place = (_name(value) if key == "name" else _time(value), _id(last_id))
    except (ValueError, TypeError, binascii.Error):
        raise Unprocessable(BAD_CURSOR, CURSOR_LOC) from None
    return place


def _name(value: object) -> str:
    if not isinstance(value, str) or storable_text_problem(value):
        raise ValueError(value)
    return value


def _time(value: object) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    if moment is None or moment.tzinfo is None:
        raise ValueError(value)
    return moment


def _id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(value)
    return max(0, min(value, MAX_ID))  # within the column's range, whatever was sent


def set_paging_headers(
    response: Response,
    request: Request,
    page: Page,
    *,
    skip: int,
    limit: int,
    by_key: bool,
    sort: Sort,
) -> None:
    # Relative (RFC 8288 allows a URI reference): never built from the client's Host header.
    # From the scope: `request.url` would parse a whole URL rebuilt from it (~5% of a list).
    path = f"{request.scope.get('root_path', '')}{request.scope['path']}"
    links = _Links(path, request.query_params.multi_items())
    if by_key:
        rels = _key_links(links.without("skip", "cursor"), limit, page, sort)
    else:
        rels = _position_links(links, skip, limit, page)
    if page.total is not None:
        response.headers["X-Total-Count"] = str(page.total)
    response.headers["Link"] = ", ".join(rels)


@dataclass(frozen=True)
class _Links:
    """Links to this list with some query parameters set anew (moved last, as Starlette's
    `include_query_params` does) and the others kept as the request gave them."""

    path: str
    kept: list[tuple[str, str]]

    def without(self, *names: str) -> "_Links":
        return _Links(self.path, [pair for pair in self.kept if pair[0] not in names])

    def link(self, rel: str, **params: object) -> str:
        pairs = [pair for pair in self.kept if pair[0] not in params]
        pairs += [(name, str(value)) for name, value in params.items()]
        return f'<{self.path}?{urlencode(pairs)}>; rel="{rel}"'


def _key_links(walk: _Links, limit: int, page: Page, sort: Sort) -> list[str]:
    # The first page of an uncounted walk is asked for with count=false.
    uncounted = {"count": "false"} if page.total is None else {}
    links = [walk.link("first", limit=limit, **uncounted)]
    if page.more:
        cursor = encode_cursor(sort, page.resources[-1])
        links.append(walk.link("next", limit=limit, **uncounted, cursor=cursor))
    return links


def _position_links(here: _Links, skip: int, limit: int, page: Page) -> list[str]:
    assert page.total is not None, "paging by position is always counted"
    last_skip = max(page.total - 1, 0) // limit * limit
    links = [here.link("first", skip=0, limit=limit)]
    if skip > 0:
        links.append(here.link("prev", skip=max(min(skip - limit, last_skip), 0), limit=limit))
    if page.more:
        links.append(here.link("next", skip=skip + limit, limit=limit))
    links.append(here.link("last", skip=last_skip, limit=limit))
    return links
