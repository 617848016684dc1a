"""The registry on S3: presigned redirects, dedup in the bucket, and stateless replicas."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp

from registry.api.app import create_app
from storage_backends.s3 import S3Backend
from tests.conftest import s3_settings_env, start_registry, stop_process
from tests.oci import location_of, push_blob, push_image, random_blob, random_image, sha256
from tests.s3server import REGION, Bucket

PREFIX = "registry"


def s3_backend(bucket: Bucket, redirect: bool) -> S3Backend:
    return S3Backend(bucket.name, prefix=PREFIX, region=REGION, endpoint_url=bucket.server.url, redirect=redirect)


def bucket_keys(bucket: Bucket, prefix: str) -> list[str]:
    client = bucket.server.client()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name, Prefix=f"{PREFIX}/{prefix}"):
        keys += [entry["Key"] for entry in page.get("Contents", [])]
    return keys


async def test_blob_get_redirects_to_presigned_url_and_range_works_there(aiohttp_client, s3_bucket):
    client = await aiohttp_client(create_app(s3_backend(s3_bucket, redirect=True)))
    blob = random_blob(100_000)
    await push_blob(client, "acme/app", blob)
    response = await client.get(f"/v2/acme/app/blobs/{blob.digest}", allow_redirects=False)
    assert response.status == 307
    location = response.headers["Location"]  # a presigned URL of the bucket, not of the registry
    assert location.startswith(s3_bucket.server.url) and "Signature" in location
    assert response.headers["Docker-Content-Digest"] == blob.digest
    async with aiohttp.ClientSession() as direct:
        async with direct.get(location) as whole:
            assert whole.status == 200
            assert await whole.read() == blob.data
        async with direct.get(location, headers={"Range": "bytes=1000-1999"}) as part:
            assert part.status == 206
            assert await part.read() == blob.data[1000:2000]
    followed = await client.get(f"/v2/acme/app/blobs/{blob.digest}", headers={"Range": "bytes=-10"})
    assert followed.status == 206
    assert await followed.read() == blob.data[-10:]
    head = await client.head(f"/v2/acme/app/blobs/{blob.digest}", allow_redirects=False)
    assert head.status == 200, "HEAD never redirects"
    assert head.headers["Content-Length"] == "100000"
    unknown = await client.get(f"/v2/acme/app/blobs/{random_blob(1).digest}", allow_redirects=False)
    assert unknown.status == 404, "only linked blobs are redirected"


async def test_streaming_mode_serves_ranges_itself(aiohttp_client, s3_bucket):
    client = await aiohttp_client(create_app(s3_backend(s3_bucket, redirect=False)))
    blob = random_blob(50_000)
    await push_blob(client, "acme/app", blob)
    response = await client.get(f"/v2/acme/app/blobs/{blob.digest}", headers={"Range": "bytes=10-19"}, allow_redirects=False)
    assert response.status == 206
    assert response.headers["Content-Range"] == "bytes 10-19/50000"
    assert await response.read() == blob.data[10:20]


async def test_same_layer_in_fifty_repositories_is_one_object_in_the_bucket(aiohttp_client, s3_bucket):
    client = await aiohttp_client(create_app(s3_backend(s3_bucket, redirect=False)))
    layer = random_blob(200_000)
    await push_blob(client, "team/repo0", layer)
    for index in range(1, 50):
        if index % 2:  # half by cross-repository mount, half by a fresh upload of the same bytes
            mounted = await client.post(f"/v2/team/repo{index}/blobs/uploads/", params={"mount": layer.digest, "from": "team/repo0"})
            assert mounted.status == 201
        else:
            await push_blob(client, f"team/repo{index}", layer)
    assert bucket_keys(s3_bucket, "blobs/") == [f"{PREFIX}/blobs/sha256/{layer.digest[7:9]}/{layer.digest[7:]}"]
    assert len(bucket_keys(s3_bucket, "catalog/")) == 50
    for index in (0, 25, 49):
        assert await (await client.get(f"/v2/team/repo{index}/blobs/{layer.digest}")).read() == layer.data


async def test_two_replicas_on_one_bucket(s3_bucket, postgres_url, tmp_path: Path):
    """Upload begun on A finished on B; manifest pushed via A pulled via B; tag moved via B seen by A."""
    env = s3_settings_env(s3_bucket, metadata_url=postgres_url, prefix=PREFIX, redirect=False)
    a = start_registry(tmp_path / "a", env=env)
    b = start_registry(tmp_path / "b", env=env)
    try:
        async with aiohttp.ClientSession() as http:
            blob = random_blob(6 * 1024 * 1024 + 123)
            async with http.post(f"{a.url}/v2/acme/app/blobs/uploads/") as started:
                location = location_of(started)
            half = 3 * 1024 * 1024
            async with http.patch(f"{a.url}{location}", data=io.BytesIO(blob.data[:half]), headers={"Content-Range": f"0-{half - 1}"}) as first:
                assert first.status == 202
            async with http.get(f"{b.url}{location}") as status:
                assert status.status == 204 and status.headers["Range"] == f"0-{half - 1}"
            async with http.patch(f"{b.url}{location}", data=io.BytesIO(blob.data[half:]), headers={"Content-Range": f"{half}-{len(blob.data) - 1}"}) as second:
                assert second.status == 202
            async with http.put(f"{a.url}{location}", params={"digest": blob.digest}) as done:
                assert done.status == 201, await done.text()
            async with http.get(f"{b.url}/v2/acme/app/blobs/{blob.digest}") as pulled:
                assert await pulled.read() == blob.data

            class Session:
                """push_image's client interface over a plain session and one replica's URL."""

                def __init__(self, base: str) -> None:
                    self.base = base

                def post(self, path, **kw):
                    return http.post(self.base + path, **kw)

                def put(self, path, **kw):
                    return http.put(self.base + path, **kw)

            first_image, second_image = random_image(), random_image()
            await push_image(Session(a.url), "acme/app", first_image, "latest")
            async with http.get(f"{b.url}/v2/acme/app/manifests/latest") as via_b:
                assert await via_b.read() == first_image.manifest
            await push_image(Session(b.url), "acme/app", second_image, "latest")
            async with http.get(f"{a.url}/v2/acme/app/manifests/latest") as via_a:
                assert via_a.headers["Docker-Content-Digest"] == second_image.digest
            async with http.delete(f"{a.url}/v2/acme/app/manifests/latest") as deleted:
                assert deleted.status == 202
            async with http.get(f"{b.url}/v2/acme/app/manifests/latest") as gone:
                assert gone.status == 404
            async with http.get(f"{b.url}/v2/acme/app/tags/list") as tags:
                assert (await tags.json())["tags"] == []
    finally:
        stop_process(a.process)
        stop_process(b.process)


async def test_upload_survives_a_restart_on_s3(s3_bucket, postgres_url, tmp_path: Path):
    env = s3_settings_env(s3_bucket, metadata_url=postgres_url, prefix=PREFIX, redirect=False)
    data = random_blob(300_000).data
    first = start_registry(tmp_path / "first", env=env)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{first.url}/v2/acme/app/blobs/uploads/") as started:
                location = location_of(started)
            async with http.patch(f"{first.url}{location}", data=data[:100_000]) as patched:
                assert patched.status == 202
    finally:
        stop_process(first.process)
    second = start_registry(tmp_path / "second", env=env)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.patch(f"{second.url}{location}", data=data[100_000:], headers={"Content-Range": f"100000-{len(data) - 1}"}) as patched:
                assert patched.status == 202
            async with http.put(f"{second.url}{location}", params={"digest": sha256(data)}) as done:
                assert done.status == 201
    finally:
        stop_process(second.process)
