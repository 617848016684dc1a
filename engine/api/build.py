"""`POST /build`: the legacy builder's API (`version=1`), as `docker build` without buildx and
docker-py's `images.build` call it: the context tar as the body, options in the query, output
as JSON lines (`stream`, `aux.ID`, and `error`/`errorDetail` with the failed step's code)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from client.auth import Credentials
from ocispec.reference import normalize_registry

from ..build.builder import Builder, BuildFailed, BuildOptions, extract_context
from ..errors import EngineError, InvalidParameter
from .app import ENGINE, Router, flag
from .images import _spool


def _json_query(request: web.Request, name: str) -> dict[str, Any]:
    raw = request.query.get(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidParameter(f"{name} must be a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidParameter(f"{name} must be a JSON object")
    return value


def registry_config(request: web.Request) -> dict[str, Credentials]:
    """`X-Registry-Config`: base64 JSON {registry: {username, password, identitytoken}}."""
    header = request.headers.get("X-Registry-Config")
    if not header:
        return {}
    try:
        document = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return {}
    found = {}
    for registry, entry in (document or {}).items() if isinstance(document, dict) else []:
        if isinstance(entry, dict) and (entry.get("username") or entry.get("identitytoken")):
            host = registry.split("://", 1)[-1].split("/", 1)[0]
            try:
                host = normalize_registry(host)
            except Exception:
                continue
            found[host] = Credentials(entry.get("username") or None, entry.get("password"), entry.get("identitytoken") or None)
    return found


async def build(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    query = request.query
    if query.get("remote"):
        raise InvalidParameter("building from a remote context (a URL or git repository) is not supported: send the context tar as the body")
    tags = query.getall("t", [])
    for tag in tags:
        if engine.images.reference(tag).digest:
            raise InvalidParameter(f"invalid tag {tag!r}: a build is tagged by name, not digest")
    options = BuildOptions(
        dockerfile=query.get("dockerfile") or "Dockerfile",
        tags=tags,
        build_args={str(k): (None if v is None else str(v)) for k, v in _json_query(request, "buildargs").items()},
        no_cache=flag(request, "nocache"),
        pull=flag(request, "pull"),
        quiet=flag(request, "q"),
        remove=flag(request, "rm", True),
        force_remove=flag(request, "forcerm"),
        target=query.get("target") or None,
        labels={str(k): str(v) for k, v in _json_query(request, "labels").items()},
        credentials=registry_config(request),
    )
    spool = await _spool(request)
    context = Path(tempfile.mkdtemp(prefix="build-", dir=engine.settings.data_root / "tmp"))
    try:
        await asyncio.to_thread(_extract, spool, context, options.dockerfile)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        builder = Builder(
            engine, context, options, emit=lambda text: queue.put_nowait({"stream": text}),
            aux=lambda image_id: queue.put_nowait({"aux": {"ID": image_id}}),
        )  # fmt: skip
        task = asyncio.ensure_future(builder.run())
        task.add_done_callback(lambda _: queue.put_nowait(None))
        while (message := await queue.get()) is not None:
            await response.write(json.dumps(message).encode() + b"\r\n")
        error = task.exception()
        if error is not None:
            code = error.code if isinstance(error, BuildFailed) else 1
            text = error.message if isinstance(error, EngineError) else f"{type(error).__name__}: {error}"
            await response.write(json.dumps({"errorDetail": {"code": code, "message": text}, "error": text}).encode() + b"\r\n")
        await response.write_eof()
        return response
    finally:
        spool.close()
        await asyncio.to_thread(shutil.rmtree, context, True)


def _extract(spool: Any, context: Path, dockerfile: str) -> None:
    archive = context.with_name(context.name + ".tar")
    with open(archive, "wb") as out:
        shutil.copyfileobj(spool, out, 1 << 20)
    try:
        extract_context(archive, context, dockerfile)
    finally:
        archive.unlink(missing_ok=True)


def routes(router: Router) -> None:
    router.add("POST", "/build", build)
