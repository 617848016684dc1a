"""The referrers API: subjects indexed on push, filtered, kept in step with deletes."""

from __future__ import annotations

import json

from ocispec import mediatypes
from tests.oci import Blob, push_blob, push_image, random_blob, random_image, sha256

SBOM = "application/vnd.example.sbom"
SIGNATURE = "application/vnd.example.signature"


async def push_artifact(client, name: str, subject, artifact_type: str, annotations: dict | None = None) -> str:
    empty = Blob(b"{}", mediatypes.OCI_EMPTY)
    payload = random_blob(50, artifact_type)
    await push_blob(client, name, empty)
    await push_blob(client, name, payload)
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty.descriptor(),
        "layers": [payload.descriptor()],
        "subject": subject.descriptor(),
    }
    if annotations:
        document["annotations"] = annotations
    body = json.dumps(document).encode()
    response = await client.put(f"/v2/{name}/manifests/{sha256(body)}", data=body, headers={"Content-Type": mediatypes.OCI_MANIFEST})
    assert response.status == 201
    assert response.headers["OCI-Subject"] == subject.digest
    return sha256(body)


async def test_referrers_lists_artifacts_with_annotations_and_filters(client):
    image = random_image()
    await push_image(client, "acme/app", image, "v1")
    sbom = await push_artifact(client, "acme/app", image, SBOM, {"created-by": "test"})
    signature = await push_artifact(client, "acme/app", image, SIGNATURE)

    response = await client.get(f"/v2/acme/app/referrers/{image.digest}")
    assert response.status == 200
    assert response.headers["Content-Type"] == mediatypes.OCI_INDEX
    index = await response.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == mediatypes.OCI_INDEX
    by_digest = {entry["digest"]: entry for entry in index["manifests"]}
    assert set(by_digest) == {sbom, signature}
    assert by_digest[sbom]["artifactType"] == SBOM
    assert by_digest[sbom]["annotations"] == {"created-by": "test"}
    assert "annotations" not in by_digest[signature]
    assert "OCI-Filters-Applied" not in response.headers

    filtered = await client.get(f"/v2/acme/app/referrers/{image.digest}", params={"artifactType": SIGNATURE})
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [entry["digest"] for entry in (await filtered.json())["manifests"]] == [signature]


async def test_subject_may_be_missing_and_referrers_never_404(client):
    absent = random_image()
    artifact = await push_artifact(client, "acme/app", absent, SBOM)
    listed = await (await client.get(f"/v2/acme/app/referrers/{absent.digest}")).json()
    assert [entry["digest"] for entry in listed["manifests"]] == [artifact]
    nothing = await client.get(f"/v2/nobody/here/referrers/{sha256(b'x')}")
    assert nothing.status == 200
    assert (await nothing.json())["manifests"] == []
    invalid = await client.get("/v2/acme/app/referrers/sha256:nope")
    assert invalid.status == 400


async def test_image_manifest_without_artifact_type_reports_config_media_type(client):
    subject = random_image()
    referrer = random_image(subject=subject.descriptor())
    await push_image(client, "acme/app", referrer)
    listed = await (await client.get(f"/v2/acme/app/referrers/{subject.digest}")).json()
    assert listed["manifests"] == [{"mediaType": mediatypes.OCI_MANIFEST, "digest": referrer.digest, "size": len(referrer.manifest), "artifactType": mediatypes.OCI_CONFIG}]


async def test_deleting_a_referrer_removes_it_from_the_list(client):
    image = random_image()
    await push_image(client, "acme/app", image, "v1")
    artifact = await push_artifact(client, "acme/app", image, SBOM)
    assert (await client.delete(f"/v2/acme/app/manifests/{artifact}")).status == 202
    listed = await (await client.get(f"/v2/acme/app/referrers/{image.digest}")).json()
    assert listed["manifests"] == []


async def test_referrers_are_scoped_to_the_repository(client):
    image = random_image()
    await push_image(client, "acme/app", image, "v1")
    await push_artifact(client, "acme/app", image, SBOM)
    other = await (await client.get(f"/v2/acme/other/referrers/{image.digest}")).json()
    assert other["manifests"] == []
