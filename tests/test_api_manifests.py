"""Manifests: push, pull, negotiation, validation, tags, deletes, size limits."""

from __future__ import annotations

import io
import json

from ocispec import mediatypes
from tests.oci import Blob, error_codes, location_of, push_blob, push_image, random_blob, random_image, sha256


def index_of(*images, media_type: str = mediatypes.OCI_INDEX, **extra) -> bytes:
    platforms = [{"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [image.descriptor(platform=platforms[i % 2]) for i, image in enumerate(images)],
            **extra,
        }
    ).encode()


async def test_oci_manifest_round_trip_is_byte_exact(client):
    image = random_image()
    digest = await push_image(client, "acme/app", image, "v1")
    assert digest == image.digest
    for reference in ("v1", image.digest):
        response = await client.get(f"/v2/acme/app/manifests/{reference}", headers={"Accept": mediatypes.OCI_MANIFEST})
        assert response.status == 200
        assert response.headers["Content-Type"] == mediatypes.OCI_MANIFEST
        assert response.headers["Docker-Content-Digest"] == image.digest
        assert await response.read() == image.manifest


async def test_put_answers_201_with_location_and_digest(client):
    image = random_image()
    for blob in [image.config, *image.layers]:
        await push_blob(client, "acme/app", blob)
    response = await client.put("/v2/acme/app/manifests/latest", data=image.manifest, headers={"Content-Type": image.media_type})
    assert response.status == 201
    assert location_of(response) == f"/v2/acme/app/manifests/{image.digest}"
    assert response.headers["Docker-Content-Digest"] == image.digest


async def test_head_has_headers_and_no_body(client):
    image = random_image(docker=True)
    await push_image(client, "acme/app", image, "v1")
    response = await client.head("/v2/acme/app/manifests/v1")
    assert response.status == 200
    assert response.headers["Content-Type"] == mediatypes.DOCKER_MANIFEST
    assert response.headers["Content-Length"] == str(len(image.manifest))
    assert response.headers["Docker-Content-Digest"] == image.digest
    assert await response.read() == b""


async def test_docker_manifest_list_and_oci_index(client):
    amd, arm = random_image(docker=True), random_image(docker=True)
    await push_image(client, "acme/app", amd)
    await push_image(client, "acme/app", arm)
    for media_type in (mediatypes.DOCKER_MANIFEST_LIST, mediatypes.OCI_INDEX):
        body = index_of(amd, arm, media_type=media_type)
        response = await client.put("/v2/acme/app/manifests/multi", data=body, headers={"Content-Type": media_type})
        assert response.status == 201, await response.text()
        pulled = await client.get("/v2/acme/app/manifests/multi", headers={"Accept": media_type})
        assert pulled.headers["Content-Type"] == media_type
        assert await pulled.read() == body


async def test_index_referencing_unknown_manifest_is_manifest_blob_unknown(client):
    present, absent = random_image(), random_image()
    await push_image(client, "acme/app", present)
    response = await client.put(
        "/v2/acme/app/manifests/multi", data=index_of(present, absent), headers={"Content-Type": mediatypes.OCI_INDEX}
    )
    assert response.status == 404
    body = await response.json()
    assert body["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert body["errors"][0]["detail"] == {"digests": [absent.digest]}


async def test_manifest_with_missing_layer_is_refused_and_not_stored(client):
    image = random_image(layers=2)
    await push_blob(client, "acme/app", image.config)
    await push_blob(client, "acme/app", image.layers[0])
    response = await client.put("/v2/acme/app/manifests/v1", data=image.manifest, headers={"Content-Type": image.media_type})
    assert response.status == 404
    assert await error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert (await client.get("/v2/acme/app/manifests/v1")).status == 404
    assert (await client.get(f"/v2/acme/app/manifests/{image.digest}")).status == 404


async def test_blob_of_another_repository_does_not_satisfy_a_manifest(client):
    image = random_image(layers=1)
    for blob in [image.config, *image.layers]:
        await push_blob(client, "acme/other", blob)
    response = await client.put("/v2/acme/app/manifests/v1", data=image.manifest, headers={"Content-Type": image.media_type})
    assert response.status == 404
    assert await error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]


async def test_artifact_with_empty_config_and_artifact_type(client):
    empty = Blob(b"{}", mediatypes.OCI_EMPTY)
    assert empty.digest == mediatypes.EMPTY_JSON_DIGEST
    payload = random_blob(100, "application/vnd.example.sbom")
    await push_blob(client, "acme/app", empty)
    await push_blob(client, "acme/app", payload)
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": empty.descriptor(),
        "layers": [payload.descriptor()],
    }).encode()
    response = await client.put(f"/v2/acme/app/manifests/{sha256(body)}", data=body, headers={"Content-Type": mediatypes.OCI_MANIFEST})
    assert response.status == 201
    assert await (await client.get(f"/v2/acme/app/manifests/{sha256(body)}")).read() == body


