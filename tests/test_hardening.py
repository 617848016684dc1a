"""Hostile and racing clients against the registry: writes beside deletes never answer 5xx,
hostile JSON is a 400, every path parameter is checked, descriptor sizes are verified.
Races run for a bounded number of rounds with real concurrency over real sockets."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from ocispec import mediatypes
from registry.api.app import create_app
from registry.core.manifests import Manifests
from storage_backends.filesystem import FilesystemBackend
from tests.conftest import RegistryProcess, s3_settings_env, start_registry, stop_process
from tests.hub import ADMIN, basic, create_user, hub_client
from tests.oci import Blob, error_codes, location_of, push_blob, push_image, random_blob, random_image

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



async def _raw(client, method: str, path: str, **kwargs):
    """A request whose path goes out exactly as written (`%2e%2e` not resolved), as curl --path-as-is sends it."""
    base = str(client.make_url("/")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        async with session.request(method, URL(base + path, encoded=True), **kwargs) as response:
            return response.status, await response.text()


async def test_admin_api_checks_every_path_name_and_body(aiohttp_client, storage) -> None:
    client = await hub_client(aiohttp_client, storage)
    admin = basic(*ADMIN)
    for path in ("/api/v1/users/%2e%2e/tokens", "/api/v1/users/..%2f..%2fx/tokens", "/api/v1/users/A%00B/tokens"):
        for method in ("GET", "POST"):
            status, text = await _raw(client, method, path, headers=admin, json={"name": "t"})
            assert status == 400 and "invalid account name" in json.loads(text)["error"], (method, path, status, text)
    assert (await _raw(client, "DELETE", "/api/v1/users/%2e%2e/tokens/abc", headers=admin))[0] == 400
    assert (await _raw(client, "DELETE", "/api/v1/users/root-admin/tokens/%2e%2e", headers=admin))[0] == 404
    assert (await _raw(client, "GET", "/api/v1/orgs/%2e%2e", headers=admin))[0] == 400
    assert (await _raw(client, "PUT", "/api/v1/orgs/%2e%2e/members/x", headers=admin, json={"role": "read"}))[0] == 400
    for body in (_deep(100_000, "array"), _deep(100_000, "object"), b'{"name": "u1", "password": ' + b"9" * 5000 + b"}"):
        response = await client.post("/api/v1/users", data=body, headers={**admin, "Content-Type": "application/json"})
        assert response.status == 400, (response.status, await response.text())
    assert (await client.get("/api/v1/users", headers=admin)).status == 200


async def test_parallel_wrong_passwords_are_each_counted_by_the_throttle(aiohttp_client, storage) -> None:
    client = await hub_client(aiohttp_client, storage, sign_in_failures=5, sign_in_window=600)
    await create_user(client, "alice", "right-password")
    answers = await asyncio.gather(*(client.get("/token", headers=basic("alice", f"guess-{n}")) for n in range(40)))
    statuses = [answer.status for answer in answers]
    assert statuses.count(401) == 5 and statuses.count(429) == 35, sorted(statuses)
    # a success is not counted: the right password, five times in parallel, all pass (for bob)
    await create_user(client, "bob", "bob-password")
    passes = await asyncio.gather(*(client.get("/token", headers=basic("bob", "bob-password")) for _ in range(8)))
    assert [answer.status for answer in passes] == [200] * 8


async def test_token_secrets_take_as_long_for_absent_users_as_for_present_ones(aiohttp_client, storage) -> None:
    client = await hub_client(aiohttp_client, storage, sign_in_failures=1000)
    await create_user(client, "alice", "right-password")
    fake = "dkp_0123456789abcdef_" + "x" * 43

    async def timed(user: str) -> float:
        began = time.perf_counter()
        response = await client.get("/token", headers=basic(user, fake))
        assert response.status == 401
        return time.perf_counter() - began

    present = sorted([await timed("alice") for _ in range(15)])[7]
    absent = sorted([await timed("nobody-here") for _ in range(15)])[7]
    # a bcrypt is ~50 ms or more; a token lookup a few ms: the medians must be of the same kind
    assert absent < present * 3 + 0.01 and present < absent * 3 + 0.01, (present, absent)


async def test_the_web_page_reads_no_large_config_whatever_its_descriptor_claims(aiohttp_client, storage, monkeypatch) -> None:
    """A manifest stored before sizes were checked may still lie; the page goes by the stored size."""
    client = await aiohttp_client(create_app(storage))
    config = {"architecture": "amd64", "os": "linux", "config": {"Labels": {"marker": "read-the-whole-blob"}},
              "padding": "x" * (5 * 1024 * 1024)}  # fmt: skip
    image = random_image(layers=1)
    image.config = Blob(json.dumps(config).encode(), mediatypes.OCI_CONFIG)
    for blob in [image.config, *image.layers]:
        await push_blob(client, "web/liar", blob)
    lying = json.loads(image.manifest)
    lying["config"]["size"] = 2
    body = json.dumps(lying).encode()

    async def accept_anything(self, name, parsed, **options) -> None:  # the check of today's registry, absent in an older one
        return None

    monkeypatch.setattr(Manifests, "_require_references", accept_anything)
    assert (await client.put("/v2/web/liar/manifests/v1", data=body, headers={"Content-Type": image.media_type})).status == 201
    monkeypatch.undo()
    page = await client.get("/r/web/liar/-/tags/v1")
    assert page.status == 200
    assert "read-the-whole-blob" not in await page.text()


def _push_then_kill(registry: RegistryProcess, size: int) -> None:
    """Start a monolithic blob upload of `size` bytes, send most of it, and kill -9 the registry."""
    with socket.create_connection((registry.host, registry.port)) as connection:
        digest = "sha256:" + "0" * 64
        connection.sendall(
            f"POST /v2/crash/app/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {registry.host}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        chunk = os.urandom(1 << 20)
        for _ in range(size // len(chunk) - 2):
            connection.sendall(chunk)
        time.sleep(1.0)  # the registry has written what it received
        registry.process.kill()
        registry.process.wait(10)


def _gc(registry: RegistryProcess, env: dict[str, str] | None) -> str:
    args = [sys.executable, "-m", "registry", "gc", "--grace", "0", "--storage-root", str(registry.root)]
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_write_killed_mid_blob_leaves_nothing_gc_does_not_reclaim(tmp_path: Path) -> None:
    registry = start_registry(tmp_path / "crash-data")
    try:
        _push_then_kill(registry, 32 << 20)
    finally:
        stop_process(registry.process)
    leftovers = [path for path in (tmp_path / "crash-data").rglob(".tmp-*")]
    assert leftovers and sum(path.stat().st_size for path in leftovers) > 16 << 20  # what the crash left
    report = _gc(registry, None)
    assert "delete 1 leftovers of interrupted writes" in report, report
    assert not list((tmp_path / "crash-data").rglob(".tmp-*"))
    assert sum(path.stat().st_size for path in (tmp_path / "crash-data").rglob("*") if path.is_file()) < 1 << 20


def test_a_write_killed_mid_blob_on_s3_leaves_no_multipart_upload_after_gc(tmp_path: Path, s3_bucket, postgres_url) -> None:
    env = s3_settings_env(s3_bucket, metadata_url=postgres_url, prefix="crash")
    registry = start_registry(tmp_path / "crash-s3", env=env)
    try:
        _push_then_kill(registry, 40 << 20)
    finally:
        stop_process(registry.process)
    s3 = s3_bucket.server.client()
    assert s3.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads"), "the crash left an unfinished multipart upload"
    report = _gc(registry, env)
    assert "delete 1 leftovers of interrupted writes" in report, report
    assert not s3.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MiB filesystem (tmpfs) to fill up."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


async def test_a_full_disk_is_a_clear_507_loses_nothing_and_reads_go_on(aiohttp_client, small_disk: Path) -> None:
    client = await aiohttp_client(create_app(FilesystemBackend(small_disk / "store")))
    image = random_image(layers=1, layer_size=512 * 1024)
    await push_image(client, "full/app", image, "v1")
    used = sum(path.stat().st_size for path in small_disk.rglob("*") if path.is_file())
    too_big = random_blob(4 * 1024 * 1024)
    monolithic = await client.post("/v2/full/app/blobs/uploads/", params={"digest": too_big.digest}, data=io.BytesIO(too_big.data))
    assert monolithic.status == 507, await monolithic.text()
    assert "storage is full" in (await monolithic.json())["errors"][0]["message"]
    started = await client.post("/v2/full/app/blobs/uploads/")
    chunked = await client.patch(location_of(started), data=io.BytesIO(too_big.data), headers={"Content-Type": "application/octet-stream"})
    assert chunked.status == 507
    assert (await client.head(f"/v2/full/app/blobs/{too_big.digest}")).status == 404
    assert not list(small_disk.rglob(".tmp-*"))  # nothing partial left
    assert await (await client.get("/v2/full/app/manifests/v1")).read() == image.manifest
    assert await (await client.get(f"/v2/full/app/blobs/{image.layers[0].digest}")).read() == image.layers[0].data
    assert (await client.delete(location_of(started))).status == 204  # the session's bytes go, and space with them
    assert sum(path.stat().st_size for path in small_disk.rglob("*") if path.is_file()) <= used + 4096
    fits = random_blob(256 * 1024)
    await push_blob(client, "full/app", fits)


def _closed_within(connection: socket.socket, seconds: float) -> bool:
    connection.settimeout(seconds)
    try:
        while True:
            data = connection.recv(65536)
            if not data:
                return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def test_slow_clients_are_cut_off_and_uploads_per_client_capped(tmp_path: Path) -> None:
    # one worker process: the upload cap counts per process (each of N workers allows it)
    env = {"DOCKYARD_HTTP__HEADER_TIMEOUT": "1", "DOCKYARD_HTTP__BODY_IDLE_TIMEOUT": "1", "DOCKYARD_HTTP__MAX_UPLOADS_PER_CLIENT": "2",
           "DOCKYARD_HTTP__WORKERS": "1"}  # fmt: skip
    registry = start_registry(tmp_path / "slow-data", env=env)
    try:
        address = (registry.host, registry.port)
        # slowloris: headers dribbled one line at a time never make a request
        with socket.create_connection(address) as slow:
            slow.sendall(b"GET /v2/ HTTP/1.1\r\n")
            time.sleep(0.5)
            slow.sendall(b"Host: x\r\n")
            assert _closed_within(slow, 5), "a connection dribbling its headers must be closed"
        # a body that stops is abandoned with a clear error, and the upload keeps no partial chunk
        with socket.create_connection(address) as starter:
            starter.sendall("POST /v2/slow/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
            answer = starter.recv(65536).decode()
        location = next(line.split(": ", 1)[1] for line in answer.split("\r\n") if line.lower().startswith("location:"))
        path = "/" + location.split("/", 3)[3]
        with socket.create_connection(address) as stalled:
            stalled.sendall(f"PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                            f"Content-Length: 1000\r\n\r\n".encode() + b"x" * 10)  # fmt: skip
            stalled.settimeout(10)
            reply = stalled.recv(65536).decode()
            assert reply.startswith("HTTP/1.1 400") and "BLOB_UPLOAD_INVALID" in reply and "sent nothing for 1 s" in reply
        with urllib.request.urlopen(registry.url + path, timeout=5) as status:
            assert status.status == 204 and status.headers["Range"] == "0-0"  # nothing of the stalled chunk kept
        # the limit is on each silence, not on the whole body: one trickling in for longer is kept
        with socket.create_connection(address) as trickle:
            trickle.sendall(f"PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                            f"Content-Length: 40\r\n\r\n".encode())  # fmt: skip
            for _ in range(4):
                time.sleep(0.5)
                trickle.sendall(b"t" * 10)
            trickle.settimeout(10)
            reply = trickle.recv(65536).decode()
            assert reply.startswith("HTTP/1.1 202"), reply
        with urllib.request.urlopen(registry.url + path, timeout=5) as status:
            assert status.headers["Range"] == "0-39"
        with urllib.request.urlopen(registry.url + "/v2/", timeout=5) as normal:
            assert normal.status == 200  # normal clients are unaffected
        # a third upload streaming at once from one address is refused until one ends
        streams = []
        for _ in range(2):
            connection = socket.create_connection(address)
            connection.sendall(b"POST /v2/slow/app/blobs/uploads/?digest=sha256:" + b"0" * 64
                               + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"y" * 10)  # fmt: skip
            streams.append(connection)
        time.sleep(0.3)
        try:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(registry.url + "/v2/slow/app/blobs/uploads/", method="POST", data=b""),
                                       timeout=5)  # fmt: skip
            assert refused.value.code == 429 and refused.value.headers["Retry-After"] == "1"
            refused.value.close()
        finally:
            for connection in streams:
                connection.close()
        time.sleep(0.3)
        new_upload = urllib.request.Request(registry.url + "/v2/slow/app/blobs/uploads/", method="POST", data=b"")
        with urllib.request.urlopen(new_upload, timeout=5) as accepted:
            assert accepted.status == 202
    finally:
        stop_process(registry.process)


async def test_control_characters_and_broken_forms_found_by_the_fuzz_pass_are_400s(aiohttp_client, tmp_path: Path) -> None:
    client = await hub_client(aiohttp_client, FilesystemBackend(tmp_path / "store"))
    status, text = await _raw(client, "GET", "/v2/%1F/tags/list")  # the name went into the challenge header
    assert status == 400 and "NAME_INVALID" in text
    status, text = await _raw(client, "POST", "/v2/a/blobs/uploads/?mount=sha256:" + "0" * 64 + "&from=%0d%0aX:y")
    assert status == 401 and "X:y" not in text
    broken = {"Content-Type": "multipart/form-data; boundary=x"}
    token = await client.post("/token", data=b"", headers=broken)
    assert token.status == 400 and (await token.json())["error"] == "invalid_request"
    login = await client.post("/login", data=b"", headers=broken)
    assert login.status == 400
