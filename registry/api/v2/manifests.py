"""Manifests: /v2/<name>/manifests/<reference> (tag or digest)."""

from __future__ import annotations

from aiohttp import web

from ...core.errors import ManifestTooLarge, ManifestUnknown, TooManyTags
from ...core.events import Actor
from ...core.manifests import MAX_MANIFEST_SIZE, Reference, acceptable
from ..auth import auth_context, requires
from ..context import services
from ..http import empty_response, repository_name
from .errors import TooManyRequests


async def _read_limited(request: web.Request, limit: int) -> bytes:
    too_large = ManifestTooLarge(f"manifest exceeds the {limit // (1024 * 1024)} MiB limit")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


@requires("pull")
async def get_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    reference = Reference.lookup(request.match_info["reference"])
    limit_headers = await _count_pull(request)
    manifest = await services(request).manifests.get(name, reference, with_body=request.method != "HEAD")
    if not acceptable(manifest.media_type, request.headers.getall("Accept", [])):
        raise ManifestUnknown(
            f"manifest {name}:{reference} is a {manifest.media_type}, which the request's Accept header excludes",
            detail={"mediaType": manifest.media_type},
        )
    headers = {
        "Content-Type": manifest.media_type,
        "Docker-Content-Digest": str(manifest.digest),
        "ETag": f'"{manifest.digest}"',
        "Content-Length": str(manifest.size),
    }
    if request.method == "HEAD":
        return web.Response(status=200, headers=headers)
    services(request).activity.pulled(name, reference.tag)
    return web.Response(status=200, body=manifest.body, headers={**headers, **limit_headers})


async def _count_pull(request: web.Request) -> dict[str, str]:
    """Docker Hub counts manifest GETs (not HEADs) as pulls."""
    limiter = services(request).pull_limiter
    if limiter is None or request.method != "GET":
        return {}
    client = auth_context(request).subject or request.remote or "unknown"
    decision = await limiter.check(client)
    headers = decision.headers(limiter.limit, limiter.window)
    if not decision.allowed:
        raise TooManyRequests(
            f"pull rate limit of {limiter.limit} per {limiter.window}s reached; retry in {decision.retry_after}s",
            headers=headers,
        )
    return headers


@requires("push", also=("pull",))
async def put_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    reference = Reference.parse(request.match_info["reference"])
    tags = request.query.getall("tag", [])
    options = services(request).options
    if len(tags) > options.max_tags_per_push:
        raise TooManyTags(f"{len(tags)} tag parameters; this registry takes at most {options.max_tags_per_push} per push")
    body = await _read_limited(request, MAX_MANIFEST_SIZE)
    pushed = await services(request).manifests.put(
        name, reference, body, request.headers.get("Content-Type"), tags=tags, sparse=options.sparse_manifests, actor=_actor(request)
    )
    headers = {"Location": f"/v2/{name}/manifests/{pushed.digest}", "Docker-Content-Digest": str(pushed.digest)}
    if pushed.subject is not None:
        headers["OCI-Subject"] = str(pushed.subject)
    response = empty_response(201, headers)
    if reference.digest is not None:
        for tag in pushed.tags:  # one OCI-Tag per accepted tag (RFC 9110 list syntax allows one or several per line)
            response.headers.add("OCI-Tag", tag)
    return response


@requires("delete")
async def delete_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    reference = Reference.lookup(request.match_info["reference"])
    await services(request).manifests.delete(name, reference, actor=_actor(request))
    return empty_response(202, {})


def _actor(request: web.Request) -> Actor:
    return Actor(auth_context(request).subject, request.host)
