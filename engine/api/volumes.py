"""Volume routes: /volumes, /volumes/create, /volumes/{name}, /volumes/prune."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..errors import InvalidParameter
from .app import ENGINE, Router, filters, flag, json_body


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    engine = request.app[ENGINE]
    name = body.get("Name") or ""
    anonymous = not name
    if anonymous:
        import secrets

        name = secrets.token_hex(32)  # an anonymous volume, as dockerd names them
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise InvalidParameter("Labels must be an object")
    volume = await asyncio.to_thread(
        engine.containers.volumes.create, name, labels=labels, driver=body.get("Driver") or "local",
        options=body.get("DriverOpts") or None, anonymous=anonymous,
    )  # fmt: skip
    return web.json_response(volume, status=201)


async def list_volumes(request: web.Request) -> web.Response:
    volumes = await asyncio.to_thread(request.app[ENGINE].containers.volumes.list)
    return web.json_response({"Volumes": volumes, "Warnings": None})


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.app[ENGINE].containers.volumes.inspect, request.match_info["name"]))


async def remove(request: web.Request) -> web.Response:
    containers = request.app[ENGINE].containers
    name = request.match_info["name"]
    await asyncio.to_thread(containers.volumes.remove, name, containers.volume_users(name), force=flag(request, "force"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    """Unused anonymous volumes; named ones too with the `all=true` filter (API 1.42's rule)."""
    containers = request.app[ENGINE].containers
    everything = "true" in [value.lower() for value in filters(request).get("all", [])]
    deleted, reclaimed = [], 0
    for volume in await asyncio.to_thread(containers.volumes.list):
        name = volume["Name"]
        if containers.volume_users(name) or not (everything or volume.get("Anonymous")):
            continue
        reclaimed += await asyncio.to_thread(containers.volumes.size, name)
        await asyncio.to_thread(containers.volumes.remove, name, [])
        deleted.append(name)
    return web.json_response({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed})


def routes(router: Router) -> None:
    router.add("POST", "/volumes/create", create)
    router.add("GET", "/volumes", list_volumes)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", remove)
