"""The client and its store with content beyond sha256-only, non-foreign images: a sha512
image pulls into the store and pushes on, and a non-distributable ("foreign") layer is
fetched from its `urls` (as containerd does) when the registry does not hold it, and never
pushed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from client.pull import pull
from client.push import push
from client.store import ImageStore
from ocispec import mediatypes
from tests.conftest import RegistryProcess
from tests.images import app_layer, base_layer, host_architecture, image_config, update_layer

FOREIGN = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


async def _put(session: aiohttp.ClientSession, base: str, name: str, digest: str, data: bytes) -> None:
    async with session.post(f"{base}/v2/{name}/blobs/uploads/", params={"digest": digest}, data=data) as response:
        assert response.status == 201, await response.text()


async def test_a_sha512_image_pulls_into_the_store_and_pushes_on(registry_process: RegistryProcess, tmp_path: Path) -> None:
    layers = [base_layer(), app_layer("sha512"), update_layer("linux")]
    config = image_config(layers, host_architecture(), "sha512")
    document = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
                "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": sha512(config), "size": len(config)},
                "layers": [{"mediaType": layer.media_type, "digest": sha512(layer.blob), "size": layer.size} for layer in layers]}  # fmt: skip
    manifest = json.dumps(document).encode()
    base = registry_process.url
    async with aiohttp.ClientSession() as session:
        await _put(session, base, "long/app", sha512(config), config)
        for layer in layers:
            await _put(session, base, "long/app", sha512(layer.blob), layer.blob)
        async with session.put(f"{base}/v2/long/app/manifests/{sha512(manifest)}", params={"tag": "v1"}, data=manifest,
                               headers={"Content-Type": mediatypes.OCI_MANIFEST}) as response:  # fmt: skip
            assert response.status == 201, await response.text()
    name = f"{registry_process.host}:{registry_process.port}/long/app:v1"
    store = ImageStore(tmp_path / "store")
    record = await pull(name, store)
    assert record.manifest_digest == sha512(manifest) and record.config_digest == sha512(config)
    assert store.read_blob(sha512(layers[1].blob)) == layers[1].blob
    assert len(store.unpack(store.resolve(name))) == 3  # a snapshot per layer
    pushed_to = f"{registry_process.host}:{registry_process.port}/long/copy:v1"
    store.tag(name, pushed_to)
    assert await push(pushed_to, store) == sha512(manifest)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v2/long/copy/manifests/v1", headers={"Accept": mediatypes.OCI_MANIFEST}) as response:
            assert await response.read() == manifest and response.headers["Docker-Content-Digest"] == sha512(manifest)


@pytest.fixture
async def layer_host(aiohttp_server):
    """A loopback web server for a foreign layer's `urls`, counting its GETs."""
    served: dict[str, bytes] = {}
    gets: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        gets.append(request.path)
        data = served.get(request.path)
        return web.Response(body=data) if data is not None else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)
    server = await aiohttp_server(app)
    return server, served, gets


async def test_a_foreign_layer_is_fetched_from_its_urls_and_never_pushed(registry_process: RegistryProcess, tmp_path: Path, layer_host) -> None:
    server, served, gets = layer_host
    foreign, own, update = base_layer().as_type(FOREIGN), app_layer("foreign"), update_layer("linux")
    served["/layers/base.tar.gz"] = foreign.blob
    config = image_config([foreign, own, update], host_architecture(), "foreign")
    foreign_descriptor = {**foreign.descriptor(), "urls": ["http://127.0.0.1:9/unreachable", str(server.make_url("/layers/base.tar.gz"))]}
    document = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
                "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
                "layers": [foreign_descriptor, own.descriptor(), update.descriptor()]}  # fmt: skip
    manifest = json.dumps(document).encode()
    base = registry_process.url
    async with aiohttp.ClientSession() as session:
        await _put(session, base, "win/app", document["config"]["digest"], config)
        await _put(session, base, "win/app", own.digest, own.blob)
        await _put(session, base, "win/app", update.digest, update.blob)
        async with session.put(f"{base}/v2/win/app/manifests/v1", data=manifest, headers={"Content-Type": mediatypes.OCI_MANIFEST}) as response:
            assert response.status == 201, await response.text()
    name = f"{registry_process.host}:{registry_process.port}/win/app:v1"
    store = ImageStore(tmp_path / "store")
    await pull(name, store)
    assert gets == ["/layers/base.tar.gz"] and store.read_blob(foreign.digest) == foreign.blob
    assert len(store.unpack(store.resolve(name))) == 3
    copy = f"{registry_process.host}:{registry_process.port}/win/copy:v1"
    store.tag(name, copy)
    await push(copy, store)
    async with aiohttp.ClientSession() as session:
        async with session.head(f"{base}/v2/win/copy/blobs/{foreign.digest}") as response:
            assert response.status == 404  # not distributed: left where its urls say
        async with session.get(f"{base}/v2/win/copy/manifests/v1", headers={"Accept": mediatypes.OCI_MANIFEST}) as response:
            assert await response.read() == manifest
    # a foreign layer no url serves (and the registry lacks) is a clear error
    served.clear()
    with pytest.raises(Exception, match="base.tar.gz|urls|foreign"):
        await pull(name, ImageStore(tmp_path / "other"))
