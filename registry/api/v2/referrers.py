"""The referrers API: /v2/<name>/referrers/<digest>[?artifactType=]."""

from __future__ import annotations

import json

from aiohttp import web

from ocispec import mediatypes

from ..auth import requires
from ..context import services
from ..http import parse_digest, repository_name


@requires("pull")
async def list_referrers(request: web.Request) -> web.Response:
    name = repository_name(request)
    subject = parse_digest(request.match_info["digest"])
    artifact_type = request.query.get("artifactType") or None
    descriptors = await services(request).manifests.referrers(name, subject, artifact_type)
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": descriptors}
    headers = {"Content-Type": mediatypes.OCI_INDEX}  # exactly: no charset parameter
    if artifact_type:
        headers["OCI-Filters-Applied"] = "artifactType"
    return web.Response(body=json.dumps(index).encode(), headers=headers)
