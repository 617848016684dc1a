"""kill -9 of a registry process at random moments of real pushes (monolithic and chunked
uploads, manifests), on disk and on S3: after a restart nothing partial is visible, every
manifest the registry shows is whole, a retried push succeeds, and gc plus upload purge leave
no byte that nothing references."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import RegistryProcess, s3_settings_env, start_registry, stop_process
from tests.oci import Blob, Image, random_blob, random_image

ROUNDS = 3
CHUNK = 1 << 20


class KillAt:
    """Kills the registry with -9 a moment after the `at`-th request of a push has begun, so the
    kill lands inside a request (a body streaming in, a manifest being written)."""

    def __init__(self, process: subprocess.Popen[bytes] | None = None, at: int = 0, delay: float = 0.0) -> None:
        self.process, self.at, self.delay, self.seen = process, at, delay, 0

    def tick(self) -> None:
        self.seen += 1
        if self.process is not None and self.seen == self.at:
            threading.Timer(self.delay, self.process.kill).start()


NEVER = KillAt()


def _request(registry: RegistryProcess, method: str, path: str, data: bytes | None = None, headers: dict | None = None,
             kill: KillAt = NEVER):  # fmt: skip
    kill.tick()
    url = path if path.startswith("http") else registry.url + path
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


def _push_blob(registry: RegistryProcess, name: str, blob: Blob, chunked: bool, kill: KillAt) -> None:
    if not chunked:
        _request(registry, "POST", f"/v2/{name}/blobs/uploads/?digest={blob.digest}", blob.data, kill=kill)
        return
    _, headers, _ = _request(registry, "POST", f"/v2/{name}/blobs/uploads/", b"", kill=kill)
    location = headers["Location"]
    for offset in range(0, len(blob.data), CHUNK):
        piece = blob.data[offset : offset + CHUNK]
        _, headers, _ = _request(registry, "PATCH", location, piece, {"Content-Type": "application/octet-stream",
                                 "Content-Range": f"{offset}-{offset + len(piece) - 1}"}, kill=kill)  # fmt: skip
        location = headers["Location"]
    separator = "&" if "?" in location else "?"
    _request(registry, "PUT", f"{location}{separator}digest={blob.digest}", b"", kill=kill)


def _push(registry: RegistryProcess, name: str, image: Image, tag: str, kill: KillAt = NEVER) -> None:
    for index, blob in enumerate([image.config, *image.layers]):
        _push_blob(registry, name, blob, chunked=index % 2 == 1, kill=kill)
    _request(registry, "PUT", f"/v2/{name}/manifests/{tag}", image.manifest, {"Content-Type": image.media_type}, kill=kill)


def _images() -> list[Image]:
    images = []
    for _ in range(4):
        image = random_image(layers=0)
        image.layers = [random_blob(random.randint(1, 5) * CHUNK + 17) for _ in range(2)]
        images.append(image)
    return images


def _whole(registry: RegistryProcess, name: str) -> list[str]:
    """Every tag the registry lists, checked whole: manifest and every blob, digests verified."""
    try:
        _, _, body = _request(registry, "GET", f"/v2/{name}/tags/list")
    except urllib.error.HTTPError as error:
        assert error.code == 404
        return []
    tags = json.loads(body).get("tags") or []
    for tag in tags:
        _, _, manifest = _request(registry, "GET", f"/v2/{name}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        document = json.loads(manifest)
        for descriptor in [document["config"], *document["layers"]]:
            _, _, data = _request(registry, "GET", f"/v2/{name}/blobs/{descriptor['digest']}")
            assert Blob(data).digest == descriptor["digest"] and len(data) == descriptor["size"], (tag, descriptor)
    return tags


def _manage(registry: RegistryProcess, env: dict[str, str] | None, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "registry", *args, "--storage-root", str(registry.root)],
                            capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("backend", ["filesystem", "s3"])
def test_kill_9_at_random_points_of_pushes_leaves_nothing_partial_and_nothing_orphaned(backend: str, tmp_path: Path, request) -> None:
    env = None
    if backend == "s3":
        env = s3_settings_env(request.getfixturevalue("s3_bucket"), metadata_url=request.getfixturevalue("postgres_url"), prefix="crash")
    root = tmp_path / "data"
    images = _images()
    rng = random.Random(1234)
    interrupted = 0
    for _ in range(ROUNDS):
        registry = start_registry(root, env=env)
        try:
            kill = KillAt(registry.process, at=rng.randint(1, 25), delay=rng.uniform(0.0, 0.02))
            try:
                for index, image in enumerate(images):
                    _push(registry, "crash/app", image, f"i{index}", kill)
            except (urllib.error.URLError, ConnectionError, OSError):
                interrupted += 1  # killed mid-push, as intended
        finally:
            stop_process(registry.process)
        registry = start_registry(root, env=env)
        try:
            tags = _whole(registry, "crash/app")  # only whole images are visible
            assert set(tags) <= {f"i{index}" for index in range(len(images))}
            for index, image in enumerate(images):  # the retry of every push succeeds
                _push(registry, "crash/app", image, f"i{index}")
            assert sorted(_whole(registry, "crash/app")) == [f"i{index}" for index in range(len(images))]
        finally:
            stop_process(registry.process)
    assert interrupted == ROUNDS, "every kill lands in the middle of a push"
    # upload sessions the kills abandoned, leftovers of interrupted writes, content nothing
    # references: all of it goes, and what stays is exactly the pushed images' content
    _manage(registry, env, "uploads", "purge", "--older-than", "0")
    for _ in range(2):  # into the trash, then out of it
        time.sleep(0.05)
        _manage(registry, env, "gc", "--grace", "0")
    expected = sum(len(blob.data) for image in images for blob in [image.config, *image.layers]) + sum(len(i.manifest) for i in images)
    if backend == "filesystem":
        content = [path for path in (root / "blobs").rglob("*") if path.is_file()]
        assert not list(root.rglob(".tmp-*")) and not list(root.rglob("*.append")) and not (root / "trash").exists()
        assert not list((root / "repositories").rglob("_uploads/*"))
        assert sum(path.stat().st_size for path in content) == expected
    else:
        bucket = request.getfixturevalue("s3_bucket")
        s3 = bucket.server.client()
        keys = {item["Key"]: item["Size"] for item in s3.list_objects_v2(Bucket=bucket.name, Prefix="crash/").get("Contents", [])}
        assert not s3.list_multipart_uploads(Bucket=bucket.name).get("Uploads")
        assert not [key for key in keys if "/_uploads/" in key or key.startswith("crash/uploads/") or key.startswith("crash/trash/")]
        assert sum(size for key, size in keys.items() if key.startswith("crash/blobs/")) == expected
