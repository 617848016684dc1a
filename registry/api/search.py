"""`GET /v1/search?q=&n=&page=` in the shape `docker search` reads."""

from __future__ import annotations

import math

from aiohttp import web

from ..core.hub.models import User
from ..core.hub.permissions import audience
from ..core.hub.scopes import InvalidToken
from .admin import caller
from .context import services

MAX_PAGE_SIZE = 100


async def _searcher(request: web.Request) -> User | None:
    """The caller: Basic credentials, one of our bearer tokens, or anonymous."""
    registry = services(request)
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer ") and registry.signer is not None:
        try:
            subject = registry.signer.verify(header[7:].strip()).get("sub")
        except InvalidToken:
            raise web.HTTPUnauthorized(text='{"error": "invalid bearer token"}', content_type="application/json") from None
        return await registry.hub.users.get(subject) if subject else None
    return await caller(request, required=False)


def _positive(request: web.Request, key: str, default: int, maximum: int) -> int:
    raw = request.query.get(key, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise web.HTTPBadRequest(text=f'{{"error": "{key} must be a whole number"}}', content_type="application/json") from None
    if value < 1:
        raise web.HTTPBadRequest(text=f'{{"error": "{key} must be at least 1"}}', content_type="application/json")
    return min(value, maximum)


async def search(request: web.Request) -> web.Response:
    registry = services(request)
    query = request.query.get("q", "")
    page_size = _positive(request, "n", 25, MAX_PAGE_SIZE)
    page = _positive(request, "page", 1, 10**6)
    user = await _searcher(request)
    seen_by = await audience(registry.hub, user, auth_enabled=registry.signer is not None)
    found = await registry.hub.search.search(query, page=page, page_size=page_size, audience=seen_by)
    return web.json_response(
        {
            "query": query,
            "num_results": found.total,
            "num_pages": max(1, math.ceil(found.total / page_size)),
            "page": page,
            "page_size": page_size,
            "results": [
                {
                    "name": entry.name,
                    "description": entry.description,
                    "star_count": entry.star_count,
                    "pull_count": entry.pull_count,
                    "is_official": "/" not in entry.name,
                    "is_automated": False,
                }
                for entry in found.results
            ],
        }
    )
