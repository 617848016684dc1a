"""GET, HEAD and DELETE of blobs: /v2/<name>/blobs/<digest>."""

from __future__ import annotations

from aiohttp import web

from ..auth import requires
from ..errors import RangeInvalid
from ..http import empty_response, parse_digest, repository_name
from ..sendfile import FileSliceResponse, Unsatisfiable, parse_range, stream_response
from ..services import services


def _blob_headers(digest: str) -> dict[str, str]:
    return {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Cache-Control": "max-age=31536000",
    }


@requires("pull")
async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repository_name(request)
    digest = parse_digest(request.match_info["digest"])
    registry = services(request)
    info = await registry.blobs.stat(name, digest)
    headers = _blob_headers(str(digest))

    if request.method == "HEAD":
        headers["Content-Length"] = str(info.size)
        return web.Response(status=200, headers=headers)

    try:
        selected = parse_range(request.headers.get("Range"), info.size)
    except Unsatisfiable:
        raise RangeInvalid(
            f"range {request.headers.get('Range')!r} is outside the blob of {info.size} bytes",
            headers={"Content-Range": f"bytes */{info.size}"},
        ) from None
    offset, count = selected if selected is not None else (0, info.size)
    status = 200
    if selected is not None:
        status = 206
        headers["Content-Range"] = f"bytes {offset}-{offset + count - 1}/{info.size}"

    redirect = await registry.storage.redirect_url(info.key)
    if redirect is not None:
        raise web.HTTPTemporaryRedirect(redirect, headers={"Docker-Content-Digest": str(digest)})
    local = await registry.storage.local_file(info.key)
    if local is not None:
        return FileSliceResponse(local, offset, count, status=status, headers=headers)
    return await stream_response(
        request, registry.storage.read(info.key, offset, count), status=status, headers=headers, length=count
    )


@requires("delete")
async def delete_blob(request: web.Request) -> web.Response:
    name = repository_name(request)
    digest = parse_digest(request.match_info["digest"])
    await services(request).blobs.unlink(name, digest)
    return empty_response(202, {"Docker-Content-Digest": str(digest)})