async def test_media_type_taken_from_content_type_when_body_has_none(client):
    image = random_image()
    for blob in [image.config, *image.layers]:
        await push_blob(client, "acme/app", blob)
    document = json.loads(image.manifest)
    del document["mediaType"]
    body = json.dumps(document).encode()
    response = await client.put("/v2/acme/app/manifests/bare", data=body, headers={"Content-Type": mediatypes.OCI_MANIFEST})
    assert response.status == 201
    pulled = await client.get("/v2/acme/app/manifests/bare")
    assert pulled.headers["Content-Type"] == mediatypes.OCI_MANIFEST


async def test_malformed_manifests_are_manifest_invalid(client):
    image = random_image()
    for blob in [image.config, *image.layers]:
        await push_blob(client, "acme/app", blob)
    document = json.loads(image.manifest)
    bad_bodies = {
        "not json": b"blablabla",
        "not an object": b"[1, 2]",
        "schema 1": json.dumps({"schemaVersion": 1, "name": "acme/app", "tag": "v1", "fsLayers": []}).encode(),
        "wrong schemaVersion": json.dumps({**document, "schemaVersion": 3}).encode(),
        "bad layer digest": json.dumps({**document, "layers": [{**document["layers"][0], "digest": "sha256:xyz"}]}).encode(),
        "negative size": json.dumps({**document, "config": {**document["config"], "size": -1}}).encode(),
        "missing config": json.dumps({k: v for k, v in document.items() if k != "config"}).encode(),
        "unknown media type": json.dumps({**document, "mediaType": "application/vnd.example+json"}).encode(),
    }
    for case, body in bad_bodies.items():
        content_type = "application/json" if case in ("schema 1", "unknown media type") else mediatypes.OCI_MANIFEST
        response = await client.put("/v2/acme/app/manifests/v1", data=body, headers={"Content-Type": content_type})
        assert response.status == 400, case
        errors = (await response.json())["errors"]
        assert errors[0]["code"] == "MANIFEST_INVALID", case
        assert errors[0]["message"], case
    schema1 = await client.put("/v2/acme/app/manifests/v1", data=bad_bodies["schema 1"], headers={"Content-Type": mediatypes.DOCKER_SCHEMA1_SIGNED})
    assert "schema 1" in (await schema1.json())["errors"][0]["message"]
    assert (await client.get("/v2/acme/app/tags/list")).status == 200
    assert (await (await client.get("/v2/acme/app/tags/list")).json())["tags"] == []


async def test_content_type_contradicting_media_type_is_refused(client):
    image = random_image()
    for blob in [image.config, *image.layers]:
        await push_blob(client, "acme/app", blob)
    response = await client.put("/v2/acme/app/manifests/v1", data=image.manifest, headers={"Content-Type": mediatypes.DOCKER_MANIFEST})
    assert response.status == 400
    assert await error_codes(response) == ["MANIFEST_INVALID"]


async def test_put_by_digest_must_match_content(client):
    image = random_image()
    for blob in [image.config, *image.layers]:
        await push_blob(client, "acme/app", blob)
    wrong = sha256(b"not this manifest")
    response = await client.put(f"/v2/acme/app/manifests/{wrong}", data=image.manifest, headers={"Content-Type": image.media_type})
    assert response.status == 400
    assert await error_codes(response) == ["DIGEST_INVALID"]


async def test_invalid_tag_on_push_is_tag_invalid_and_on_pull_unknown(client):
    image = random_image()
    for blob in [image.config, *image.layers]:
        await push_blob(client, "acme/app", blob)
    response = await client.put("/v2/acme/app/manifests/.hidden", data=image.manifest, headers={"Content-Type": image.media_type})
    assert response.status == 400
    assert await error_codes(response) == ["TAG_INVALID"]
    too_long = await client.put("/v2/acme/app/manifests/" + "a" * 129, data=image.manifest, headers={"Content-Type": image.media_type})
    assert too_long.status == 400
    for method in ("GET", "HEAD", "DELETE"):
        response = await client.request(method, "/v2/acme/app/manifests/.INVALID_MANIFEST_NAME")
        assert response.status == 404, method


async def test_unknown_manifest_is_404_manifest_unknown(client):
    response = await client.get("/v2/acme/app/manifests/latest")
    assert response.status == 404
    assert await error_codes(response) == ["MANIFEST_UNKNOWN"]
    by_digest = await client.get(f"/v2/acme/app/manifests/{sha256(b'x')}")
    assert by_digest.status == 404
    bad_digest = await client.get("/v2/acme/app/manifests/sha256:totallywrong")
    assert bad_digest.status == 400
    assert await error_codes(bad_digest) == ["DIGEST_INVALID"]


