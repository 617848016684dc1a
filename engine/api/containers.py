"""Container and exec routes: /containers/..., /exec/..., /commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from ..container_config import network_settings, status_text
from ..errors import InvalidParameter
from ..logs import HEADER, STDOUT, frame
from .app import ENGINE, Router, filters, flag, json_body
from .hijack import MULTIPLEXED_STREAM, RAW_STREAM, RawStream, take_over


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"invalid value for {name}: {value!r}") from None


# -- create, list, inspect -------------------------------------------------------------------------


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    container_id, warnings = await request.app[ENGINE].containers.create(body, request.query.get("name") or None)
    return web.json_response({"Id": container_id, "Warnings": warnings}, status=201)


async def list_containers(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    containers = engine.containers
    records = containers.list(all=flag(request, "all"), filters=filters(request), limit=_int(request, "limit", -1) or -1)
    now = datetime.now(timezone.utc)
    out = []
    for record in records:
        mode = record.HostConfig.get("NetworkMode") or "default"
        settings = network_settings(record, containers.networks.networks)
        out.append(
            {
                "Id": record.Id,
                "Names": [record.Name],
                "Image": record.ImageRef or record.Image,
                "ImageID": record.Image,
                "Command": " ".join([record.Path, *record.Args]),
                "Created": int(_timestamp(record.Created)),
                "Ports": _port_list(settings["Ports"]),
                "Labels": record.Config.get("Labels") or {},
                "State": record.State.Status,
                "Status": status_text(record, now),
                "HostConfig": {"NetworkMode": mode},
                "NetworkSettings": {"Networks": settings["Networks"]},
                "Mounts": containers.mount_points(record),
            }
        )
    return web.json_response(out)


def _port_list(table: dict[str, Any]) -> list[dict[str, Any]]:
    """`ps`'s Ports: one entry per published binding, and one per exposed-only port."""
    listed: list[dict[str, Any]] = []
    for key, bindings in table.items():
        number, _, protocol = key.partition("/")
        if not bindings:
            listed.append({"PrivatePort": int(number), "Type": protocol or "tcp"})
        for binding in bindings or []:
            listed.append({"IP": binding["HostIp"], "PrivatePort": int(number), "PublicPort": int(binding["HostPort"]),
                           "Type": protocol or "tcp"})  # fmt: skip
    return listed


def _timestamp(text: str) -> float:
    from client.human import parse_time

    parsed = parse_time(text)
    return parsed.timestamp() if parsed is not None else time.time()


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].containers.inspect(request.match_info["id"]))


async def changes(request: web.Request) -> web.Response:
    from ..diff import changed_paths

    engine = request.app[ENGINE]
    live = engine.containers.get(request.match_info["id"])
    found = await asyncio.to_thread(changed_paths, engine.containers.files(live.record).upper)
    kinds = {"C": 0, "A": 1, "D": 2}
    return web.json_response([{"Path": path, "Kind": kinds[kind]} for kind, path in found] or None)


# -- lifecycle -----------------------------------------------------------------------------------


async def start(request: web.Request) -> web.Response:
    await request.app[ENGINE].containers.start(request.match_info["id"])
    return web.Response(status=204)


async def stop(request: web.Request) -> web.Response:
    timeout = _int(request, "t", None)
    if timeout is None:
        timeout = _int(request, "timeout", None)
    await request.app[ENGINE].containers.stop(request.match_info["id"], timeout, request.query.get("signal"))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    await request.app[ENGINE].containers.kill(request.match_info["id"], request.query.get("signal") or None)
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    await request.app[ENGINE].containers.restart(request.match_info["id"], _int(request, "t", None))
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    await request.app[ENGINE].containers.pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await request.app[ENGINE].containers.unpause(request.match_info["id"])
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    await request.app[ENGINE].containers.remove(request.match_info["id"], force=flag(request, "force"), volumes=flag(request, "v"))
    return web.Response(status=204)


