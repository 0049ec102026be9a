"""Paging headers: an RFC 8288 `Link` and `X-Total-Count`, and the opaque cursors of paging
by key.

Two ways through a list. By position (`skip`, the default): `X-Total-Count` and links to the
first, previous, next and last pages. By key (a `cursor`, or `count=false`): each page ends
with a `next` link whose cursor names the last resource shown, so the next page is found in
the index however deep it is; nothing is counted unless asked.
"""

from fastapi import Request, Response
from starlette.datastructures import URL

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
    here = URL(f"{request.scope.get('root_path', '')}{request.url.path}?{request.url.query}")
    if by_key:
        links = _key_links(here.remove_query_params(["skip", "cursor"]), limit, page)
    else:
        links = _position_links(here, skip, limit, page)
    if page.total is not None:
        response.headers["X-Total-Count"] = str(page.total)
    response.headers["Link"] = ", ".join(links)


def _link(rel: str, url: URL) -> str:
    return f'<{url}>; rel="{rel}"'


def _key_links(walk: URL, limit: int, page: Page) -> list[str]:
    walk = walk.include_query_params(limit=limit)
    if page.total is None:  # the first page of an uncounted walk is asked for this way
        walk = walk.include_query_params(count="false")
    links = [_link("first", walk)]
    if page.more:
        cursor = encode_cursor(page.resources[-1].id)
        links.append(_link("next", walk.include_query_params(cursor=cursor)))
    return links


def _position_links(here: URL, skip: int, limit: int, page: Page) -> list[str]:
    def at(page_skip: int) -> URL:
        return here.include_query_params(skip=page_skip, limit=limit)

    assert page.total is not None, "paging by position is always counted"
    last_skip = max(page.total - 1, 0) // limit * limit
    links = [_link("first", at(0))]
    if skip > 0:
        links.append(_link("prev", at(max(min(skip - limit, last_skip), 0))))
    if page.more:
        links.append(_link("next", at(skip + limit)))
    links.append(_link("last", at(last_skip)))
    return links
