"""The distribution-spec beyond v1.1.1 (its main branch): tags on a push by digest
(`?tag=`, `OCI-Tag`), non-distributable layers, sparse manifests (off by default), and
sha512 end to end. On disk and on S3."""

from __future__ import annotations

import hashlib
import io
import json

from ocispec import mediatypes
from registry.api.app import create_app
from registry.config import RegistryOptions, Settings
from tests.oci import Blob, Image, error_codes, location_of, push_blob, push_image, random_blob, random_image

INDEX = mediatypes.OCI_INDEX


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def oci_tags(response) -> list[str]:
    return [tag.strip() for value in response.headers.getall("OCI-Tag", []) for tag in value.split(",")]


async def test_a_push_by_digest_sets_every_tag_parameter(client):
    image = random_image()
    for blob in [image.config, *image.layers]:
        await push_blob(client, "tags/app", blob)
    wanted = [f"v{n}" for n in range(12)] + ["latest"]
    response = await client.put(f"/v2/tags/app/manifests/{image.digest}", params=[("tag", tag) for tag in wanted],
                                data=image.manifest, headers={"Content-Type": image.media_type})  # fmt: skip
    assert response.status == 201, await response.text()
    assert oci_tags(response) == wanted and response.headers["Docker-Content-Digest"] == image.digest
    listed = await (await client.get("/v2/tags/app/tags/list")).json()
    assert sorted(listed["tags"]) == sorted(wanted)
    for tag in ("v0", "v11", "latest"):
        got = await client.get(f"/v2/tags/app/manifests/{tag}", headers={"Accept": image.media_type})
        assert got.status == 200 and got.headers["Docker-Content-Digest"] == image.digest


async def test_tag_parameters_are_all_checked_before_anything_is_stored(client):
    image = random_image(layers=1)
    for blob in [image.config, *image.layers]:
        await push_blob(client, "tags/bad", blob)
    put = f"/v2/tags/bad/manifests/{image.digest}"
    headers = {"Content-Type": image.media_type}
    too_many = await client.put(put, params=[("tag", f"t{n}") for n in range(51)], data=image.manifest, headers=headers)
    assert too_many.status == 414 and "at most 50" in await too_many.text()
    bad = await client.put(put, params=[("tag", "good"), ("tag", "-bad!"), ("tag", "fine")], data=image.manifest, headers=headers)
    assert bad.status == 400 and await error_codes(bad) == ["TAG_INVALID"]
    by_tag = await client.put("/v2/tags/bad/manifests/base", params={"tag": "other"}, data=image.manifest, headers=headers)
    assert by_tag.status == 400 and await error_codes(by_tag) == ["TAG_INVALID"]
    assert (await client.get(f"/v2/tags/bad/manifests/{image.digest}")).status == 404
    assert (await client.get("/v2/tags/bad/manifests/good")).status == 404
    assert (await (await client.get("/v2/tags/bad/tags/list")).json()).get("tags") in (None, [])


