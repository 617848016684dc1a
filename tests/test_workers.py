"""Several worker processes on one port (`http.workers`): the supervisor holds the one
listening socket and hands each connection to the worker with the fewest, so even a few
long-lived connections are spread evenly; a killed worker is replaced by one serving with the
same settings, SIGTERM drains every one of them, and a kill -9 of the supervisor takes the
workers with it. The supervisor runs in a lean image that holds none of the registry."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp

from tests.conftest import start_registry, stop_process
from tests.oci import location_of
from tests.test_server import slow_patch

WORKERS = {"DOCKYARD_HTTP__WORKERS": "3"}



def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def socket_inodes(port: int, state: str) -> set[str]:
    """Inodes of the TCP sockets on local 127.0.0.1:`port` in `state` (/proc/net/tcp: 0A
    listening, 01 established)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == state:
            found.add(fields[9])
    return found


def held_sockets(pid: int) -> set[str]:
    fds = Path(f"/proc/{pid}/fd")
    links = [os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()]
    return {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}


def wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


async def get_ok(url: str, count: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for _ in range(count):
            async with session.get(f"{url}/v2/") as response:
                assert response.status == 200


def serving(workers: set[int], port: int) -> dict[int, int]:
    """How many established connections to `port` each worker holds."""
    established = socket_inodes(port, "01")
    return {pid: len(held_sockets(pid) & established) for pid in workers}


async def test_the_supervisor_hands_connections_to_the_least_busy_worker_and_replaces_a_dead_one(tmp_path: Path):
    registry = start_registry(tmp_path / "data", env=WORKERS)
    try:
        workers = wait_for(lambda: (found := children(registry.process.pid)) and len(found) == 3 and found)
        [listening] = socket_inodes(registry.port, "0A")
        assert listening in held_sockets(registry.process.pid), "the supervisor listens"
        assert not any(listening in held_sockets(pid) for pid in workers), "the workers do not"
        await get_ok(registry.url, 30)

        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(lambda: (found := children(registry.process.pid)) and len(found) == 3 and victim not in found and found)
        assert len(replaced - workers) == 1, "exactly one new worker took the dead one's place"
        await get_ok(registry.url, 30)
        assert registry.process.poll() is None

        async def at_once(connections: int) -> list[int]:
            """Open `connections` kept-alive connections at once; how many each worker serves."""
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

                async def request() -> None:
                    async with session.get(f"{registry.url}/v2/") as response:
                        assert response.status == 200

                await asyncio.gather(*(request() for _ in range(connections)))
                assert not held_sockets(registry.process.pid) & socket_inodes(registry.port, "01"), "the supervisor keeps none"
                return sorted(serving(replaced, registry.port).values())

        assert await at_once(6) == [2, 2, 2], "each worker gets its share, the new one too"
        wait_for(lambda: not any(serving(replaced, registry.port).values()))
        await asyncio.sleep(0.3)  # the workers' word that they closed them reaches the supervisor
        assert await at_once(3) == [1, 1, 1], "closed connections were counted off"
    finally:
        stop_process(registry.process)


async def test_sigterm_drains_every_worker_then_the_supervisor_exits(tmp_path: Path):
    registry = start_registry(tmp_path / "data", env=WORKERS)
    try:
        workers = wait_for(lambda: (found := children(registry.process.pid)) and len(found) == 3 and found)
        uploads = []
        for _ in range(3):  # three slow uploads in flight, on whichever workers took them
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{registry.url}/v2/acme/app/blobs/uploads/") as response:
                    location = location_of(response)
            started = asyncio.Event()
            parts = [os.urandom(256 * 1024) for _ in range(6)]
            uploads.append((asyncio.create_task(slow_patch(registry.host, registry.port, location, parts, 0.3, started)), parts))
            await started.wait()
        await asyncio.sleep(0.3)
        registry.process.send_signal(signal.SIGTERM)
        for task, parts in uploads:
            status, raw = await asyncio.wait_for(task, 30)
            assert status == 202, raw
            assert f"Range: 0-{sum(map(len, parts)) - 1}".encode() in raw, "the request in flight finished whole"
        assert registry.process.wait(30) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "no worker outlives the supervisor"
    finally:
        stop_process(registry.process)


async def test_a_supervisor_killed_with_9_takes_its_workers_along(tmp_path: Path):
    registry = start_registry(tmp_path / "data", env=WORKERS)
    try:
        workers = wait_for(lambda: (found := children(registry.process.pid)) and len(found) == 3 and found)
        registry.process.kill()
        registry.process.wait(10)
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text() for pid in workers))
    finally:
        stop_process(registry.process)


