"""Paging headers: `X-Total-Count` and an RFC 8288 `Link` with first, prev, next and last."""

from fastapi import Request, Response
from starlette.datastructures import URL


def set_paging_headers(
    response: Response, request: Request, *, skip: int, limit: int, total: int
) -> None:
    # Relative (RFC 8288 allows a URI reference): never built from the client's Host header.
    here = URL(f"{request.scope.get('root_path', '')}{request.url.path}?{request.url.query}")

    def link(rel: str, page_skip: int) -> str:
        url = here.include_query_params(skip=page_skip, limit=limit)
        return f'<{url}>; rel="{rel}"'

    last_skip = max(total - 1, 0) // limit * limit
    links = [link("first", 0)]
    if skip > 0:
        links.append(link("prev", max(min(skip - limit, last_skip), 0)))
    if skip + limit < total:
        links.append(link("next", skip + limit))
    links.append(link("last", last_skip))
    response.headers["X-Total-Count"] = str(total)
    response.headers["Link"] = ", ".join(links)
