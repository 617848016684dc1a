"""The registry process: configuration, graceful shutdown, and crash safety under kill -9."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.conftest import free_port, start_registry, stop_process, wait_for_port
from tests.oci import location_of


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "registry", *args],
        capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})},
    )


def test_bad_configuration_fails_at_start_with_one_line(tmp_path: Path):
    cases = [
        (["serve", "--listen", "nowhere"], {}, "http.listen"),
        (["serve"], {"DOCKYARD_STORAGE__BACKEND": "floppy"}, "storage.backend"),
        (["serve"], {"DOCKYARD_STORAGE__BACKEND": "s3"}, "storage.s3.bucket"),
        (["serve", "--config", str(tmp_path / "missing.yaml")], {}, "cannot read config file"),
    ]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("http: [unclosed\n")
    cases.append((["serve", "--config", str(bad_yaml)], {}, "not valid YAML"))
    unknown_key = tmp_path / "unknown.yaml"
    unknown_key.write_text("htp:\n  listen: 127.0.0.1:1\n")
    cases.append((["serve", "--config", str(unknown_key)], {}, "htp"))
    for args, env, expected in cases:
        result = run_cli(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("dockyard-registry: ") and expected in lines[0], lines[0]


async def test_settings_come_from_yaml_and_environment_with_env_winning(tmp_path: Path):
    port_from_file, port_from_env = free_port(), free_port()
    config = tmp_path / "registry.yaml"
    config.write_text(f"http:\n  listen: 127.0.0.1:{port_from_file}\nstorage:\n  root: {tmp_path / 'from-file'}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "registry", "serve", "--config", str(config)],
        env={**os.environ, "DOCKYARD_HTTP__LISTEN": f"127.0.0.1:{port_from_env}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port_from_env, process)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port_from_env}/v2/acme/app/blobs/uploads/", params={"digest": "sha256:" + hashlib.sha256(b"hi").hexdigest()}, data=b"hi") as response:
                assert response.status == 201
        assert any((tmp_path / "from-file" / "blobs").rglob("*")), "storage.root from the YAML file is used"
    finally:
        stop_process(process)


async def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def slow_patch(host: str, port: int, path: str, parts: list[bytes], pause: float, started: asyncio.Event) -> tuple[int, bytes]:
    """A PATCH whose chunked body trickles in, as a slow client would send it."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"PATCH {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
    for index, part in enumerate(parts):
        writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        await writer.drain()
        if index == 0:
            started.set()
        await asyncio.sleep(pause)
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    response = await reader.read()
    writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response


async def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path):
    registry = start_registry(tmp_path / "data")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{registry.url}/v2/acme/app/blobs/uploads/") as response:
                location = location_of(response)
        # The first part fills a write buffer, so bytes on disk prove the handler is running.
        parts = [os.urandom(1100 * 1024)] + [os.urandom(64 * 1024) for _ in range(5)]
        started = asyncio.Event()
        upload = asyncio.create_task(slow_patch(registry.host, registry.port, location, parts, 0.3, started))
        await started.wait()
        await wait_until(lambda: any(p.stat().st_size > 0 for p in (tmp_path / "data").rglob(".data.append")))
        registry.process.send_signal(signal.SIGTERM)
        status, raw = await asyncio.wait_for(upload, 30)
        assert status == 202, raw
        assert f"Range: 0-{sum(map(len, parts)) - 1}".encode() in raw
        assert registry.process.wait(20) == 0
    finally:
        stop_process(registry.process)
    # The accepted chunk is durable: a new process continues the same upload.
    restarted = start_registry(tmp_path / "data")
    try:
        data = b"".join(parts)
        async with aiohttp.ClientSession() as session:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            async with session.put(f"{restarted.url}{location}", params={"digest": digest}) as response:
                assert response.status == 201
            async with session.get(f"{restarted.url}/v2/acme/app/blobs/{digest}") as response:
                assert await response.read() == data
    finally:
        stop_process(restarted.process)


async def test_kill_9_mid_upload_leaves_store_consistent_and_upload_resumable(tmp_path: Path):
    registry = start_registry(tmp_path / "data")
    first = os.urandom(300_000)
    torn = [os.urandom(256 * 1024) for _ in range(8)]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{registry.url}/v2/acme/app/blobs/uploads/") as response:
                location = location_of(response)
            async with session.patch(f"{registry.url}{location}", data=first, headers={"Content-Range": f"0-{len(first) - 1}"}) as response:
                assert response.status == 202
        started = asyncio.Event()
        upload = asyncio.create_task(slow_patch(registry.host, registry.port, location, torn, 0.2, started))
        await started.wait()
        # Wait until part of the second chunk is on disk, the chunk not finished.
        await wait_until(lambda: any(p.stat().st_size > len(first) for p in (tmp_path / "data").rglob(".data.append")))
        registry.process.send_signal(signal.SIGKILL)
        registry.process.wait(10)
        try:
            await asyncio.wait_for(upload, 10)
        except (ConnectionError, ValueError, IndexError, asyncio.IncompleteReadError):
            pass
    finally:
        stop_process(registry.process)

    store = tmp_path / "data"
    appended = next(store.rglob(".data.append"))
    assert appended.stat().st_size > len(first), "the kill left a torn tail on disk (the case under test)"
    assert not (store / "blobs").exists() or not any(p.is_file() for p in (store / "blobs").rglob("*"))
    restarted = start_registry(store)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{restarted.url}{location}") as response:
                assert response.status == 204
                assert response.headers["Range"] == f"0-{len(first) - 1}", "the torn chunk is not part of the upload"
            rest = os.urandom(1000)
            digest = "sha256:" + hashlib.sha256(first + rest).hexdigest()
            async with session.put(f"{restarted.url}{location}", params={"digest": digest}, data=rest, headers={"Content-Range": f"{len(first)}-{len(first) + len(rest) - 1}"}) as response:
                assert response.status == 201, await response.text()
            async with session.get(f"{restarted.url}/v2/acme/app/blobs/{digest}") as response:
                assert await response.read() == first + rest
    finally:
        stop_process(restarted.process)


async def test_json_logs_are_one_object_per_line(tmp_path: Path):
    import json

    registry = start_registry(tmp_path / "data", env={"DOCKYARD_LOG_FORMAT": "json"})
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{registry.url}/v2/") as response:
                assert response.status == 200
    finally:
        stop_process(registry.process)
    lines = (tmp_path / f"registry-{registry.port}.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["logger"] == "dockyard.access" and "GET /v2/ " in r["message"] for r in records)
    assert any(r["logger"] == "dockyard.registry" and r["message"].startswith("stopping") for r in records)
