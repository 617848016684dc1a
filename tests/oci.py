"""Test content: random layers, configs and manifests, and pushing them over the API."""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient

from ocispec import mediatypes


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Blob:
    data: bytes
    media_type: str = mediatypes.OCI_LAYER_GZIP

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


def random_blob(size: int = 1024, media_type: str = mediatypes.OCI_LAYER_GZIP) -> Blob:
    return Blob(os.urandom(size), media_type)


@dataclass
class Image:
    config: Blob
    layers: list[Blob]
    media_type: str = mediatypes.OCI_MANIFEST
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest(self) -> bytes:
        document = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.descriptor(),
            "layers": [layer.descriptor() for layer in self.layers],
            **self.extra,
        }
        return json.dumps(document, indent=2).encode()

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest), **extra}


def random_image(layers: int = 2, layer_size: int = 2048, docker: bool = False, **extra: Any) -> Image:
    config_type = mediatypes.DOCKER_CONFIG if docker else mediatypes.OCI_CONFIG
    layer_type = mediatypes.DOCKER_LAYER_GZIP if docker else mediatypes.OCI_LAYER_GZIP
    config = Blob(json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode(), config_type)
    return Image(
        config,
        [random_blob(layer_size, layer_type) for _ in range(layers)],
        mediatypes.DOCKER_MANIFEST if docker else mediatypes.OCI_MANIFEST,
        extra,
    )


async def push_blob(client: TestClient, name: str, blob: Blob) -> None:
    response = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": blob.digest}, data=io.BytesIO(blob.data))
    assert response.status == 201, await response.text()


async def push_image(client: TestClient, name: str, image: Image, reference: str | None = None) -> str:
    for blob in [image.config, *image.layers]:
        await push_blob(client, name, blob)
    response = await client.put(
        f"/v2/{name}/manifests/{reference or image.digest}",
        data=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert response.status == 201, await response.text()
    return response.headers["Docker-Content-Digest"]


async def stored_keys(storage: Any, prefix: str) -> list[str]:
    """Every object key below `prefix`, through the backend contract (any backend)."""
    keys: list[str] = []
    for child in await storage.list(prefix):
        path = f"{prefix}/{child}"
        if await storage.exists(path):
            keys.append(path)
        else:
            keys.extend(await stored_keys(storage, path))
    return keys


async def error_codes(response: Any) -> list[str]:
    body = await response.json()
    return [entry["code"] for entry in body["errors"]]


def location_of(response: Any) -> str:
    """The response's `Location`, which must be an absolute URL back to the server the request
    went to (as the reference registry sends them), as `path?query` to follow with a client."""
    value = response.headers["Location"]
    parts = urlsplit(value)
    sent_to = response.url
    assert (parts.scheme, parts.netloc) == (sent_to.scheme, f"{sent_to.host}:{sent_to.port}"), f"{value} is not absolute"
    return parts.path + (f"?{parts.query}" if parts.query else "")
