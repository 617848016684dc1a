"""Listings: /v2/ (API check), /v2/_catalog and /v2/<name>/tags/list, with n/last pagination."""

from __future__ import annotations

from aiohttp import web

from ..auth import auth_context, requires, requires_catalog
from ..context import services
from ..http import next_link, pagination, repository_name


async def api_version(request: web.Request) -> web.Response:
    return web.json_response({})


@requires_catalog
async def catalog(request: web.Request) -> web.Response:
    limit, last = pagination(request)
    page = await services(request).repositories.catalog(limit, last, visible=auth_context(request).may_pull)
    headers = {}
    if page.more and limit and page.items:
        headers["Link"] = next_link("/v2/_catalog", limit, page.items[-1])
    return web.json_response({"repositories": page.items}, headers=headers)


@requires("pull")
async def tags_list(request: web.Request) -> web.Response:
    name = repository_name(request)
    limit, last = pagination(request)
    page = await services(request).repositories.tags(name, limit, last)
    headers = {}
    if page.more and limit and page.items:
        headers["Link"] = next_link(f"/v2/{name}/tags/list", limit, page.items[-1])
    return web.json_response({"name": name, "tags": page.items}, headers=headers)
