"""Paging headers: an RFC 8288 `Link` and `X-Total-Count`, and the opaque cursors of paging
by key.

Two ways through a list. By position (`skip`, the default): `X-Total-Count` and links to the
first, previous, next and last pages. By key (a `cursor`, or `count=false`): each page ends
with a `next` link whose cursor names the last resource shown, so the next page is found in
the index however deep it is; nothing is counted unless asked.
"""

from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import Request, Response

from app.models import MAX_ID
from app.services.resources import Page

# A cursor is the order it belongs to ("i": id) and the last key shown, in base 36: short, and
# any string of this shape is a place in the list (past the last id, an empty page).
CURSOR_PATTERN = "^i[0-9a-z]{1,12}$"
ID_ORDER = "i"
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def encode_cursor(last_id: int) -> str:
    digits, key = "", last_id
    while True:
        key, digit = divmod(key, 36)
        digits = DIGITS[digit] + digits
        if not key:
            return ID_ORDER + digits


def decode_cursor(cursor: str) -> int:
    """The id a cursor (of CURSOR_PATTERN's shape) continues after; past the largest id there
    can be, the largest."""
    return min(int(cursor[len(ID_ORDER) :], 36), MAX_ID)


def set_paging_headers(
    response: Response, request: Request, page: Page, *, skip: int, limit: int, by_key: bool
) -> None:
    # Relative (RFC 8288 allows a URI reference): never built from the client's Host header.
    path = f"{request.scope.get('root_path', '')}{request.url.path}"
    links = _Links(path, request.query_params.multi_items())
    if by_key:
        rels = _key_links(links.without("skip", "cursor"), limit, page)
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


def _key_links(walk: _Links, limit: int, page: Page) -> list[str]:
    # The first page of an uncounted walk is asked for with count=false.
    uncounted = {"count": "false"} if page.total is None else {}
    links = [walk.link("first", limit=limit, **uncounted)]
    if page.more:
        cursor = encode_cursor(page.resources[-1].id)
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
