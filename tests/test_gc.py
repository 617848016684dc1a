"""Garbage collection reclaims content no repository links, and nothing else."""

from __future__ import annotations

import subprocess
import sys
import time

from registry.gc import collect
from tests.oci import push_blob, push_image, random_blob, random_image, stored_keys


def blob_key(digest: str) -> str:
    return f"blobs/sha256/{digest[7:9]}/{digest[7:]}"


async def test_unlinked_content_is_collected_and_linked_content_kept(client, storage):
    kept, shared, dropped = random_image(), random_blob(300), random_blob(400)
    await push_image(client, "acme/app", kept, "v1")
    await push_blob(client, "acme/one", shared)
    await push_blob(client, "acme/two", shared)
    await push_blob(client, "acme/one", dropped)
    assert (await client.delete(f"/v2/acme/one/blobs/{shared.digest}")).status == 202
    assert (await client.delete(f"/v2/acme/one/blobs/{dropped.digest}")).status == 202
    later = time.time() + 7200

    recent = await collect(storage, grace=3600)
    assert recent.deleted == [] and recent.kept_recent == [dropped.digest], "fresh content survives the grace period"
    dry = await collect(storage, grace=3600, dry_run=True, now=later)
    assert dry.deleted == [dropped.digest] and await storage.exists(blob_key(dropped.digest))

    result = await collect(storage, grace=3600, now=later)
    assert result.deleted == [dropped.digest] and result.freed_bytes == 400
    assert not await storage.exists(blob_key(dropped.digest))
    remaining = set(await stored_keys(storage, "blobs"))
    expected = {blob_key(d) for d in [kept.digest, kept.config.digest, *(layer.digest for layer in kept.layers), shared.digest]}
    assert remaining == expected
    assert await (await client.get(f"/v2/acme/two/blobs/{shared.digest}")).read() == shared.data
    assert await (await client.get("/v2/acme/app/manifests/v1")).read() == kept.manifest


async def test_deleted_manifest_content_is_collected(client, storage):
    image = random_image(layers=1)
    await push_image(client, "acme/app", image, "v1")
    assert (await client.delete(f"/v2/acme/app/manifests/{image.digest}")).status == 202
    result = await collect(storage, grace=0, now=time.time() + 1)
    assert result.deleted == [image.digest], "the manifest's own blob goes; its layers are still linked"


def test_gc_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "registry", "gc", "--dry-run", "--storage-root", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "0 digests linked; would delete 0 blobs (0 bytes)" in result.stdout
