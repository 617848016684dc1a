"""Image routes: /images/..., pull and import (/images/create), push, search, save and load."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import tempfile
import time
from collections.abc import AsyncIterator
from typing import IO, Any

from aiohttp import web

from client.auth import Credentials
from ocispec.names import familiar

from ..errors import EngineError, InvalidParameter
from .app import ENGINE, Router, filters, flag

SPOOL_CHUNK = 1 << 20
PROGRESS_INTERVAL = 0.1


def registry_credentials(request: web.Request) -> Credentials | None:
    """`X-Registry-Auth`: base64url JSON {username, password, identitytoken, serveraddress}."""
    header = request.headers.get("X-Registry-Auth")
    if not header:
        return None
    try:
        padded = header + "=" * (-len(header) % 4)
        document = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(document, dict):
        return None
    username, password, token = document.get("username"), document.get("password"), document.get("identitytoken")
    if not (username or token):
        return None
    return Credentials(username=username or None, password=password, identity_token=token or None)


class JsonProgress:
    """The client's progress protocol as Docker's JSON progress lines, queued for the response."""

    def __init__(
        self, queue: asyncio.Queue[dict[str, Any] | None], start_status: str = "Pulling fs layer", moving: str = "Downloading"
    ) -> None:
        self.queue = queue
        self.start_status = start_status
        self.moving = moving
        self.totals: dict[str, int] = {}
        self.current: dict[str, int] = {}
        self.last: dict[str, float] = {}

    def start(self, id: str, total: int) -> None:
        self.totals[id], self.current[id] = total, 0
        self.queue.put_nowait({"status": self.start_status, "progressDetail": {}, "id": _short(id)})

    def advance(self, id: str, n: int) -> None:
        self.current[id] = self.current.get(id, 0) + n
        now = time.monotonic()
        if now - self.last.get(id, 0) >= PROGRESS_INTERVAL:
            self.last[id] = now
            total = self.totals.get(id, 0)
            self.queue.put_nowait(
                {"status": self.moving, "progressDetail": {"current": self.current[id], "total": total}, "id": _short(id)}
            )

    def done(self, id: str, status: str) -> None:
        self.queue.put_nowait({"status": status, "progressDetail": {}, "id": _short(id)})


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


async def _json_lines(request: web.Request, work: Any, queue: asyncio.Queue[dict[str, Any] | None]) -> web.StreamResponse:
    """Stream `queue`'s messages as JSON lines while `work` runs; its error as Docker's
    `{"errorDetail": ..., "error": ...}` line (the status is already 200 by then)."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda _: queue.put_nowait(None))
    first = await queue.get()
    if first is None and task.exception() is not None and isinstance(task.exception(), EngineError):
        raise task.exception()  # type: ignore[misc]  # nothing sent yet: a real status (404 for pull)
    await response.prepare(request)
    message = first
    while message is not None:
        await response.write(json.dumps(message).encode() + b"\r\n")
        message = await queue.get()
    error = task.exception()
    if error is not None:
        text = error.message if isinstance(error, EngineError) else str(error)
        await response.write(json.dumps({"errorDetail": {"message": text}, "error": text}).encode() + b"\r\n")
    await response.write_eof()
    return response


async def list_images(request: web.Request) -> web.Response:
    wanted = filters(request)
    dangling = wanted.get("dangling")
    reference = (wanted.get("reference") or [request.query.get("filter")])[0]
    return web.json_response(
        await request.app[ENGINE].images.list(
            all=flag(request, "all"),
            reference=reference,
            dangling=None if not dangling else dangling[0].lower() in ("true", "1"),
        )
    )


async def create(request: web.Request) -> web.StreamResponse:
    """Pull (`fromImage`) or import a root filesystem tar (`fromSrc=-`, the body)."""
    engine = request.app[ENGINE]
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    if request.query.get("fromSrc"):
        if request.query["fromSrc"] != "-":
            raise InvalidParameter("importing from a URL is not supported here: send the tar as the body (fromSrc=-)")
        repo, tag = request.query.get("repo") or "", request.query.get("tag") or ""
        reference = f"{repo}:{tag}" if repo and tag else (repo or None)
        spool = await _spool(request)

        async def import_work() -> None:
            try:
                record = await asyncio.to_thread(
                    engine.images.import_rootfs, spool, reference, changes=request.query.getall("changes", []),
                    message=request.query.get("message") or "",
                )  # fmt: skip
            finally:
                spool.close()
            queue.put_nowait({"status": record.id})

        return await _json_lines(request, import_work(), queue)
    image = request.query.get("fromImage")
    if not image:
        raise InvalidParameter("fromImage or fromSrc is required")
    tag = request.query.get("tag") or ""
    if tag and ("@" in image or ":" in image.rsplit("/", 1)[-1]):
        raise InvalidParameter(f"both a tag in {image!r} and tag={tag!r} were given")
    if tag:
        image = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
    reference = engine.images.reference(image)

    async def pull_work() -> None:
        shown = reference.tag or reference.digest or "latest"
        queue.put_nowait({"status": f"Pulling from {familiar(reference.name)}", "id": shown})
        record = await engine.images.pull(
            image, platform=request.query.get("platform") or None, credentials=registry_credentials(request),
            progress=JsonProgress(queue),
        )  # fmt: skip
        queue.put_nowait({"status": f"Digest: {record.index_digest or record.manifest_digest}"})
        queue.put_nowait({"status": f"Status: Downloaded newer image for {reference.familiar()}"})

    return await _json_lines(request, pull_work(), queue)


