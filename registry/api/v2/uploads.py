"""Blob uploads: /v2/<name>/blobs/uploads/ and /v2/<name>/blobs/uploads/<id>."""

from __future__ import annotations

import re

from aiohttp import web

from ocispec.names import InvalidName, validate_repository

from ...core.blobs import BlobInfo
from ...core.errors import BlobUploadInvalid
from ...core.hub.scopes import Scope
from ...core.streams import empty
from ...core.uploads import UploadStatus
from ..auth import auth_context, requires
from ..context import services
from ..http import empty_response, parse_digest, parse_name, repository_name, request_body
from .errors import upload_headers

CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")


def _created(name: str, blob: BlobInfo) -> web.Response:
    return empty_response(201, {"Location": f"/v2/{name}/blobs/{blob.digest}", "Docker-Content-Digest": str(blob.digest)})


def _in_progress(status: UploadStatus, code: int = 202) -> web.Response:
    return empty_response(code, upload_headers(status))


def _content_range(request: web.Request) -> tuple[int | None, int | None]:
    """(start, length) from Content-Range, checked against Content-Length; (None, None) without it."""
    header = request.headers.get("Content-Range")
    if header is None:
        return None, request.content_length
    match = CONTENT_RANGE.match(header.strip())
    if not match:
        raise BlobUploadInvalid(f"malformed Content-Range {header!r}; expected <start>-<end>")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise BlobUploadInvalid(f"Content-Range {header!r} ends before it starts")
    length = end - start + 1
    if request.content_length is not None and request.content_length != length:
        raise BlobUploadInvalid(
            f"Content-Range {header!r} covers {length} bytes but Content-Length is {request.content_length}"
        )
    return start, length


def _mount_source(request: web.Request) -> list[Scope]:
    """A mount needs pull on its source: the challenge asks for it too, as the reference does."""
    source = request.query.get("from")
    if "mount" not in request.query or not source:
        return []
    try:
        validate_repository(source)
    except InvalidName:
        return []  # not a repository: nothing to ask for (the handler says what is wrong)
    return [Scope("repository", source, frozenset({"pull"}))]


@requires("push", also=("pull",), challenge_also=_mount_source)
async def start_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    registry = services(request)
    query = request.query

    if "mount" in query:
        digest = parse_digest(query.get("mount"), "mount")
        source = parse_name(query["from"]) if query.get("from") else None
        caller = auth_context(request)
        if source is not None:
            allowed = caller.token_allows("repository", source, "pull")
        else:
            # Without `from`, the blob could come from any repository: with access control on,
            # that would let a caller link private content by digest alone.
            allowed = registry.options.automatic_mount and not caller.enabled
        if allowed:
            mounted = await registry.blobs.mount(name, digest, source)
            if mounted is not None:
                return _created(name, mounted)

    if "digest" in query:
        digest = parse_digest(query.get("digest"))
        blob = await registry.uploads.upload_whole(name, digest, request_body(request), request.content_length)
        return _created(name, blob)

    return _in_progress(await registry.uploads.start(name, query.get("digest-algorithm") or "sha256"))


@requires("push", also=("pull",))
async def upload_status(request: web.Request) -> web.Response:
    name = repository_name(request)
    status = await services(request).uploads.status(name, request.match_info["upload_id"])
    return _in_progress(status, 204)


@requires("push", also=("pull",))
async def upload_chunk(request: web.Request) -> web.Response:
    name = repository_name(request)
    start, length = _content_range(request)
    status = await services(request).uploads.append(
        name, request.match_info["upload_id"], request_body(request), start=start, length=length
    )
    return _in_progress(status)


@requires("push", also=("pull",))
async def finish_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    digest = parse_digest(request.query.get("digest"))
    upload_id = request.match_info["upload_id"]
    uploads = services(request).uploads
    start, length = _content_range(request)
    body = request_body(request) if request.can_read_body else empty()
    blob = await uploads.finish(
        name, upload_id, digest, body, start=start, length=length if request.can_read_body else 0
    )
    return _created(name, blob)


@requires("push", also=("pull",))
async def cancel_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    await services(request).uploads.cancel(name, request.match_info["upload_id"])
    return empty_response(204, {})