async def test_every_worker_accepts_the_tokens_any_worker_signed_without_a_key_file(tmp_path: Path):
    from tests.conftest import HUB_ADMIN, hub_env
    from tests.hub import basic

    registry = start_registry(tmp_path / "data", env={**WORKERS, **hub_env()})
    try:
        workers = wait_for(lambda: (found := children(registry.process.pid)) and len(found) == 3 and found)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            tokens = []
            for _ in range(6):  # fresh connections, spread over the workers
                async with session.get(f"{registry.url}/token", params={"service": "dockyard"}, headers=basic(*HUB_ADMIN)) as response:
                    tokens.append((await response.json())["token"])

            async def all_good() -> None:
                for token in tokens:
                    for _ in range(3):
                        async with session.get(f"{registry.url}/v2/", headers={"Authorization": f"Bearer {token}"}) as checked:
                            assert checked.status == 200, "a token signed by one worker is good on all of them"

            await all_good()
            for victim in sorted(workers)[:2]:  # two replacements: each must know the run's key
                os.kill(victim, signal.SIGKILL)
            wait_for(lambda: (found := children(registry.process.pid)) and len(found) == 3 and len(found - workers) == 2)
            await wait_ready(registry.url)
            await all_good()
    finally:
        stop_process(registry.process)


async def wait_ready(url: str) -> None:
    """Until every worker serves (a replacement imports the registry before it answers)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
                for _ in range(10):
                    async with session.get(f"{url}/healthz") as response:
                        assert response.status == 200
            return
        except (AssertionError, aiohttp.ClientError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_a_replacement_worker_serves_with_the_settings_the_registry_started_with(tmp_path: Path):
    """Not with what the configuration file says by the time a worker dies: one registry, one
    configuration, whichever worker answers."""
    config = tmp_path / "registry.yaml"
    config.write_text("http:\n  public_url: https://first.example\n")
    registry = start_registry(tmp_path / "data", env=WORKERS, extra_args=["--config", str(config)])
    try:
        workers = wait_for(lambda: (found := children(registry.process.pid)) and len(found) == 3 and found)
        config.write_text("http:\n  public_url: https://edited.example\n")
        for victim in workers:
            os.kill(victim, signal.SIGKILL)
        wait_for(lambda: (found := children(registry.process.pid)) and len(found) == 3 and not found & workers)
        await wait_ready(registry.url)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for _ in range(6):
                async with session.post(f"{registry.url}/v2/acme/app/blobs/uploads/") as response:
                    assert response.status == 202
                    assert response.headers["Location"].startswith("https://first.example/v2/acme/app/blobs/uploads/")
    finally:
        stop_process(registry.process)


def test_the_supervisor_holds_none_of_the_registry(tmp_path: Path):
    """After forking the workers the supervisor replaces its image with one that imports no
    more than it needs: none of aiohttp's, pydantic's or SQLite's compiled modules is mapped."""
    registry = start_registry(tmp_path / "data", env=WORKERS)
    try:
        workers = wait_for(lambda: (found := children(registry.process.pid)) and len(found) == 3 and found)
        heavy = ("_pydantic_core", "_http_parser", "_sqlite3")
        wait_for(lambda: all(library in Path(f"/proc/{min(workers)}/maps").read_text() for library in heavy))  # the workers have them
        supervisor_maps = wait_for(lambda: "python" in (maps := Path(f"/proc/{registry.process.pid}/maps").read_text()) and
                                   "_pydantic_core" not in maps and maps)  # fmt: skip
        assert not any(library in supervisor_maps for library in heavy)
        assert registry.process.pid == int(Path(f"/proc/{min(workers)}/stat").read_text().split()[3]), "the same process, a new image"
    finally:
        stop_process(registry.process)


async def test_workers_start_under_a_supervisor_that_is_pid_1(tmp_path: Path):
    """In a container the supervisor is PID 1 (the Dockerfile's entrypoint): its workers must
    not mistake that for having been orphaned."""
    import subprocess
    import sys

    from tests.conftest import free_port, wait_for_port

    port = free_port()
    with open(tmp_path / "registry.log", "wb") as log:
        process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM", sys.executable, "-m", "registry", "serve",
             "--listen", f"127.0.0.1:{port}", "--storage-root", str(tmp_path / "data")],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **WORKERS},
        )  # fmt: skip
    try:
        wait_for_port(port, process)
        await get_ok(f"http://127.0.0.1:{port}", 20)
        await asyncio.sleep(3)  # past the supervisor's quick-death window: the workers stay up
        await get_ok(f"http://127.0.0.1:{port}", 20)
        assert process.poll() is None, (tmp_path / "registry.log").read_text()[-2000:]
        [supervisor] = children(process.pid)  # unshare's child: PID 1 inside its namespace
        os.kill(supervisor, signal.SIGTERM)
        assert process.wait(20) == 0, "SIGTERM drains the workers and the supervisor exits cleanly"
    finally:
        stop_process(process)
