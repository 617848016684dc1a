"""Hostile and racing clients against the registry: writes beside deletes never answer 5xx,
hostile JSON is a 400, every path parameter is checked, descriptor sizes are verified.
Races run for a bounded number of rounds with real concurrency over real sockets."""

from __future__ import annotations

import asyncio
import json
import traceback
from pathlib import Path

from storage_backends.filesystem import FilesystemBackend
from tests.oci import error_codes, location_of, push_blob, push_image, random_blob, random_image

ROUNDS = 60


async def test_filesystem_writes_beside_deletes_that_prune_their_directory_never_fail(tmp_path: Path) -> None:
    backend = FilesystemBackend(tmp_path / "store")
    failures: list[str] = []

    async def churn(worker: int) -> None:
        for _ in range(300):
            try:
                await backend.put_bytes(f"repositories/r/_manifests/tags/t/current/link{worker}", b"x")
                await backend.delete(f"repositories/r/_manifests/tags/t/current/link{worker}")
                await backend.append(f"_uploads/u{worker}/data", _chunks(b"y"))
                await backend.commit_append(f"_uploads/u{worker}/data", f"repositories/r/_layers/l{worker}")
                await backend.delete(f"repositories/r/_layers/l{worker}")
            except Exception:
                failures.append(traceback.format_exc())

    await asyncio.gather(*(churn(worker) for worker in range(4)))
    assert not failures, failures[0]
    assert await backend.list("repositories") == []  # and nothing left behind


async def _chunks(data: bytes):
    yield data


async def test_tag_puts_racing_tag_deletes_never_answer_5xx(client) -> None:
    image = random_image()
    await push_image(client, "race/tags", image, "seed")
    statuses: list[int] = []

    async def put() -> None:
        for _ in range(ROUNDS):
            response = await client.put("/v2/race/tags/manifests/t", data=image.manifest, headers={"Content-Type": image.media_type})
            statuses.append(response.status)

    async def delete() -> None:
        for _ in range(ROUNDS):
            response = await client.delete("/v2/race/tags/manifests/t")
            statuses.append(response.status)

    await asyncio.gather(put(), delete(), put())
    assert all(status < 500 for status in statuses), sorted(set(statuses))
    final = await client.put("/v2/race/tags/manifests/t", data=image.manifest, headers={"Content-Type": image.media_type})
    assert final.status == 201
    assert (await client.get("/v2/race/tags/manifests/t", headers={"Accept": image.media_type})).status == 200


async def test_mounts_and_uploads_racing_blob_deletes_never_answer_5xx(client) -> None:
    blob = random_blob(4096)
    await push_blob(client, "race/source", blob)
    statuses: list[int] = []

    async def mount() -> None:
        for _ in range(ROUNDS):
            response = await client.post("/v2/race/target/blobs/uploads/", params={"mount": blob.digest, "from": "race/source"})
            statuses.append(response.status)
            if response.status == 202:  # the source went: push it again, as a client would
                await push_blob(client, "race/source", blob)

    async def delete() -> None:
        for _ in range(ROUNDS):
            response = await client.delete(f"/v2/race/target/blobs/{blob.digest}")
            statuses.append(response.status)

    async def upload(worker: int) -> None:
        for _ in range(ROUNDS // 2):
            data = random_blob(512)
            response = await client.post(f"/v2/race/uploads{worker}/blobs/uploads/")
            statuses.append(response.status)
            if response.status == 202:
                put = await client.put(location_of(response), params={"digest": data.digest}, data=data.data)
                statuses.append(put.status)
                gone = await client.delete(f"/v2/race/uploads{worker}/blobs/{data.digest}")
                statuses.append(gone.status)

    await asyncio.gather(mount(), delete(), upload(1), upload(2))
    assert all(status < 500 for status in statuses), sorted(set(statuses))


def _deep(depth: int, kind: str) -> bytes:
    return (b"[" * depth + b"]" * depth) if kind == "array" else (b'{"a":' * depth + b"1" + b"}" * depth)


async def test_hostile_json_manifests_are_manifest_invalid(client) -> None:
    image = random_image()
    for blob in [image.config, *image.layers]:
        await push_blob(client, "hostile/app", blob)
    document = json.loads(image.manifest)
    bodies = [
        _deep(100_000, "array"),
        _deep(100_000, "object"),
        json.dumps({**document, "annotations": {"x": "y"}, "nest": None}).encode().replace(b"null", _deep(50_000, "array")),
        json.dumps(document).encode()[:-1] + b', "huge": ' + b"9" * 5000 + b"}",
    ]
    for body in bodies:
        response = await client.put("/v2/hostile/app/manifests/t", data=body, headers={"Content-Type": image.media_type})
        assert response.status == 400, (response.status, await response.text())
        assert await error_codes(response) == ["MANIFEST_INVALID"]
    assert (await client.get("/v2/hostile/app/tags/list")).status in (200, 404)
    assert json.loads(await (await client.get("/v2/hostile/app/tags/list")).text()).get("tags") in (None, [])


async def test_descriptor_sizes_must_match_the_stored_blobs(client) -> None:
    image = random_image(layers=1)
    for blob in [image.config, *image.layers]:
        await push_blob(client, "sizes/app", blob)
    document = json.loads(image.manifest)
    for field in ("config", "layers"):
        lying = json.loads(image.manifest)
        target = lying["config"] if field == "config" else lying["layers"][0]
        target["size"] = 2
        response = await client.put("/v2/sizes/app/manifests/liar", data=json.dumps(lying).encode(),
                                    headers={"Content-Type": image.media_type})  # fmt: skip
        assert response.status == 400, await response.text()
        codes = await error_codes(response)
        assert codes in (["SIZE_INVALID"], ["MANIFEST_INVALID"]) and "size" in (await response.text()).lower()
    assert (await client.get("/v2/sizes/app/manifests/liar")).status == 404
    honest = await client.put("/v2/sizes/app/manifests/ok", data=json.dumps(document).encode(), headers={"Content-Type": image.media_type})
    assert honest.status == 201


async def test_an_index_entry_size_must_match_the_child_manifest(client) -> None:
    child = random_image(layers=1)
    await push_image(client, "sizes/index", child)
    descriptor = child.descriptor(platform={"architecture": "amd64", "os": "linux"})
    descriptor["size"] += 7
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [descriptor]})
    response = await client.put("/v2/sizes/index/manifests/multi", data=index.encode(),
                                headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})  # fmt: skip
    assert response.status == 400 and "size" in (await response.text()).lower()

