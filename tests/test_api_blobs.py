"""Blob reads and deletes: headers, ranges, repository scoping, dedup."""

from __future__ import annotations

import asyncio

from tests.oci import error_codes, push_blob, random_blob, stored_keys


async def test_head_reports_size_digest_and_etag_without_body(client):
    blob = random_blob(5000)
    await push_blob(client, "acme/app", blob)
    response = await client.head(f"/v2/acme/app/blobs/{blob.digest}")
    assert response.status == 200
    assert response.headers["Content-Length"] == "5000"
    assert response.headers["Docker-Content-Digest"] == blob.digest
    assert response.headers["ETag"] == f'"{blob.digest}"'
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert await response.read() == b""


async def test_head_of_an_unknown_blob_keeps_the_connection_with_the_error_bodys_length(client):
    """A HEAD error answers with the headers its GET would have (Content-Type, Content-Length of
    the JSON error) and no body, as distribution does: a client can then tell where the answer
    ends and reuse the connection (without a length, aiohttp's client drops it and reconnects)."""
    missing = random_blob(10).digest
    body = await (await client.get(f"/v2/acme/app/blobs/{missing}")).read()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        for _ in range(2):  # the second HEAD on the same connection, then a GET
            writer.write(f"HEAD /v2/acme/app/blobs/{missing} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            assert head.startswith("http/1.1 404 "), head
            assert f"content-length: {len(body)}\r\n" in head and "content-type: application/json" in head, head
            assert "connection: close" not in head
        writer.write(f"GET /v2/acme/app/blobs/{missing} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 404 ")
        assert await reader.readexactly(len(body)) == body, "no HEAD body was left on the connection before the GET's answer"
    finally:
        writer.close()


async def test_get_streams_exact_bytes(client):
    blob = random_blob(3 * 1024 * 1024 + 17)
    await push_blob(client, "acme/app", blob)
    response = await client.get(f"/v2/acme/app/blobs/{blob.digest}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert await response.read() == blob.data


async def test_range_requests_answer_206_with_content_range(client):
    blob = random_blob(1000)
    await push_blob(client, "acme/app", blob)
    url = f"/v2/acme/app/blobs/{blob.digest}"
    cases = {"bytes=0-99": (0, 100), "bytes=900-": (900, 1000), "bytes=-10": (990, 1000), "bytes=995-5000": (995, 1000)}
    for header, (start, end) in cases.items():
        response = await client.get(url, headers={"Range": header})
        assert response.status == 206, header
        assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/1000"
        assert response.headers["Content-Length"] == str(end - start)
        assert await response.read() == blob.data[start:end]


async def test_unsatisfiable_range_is_416_with_size(client):
    blob = random_blob(100)
    await push_blob(client, "acme/app", blob)
    response = await client.get(f"/v2/acme/app/blobs/{blob.digest}", headers={"Range": "bytes=100-200"})
    assert response.status == 416
    assert response.headers["Content-Range"] == "bytes */100"
    assert await error_codes(response) == ["RANGE_INVALID"]


async def test_malformed_range_is_ignored_and_whole_blob_served(client):
    blob = random_blob(100)
    await push_blob(client, "acme/app", blob)
    response = await client.get(f"/v2/acme/app/blobs/{blob.digest}", headers={"Range": "lines=1-2"})
    assert response.status == 200
    assert await response.read() == blob.data


async def test_unknown_blob_is_404_blob_unknown(client):
    missing = random_blob(10)
    response = await client.get(f"/v2/acme/app/blobs/{missing.digest}")
    assert response.status == 404
    assert await error_codes(response) == ["BLOB_UNKNOWN"]
    head = await client.head(f"/v2/acme/app/blobs/{missing.digest}")
    assert head.status == 404
    assert await head.read() == b""


async def test_invalid_digest_is_400_digest_invalid(client):
    for digest in ["sha256:short", "md5:abc", "nonsense", "sha256:" + "G" * 64]:
        response = await client.get(f"/v2/acme/app/blobs/{digest}")
        assert response.status == 400, digest
        assert await error_codes(response) == ["DIGEST_INVALID"]


async def test_blob_is_served_only_from_repositories_that_link_it(client):
    blob = random_blob(64)
    await push_blob(client, "acme/app", blob)
    response = await client.get(f"/v2/other/app/blobs/{blob.digest}")
    assert response.status == 404
    assert await error_codes(response) == ["BLOB_UNKNOWN"]


async def test_same_blob_in_many_repositories_is_stored_once(client, storage):
    blob = random_blob(4096)
    for index in range(5):
        await push_blob(client, f"team/repo{index}", blob)
    stored = await stored_keys(storage, "blobs")
    assert stored == [f"blobs/sha256/{blob.digest[7:9]}/{blob.digest[7:]}"]
    assert await storage.get_bytes(stored[0]) == blob.data


async def test_delete_unlinks_from_one_repository_only(client):
    blob = random_blob(64)
    await push_blob(client, "acme/one", blob)
    await push_blob(client, "acme/two", blob)
    response = await client.delete(f"/v2/acme/one/blobs/{blob.digest}")
    assert response.status == 202
    assert (await client.head(f"/v2/acme/one/blobs/{blob.digest}")).status == 404
    again = await client.get(f"/v2/acme/two/blobs/{blob.digest}")
    assert again.status == 200
    assert await again.read() == blob.data
    second = await client.delete(f"/v2/acme/one/blobs/{blob.digest}")
    assert second.status == 404
    assert await error_codes(second) == ["BLOB_UNKNOWN"]


async def test_deleting_a_blob_never_breaks_a_concurrent_push_that_references_it(client, storage):
    """The delete rule: a DELETE unlinks the blob from one repository and never removes the shared
    content, so a push racing it (mounting or re-uploading the same digest elsewhere) stays whole."""
    import asyncio

    from tests.oci import Image

    for round_number in range(5):
        image = Image(random_blob(64, "application/vnd.oci.image.config.v1+json"), [random_blob(2048)])
        layer = image.layers[0]
        await push_blob(client, "team/source", image.config)
        await push_blob(client, "team/source", layer)

        async def delete_from_source() -> int:
            return (await client.delete(f"/v2/team/source/blobs/{layer.digest}")).status

        async def mount_into_target() -> int:
            return (await client.post("/v2/team/target/blobs/uploads/", params={"mount": layer.digest, "from": "team/source"})).status

        deleted, mounted = await asyncio.gather(delete_from_source(), mount_into_target())
        assert deleted == 202
        if mounted != 201:  # the delete won: the pusher uploads the bytes instead
            assert mounted == 202
            await push_blob(client, "team/target", layer)
        await push_blob(client, "team/target", image.config)
        manifest = await client.put(f"/v2/team/target/manifests/round{round_number}", data=image.manifest, headers={"Content-Type": image.media_type})
        assert manifest.status == 201, await manifest.text()
        served = await client.get(f"/v2/team/target/blobs/{layer.digest}")
        assert served.status == 200 and await served.read() == layer.data
        assert (await client.head(f"/v2/team/source/blobs/{layer.digest}")).status == 404
