"""Network routes: /networks, /networks/create, /networks/{id}, connect, disconnect, prune."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import InvalidParameter
from ..networks import Network
from .app import ENGINE, Router, filters, json_body


def _shown(network: Network, containers: Any, with_containers: bool) -> dict[str, Any]:
    document = network.public()
    attached: dict[str, Any] = {}
    if with_containers:
        for record in containers.network_users(network):
            endpoint = record.sandbox.endpoints.get(network.Name)
            if endpoint is not None:
                attached[record.Id] = {"Name": record.name, "EndpointID": endpoint.endpoint_id, "MacAddress": endpoint.mac,
                                       "IPv4Address": f"{endpoint.ip}/{endpoint.prefix}", "IPv6Address": ""}  # fmt: skip
    document["Containers"] = attached
    return document


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    network = request.app[ENGINE].containers.networks.create(body)
    return web.json_response({"Id": network.Id, "Warning": ""}, status=201)


async def list_networks(request: web.Request) -> web.Response:
    containers = request.app[ENGINE].containers
    chosen = containers.networks.list(filters(request))
    return web.json_response([_shown(network, containers, with_containers=False) for network in chosen])


async def inspect(request: web.Request) -> web.Response:
    containers = request.app[ENGINE].containers
    network = containers.networks.get(request.match_info["id"])
    return web.json_response(_shown(network, containers, with_containers=True))


async def remove(request: web.Request) -> web.Response:
    containers = request.app[ENGINE].containers
    network = containers.networks.get(request.match_info["id"])
    await containers.networks.remove(network.Id, [record.name for record in containers.network_users(network)])
    return web.Response(status=204)


def _container(body: dict[str, Any]) -> str:
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise InvalidParameter("a container is required (Container)")
    return container


async def connect(request: web.Request) -> web.Response:
    body = await json_body(request)
    containers = request.app[ENGINE].containers
    await containers.connect(_container(body), request.match_info["id"], body.get("EndpointConfig"))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await json_body(request)
    containers = request.app[ENGINE].containers
    await containers.disconnect(_container(body), request.match_info["id"], bool(body.get("Force")))
    return web.Response(status=200)


async def prune(request: web.Request) -> web.Response:
    """User-defined networks no container (running or not) is attached to."""
    containers = request.app[ENGINE].containers
    wanted = filters(request)
    referenced = {name for live in containers.live.values() for name in live.record.networks}
    deleted = []
    for network in containers.networks.list({"label": wanted.get("label", [])}):
        if network.user_defined and network.Name not in referenced and not containers.network_users(network):
            await containers.networks.remove(network.Id, [])
            deleted.append(network.Name)
    return web.json_response({"NetworksDeleted": deleted})


def routes(router: Router) -> None:
    router.add("POST", "/networks/create", create)
    router.add("GET", "/networks", list_networks)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", remove)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
