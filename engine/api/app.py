"""The Docker Engine API subset `dockyardd` serves, as the stock docker CLI and docker-py speak it.

Every route answers both unversioned and under `/v1.NN/`; every response carries `Api-Version`.
Errors are `{"message": "..."}` with the status the engine error carries (engine.errors), which
the CLI prints as `Error response from daemon: <message>`. Handlers are thin: parse, call the
engine, shape the answer (routes in `containers.py`, `images.py`, `system.py` beside this).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..errors import EngineError, NotModified

API_VERSION = "1.43"
MIN_API_VERSION = "1.24"
_VERSIONED = re.compile(r"^/v(\d+\.\d+)(/.*)$")

log = logging.getLogger("dockyard.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINE: web.AppKey[Any] = web.AppKey("engine", object)


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NotModified:
        return web.Response(status=304)
    except EngineError as error:
        return error_response(error.status, error.message)
    except web.HTTPException as error:
        if error.status >= 400:
            return error_response(error.status, error.reason if error.status != 404 else "page not found")
        raise
    except json.JSONDecodeError as error:
        return error_response(400, f"invalid JSON body: {error}")
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception as error:  # a bug: logged whole, answered with what it says
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, f"{type(error).__name__}: {error}")


async def _add_version_header(request: web.Request, response: web.StreamResponse) -> None:
    # the docker CLI decodes an error body only when the type is exactly application/json
    if response.headers.get("Content-Type", "").startswith("application/json"):
        response.headers["Content-Type"] = "application/json"
    response.headers["Api-Version"] = API_VERSION
    response.headers["Docker-Experimental"] = "false"
    response.headers["Ostype"] = "linux"
    response.headers.setdefault("Server", "Dockyard")


class Router:
    """Registers each route both bare and under `/v{version}`."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)
        self.app.router.add_route(method, r"/v{api_version:\d+\.\d+}" + path, handler)


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="the body must be a JSON object")
    return body


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() not in ("0", "false", "no", "")


def filters(request: web.Request) -> dict[str, list[str]]:
    """The `filters` query parameter: `{"status": ["exited"]}` or the old `{"status": {"exited": true}}`."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        document = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"invalid filters: {raw}") from None
    out: dict[str, list[str]] = {}
    for key, value in (document or {}).items():
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def make_app(engine: Any) -> web.Application:
    from . import build, containers, images, networks, system, volumes

    app = web.Application(middlewares=[errors_middleware], client_max_size=1 << 40)
    app[ENGINE] = engine
    app.on_response_prepare.append(_add_version_header)
    router = Router(app)
    system.routes(router)
    containers.routes(router)
    images.routes(router)
    build.routes(router)
    volumes.routes(router)
    networks.routes(router)
    return app
