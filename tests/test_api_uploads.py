"""Blob uploads in every pattern clients use, and every way they can go wrong."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import AsyncIterator

import pytest

from registry.api.app import create_app
from storage_backends.filesystem import FilesystemBackend
from tests.oci import error_codes, location_of, push_blob, random_blob, sha256, stored_keys


async def stored_files(storage, prefix: str) -> list[str]:
    return await stored_keys(storage, prefix)


async def start(client, name: str = "acme/app") -> str:
    response = await client.post(f"/v2/{name}/blobs/uploads/")
    assert response.status == 202
    return location_of(response)


async def chunked_body(data: bytes, pieces: int = 4) -> AsyncIterator[bytes]:
    step = max(1, len(data) // pieces)
    for offset in range(0, len(data), step):
        yield data[offset : offset + step]


async def test_session_post_answers_202_with_location_uuid_and_range(client):
    response = await client.post("/v2/acme/app/blobs/uploads/")
    assert response.status == 202
    upload_id = response.headers["Docker-Upload-UUID"]
    assert location_of(response) == f"/v2/acme/app/blobs/uploads/{upload_id}"
    assert response.headers["Range"] == "0-0"
    assert response.headers["Content-Length"] == "0"


async def test_monolithic_post_with_digest_stores_blob(client):
    blob = random_blob(2000)
    response = await client.post("/v2/acme/app/blobs/uploads/", params={"digest": blob.digest}, data=blob.data)
    assert response.status == 201
    assert location_of(response) == f"/v2/acme/app/blobs/{blob.digest}"
    assert response.headers["Docker-Content-Digest"] == blob.digest
    assert await (await client.get(location_of(response))).read() == blob.data


async def test_chunked_upload_with_content_range(client):
    blob = random_blob(100_000)
    location = await start(client)
    offset = 0
    for size in (30_000, 30_000, 40_000):
        chunk = blob.data[offset : offset + size]
        response = await client.patch(
            location,
            data=chunk,
            headers={"Content-Range": f"{offset}-{offset + size - 1}", "Content-Type": "application/octet-stream"},
        )
        assert response.status == 202, await response.text()
        offset += size
        assert response.headers["Range"] == f"0-{offset - 1}"
        location = location_of(response)
    status = await client.get(location)
    assert status.status == 204
    assert status.headers["Range"] == "0-99999"
    done = await client.put(location, params={"digest": blob.digest})
    assert done.status == 201
    assert done.headers["Docker-Content-Digest"] == blob.digest
    assert await (await client.get(f"/v2/acme/app/blobs/{blob.digest}")).read() == blob.data


async def test_out_of_order_and_overlapping_chunks_are_rejected_with_416(client):
    blob = random_blob(100)
    location = await start(client)
    gap = await client.patch(location, data=blob.data[50:], headers={"Content-Range": "50-99"})
    assert gap.status == 416
    assert gap.headers["Range"] == "0-0"
    first = await client.patch(location, data=blob.data[:60], headers={"Content-Range": "0-59"})
    assert first.status == 202
    overlap = await client.patch(location, data=blob.data[50:], headers={"Content-Range": "50-99"})
    assert overlap.status == 416
    assert overlap.headers["Range"] == "0-59"
    assert (await client.get(location)).headers["Range"] == "0-59"
    rest = await client.patch(location, data=blob.data[60:], headers={"Content-Range": "60-99"})
    assert rest.status == 202
    assert (await client.put(location, params={"digest": blob.digest})).status == 201


async def test_docker_style_streaming_patch_then_empty_put(client):
    blob = random_blob(3 * 1024 * 1024 + 5)
    location = await start(client)
    # Chunked transfer encoding, no Content-Range and no Content-Length: what docker sends.
    response = await client.patch(location, data=chunked_body(blob.data, 7))
    assert response.status == 202
    assert response.headers["Range"] == f"0-{len(blob.data) - 1}"
    done = await client.put(location_of(response), params={"digest": blob.digest})
    assert done.status == 201
    assert await (await client.get(f"/v2/acme/app/blobs/{blob.digest}")).read() == blob.data


async def test_containerd_style_single_put_with_whole_body(client):
    blob = random_blob(200_000)
    location = await start(client)
    done = await client.put(location, params={"digest": blob.digest}, data=chunked_body(blob.data))
    assert done.status == 201
    assert done.headers["Docker-Content-Digest"] == blob.digest
    assert await (await client.get(f"/v2/acme/app/blobs/{blob.digest}")).read() == blob.data


async def test_digest_mismatch_is_digest_invalid_and_stores_nothing(client, storage):
    blob = random_blob(1000)
    wrong = sha256(b"something else")
    location = await start(client)
    await client.patch(location, data=blob.data)
    response = await client.put(location, params={"digest": wrong})
    assert response.status == 400
    assert await error_codes(response) == ["DIGEST_INVALID"]
    assert await stored_files(storage, "blobs") == []
    assert await stored_files(storage, "repositories/acme/app/_uploads") == []
    assert (await client.head(f"/v2/acme/app/blobs/{wrong}")).status == 404
    assert (await client.head(f"/v2/acme/app/blobs/{blob.digest}")).status == 404
    monolithic = await client.post("/v2/acme/app/blobs/uploads/", params={"digest": wrong}, data=blob.data)
    assert monolithic.status == 400
    assert await error_codes(monolithic) == ["DIGEST_INVALID"]
    assert await stored_files(storage, "blobs") == []


async def test_chunk_shorter_than_its_content_range_is_rolled_back(client):
    blob = random_blob(100)
    location = await start(client)
    assert (await client.patch(location, data=blob.data[:40], headers={"Content-Range": "0-39"})).status == 202
    short = await client.patch(location, data=chunked_body(blob.data[40:70]), headers={"Content-Range": "40-99"})
    assert short.status == 400
    assert await error_codes(short) == ["SIZE_INVALID"]
    assert (await client.get(location)).headers["Range"] == "0-39"
    rest = await client.patch(location, data=blob.data[40:], headers={"Content-Range": "40-99"})
    assert rest.status == 202
    assert (await client.put(location, params={"digest": blob.digest})).status == 201


async def test_content_length_disagreeing_with_content_range_is_refused(client):
    location = await start(client)
    response = await client.patch(location, data=b"x" * 10, headers={"Content-Range": "0-19"})
    assert response.status == 400
    assert await error_codes(response) == ["BLOB_UPLOAD_INVALID"]
    malformed = await client.patch(location, data=b"x" * 10, headers={"Content-Range": "zero-nine"})
    assert malformed.status == 400
    assert (await client.get(location)).headers["Range"] == "0-0"


async def test_put_without_digest_is_digest_invalid(client):
    location = await start(client)
    response = await client.put(location)
    assert response.status == 400
    assert await error_codes(response) == ["DIGEST_INVALID"]


async def test_cancel_deletes_session(client, storage):
    location = await start(client)
    await client.patch(location, data=b"partial")
    response = await client.delete(location)
    assert response.status == 204
    status = await client.get(location)
    assert status.status == 404
    assert await error_codes(status) == ["BLOB_UPLOAD_UNKNOWN"]
    assert await stored_files(storage, "repositories/acme/app/_uploads") == []


async def test_unknown_or_foreign_upload_is_blob_upload_unknown(client):
    location = await start(client, "acme/app")
    upload_id = location.rsplit("/", 1)[1]
    for url in [f"/v2/other/app/blobs/uploads/{upload_id}", "/v2/acme/app/blobs/uploads/" + "0" * 32, "/v2/acme/app/blobs/uploads/..%2F..%2Fetc"]:
        response = await client.patch(url, data=b"data")
        assert response.status == 404, url
        assert await error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]


async def test_cross_repository_mount(client):
    blob = random_blob(500)
    await push_blob(client, "acme/base", blob)
    mounted = await client.post("/v2/acme/app/blobs/uploads/", params={"mount": blob.digest, "from": "acme/base"})
    assert mounted.status == 201
    assert location_of(mounted) == f"/v2/acme/app/blobs/{blob.digest}"
    assert mounted.headers["Docker-Content-Digest"] == blob.digest
    assert await (await client.get(f"/v2/acme/app/blobs/{blob.digest}")).read() == blob.data


async def test_mount_from_repository_without_the_blob_starts_an_upload(client):
    blob = random_blob(500)
    await push_blob(client, "acme/base", blob)
    response = await client.post("/v2/acme/app/blobs/uploads/", params={"mount": blob.digest, "from": "acme/empty"})
    assert response.status == 202
    assert location_of(response).startswith("/v2/acme/app/blobs/uploads/")
    assert (await client.head(f"/v2/acme/app/blobs/{blob.digest}")).status == 404


async def test_mount_without_from_links_a_blob_the_registry_has(client):
    blob = random_blob(500)
    await push_blob(client, "acme/base", blob)
    response = await client.post("/v2/acme/app/blobs/uploads/", params={"mount": blob.digest})
    assert response.status == 201
    unknown = await client.post("/v2/acme/app/blobs/uploads/", params={"mount": random_blob(5).digest})
    assert unknown.status == 202


async def test_upload_continues_after_restart_and_is_verified(aiohttp_client, storage):
    """A fresh process has no running hash in memory: it goes on from the saved hash state
    (filesystem) or completion re-reads the appended bytes (S3); either way a wrong digest is
    refused and the right one accepted."""
    blob = random_blob(2_500_000)
    first = await aiohttp_client(create_app(storage))
    location = await start(first)
    assert (await first.patch(location, data=blob.data[:1_000_000], headers={"Content-Range": "0-999999"})).status == 202

    second = await aiohttp_client(create_app(storage))
    status = await second.get(location)
    assert status.status == 204
    assert status.headers["Range"] == "0-999999"
    rest = await second.patch(location, data=io.BytesIO(blob.data[1_000_000:]), headers={"Content-Range": f"1000000-{len(blob.data) - 1}"})
    assert rest.status == 202
    wrong = await second.put(location, params={"digest": sha256(b"other")})
    assert wrong.status == 400
    assert (await second.get(location)).status == 404  # a failed verification discards the session

    third_location = await start(second)
    await second.patch(third_location, data=io.BytesIO(blob.data))
    third = await aiohttp_client(create_app(storage))
    done = await third.put(third_location, params={"digest": blob.digest})
    assert done.status == 201
    assert await (await third.get(f"/v2/acme/app/blobs/{blob.digest}")).read() == blob.data


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
async def test_chunks_through_different_processes_are_hashed_once(aiohttp_client, storage, monkeypatch, algorithm):
    """POST, each PATCH and the PUT reach another process (another app over the same storage,
    as with worker processes and replicas). The filesystem appends exclusively, so each process
    goes on from the hash state the previous append saved and completion reads nothing back;
    on S3 completion re-reads the bytes once. Both verify the digest."""
    rereads: list[str] = []
    read_appended = storage.read_appended

    def counted(path: str) -> AsyncIterator[bytes]:
        rereads.append(path)
        return read_appended(path)

    monkeypatch.setattr(storage, "read_appended", counted)
    data = random_blob(3_000_000).data
    digest = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    apps = [await aiohttp_client(create_app(storage)) for _ in range(4)]
    started = await apps[0].post("/v2/acme/app/blobs/uploads/", params={"digest-algorithm": algorithm})
    location = location_of(started)
    for app, (first, last) in zip(apps[1:3], [(0, 999_999), (1_000_000, 1_999_999)]):
        response = await app.patch(location, data=data[first : last + 1], headers={"Content-Range": f"{first}-{last}"})
        assert response.status == 202, await response.text()
    done = await apps[3].put(location, params={"digest": digest}, data=data[2_000_000:])
    assert done.status == 201, await done.text()
    assert await (await apps[0].get(f"/v2/acme/app/blobs/{digest}")).read() == data
    assert len(rereads) == {"filesystem": 0, "s3": 1}[storage.name]


async def test_a_chunk_sent_while_another_process_writes_one_is_refused_with_416(aiohttp_client, tmp_path):
    """Two PATCHes of one upload at once through two processes (a client breaking the
    one-chunk-at-a-time rule): the one that finds the other appending is refused with 416
    RANGE_INVALID and writes nothing; the first completes, and so does the upload."""
    storage = FilesystemBackend(tmp_path / "store")
    first, second = [await aiohttp_client(create_app(storage)) for _ in range(2)]
    location = await start(first)
    head, tail = random_blob(1_500_000).data, b"tail of the chunk"
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield head
        await release.wait()
        yield tail

    patching = asyncio.create_task(first.patch(location, data=slow()))
    appending = None
    deadline = time.monotonic() + 20
    while appending is None or appending.stat().st_size < 1024 * 1024:  # the first MiB is on disk: the append holds its lock
        assert time.monotonic() < deadline, "the first PATCH never started writing"
        await asyncio.sleep(0.02)
        appending = next((tmp_path / "store").glob("repositories/acme/app/_uploads/*/.data.append"), None)
    refused = await second.patch(location, data=b"intruder")
    assert refused.status == 416
    assert await error_codes(refused) == ["RANGE_INVALID"]
    release.set()
    assert (await patching).status == 202
    whole = head + tail
    done = await second.put(location, params={"digest": sha256(whole)})
    assert done.status == 201
    assert await (await second.get(f"/v2/acme/app/blobs/{sha256(whole)}")).read() == whole


async def test_empty_blob_upload(client):
    empty_digest = sha256(b"")
    location = await start(client)
    done = await client.put(location, params={"digest": empty_digest})
    assert done.status == 201
    response = await client.get(f"/v2/acme/app/blobs/{empty_digest}")
    assert response.status == 200
    assert await response.read() == b""


async def test_automatic_mount_can_be_turned_off(aiohttp_client, storage):
    from registry.api.app import create_app
    from registry.config import RegistryOptions, Settings

    client = await aiohttp_client(create_app(storage, Settings(registry=RegistryOptions(automatic_mount=False))))
    blob = random_blob(500)
    await push_blob(client, "acme/base", blob)
    without_from = await client.post("/v2/acme/app/blobs/uploads/", params={"mount": blob.digest})
    assert without_from.status == 202
    assert (await client.head(f"/v2/acme/app/blobs/{blob.digest}")).status == 404
    with_from = await client.post("/v2/acme/app/blobs/uploads/", params={"mount": blob.digest, "from": "acme/base"})
    assert with_from.status == 201


async def test_abandoned_sessions_are_purged_and_fresh_ones_kept(client, storage):
    from registry.api.context import SERVICES
    from registry.api.v2.errors import upload_location

    old = await start(client, "acme/app")
    await client.patch(old, data=b"abandoned bytes")
    uploads = client.app[SERVICES].uploads
    import time

    later = time.time() + 2 * 3600
    fresh = await start(client, "acme/other")
    purged = await uploads.purge_stale(3600, now=later)  # both are over an hour old at `later`
    assert sorted(upload_location(upload) for upload in purged) == sorted([old, fresh])
    assert (await client.get(old)).status == 404
    assert await stored_files(storage, "repositories/acme/app/_uploads") == []

    kept = await start(client, "acme/app")
    assert await uploads.purge_stale(3600) == []
    assert (await client.get(kept)).status == 204


def test_uploads_purge_command(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "registry", "uploads", "purge", "--older-than", "1", "--storage-root", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "purged 0 upload sessions and 0 leftovers of interrupted writes (0 bytes)"
