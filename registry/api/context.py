"""Where a handler finds the registry's services: on the root application, which every
sub-application's requests can reach through `request.config_dict`."""

from __future__ import annotations

from aiohttp import web

from ..core.services import Services

SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.config_dict[SERVICES]