async def wait(request: web.Request) -> web.StreamResponse:
    """Headers at once, the body when the condition holds (the CLI waits for the headers
    before it starts the container)."""
    future = request.app[ENGINE].containers.waiter(request.match_info["id"], request.query.get("condition") or "not-running")
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    code = await future
    await response.write(json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n")
    await response.write_eof()
    return response


async def resize(request: web.Request) -> web.Response:
    height, width = _int(request, "h", 0) or 0, _int(request, "w", 0) or 0
    await request.app[ENGINE].containers.resize(request.match_info["id"], height, width)
    return web.Response(status=200)


# -- attach and logs -------------------------------------------------------------------------------


async def _relay(raw: RawStream, shim: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, *, tty: bool, stdin: bool) -> None:
    """Shim frames -> client (raw payload with a TTY), client bytes -> shim stdin, until the
    process's output ends or the client goes away."""
    if shim is None:
        return
    reader, writer = shim

    async def upstream() -> None:
        while True:
            data = await raw.reader.read(65536)
            if not data:
                if stdin:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                await raw.protocol.closed  # the client half-closed: keep the output flowing
                return
            if stdin:
                writer.write(data)
                await writer.drain()

    async def downstream() -> None:
        while True:
            try:
                head = await reader.readexactly(HEADER.size)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            _, length = HEADER.unpack(head)
            payload = await reader.readexactly(length)
            raw.write(payload if tty else head + payload)
            await raw.drain()

    up = asyncio.ensure_future(upstream())
    down = asyncio.ensure_future(downstream())
    await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    if down.done():
        up.cancel()
    else:
        down.cancel()
    writer.close()


async def attach(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    live = engine.containers.get(request.match_info["id"])
    tty = live.record.tty
    stdin, stdout, stderr = flag(request, "stdin"), flag(request, "stdout"), flag(request, "stderr")
    raw = await take_over(request, RAW_STREAM if tty else MULTIPLEXED_STREAM)
    try:
        if flag(request, "logs"):
            async for stream, data in engine.containers.logs(live.record.Id, stdout=stdout, stderr=stderr, follow=False, tail=None):
                raw.write(data if tty else frame(stream, data))
        if flag(request, "stream"):
            connecting = asyncio.ensure_future(engine.containers.attach(live.record.Id, stdin=stdin, stdout=stdout, stderr=stderr))
            await asyncio.wait({connecting, raw.protocol.closed}, return_when=asyncio.FIRST_COMPLETED)
            if not connecting.done():
                connecting.cancel()
                return web.Response()
            await _relay(raw, connecting.result(), tty=tty, stdin=stdin)
    finally:
        raw.close()
    return web.Response()


async def logs(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    live = engine.containers.get(request.match_info["id"])
    stdout, stderr = flag(request, "stdout"), flag(request, "stderr")
    if not stdout and not stderr:
        raise InvalidParameter("You must choose at least one stream")
    tail_text = request.query.get("tail", "all")
    tail = None if tail_text in ("all", "") else _int(request, "tail")
    tty = live.record.tty
    response = web.StreamResponse(status=200, headers={"Content-Type": RAW_STREAM if tty else MULTIPLEXED_STREAM})
    await response.prepare(request)
    since = float(request.query.get("since") or 0)
    until = float(request.query.get("until") or 0)
    timestamps = flag(request, "timestamps")
    async for stream, data in engine.containers.logs(
        live.record.Id, stdout=stdout, stderr=stderr, follow=flag(request, "follow"), tail=tail, since=since, until=until
    ):
        if timestamps:
            data = _stamp(data)
        await response.write(data if tty else frame(stream, data))
    await response.write_eof()
    return response


def _stamp(data: bytes) -> bytes:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode() + data


# -- exec ------------------------------------------------------------------------------------------


async def exec_create(request: web.Request) -> web.Response:
    body = await json_body(request)
    exec_id = request.app[ENGINE].containers.exec_create(request.match_info["id"], body)
    return web.json_response({"Id": exec_id}, status=201)


async def exec_start(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    body = await json_body(request)
    execution = engine.containers.get_exec(request.match_info["id"])
    if body.get("Detach"):
        execution.config["Detach"] = True
    tty = bool(body.get("Tty", execution.config.get("Tty")))
    console = body.get("ConsoleSize")
    console_size = (int(console[0]), int(console[1])) if isinstance(console, list) and len(console) == 2 and all(console) else None
    if body.get("Detach"):
        _, _, error = await engine.containers.exec_start(execution.id, tty=tty, console=console_size)
        if error:
            raise InvalidParameter(error)
        return web.Response(status=200)
    raw = await take_over(request, RAW_STREAM if tty else MULTIPLEXED_STREAM)
    try:
        _, connection, error = await engine.containers.exec_start(execution.id, tty=tty, console=console_size)
        if error:
            message = (error + "\r\n").encode()
            raw.write(message if tty else frame(STDOUT, message))
        else:
            await _relay(raw, connection, tty=tty, stdin=bool(execution.config.get("AttachStdin")))
    finally:
        raw.close()
    return web.Response()


async def exec_inspect(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].containers.get_exec(request.match_info["id"]).inspect())


async def exec_resize(request: web.Request) -> web.Response:
    await request.app[ENGINE].containers.exec_resize(request.match_info["id"], _int(request, "h", 0) or 0, _int(request, "w", 0) or 0)
    return web.Response(status=201)


# -- commit ----------------------------------------------------------------------------------------


async def commit(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body = await json_body(request)
    image_id = await engine.commit(
        request.query.get("container") or "",
        repo=request.query.get("repo") or None,
        tag=request.query.get("tag") or None,
        author=request.query.get("author") or "",
        comment=request.query.get("comment") or "",
        changes=request.query.getall("changes", []),
        pause=flag(request, "pause", True),
        run_config=body or None,
    )
    return web.json_response({"Id": image_id}, status=201)


def routes(router: Router) -> None:
    router.add("POST", "/containers/create", create)
    router.add("GET", "/containers/json", list_containers)
    router.add("GET", "/containers/{id}/json", inspect)
    router.add("GET", "/containers/{id}/changes", changes)
    router.add("POST", "/containers/{id}/start", start)
    router.add("POST", "/containers/{id}/stop", stop)
    router.add("POST", "/containers/{id}/kill", kill)
    router.add("POST", "/containers/{id}/restart", restart)
    router.add("POST", "/containers/{id}/pause", pause)
    router.add("POST", "/containers/{id}/unpause", unpause)
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("POST", "/containers/{id}/resize", resize)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("DELETE", "/containers/{id}", remove)
    router.add("POST", "/containers/{id}/exec", exec_create)
    router.add("POST", "/exec/{id}/start", exec_start)
    router.add("POST", "/exec/{id}/resize", exec_resize)
    router.add("GET", "/exec/{id}/json", exec_inspect)
    router.add("POST", "/commit", commit)



