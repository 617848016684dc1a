"""GET, HEAD and DELETE of blobs: /v2/<name>/blobs/<digest>."""

from __future__ import annotations

from aiohttp import web

from ...core.blobs import LocalFile, Redirect
from ..auth import requires
from ..context import services
from ..http import empty_response, parse_digest, repository_name
from ..sendfile import FileSliceResponse, parse_range, stream_response


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
    blobs = services(request).blobs
    headers = _blob_headers(str(digest))
    if request.method == "HEAD":
        info = await blobs.stat(name, digest)
        return web.Response(status=200, headers={**headers, "Content-Length": str(info.size)})

    read = await blobs.read(name, digest, parse_range(request.headers.get("Range")))
    status = 206 if read.partial else 200
    if read.partial:
        headers["Content-Range"] = f"bytes {read.offset}-{read.offset + read.count - 1}/{read.info.size}"
    source = read.source
    if isinstance(source, Redirect):
        raise web.HTTPTemporaryRedirect(source.url, headers={"Docker-Content-Digest": str(digest)})
    if isinstance(source, LocalFile):
        return FileSliceResponse(source.path, read.offset, read.count, status=status, headers=headers)
    return await stream_response(request, source.chunks, status=status, headers=headers, length=read.count)


@requires("delete")
async def delete_blob(request: web.Request) -> web.Response:
    name = repository_name(request)
    digest = parse_digest(request.match_info["digest"])
    await services(request).blobs.unlink(name, digest)
    return empty_response(202, {"Docker-Content-Digest": str(digest)})
