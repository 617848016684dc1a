"""Garbage collection: content no manifest references goes (through the trash, a grace period
apart), everything a manifest references stays, and pushes racing gc never end with a manifest
naming missing content."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from registry.api.app import create_app
from registry.config import GcSettings, RegistryOptions, Settings
from registry.core.gc import collect
from tests.oci import location_of, push_blob, push_image, random_blob, random_image, stored_keys

HOUR = 3600


def blob_key(digest: str) -> str:
    return f"blobs/sha256/{digest[7:9]}/{digest[7:]}"


def trash_key(digest: str) -> str:
    return f"trash/sha256/{digest[7:9]}/{digest[7:]}/data"


async def test_unreferenced_content_goes_through_the_trash_and_referenced_content_stays(client, storage):
    kept, loose, deleted = random_image(), random_blob(300), random_image(layers=1)
    await push_image(client, "acme/app", kept, "v1")
    await push_blob(client, "acme/one", loose)  # linked, but no manifest names it
    await push_image(client, "acme/gone", deleted, "v1")
    assert (await client.delete(f"/v2/acme/gone/manifests/{deleted.digest}")).status == 202
    garbage = sorted([loose.digest, deleted.digest, deleted.config.digest, deleted.layers[0].digest])

    recent = await collect(storage, grace=HOUR)
    assert recent.trashed == [] and sorted(recent.kept_recent) == garbage, "fresh content survives the grace period"
    later = time.time() + 2 * HOUR
    dry = await collect(storage, grace=HOUR, dry_run=True, now=later)
    assert sorted(dry.trashed) == garbage and await storage.exists(blob_key(loose.digest))

    first = await collect(storage, grace=HOUR, now=later)
    assert sorted(first.trashed) == garbage and first.deleted == []
    assert not await storage.exists(blob_key(loose.digest)) and await storage.exists(trash_key(loose.digest))
    second = await collect(storage, grace=HOUR, now=later + 2 * HOUR)
    assert sorted(second.deleted) == garbage and second.freed_bytes == 300 + sum(
        len(b) for b in [deleted.manifest, deleted.config.data, deleted.layers[0].data]
    )
    assert await stored_keys(storage, "trash") == []
    remaining = set(await stored_keys(storage, "blobs"))
    assert remaining == {blob_key(d) for d in [kept.digest, kept.config.digest, *(layer.digest for layer in kept.layers)]}
    assert await (await client.get("/v2/acme/app/manifests/v1")).read() == kept.manifest
    assert (await client.head(f"/v2/acme/one/blobs/{loose.digest}")).status == 404  # a link without content is no blob
    await push_blob(client, "acme/one", loose)  # and the same upload makes it whole again
    assert await (await client.get(f"/v2/acme/one/blobs/{loose.digest}")).read() == loose.data


async def test_any_access_brings_trashed_content_back(client, storage):
    image, loose = random_image(layers=1), random_blob(500)
    await push_image(client, "acme/app", image, "v1")
    await push_blob(client, "acme/app", loose)
    await collect(storage, grace=HOUR, now=time.time() + 2 * HOUR)
    assert await storage.exists(trash_key(loose.digest))
    head = await client.head(f"/v2/acme/app/blobs/{loose.digest}")  # a client checks before skipping the upload
    assert head.status == 200 and int(head.headers["Content-Length"]) == 500
    assert await storage.exists(blob_key(loose.digest)) and not await storage.exists(trash_key(loose.digest))
    await collect(storage, grace=HOUR, now=time.time() + 2 * HOUR)
    # a mount into another repository, and a manifest naming it, bring it back too
    mounted = await client.post("/v2/acme/other/blobs/uploads/", params={"mount": loose.digest, "from": "acme/app"})
    assert mounted.status == 201
    await collect(storage, grace=HOUR, now=time.time() + 2 * HOUR)
    manifest = random_image(layers=0)
    manifest.layers = [loose]
    await push_blob(client, "acme/other", manifest.config)
    put = await client.put("/v2/acme/other/manifests/t", data=manifest.manifest, headers={"Content-Type": manifest.media_type})
    assert put.status == 201, await put.text()
    final = await collect(storage, grace=0, now=time.time() + 10 * HOUR)
    assert loose.digest not in final.deleted and await storage.exists(blob_key(loose.digest))
    assert await (await client.get(f"/v2/acme/other/blobs/{loose.digest}")).read() == loose.data


async def test_delete_untagged_keeps_what_tags_reach(client, storage):
    tagged, child, untagged = random_image(), random_image(layers=1), random_image(layers=1)
    await push_image(client, "acme/app", tagged, "v1")
    await push_image(client, "acme/app", child)
    await push_image(client, "acme/app", untagged)
    index = (
        '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": ['
        + f'{{"mediaType": "{child.media_type}", "digest": "{child.digest}", "size": {len(child.manifest)}}}]}}'
    ).encode()
    put = await client.put("/v2/acme/app/manifests/multi", data=index, headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert put.status == 201
    fresh = await collect(storage, grace=HOUR, delete_untagged=True)
    assert fresh.untagged == [], "manifests younger than the grace period stay"
    later = time.time() + 2 * HOUR
    result = await collect(storage, grace=HOUR, delete_untagged=True, now=later)
    assert result.untagged == [f"acme/app@{untagged.digest}"]
    assert (await client.get(f"/v2/acme/app/manifests/{untagged.digest}")).status == 404
    for kept in (tagged.digest, child.digest, put.headers["Docker-Content-Digest"]):
        assert (await client.get(f"/v2/acme/app/manifests/{kept}")).status == 200
    assert sorted(result.trashed) == sorted([untagged.digest, untagged.config.digest, untagged.layers[0].digest])


async def test_pushes_racing_gc_never_leave_a_manifest_naming_missing_content(client, storage):
    """Clients push images that share old layers (HEAD, mount, manifest PUT) while gc runs
    back to back with no grace: every pushed manifest must stay fully pullable."""
    shared = [random_blob(2048) for _ in range(3)]
    for blob in shared:
        await push_blob(client, "race/base", blob)
    assert (await client.delete("/v2/race/base/blobs/" + shared[0].digest)).status == 202
    pushed: list[tuple[str, str]] = []
    stop = asyncio.Event()

    async def junk() -> None:  # content nothing will reference: gc trashes it, then deletes it
        for _ in range(40):
            await push_blob(client, "race/junk", random_blob(256))
            await asyncio.sleep(0.01)

    async def pusher(worker: int) -> None:
        await asyncio.sleep(0.3 * worker)  # later pushers find some shared layers deleted for good
        for round_ in range(100):
            if round_ >= 12 and all(activity.values()):
                break  # 12 rounds each, and on (bounded) until gc has trashed, deleted and restored (a restore
                # needs a push to land between one run's mark and its trash pass: under load that took > 40 rounds)
            name = f"race/app{worker}"
            image = random_image(layers=0)
            image.layers = list(shared)
            for _attempt in range(3):  # as docker does: a refused manifest means push the blobs again
                for blob in image.layers:
                    if (await client.head(f"/v2/{name}/blobs/{blob.digest}")).status != 200:
                        mount = await client.post(f"/v2/{name}/blobs/uploads/", params={"mount": blob.digest})
                        if mount.status != 201:
                            await push_blob(client, name, blob)  # gone for good: upload it again
                await push_blob(client, name, image.config)
                response = await client.put(f"/v2/{name}/manifests/r{round_}", data=image.manifest,
                                            headers={"Content-Type": image.media_type})  # fmt: skip
                if response.status == 201:
                    pushed.append((name, f"r{round_}"))
                    break
                assert "MANIFEST_BLOB_UNKNOWN" in await response.text(), await response.text()

    activity = {"trashed": 0, "deleted": 0, "restored": 0}

    async def collector() -> None:
        while not stop.is_set():
            run = await collect(storage, grace=0, leftover_grace=HOUR, now=time.time() + 10)
            for key in activity:
                activity[key] += len(getattr(run, key))
            await asyncio.sleep(0)

    running = asyncio.ensure_future(collector())
    await asyncio.gather(junk(), *(pusher(worker) for worker in range(3)))
    stop.set()
    await running
    await collect(storage, grace=0, leftover_grace=HOUR, now=time.time() + 10)
    assert len(pushed) >= 30
    assert activity["trashed"] and activity["deleted"] and activity["restored"], activity  # gc really raced the pushes
    for name, tag in pushed:
        manifest = await client.get(f"/v2/{name}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert manifest.status == 200
        document = await manifest.json()
        for descriptor in [document["config"], *document["layers"]]:
            blob = await client.get(f"/v2/{name}/blobs/{descriptor['digest']}")
            assert blob.status == 200 and len(await blob.read()) == descriptor["size"], (name, tag, descriptor["digest"])


def test_gc_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "registry", "gc", "--dry-run", "--delete-untagged", "--storage-root", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "0 manifests kept, 0 digests referenced; would remove 0 untagged manifests; would trash 0 blobs" in result.stdout


async def test_background_gc_and_upload_expiry(aiohttp_client, storage):
    settings = Settings(registry=RegistryOptions(upload_ttl=1, gc=GcSettings(interval=0.3, grace=0)))
    client = await aiohttp_client(create_app(storage, settings))
    image, loose = random_image(layers=1), random_blob(700)
    await push_image(client, "acme/app", image, "v1")
    await push_blob(client, "acme/app", loose)
    started = await client.post("/v2/acme/app/blobs/uploads/")
    assert started.status == 202
    session = location_of(started)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        # looked at in storage: a HEAD would bring it back from the trash
        gone = not await storage.exists(blob_key(loose.digest)) and not await storage.exists(trash_key(loose.digest))
        expired = (await client.get(session)).status == 404
        if gone and expired:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the background run did not reclaim the loose blob and expire the upload in time")
    assert (await client.head(f"/v2/acme/app/blobs/{loose.digest}")).status == 404
    assert await (await client.get("/v2/acme/app/manifests/v1")).read() == image.manifest
    for blob in [image.config, *image.layers]:
        assert (await client.head(f"/v2/acme/app/blobs/{blob.digest}")).status == 200