def foreign_image(with_urls: bool = True) -> tuple[Image, Blob]:
    image = random_image(layers=1)
    foreign = random_blob(900, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
    image.layers.insert(0, foreign)
    document = json.loads(image.manifest)
    if with_urls:
        document["layers"][0]["urls"] = ["https://example.invalid/base-layer.tar.gz"]
    image.extra = {}
    return Image(image.config, image.layers, image.media_type, {"_document": document}), foreign


async def _put_document(client, name: str, reference: str, document: dict, media_type: str = mediatypes.OCI_MANIFEST):
    return await client.put(f"/v2/{name}/manifests/{reference}", data=json.dumps(document).encode(), headers={"Content-Type": media_type})


async def test_non_distributable_layers_with_urls_need_not_be_pushed(client):
    image, foreign = foreign_image()
    document = image.extra["_document"]
    await push_blob(client, "foreign/app", image.config)
    await push_blob(client, "foreign/app", image.layers[1])
    accepted = await _put_document(client, "foreign/app", "v1", document)
    assert accepted.status == 201, await accepted.text()
    assert (await client.head(f"/v2/foreign/app/blobs/{foreign.digest}")).status == 404  # never pushed, never served
    # without urls it is a layer like any other; and every other reference is still checked
    no_urls = json.loads(json.dumps(document))
    del no_urls["layers"][0]["urls"]
    refused = await _put_document(client, "foreign/app", "v2", no_urls)
    assert refused.status == 404 and await error_codes(refused) == ["MANIFEST_BLOB_UNKNOWN"]
    missing_layer = json.loads(json.dumps(document))
    missing_layer["layers"][1]["digest"] = random_blob(10).digest
    assert await error_codes(await _put_document(client, "foreign/app", "v3", missing_layer)) == ["MANIFEST_BLOB_UNKNOWN"]
    docker_foreign = json.loads(json.dumps(document))
    docker_foreign["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    assert (await _put_document(client, "foreign/app", "v4", docker_foreign)).status == 201


async def test_sparse_manifests_are_refused_by_default_and_accepted_when_enabled(aiohttp_client, storage):
    child_one, child_two = random_image(layers=1), random_image(layers=1)
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [child_one.descriptor(platform={"architecture": "amd64", "os": "linux"}),
                                                                   child_two.descriptor(platform={"architecture": "arm64", "os": "linux"})]}
    strict = await aiohttp_client(create_app(storage))
    await push_image(strict, "sparse/app", child_one)  # one platform mirrored, the other not
    refused = await _put_document(strict, "sparse/app", "multi", index, INDEX)
    assert refused.status == 404 and await error_codes(refused) == ["MANIFEST_BLOB_UNKNOWN"]
    lax = await aiohttp_client(create_app(storage, Settings(registry=RegistryOptions(sparse_manifests=True))))
    accepted = await _put_document(lax, "sparse/app", "multi", index, INDEX)
    assert accepted.status == 201 and accepted.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(json.dumps(index).encode()).hexdigest()
    assert (await lax.get(f"/v2/sparse/app/manifests/{child_one.digest}")).status == 200
    assert (await lax.get(f"/v2/sparse/app/manifests/{child_two.digest}")).status == 404
    layerless = random_image(layers=2)
    await push_blob(lax, "sparse/app", layerless.config)  # the layers are not mirrored
    assert (await lax.put("/v2/sparse/app/manifests/partial", data=layerless.manifest, headers={"Content-Type": layerless.media_type})).status == 201
    lying = json.loads(layerless.manifest)
    lying["config"]["size"] += 1  # what is present is still checked
    assert (await _put_document(lax, "sparse/app", "liar", lying)).status == 400


async def test_sha512_blobs_and_manifests_end_to_end(client):
    config = Blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode(), mediatypes.OCI_CONFIG)
    layer = random_blob(3 * 1024 * 1024 + 5)
    started = await client.post("/v2/long/app/blobs/uploads/", params={"digest-algorithm": "sha512"})
    assert started.status == 202
    location = location_of(started)
    half = len(layer.data) // 2
    patched = await client.patch(location, data=io.BytesIO(layer.data[:half]),
                                 headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{half - 1}"})  # fmt: skip
    assert patched.status == 202
    done = await client.put(location_of(patched), params={"digest": sha512(layer.data)}, data=io.BytesIO(layer.data[half:]))
    assert done.status == 201 and done.headers["Docker-Content-Digest"] == sha512(layer.data)
    whole = await client.post("/v2/long/app/blobs/uploads/", params={"digest": sha512(config.data)}, data=config.data)
    assert whole.status == 201 and whole.headers["Docker-Content-Digest"] == sha512(config.data)
    unsupported = await client.post("/v2/long/app/blobs/uploads/", params={"digest-algorithm": "md5"})
    assert unsupported.status == 400 and await error_codes(unsupported) == ["DIGEST_INVALID"]
    head = await client.head(f"/v2/long/app/blobs/{sha512(layer.data)}")
    assert head.status == 200 and head.headers["Docker-Content-Digest"] == sha512(layer.data)

    document = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
                "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": sha512(config.data), "size": len(config.data)},
                "layers": [{"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": sha512(layer.data), "size": len(layer.data)}]}  # fmt: skip
    body = json.dumps(document).encode()
    digest = sha512(body)
    pushed = await client.put(f"/v2/long/app/manifests/{digest}", params=[("tag", "v1"), ("tag", "v1.0")], data=body,
                              headers={"Content-Type": mediatypes.OCI_MANIFEST})  # fmt: skip
    assert pushed.status == 201 and pushed.headers["Docker-Content-Digest"] == digest and oci_tags(pushed) == ["v1", "v1.0"]
    got = await client.get("/v2/long/app/manifests/v1", headers={"Accept": mediatypes.OCI_MANIFEST})
    assert await got.read() == body and got.headers["Docker-Content-Digest"] == digest
    by_tag = await client.put("/v2/long/app/manifests/plain", data=body, headers={"Content-Type": mediatypes.OCI_MANIFEST})
    assert by_tag.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(body).hexdigest()  # the spec's canonical algorithm
    # a referrer of the sha512 manifest, listed by the referrers API
    artifact = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha512(b"{}"), "size": 2},
                "layers": [], "subject": {"mediaType": mediatypes.OCI_MANIFEST, "digest": digest, "size": len(body)}}  # fmt: skip
    await client.post("/v2/long/app/blobs/uploads/", params={"digest": sha512(b"{}")}, data=b"{}")
    artifact_body = json.dumps(artifact).encode()
    referred = await client.put(f"/v2/long/app/manifests/{sha512(artifact_body)}", data=artifact_body,
                                headers={"Content-Type": mediatypes.OCI_MANIFEST})  # fmt: skip
    assert referred.status == 201 and referred.headers["OCI-Subject"] == digest
    listing = await (await client.get(f"/v2/long/app/referrers/{digest}")).json()
    assert [entry["digest"] for entry in listing["manifests"]] == [sha512(artifact_body)]
    assert sorted((await (await client.get("/v2/long/app/tags/list")).json())["tags"]) == ["plain", "v1", "v1.0"]