async def _spool(request: web.Request) -> IO[bytes]:
    """The request body in an unnamed temp file (bodies can be any size; never held in memory)."""
    spool = tempfile.TemporaryFile(dir=request.app[ENGINE].settings.data_root / "tmp")
    async for chunk in request.content.iter_chunked(SPOOL_CHUNK):
        await asyncio.to_thread(spool.write, chunk)
    spool.seek(0)
    return spool


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ENGINE].images.inspect(request.match_info["name"]))


async def history(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ENGINE].images.history(request.match_info["name"]))


async def tag(request: web.Request) -> web.Response:
    repo = request.query.get("repo")
    if not repo:
        raise InvalidParameter("repo is required")
    await request.app[ENGINE].images.tag(request.match_info["name"], repo, request.query.get("tag") or None)
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ENGINE].images.remove(request.match_info["name"], force=flag(request, "force")))


async def push(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    name = request.match_info["name"]
    tag = request.query.get("tag") or ""
    target = f"{name}:{tag}" if tag else name
    reference = engine.images.reference(target)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    await engine.images.resolve(str(reference))

    async def push_work() -> None:
        queue.put_nowait({"status": f"The push refers to repository [{reference.name}]"})
        progress = JsonProgress(queue, start_status="Preparing", moving="Pushing")
        digest = await engine.images.push(str(reference), credentials=registry_credentials(request), progress=progress)
        record = await engine.images.resolve(str(reference))
        size = record.manifest_size
        queue.put_nowait({"status": f"{reference.tag or 'latest'}: digest: {digest} size: {size}"})
        queue.put_nowait({"progressDetail": {}, "aux": {"Tag": reference.tag or "latest", "Digest": digest, "Size": size}})

    return await _json_lines(request, push_work(), queue)


async def search(request: web.Request) -> web.Response:
    from client.distribution import search as registry_search
    from client.errors import ClientError

    engine = request.app[ENGINE]
    term = request.query.get("term") or ""
    limit = int(request.query.get("limit") or 25)
    try:
        results = await registry_search(term, limit=limit, settings=engine.images.settings)
    except ClientError as error:
        raise EngineError(str(error)) from None
    return web.json_response(
        [
            {"name": r.name, "description": r.description, "star_count": r.star_count, "is_official": r.is_official,
             "is_automated": r.is_automated}
            for r in results.results
        ]  # fmt: skip
    )


async def save(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    names = [request.match_info["name"]] if "name" in request.match_info else request.query.getall("names", [])
    if not names:
        raise InvalidParameter("no image names given")
    for name in names:
        await engine.images.resolve(name)
    spool = tempfile.TemporaryFile(dir=engine.settings.data_root / "tmp")
    try:
        await engine.images.save(names, spool)
        spool.seek(0)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
        await response.prepare(request)
        async for chunk in _read_chunks(spool):
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        spool.close()


async def _read_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, SPOOL_CHUNK):
        yield chunk


async def load(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    spool = await _spool(request)
    try:
        lines = await asyncio.to_thread(engine.images.load, spool)
    finally:
        spool.close()
    body = b"".join(json.dumps({"stream": line + "\n"}).encode() + b"\r\n" for line in lines)
    return web.Response(body=body, content_type="application/json")


def routes(router: Router) -> None:
    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/create", create)
    router.add("GET", "/images/search", search)
    router.add("GET", "/images/get", save)
    router.add("POST", "/images/load", load)
    router.add("GET", r"/images/{name:.+}/json", inspect)
    router.add("GET", r"/images/{name:.+}/history", history)
    router.add("GET", r"/images/{name:.+}/get", save)
    router.add("POST", r"/images/{name:.+}/tag", tag)
    router.add("POST", r"/images/{name:.+}/push", push)
    router.add("DELETE", r"/images/{name:.+}", remove)