async def test_accept_header_is_respected(client):
    image = random_image()
    await push_image(client, "acme/app", image, "v1")
    refused = await client.get("/v2/acme/app/manifests/v1", headers={"Accept": mediatypes.DOCKER_MANIFEST})
    assert refused.status == 404
    assert await error_codes(refused) == ["MANIFEST_UNKNOWN"]
    listed = await client.get("/v2/acme/app/manifests/v1", headers={"Accept": f"{mediatypes.DOCKER_MANIFEST}, {mediatypes.OCI_MANIFEST};q=0.9"})
    assert listed.status == 200
    repeated = await client.get("/v2/acme/app/manifests/v1", headers=[("Accept", mediatypes.DOCKER_MANIFEST), ("Accept", mediatypes.OCI_MANIFEST)])
    assert repeated.status == 200
    for anything in ("*/*", "application/json"):
        assert (await client.get("/v2/acme/app/manifests/v1", headers={"Accept": anything})).status == 200


async def test_four_mebibytes_accepted_and_larger_refused_with_413(client):
    image = random_image(layers=1)
    for blob in [image.config, *image.layers]:
        await push_blob(client, "acme/app", blob)
    document = json.loads(image.manifest)
    base = len(json.dumps({**document, "annotations": {"pad": ""}}).encode())
    fits = json.dumps({**document, "annotations": {"pad": "x" * (4 * 1024 * 1024 - base)}}).encode()
    assert len(fits) == 4 * 1024 * 1024
    accepted = await client.put("/v2/acme/app/manifests/big", data=io.BytesIO(fits), headers={"Content-Type": mediatypes.OCI_MANIFEST})
    assert accepted.status == 201
    assert await (await client.get("/v2/acme/app/manifests/big")).read() == fits
    larger = json.dumps({**document, "annotations": {"pad": "x" * (4 * 1024 * 1024)}}).encode()
    refused = await client.put("/v2/acme/app/manifests/bigger", data=io.BytesIO(larger), headers={"Content-Type": mediatypes.OCI_MANIFEST})
    assert refused.status == 413
    assert await error_codes(refused) == ["SIZE_INVALID"]
    assert (await client.get("/v2/acme/app/manifests/bigger")).status == 404


async def test_retag_moves_the_tag(client):
    first, second = random_image(), random_image()
    await push_image(client, "acme/app", first, "latest")
    await push_image(client, "acme/app", second, "latest")
    response = await client.get("/v2/acme/app/manifests/latest")
    assert response.headers["Docker-Content-Digest"] == second.digest
    assert (await client.get(f"/v2/acme/app/manifests/{first.digest}")).status == 200


async def test_delete_by_tag_removes_only_the_tag(client):
    image = random_image()
    await push_image(client, "acme/app", image, "v1")
    await push_image(client, "acme/app", image, "v2")
    response = await client.delete("/v2/acme/app/manifests/v1")
    assert response.status == 202
    assert (await client.get("/v2/acme/app/manifests/v1")).status == 404
    assert (await client.get("/v2/acme/app/manifests/v2")).status == 200
    assert (await client.get(f"/v2/acme/app/manifests/{image.digest}")).status == 200
    assert (await (await client.get("/v2/acme/app/tags/list")).json())["tags"] == ["v2"]
    again = await client.delete("/v2/acme/app/manifests/v1")
    assert again.status == 404
    assert await error_codes(again) == ["MANIFEST_UNKNOWN"]


async def test_delete_by_digest_removes_manifest_and_its_tags(client, storage):
    image, other = random_image(), random_image()
    await push_image(client, "acme/app", image, "v1")
    await push_image(client, "acme/app", image, "v2")
    await push_image(client, "acme/app", other, "keep")
    response = await client.delete(f"/v2/acme/app/manifests/{image.digest}")
    assert response.status == 202
    assert (await client.get(f"/v2/acme/app/manifests/{image.digest}")).status == 404
    assert (await client.get("/v2/acme/app/manifests/v1")).status == 404
    assert (await (await client.get("/v2/acme/app/tags/list")).json())["tags"] == ["keep"]
    # Layers stay: other manifests (or a concurrent push) may use them.
    assert (await client.head(f"/v2/acme/app/blobs/{image.layers[0].digest}")).status == 200
    missing = await client.delete(f"/v2/acme/app/manifests/{image.digest}")
    assert missing.status == 404


async def test_same_manifest_in_two_repositories_stored_once(client, storage):
    image = random_image()
    await push_image(client, "acme/one", image, "v1")
    await push_image(client, "acme/two", image, "v1")
    assert await storage.get_bytes(f"blobs/sha256/{image.digest[7:9]}/{image.digest[7:]}") == image.manifest
    await client.delete(f"/v2/acme/one/manifests/{image.digest}")
    assert await (await client.get("/v2/acme/two/manifests/v1")).read() == image.manifest


async def test_longest_repository_name_works_end_to_end(client):
    name = "/".join(["deep"] * 40 + ["x" * 55])
    assert len(name) == 255
    image = random_image()
    await push_image(client, name, image, "v1")
    assert await (await client.get(f"/v2/{name}/manifests/v1")).read() == image.manifest
    assert name in (await (await client.get("/v2/_catalog")).json())["repositories"]
    too_long = await client.get(f"/v2/{name}x/tags/list")
    assert too_long.status == 400
