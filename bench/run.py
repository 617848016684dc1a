#!/usr/bin/env python3
"""Dockyard versus the reference registry (distribution), side by side, in one run.

    .venv/bin/python bench/run.py            # full run, ~1-2 minutes on 2 cores
    .venv/bin/python bench/run.py --quick    # a few seconds; a smoke test
    .venv/bin/python bench/run.py --size-mb 512 --layers 8 --rounds 5

Both registries are started here on free loopback ports, each over fresh temporary storage,
and stopped by PID at the end (also on error, Ctrl-C or SIGTERM). This script is the load
generator: one process, one event loop, aiohttp as the client; every load loop is bounded
in both request count and time. Each figure is printed as dockyard / reference, with the
direction that is better, as a plain table and as Markdown; the full results (every sample,
server CPU time per phase, client CPU use, latencies) go to bench/results/latest.json.

Correctness is checked while measuring: every pulled blob is hashed and compared with its
digest, upload completions must echo the digest, and every HEAD must answer 200 with the
expected digest and length; any failure aborts the run.

What is measured, per registry:
- push throughput of an image of a few random layers, with the docker pattern (POST, one
  streamed PATCH without length, PUT ?digest=) and the chunked pattern (POST, PATCH of
  --chunk-mb with Content-Range each, PUT ?digest=); layers are generated on the fly from a
  generator, never held whole in memory, and are fresh content every round;
- pull throughput of those blobs (GET, whole body read in large reads, hashed);
- manifest HEAD and blob HEAD requests per second with --concurrency connections;
- small-blob (4 KiB) monolithic pushes (POST, then PUT ?digest= with the body) per second;
- the server's CPU time per unit of work (from /proc/<pid>/stat), which does not depend on
  whether the client was the bottleneck, and its peak RSS (VmHWM of the server process
  itself: the Python interpreter for Dockyard, the Go binary for the reference).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"

try:
    import aiohttp
    from yarl import URL
except ImportError:  # run with a Python that lacks aiohttp: use the project's virtualenv
    if VENV_PYTHON.exists() and Path(sys.executable).resolve() != VENV_PYTHON.resolve() and not os.environ.get("DOCKYARD_BENCH_REEXEC"):
        os.environ["DOCKYARD_BENCH_REEXEC"] = "1"
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])
    raise

MiB = 1024 * 1024
READ_SIZE = 4 * MiB
GEN_CHUNK = MiB
POOL_SIZE = 32 * MiB
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIN_CPU = 5 / CLK_TCK
"""Less server CPU time than this (a few clock ticks) is too coarse to report per unit of work."""
REGISTRIES = ("dockyard", "reference")
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Readiness checks go straight to loopback, whatever http_proxy says."""


class BenchError(Exception):
    """A registry answered wrongly (status, digest, length): the figures would be meaningless."""


# --------------------------------------------------------------------------------------------
# content
# --------------------------------------------------------------------------------------------
class Content:
    """Deterministic, incompressible-looking layer content made cheaply on the fly.

    os.urandom runs at ~200 MB/s here, too slow to feed a push, so each 1 MiB chunk is a
    16-byte (seed, index) header followed by a slice of one random pool at an offset derived
    from (seed, index). Every (seed, size) gives the same bytes each time it is generated, so
    the digest is computed ahead by one pass and the push streams a second pass.
    """

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self.pool = memoryview(os.urandom(pool_size))

    def chunks(self, seed: int, size: int, chunk: int = GEN_CHUNK) -> Iterator[bytes]:
        span = len(self.pool) - chunk
        index = 0
        remaining = size
        while remaining > 0:
            n = min(chunk, remaining)
            header = struct.pack(">QQ", seed, index)
            if n <= len(header):
                yield header[:n]
            else:
                offset = (seed * 2654435761 + index * 97531) % span
                yield header + self.pool[offset : offset + n - len(header)]
            remaining -= n
            index += 1

    def digest(self, seed: int, size: int) -> str:
        hasher = hashlib.sha256()
        for chunk in self.chunks(seed, size):
            hasher.update(chunk)
        return "sha256:" + hasher.hexdigest()


@dataclass(frozen=True)
class Layer:
    seed: int
    size: int
    digest: str


def make_layers(content: Content, first_seed: int, count: int, total: int) -> list[Layer]:
    """`count` layers adding up to about `total` bytes, with sizes that are not round numbers."""
    base = max(total // count, 1)
    layers = []
    for i in range(count):
        size = max(base - 4099 * i - 17, 1)
        seed = first_seed + i
        layers.append(Layer(seed, size, content.digest(seed, size)))
    return layers


async def stream(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def pieces(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Regroup generated chunks into pieces of exactly `size` bytes (the last may be shorter)."""
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


# --------------------------------------------------------------------------------------------
# the servers
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proc_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a process, all threads, in seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def system_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all CPUs, everything but idle and iowait)."""
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def all_process_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds) of every process: who else kept the machine busy."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                text = handle.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        found[int(entry)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return found


def busiest_others(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], ours: set[int], top: int = 5) -> dict[str, float]:
    """CPU seconds used during the run by processes other than `ours`, summed by command name
    (processes that ended during the run are not seen)."""
    by_name: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        if pid in ours:
            continue
        used = cpu - before.get(pid, (name, 0.0))[1]
        if used > 0:
            by_name[name] = by_name.get(name, 0.0) + used
    ranked = sorted(by_name.items(), key=lambda item: -item[1])[:top]
    return {name: round(cpu, 1) for name, cpu in ranked if cpu >= 0.05}


def proc_status(pid: int) -> dict[str, str]:
    status = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    return status


def proc_kib(pid: int, key: str) -> int:
    return int(proc_status(pid)[key].split()[0])


def proc_pss_kib(pid: int) -> int:
    """Proportional set size: the process's private pages plus its share of pages it shares
    (a forked worker's copy-on-write pages count once across the workers, not once each)."""
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


class MemorySampler:
    """The peak of the PSS summed over each server's processes, sampled every 0.1 s in a
    thread while the benchmark runs (the kernel keeps no peak of a sum)."""

    def __init__(self, servers: dict[str, Server], interval: float = 0.1) -> None:
        import threading

        self.servers, self.interval = servers, interval
        self.peak_kib = {name: 0 for name in servers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, server in self.servers.items():
                total = 0
                for pid in server.pids():
                    try:
                        total += proc_pss_kib(pid)
                    except OSError:
                        continue
                self.peak_kib[name] = max(self.peak_kib[name], total)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def process_exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


@dataclass
class Server:
    name: str
    command: list[str]
    workdir: Path
    port: int
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    expect_exe: str | None = None
    """Substring of the executable that does the serving (e.g. "python"): the PID measured."""
    process: subprocess.Popen[bytes] | None = None
    pid: int = 0
    log_path: Path | None = None
    pss_ready_kib: int = 0
    """RSS once it first answered /v2/: the baseline of the process before any load."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"
        log = open(self.log_path, "wb")
        try:
            # Own session: a Ctrl-C in the terminal reaches only this script, which then stops
            # the servers itself, by PID.
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        finally:
            log.close()
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} before answering:\n{self.log_tail()}")
            try:
                with DIRECT.open(f"{self.url}/v2/", timeout=1) as response:
                    if response.status == 200:
                        break
            except urllib.error.HTTPError as error:
                if error.code == 401:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{self.name} did not answer /v2/ within {timeout}s:\n{self.log_tail()}")
        self.pid = self._serving_pid()
        self.pss_ready_kib = self.pss_kib(settled=True)

    def _serving_pid(self) -> int:
        """The PID that serves: the started process, or its child if it was a wrapper."""
        assert self.process is not None
        if self.expect_exe is None or self.expect_exe in os.path.basename(process_exe(self.process.pid)):
            return self.process.pid
        for child in children(self.process.pid):
            if self.expect_exe in os.path.basename(process_exe(child)):
                return child
        raise RuntimeError(f"cannot find the {self.expect_exe} process of {self.name} (pid {self.process.pid})")

    def pids(self) -> list[int]:
        """The serving process and its descendants (Dockyard's worker processes, `http.workers`)."""
        found, queue = [self.pid], [self.pid]
        while queue:
            kids = children(queue.pop())
            found += kids
            queue += kids
        return found

    def cpu(self) -> tuple[float, float]:
        """User and system CPU seconds of every process of the server, summed."""
        user = system = 0.0
        for pid in self.pids():
            try:
                spent = proc_cpu_seconds(pid)
            except OSError:
                continue
            user, system = user + spent[0], system + spent[1]
        return user, system

    def pss_kib(self, settled: bool = False) -> int:
        """PSS summed over every process of the server; `settled`: once the set of processes
        has not changed for 0.3 s (every worker started)."""
        if settled:
            seen, stable_since, deadline = self.pids(), time.monotonic(), time.monotonic() + 10
            while time.monotonic() - stable_since < 0.3 and time.monotonic() < deadline:
                time.sleep(0.05)
                now = self.pids()
                if now != seen:
                    seen, stable_since = now, time.monotonic()
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += proc_pss_kib(pid)
        return total

    def peak_rss_kib(self) -> int:
        """VmHWM summed over every process of the server (each worker's own peak)."""
        total = 0
        for pid in self.pids():
            try:
                total += proc_kib(pid, "VmHWM")
            except (OSError, KeyError):
                continue
        return total

    def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def dockyard_server(workdir: Path, tree: Path, python: str, log_level: str, workers: int | None = None) -> Server:
    port = free_port()
    root = workdir / "dockyard-data"
    return Server(
        "dockyard",
        [python, "-m", "registry", "serve", "--listen", f"127.0.0.1:{port}", "--storage-root", str(root)],
        workdir,
        port,
        cwd=tree,
        env={"DOCKYARD_LOG_LEVEL": log_level, "PYTHONPATH": str(tree), **({"DOCKYARD_HTTP__WORKERS": str(workers)} if workers else {})},
        expect_exe="python",
    )


def reference_server(workdir: Path, binary: str, access_log: bool) -> Server:
    port = free_port()
    root = workdir / "reference-data"
    config = workdir / "reference.yml"
    config.write_text(
        "\n".join(
            [
                "version: 0.1",
                "log:",
                "  level: error",
                "  accesslog:",
                f"    disabled: {'false' if access_log else 'true'}",
                "storage:",
                "  filesystem:",
                f"    rootdirectory: {root}",
                "  delete:",
                "    enabled: true",
                "  cache:",  # as the stock config of the Debian package and the registry:2 image
                "    blobdescriptor: inmemory",
                "  maintenance:",
                "    uploadpurging:",
                "      enabled: false",
                "http:",
                f"  addr: 127.0.0.1:{port}",
                "",
            ]
        )
    )
    return Server("reference", [binary, "serve", str(config)], workdir, port, expect_exe=None)


def nginx_server(workdir: Path, binary: str, root: Path) -> Server:
    """nginx serving Dockyard's own blob files with sendfile: the limit of a static pull."""
    port = free_port()
    config = workdir / "nginx.conf"
    config.write_text(
        "\n".join(
            [
                "daemon off;",
                "worker_processes auto;",
                *(["user root;"] if os.geteuid() == 0 else []),  # the bench's temp directory is private
                f"pid {workdir}/nginx.pid;",
                f"error_log {workdir}/nginx-error.log error;",
                "events { worker_connections 256; }",
                "http {",
                "  access_log off;",
                "  sendfile on;",
                "  tcp_nopush on;",
                "  default_type application/octet-stream;",
                f"  client_body_temp_path {workdir}/nginx-body;",
                f"  proxy_temp_path {workdir}/nginx-proxy;",
                f"  fastcgi_temp_path {workdir}/nginx-fastcgi;",
                f"  uwsgi_temp_path {workdir}/nginx-uwsgi;",
                f"  scgi_temp_path {workdir}/nginx-scgi;",
                f"  server {{ listen 127.0.0.1:{port}; root {root}; location = /v2/ {{ return 200; }} }}",
                "}",
                "",
            ]
        )
    )
    return Server("nginx", [binary, "-c", str(config), "-p", str(workdir)], workdir, port, expect_exe="nginx")


def blob_path(digest: str) -> str:
    """Where the filesystem backend keeps a blob, below its root (registry.core.layout.blob)."""
    encoded = digest.split(":", 1)[1]
    return f"blobs/sha256/{encoded[:2]}/{encoded}"


def fsync_write_loop(directory: Path, content: Content, layers: list[Layer], concurrency: int) -> float:
    """MB/s of the plainest crash-safe store: each layer written in 1 MiB writes to a temporary
    file, fsynced, renamed, its directory fsynced, `concurrency` at once. The limit of a push."""
    directory.mkdir(parents=True, exist_ok=True)

    def write(layer: Layer) -> None:
        temporary = directory / f".{layer.digest[7:]}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for chunk in content.chunks(layer.seed, layer.size, MiB):
                os.write(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, directory / layer.digest[7:])
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)

    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(write, layers))
    seconds = time.monotonic() - started
    shutil.rmtree(directory, ignore_errors=True)
    return mb_per_s(sum(layer.size for layer in layers), seconds)


async def pull_bytes(session: aiohttp.ClientSession, url: str, size: int) -> int:
    """GET and count the bytes, nothing else: what a cache or a mirror does."""
    received = 0
    async with session.get(url) as response:
        expect(response, 200, "pull")
        async for chunk in response.content.iter_chunked(READ_SIZE):
            received += len(chunk)
    if received != size:
        raise BenchError(f"pull of {url}: got {received} bytes, expected {size}")
    return received


async def pull_bytes_rate(urls: list[tuple[str, int]], concurrency: int, repeats: int = 3) -> float:
    """Median MB/s of `repeats` passes over every URL, `concurrency` at once."""
    rates = []
    slots = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, url: str, size: int) -> int:
        async with slots:
            return await pull_bytes(session, url, size)

    async with client_session(max(4, concurrency)) as session:
        for _ in range(repeats):
            await settle()
            started = time.monotonic()
            total = sum(await asyncio.gather(*(one(session, url, size) for url, size in urls)))
            rates.append(mb_per_s(total, time.monotonic() - started))
    return statistics.median(rates)


# --------------------------------------------------------------------------------------------
# the distribution API, as a client
# --------------------------------------------------------------------------------------------
def expect(response: aiohttp.ClientResponse, status: int, what: str) -> None:
    if response.status != status:
        hint = " (the benchmark needs a registry without authentication)" if response.status == 401 else ""
        raise BenchError(f"{what}: {response.method} {response.url} answered {response.status}, expected {status}{hint}")


def follow(base: str, location: str | None, what: str) -> str:
    """Absolute upload URL from a Location header, left encoded exactly as the server sent it
    (distribution's `_state` must come back byte for byte)."""
    if not location:
        raise BenchError(f"{what}: no Location header")
    return location if "://" in location else base + location


def with_digest(url: str, digest: str) -> URL:
    separator = "&" if "?" in url else "?"
    return URL(f"{url}{separator}digest={digest}", encoded=True)


async def start_upload(session: aiohttp.ClientSession, base: str, repo: str) -> str:
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as response:
        expect(response, 202, "start upload")
        return follow(base, response.headers.get("Location"), "start upload")


async def finish_upload(
    session: aiohttp.ClientSession, base: str, location: str, digest: str, body: bytes | None = None
) -> None:
    headers = {"Content-Type": "application/octet-stream"}
    async with session.put(with_digest(location, digest), data=body if body is not None else b"", headers=headers) as response:
        expect(response, 201, "finish upload")
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed != digest:
            raise BenchError(f"finish upload: Docker-Content-Digest {echoed!r}, expected {digest}")


async def push_streamed(session: aiohttp.ClientSession, base: str, repo: str, layer: Layer, content: Content) -> None:
    """The docker pattern: POST, one PATCH streaming the whole blob (chunked encoding), PUT."""
    location = await start_upload(session, base, repo)
    headers = {"Content-Type": "application/octet-stream"}
    async with session.patch(URL(location, encoded=True), data=stream(content.chunks(layer.seed, layer.size)), headers=headers) as response:
        expect(response, 202, "streamed PATCH")
        location = follow(base, response.headers.get("Location"), "streamed PATCH")
    await finish_upload(session, base, location, layer.digest)


async def push_chunked(
    session: aiohttp.ClientSession, base: str, repo: str, layer: Layer, content: Content, chunk_size: int
) -> None:
    """The chunked pattern: POST, PATCH with Content-Range per `chunk_size` bytes, PUT."""
    location = await start_upload(session, base, repo)
    offset = 0
    for piece in pieces(content.chunks(layer.seed, layer.size), chunk_size):
        headers = {"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{offset + len(piece) - 1}"}
        async with session.patch(URL(location, encoded=True), data=piece, headers=headers) as response:
            expect(response, 202, "chunked PATCH")
            location = follow(base, response.headers.get("Location"), "chunked PATCH")
        offset += len(piece)
    await finish_upload(session, base, location, layer.digest)


async def push_bytes(session: aiohttp.ClientSession, base: str, repo: str, data: bytes) -> str:
    """Monolithic push of a small blob: POST, then PUT ?digest= carrying the body."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = await start_upload(session, base, repo)
    await finish_upload(session, base, location, digest, data)
    return digest


class PipelinedHash:
    """sha256 in one worker thread, overlapped with receiving: the event loop only reads.

    hashlib releases the GIL on large buffers, so hashing the previous read while the next
    one arrives keeps the client from capping pull throughput at one core's hashing speed.
    One worker keeps the updates in order; at most `depth` reads wait to be hashed.
    """

    def __init__(self, executor: Any, depth: int = 8) -> None:
        self.hasher = hashlib.sha256()
        self.executor = executor
        self.depth = depth
        self.pending: list[asyncio.Future[None]] = []

    async def update(self, chunk: bytes) -> None:
        if len(self.pending) >= self.depth:
            await self.pending.pop(0)
        self.pending.append(asyncio.wrap_future(self.executor.submit(self.hasher.update, chunk)))

    async def hexdigest(self) -> str:
        for future in self.pending:
            await future
        self.pending.clear()
        return self.hasher.hexdigest()


HASH_EXECUTOR: Any = None


def hash_executor() -> Any:
    global HASH_EXECUTOR
    if HASH_EXECUTOR is None:
        from concurrent.futures import ThreadPoolExecutor

        HASH_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-hash")
    return HASH_EXECUTOR


async def pull_verified(session: aiohttp.ClientSession, base: str, repo: str, layer: Layer) -> int:
    """GET a blob, reading the whole body in large reads; its bytes must hash to its digest."""
    hasher = PipelinedHash(hash_executor())
    received = 0
    async with session.get(f"{base}/v2/{repo}/blobs/{layer.digest}") as response:
        expect(response, 200, "pull")
        async for chunk in response.content.iter_chunked(READ_SIZE):
            await hasher.update(chunk)
            received += len(chunk)
    actual = "sha256:" + await hasher.hexdigest()
    if received != layer.size or actual != layer.digest:
        raise BenchError(f"pull of {layer.digest} from {base}: got {received} bytes hashing to {actual}, expected {layer.size} bytes")
    return received


async def push_manifest(session: aiohttp.ClientSession, base: str, repo: str, tag: str, layers: list[Layer]) -> tuple[str, int]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config_digest = await push_bytes(session, base, repo, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size} for layer in layers],
        },
        indent=3,
    ).encode()
    async with session.put(f"{base}/v2/{repo}/manifests/{tag}", data=manifest, headers={"Content-Type": OCI_MANIFEST}) as response:
        expect(response, 201, "manifest PUT")
    return "sha256:" + hashlib.sha256(manifest).hexdigest(), len(manifest)


def client_session(connections: int = 8) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections, ttl_dns_cache=None)
    return aiohttp.ClientSession(
        connector=connector,
        read_bufsize=READ_SIZE,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
    )


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------
@dataclass
class Phase:
    """Wall time, server CPU and client CPU of one piece of work."""

    wall: float = 0.0
    server_cpu: float = 0.0
    server_system: float = 0.0
    """The part of server_cpu spent in the kernel."""
    client_cpu: float = 0.0


class Meter:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def run(self, work: Callable[[], Awaitable[Any]]) -> tuple[Any, Phase]:
        server_before = self.server.cpu()
        client_before = time.process_time()
        start = time.perf_counter()
        result = await work()
        wall = time.perf_counter() - start
        server_after = self.server.cpu()
        return result, Phase(
            wall,
            sum(server_after) - sum(server_before),
            server_after[1] - server_before[1],
            time.process_time() - client_before,
        )


@dataclass
class LoadResult:
    requests: int
    wall: float
    latencies: list[float]
    server_cpu: float
    server_system: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.wall if self.wall else 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return ordered[min(int(p * len(ordered)), len(ordered) - 1)] * 1000 if ordered else 0.0

        return {
            "requests": self.requests,
            "seconds": round(self.wall, 3),
            "per_second": round(self.rate, 1),
            "latency_ms": {"p50": round(pct(0.50), 3), "p90": round(pct(0.90), 3), "p99": round(pct(0.99), 3), "max": round(pct(1.0), 3)},
            "server_cpu_seconds": round(self.server_cpu, 3),
            "server_cpu_system_seconds": round(self.server_system, 3),
            "server_cpu_us_per_request": round(self.server_cpu / self.requests * 1e6, 1) if self.requests and self.server_cpu >= MIN_CPU else None,
            "client_cpu_busy": round(self.client_cpu / self.wall, 3) if self.wall else None,
        }


async def load(
    server: Server,
    concurrency: int,
    count: int,
    seconds: float,
    operation: Callable[[aiohttp.ClientSession], Awaitable[None]],
    warmup: int,
) -> LoadResult:
    """Run `operation` from `concurrency` workers over as many connections until `count` are
    done or `seconds` have passed, whichever first; every failure aborts."""
    async with client_session(concurrency) as session:
        # Warm up: open every connection and let both sides settle.
        await asyncio.gather(*(operation(session) for _ in range(warmup)))
        issued = 0
        latencies: list[float] = []
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal issued
            while issued < count and time.monotonic() < deadline:
                issued += 1
                began = time.perf_counter()
                await operation(session)
                latencies.append(time.perf_counter() - began)

        server_before = server.cpu()
        client_before = time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        server_after = server.cpu()
        return LoadResult(
            len(latencies),
            wall,
            latencies,
            sum(server_after) - sum(server_before),
            server_after[1] - server_before[1],
            time.process_time() - client_before,
        )


async def fetch_manifest(base: str, repo: str, reference: str) -> bytes:
    async with client_session(1) as session:
        async with session.get(f"{base}/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}) as response:
            expect(response, 200, "manifest GET")
            return await response.read()


def get_check(url: str) -> Callable[[aiohttp.ClientSession], Awaitable[None]]:
    async def get(session: aiohttp.ClientSession) -> None:
        async with session.get(url) as response:
            body = await response.read()
            if response.status != 200 or not body:
                raise BenchError(f"GET {url}: {response.status}")

    return get


def storm(base: str, repo: str, manifest_digest: str, blob_digest: str) -> Callable[[aiohttp.ClientSession], Awaitable[None]]:
    """Manifest HEAD, manifest GET, blob HEAD and tags/list in turn (what clients check before pulling)."""
    requests = iter(range(10**12))

    async def one(session: aiohttp.ClientSession) -> None:
        kind = next(requests) % 4
        if kind == 0:
            call = session.head(f"{base}/v2/{repo}/manifests/latest", headers={"Accept": MANIFEST_ACCEPT})
        elif kind == 1:
            call = session.get(f"{base}/v2/{repo}/manifests/{manifest_digest}", headers={"Accept": MANIFEST_ACCEPT})
        elif kind == 2:
            call = session.head(f"{base}/v2/{repo}/blobs/{blob_digest}")
        else:
            call = session.get(f"{base}/v2/{repo}/tags/list")
        async with call as response:
            await response.read()
            if response.status != 200:
                raise BenchError(f"storm request {kind}: {response.status}")

    return one


def head_check(url: str, digest: str, size: int, accept: str | None = None) -> Callable[[aiohttp.ClientSession], Awaitable[None]]:
    headers = {"Accept": accept} if accept else {}
    expected_length = str(size)

    async def head(session: aiohttp.ClientSession) -> None:
        async with session.head(url, headers=headers) as response:
            if (
                response.status != 200
                or response.headers.get("Docker-Content-Digest") != digest
                or response.headers.get("Content-Length") != expected_length
            ):
                raise BenchError(
                    f"HEAD {url}: {response.status}, digest {response.headers.get('Docker-Content-Digest')}, "
                    f"length {response.headers.get('Content-Length')}; expected 200, {digest}, {size}"
                )

    return head


# --------------------------------------------------------------------------------------------
# profiling Dockyard (optional)
# --------------------------------------------------------------------------------------------
class Profiler:
    """py-spy on the Dockyard process during each phase, saved as collapsed stacks."""

    def __init__(self, binary: str | None, directory: Path, rate: int) -> None:
        self.binary = binary
        self.directory = directory
        self.rate = rate
        self.process: subprocess.Popen[bytes] | None = None
        self.output: Path | None = None
        self.files: dict[str, str] = {}

    def start(self, pid: int, phase: str) -> None:
        if self.binary is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.output = self.directory / f"{phase}.txt"
        self.process = subprocess.Popen(
            [self.binary, "record", "--pid", str(pid), "--rate", str(self.rate), "--format", "raw", "--nonblocking", "--threads", "--gil", "-o", str(self.output)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(0.7)  # attached before the load starts
        self.files[phase] = str(self.output)

    @contextlib.contextmanager
    def phase(self, server: Server, phase: str) -> Iterator[None]:
        """Profile `phase` when the server is Dockyard's and profiling is on."""
        if server.name != "dockyard" or self.binary is None:
            yield
            return
        self.start(server.pid, phase)
        try:
            yield
        finally:
            self.stop()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


IDLE_FRAMES = ("EpollSelector.select", "_worker (concurrent/futures/thread.py:81)", "Condition.wait", "Queue.get")
PROJECT_PARTS = ("registry/", "storage_backends/", "ocispec/")


def _function(frame: str) -> str:
    """`name (file.py:123)` -> `name (file.py)`: samples of one function add up across lines."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def summarise_profile(path: str, top: int = 12) -> list[str]:
    """Where Dockyard's time went, from py-spy's collapsed stacks (sampled with --gil: only
    the thread holding the GIL, i.e. the Python work that serialises the server).

    Reports the event-loop thread and the worker threads apart, by function (lines merged):
    self time of the innermost frames, and inclusive time of the project's own functions.
    """
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = idle = 0
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return [f"  (no profile at {path})"]
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = "event loop" if "MainThread" in frames[0] else "worker threads"
        frames = [frame for frame in frames if " (" in frame and not frame.startswith(("thread (", "process "))]
        if not frames:
            continue
        total += count
        if any(marker in frames[-1] for marker in IDLE_FRAMES):
            idle += count
            continue
        threads[thread] = threads.get(thread, 0) + count
        leaf = _function(frames[-1])
        own[leaf] = own.get(leaf, 0) + count
        for function in {_function(frame) for frame in frames}:
            inclusive[function] = inclusive.get(function, 0) + count
    if not total:
        return ["  (no samples)"]
    busy = total - idle
    split = ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in sorted(threads.items()))
    out = [f"  {total} samples holding the GIL: {split}, idle {100 * idle / total:.0f}%", "  self (innermost function):"]
    for function, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        out.append(f"    {100 * count / total:5.1f}%  {function}")
    out.append("  inclusive, Dockyard's own functions:")
    project = [(f, n) for f, n in inclusive.items() if any(part in f for part in PROJECT_PARTS) and "__main__" not in f and "cli.py" not in f and "server.py" not in f]
    for function, count in sorted(project, key=lambda item: -item[1])[:top]:
        out.append(f"    {100 * count / total:5.1f}%  {function}")
    if busy == 0:
        out.append("    (all idle)")
    return out


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------
@dataclass
class Options:
    size_mb: float
    layers: int
    rounds: int
    chunk_mb: float
    concurrency: int
    head_requests: int
    head_seconds: float
    small_blobs: int
    small_seconds: float
    small_concurrency: int
    quick: bool
    push_concurrency: int = 4
    small_blob_mb: float = 64
    large_blob_mb: float = 1024


async def settle() -> None:
    """Flush dirty pages left by the previous phase (untimed), so one phase's writeback does
    not land in the next one's figures, whichever registry caused it."""
    await asyncio.to_thread(os.sync)
    await asyncio.sleep(0.2)


def mb_per_s(size: int, seconds: float) -> float:
    return size / MiB / seconds if seconds > 0 else 0.0


async def throughput_round(
    server: Server, content: Content, layers_docker: list[Layer], layers_chunked: list[Layer], options: Options, repo: str
) -> dict[str, Any]:
    meter = Meter(server)
    chunk_size = int(options.chunk_mb * MiB)
    out: dict[str, Any] = {}
    slots = asyncio.Semaphore(options.push_concurrency)

    async def bounded(job: Awaitable[Any]) -> Any:
        async with slots:
            return await job

    async with client_session(max(4, options.push_concurrency)) as session:
        # `--push-concurrency` layers move at once, as docker and podman push and pull them

        async def docker() -> None:
            await asyncio.gather(*(bounded(push_streamed(session, server.url, repo, layer, content)) for layer in layers_docker))

        async def chunked() -> None:
            await asyncio.gather(*(bounded(push_chunked(session, server.url, repo, layer, content, chunk_size)) for layer in layers_chunked))

        async def pull() -> int:
            layers = [*layers_docker, *layers_chunked]
            return sum(await asyncio.gather(*(bounded(pull_verified(session, server.url, repo, layer)) for layer in layers)))

        for key, work, size in (
            ("push_docker", docker, sum(layer.size for layer in layers_docker)),
            ("push_chunked", chunked, sum(layer.size for layer in layers_chunked)),
            ("pull", pull, sum(layer.size for layer in [*layers_docker, *layers_chunked])),
        ):
            await settle()
            _, phase = await meter.run(work)
            out[key] = {
                "bytes": size,
                "seconds": round(phase.wall, 4),
                "mb_per_s": round(mb_per_s(size, phase.wall), 1),
                "server_cpu_seconds": round(phase.server_cpu, 3),
                "server_cpu_system_seconds": round(phase.server_system, 3),
                "server_cpu_s_per_gib": round(phase.server_cpu / (size / 1024**3), 3) if phase.server_cpu >= MIN_CPU else None,
                "client_cpu_busy": round(phase.client_cpu / phase.wall, 3),
            }
    return out


async def benchmark(servers: dict[str, Server], options: Options, profiler: Profiler, log: Callable[[str], None]) -> dict[str, Any]:
    with MemorySampler(servers) as memory:
        results = await _benchmark(servers, options, profiler, log)
    for name in servers:
        results[name]["peak_pss_mib"] = round(memory.peak_kib[name] / 1024, 1)
    return results


async def _benchmark(servers: dict[str, Server], options: Options, profiler: Profiler, log: Callable[[str], None]) -> dict[str, Any]:
    busy_before = system_busy_seconds()
    processes_before = all_process_cpu()
    own_before = time.process_time() + sum(sum(server.cpu()) for server in servers.values())
    wall_before = time.monotonic()
    content = Content()
    total = int(options.size_mb * MiB)
    repo = "bench/image"
    results: dict[str, dict[str, Any]] = {name: {"rounds": []} for name in servers}

    @contextlib.contextmanager
    def phase(server: Server, label: str) -> Iterator[None]:
        """A measured phase: profiled (when asked), and the PSS it leaves behind noted, which
        shows the phase that sets the peak (a Python heap does not shrink back)."""
        with profiler.phase(server, label):
            yield
        results[server.name].setdefault("pss_after_mib", {})[label] = round(server.pss_kib() / 1024, 1)

    # Fresh content for every (round, pattern): a second push of the same digest would take
    # the registry's already-stored shortcut and measure nothing.
    log(f"generating {options.rounds} round(s) x 2 patterns x {options.layers} layers, ~{options.size_mb:g} MiB per pattern")
    plan = []
    for round_index in range(options.rounds):
        seed = 1_000_000 * (round_index + 1)
        plan.append(
            (
                make_layers(content, seed, options.layers, total),
                make_layers(content, seed + 500_000, options.layers, total),
            )
        )

    for round_index, (layers_docker, layers_chunked) in enumerate(plan):
        # Who goes first follows A B B A (repeated): each registry is first in half of 4 rounds,
        # and a drift over the run (this VM's disk slows from round to round) is shared evenly.
        # Going first matters: the second pusher of a round ran up to 2x slower, whichever it
        # was, despite the sync between phases; plain alternation over 3 rounds gave one
        # registry the first slot twice, early and late.
        order = list(servers) if round_index % 4 in (0, 3) else list(reversed(servers))
        for name in order:
            with phase(servers[name], f"throughput-round{round_index + 1}"):
                figures = await throughput_round(servers[name], content, layers_docker, layers_chunked, options, repo)
            results[name]["rounds"].append(figures)
            log(
                f"round {round_index + 1} {name:9}: push docker {figures['push_docker']['mb_per_s']:7.1f} MB/s, "
                f"chunked {figures['push_chunked']['mb_per_s']:7.1f} MB/s, pull {figures['pull']['mb_per_s']:7.1f} MB/s (verified)"
            )

    # The limits: the last round's layers, pulled as bytes only from each registry and from
    # nginx serving Dockyard's files with sendfile; its docker-pattern layers written by a
    # plain fsync'd loop.
    last_layers = [*plan[-1][0], *plan[-1][1]]
    for name, server in servers.items():
        urls = [(f"{server.url}/v2/{repo}/blobs/{layer.digest}", layer.size) for layer in last_layers]
        results[name]["pull_bytes"] = {"mb_per_s": round(await pull_bytes_rate(urls, options.push_concurrency), 1)}
    nginx_binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx_binary).exists():
        raise BenchError("nginx is missing (apt-get install nginx): it is the static-pull limit")
    dockyard_root = servers["dockyard"].workdir / "dockyard-data"
    nginx = nginx_server(servers["dockyard"].workdir, nginx_binary, dockyard_root)
    nginx.start()
    try:
        nginx.wait_ready()
        urls = [(f"{nginx.url}/{blob_path(layer.digest)}", layer.size) for layer in last_layers]
        results["nginx"] = {"pull_bytes": {"mb_per_s": round(await pull_bytes_rate(urls, options.push_concurrency), 1)}}
    finally:
        nginx.stop()
    await settle()
    disk_rate = await asyncio.to_thread(fsync_write_loop, servers["dockyard"].workdir / "disk-loop", content, plan[-1][0], options.push_concurrency)
    results["disk"] = {"rounds": [{"push_docker": {"mb_per_s": round(disk_rate, 1)}}]}
    log(
        f"limits       : pull bytes only dockyard {results['dockyard']['pull_bytes']['mb_per_s']} MB/s, "
        f"reference {results['reference']['pull_bytes']['mb_per_s']} MB/s, nginx sendfile {results['nginx']['pull_bytes']['mb_per_s']} MB/s; "
        f"fsync'd write loop {disk_rate:.1f} MB/s"
    )

    # The image whose manifest and blobs the HEAD phases ask for.
    manifest_layers = plan[0][0]
    for name, server in servers.items():
        async with client_session(2) as session:
            digest, size = await push_manifest(session, server.url, repo, "latest", manifest_layers)
        results[name]["manifest"] = {"digest": digest, "size": size}

    head_warmup = min(options.concurrency * 4, options.head_requests)
    blob = manifest_layers[0]
    for kind, make_check in (
        (
            "manifest_head",
            lambda server, name: head_check(
                f"{server.url}/v2/{repo}/manifests/latest", results[name]["manifest"]["digest"], results[name]["manifest"]["size"], MANIFEST_ACCEPT
            ),
        ),
        ("blob_head", lambda server, name: head_check(f"{server.url}/v2/{repo}/blobs/{blob.digest}", blob.digest, blob.size)),
    ):
        for name, server in servers.items():
            with phase(server, kind):
                outcome = await load(server, options.concurrency, options.head_requests, options.head_seconds, make_check(server, name), head_warmup)
            results[name][kind] = outcome.summary()
            log(
                f"{kind:13} {name:9}: {outcome.rate:8.0f} req/s, p99 {results[name][kind]['latency_ms']['p99']:.1f} ms, "
                f"server {results[name][kind]['server_cpu_us_per_request']} us CPU/req, client {results[name][kind]['client_cpu_busy']:.0%} busy"
            )

    for name, server in servers.items():
        small_repo = "bench/small"

        async def small(session: aiohttp.ClientSession) -> None:
            await push_bytes(session, server.url, small_repo, os.urandom(4096))

        with phase(server, "small_push"):
            outcome = await load(server, options.small_concurrency, options.small_blobs, options.small_seconds, small, options.small_concurrency)
        results[name]["small_push"] = outcome.summary()
        log(
            f"small push    {name:9}: {outcome.rate:8.0f} ops/s, p99 {results[name]['small_push']['latency_ms']['p99']:.1f} ms, "
            f"server {results[name]['small_push']['server_cpu_us_per_request']} us CPU/op"
        )

    # Dedup push (what `docker push` of an image whose layers the registry has does): HEAD each
    # blob in a new repository, mount it from the one that has it, PUT the manifest.
    image = results[next(iter(servers))]["manifest"]
    for name, server in servers.items():
        counter = iter(range(10**9))
        manifest_body = await fetch_manifest(server.url, repo, "latest")

        async def dedup(session: aiohttp.ClientSession) -> None:
            target = f"bench/dedup{next(counter)}"
            for layer in manifest_layers:
                async with session.head(f"{server.url}/v2/{target}/blobs/{layer.digest}") as response:
                    if response.status not in (200, 404):
                        raise BenchError(f"dedup HEAD: {response.status}")
                async with session.post(f"{server.url}/v2/{target}/blobs/uploads/", params={"mount": layer.digest, "from": repo}) as response:
                    expect(response, 201, "cross-repository mount")
            config = json.loads(manifest_body)["config"]["digest"]
            async with session.post(f"{server.url}/v2/{target}/blobs/uploads/", params={"mount": config, "from": repo}) as response:
                expect(response, 201, "cross-repository mount of the config")
            async with session.put(f"{server.url}/v2/{target}/manifests/latest", data=manifest_body, headers={"Content-Type": OCI_MANIFEST}) as response:
                expect(response, 201, "manifest PUT into a new repository")

        with phase(server, "dedup_push"):
            outcome = await load(server, options.push_concurrency, options.small_blobs, options.small_seconds, dedup, options.push_concurrency)
        results[name]["dedup_push"] = outcome.summary()
        log(f"dedup push    {name:9}: {outcome.rate:8.0f} images/s, server {results[name]['dedup_push']['server_cpu_us_per_request']} us CPU/image")

    # Listings and a storm of small requests, as a CI fleet makes them.
    del image
    for kind, make_operation in (
        ("tags_list", lambda server: get_check(f"{server.url}/v2/{repo}/tags/list")),
        ("catalog", lambda server: get_check(f"{server.url}/v2/_catalog?n=100")),
        ("storm", lambda server: storm(server.url, repo, results[server.name]["manifest"]["digest"], blob.digest)),
    ):
        for name, server in servers.items():
            with phase(server, kind):
                outcome = await load(server, options.concurrency, options.head_requests, options.head_seconds, make_operation(server), head_warmup)
            results[name][kind] = outcome.summary()
            log(f"{kind:13} {name:9}: {outcome.rate:8.0f} req/s, p99 {results[name][kind]['latency_ms']['p99']:.1f} ms, "
                f"server {results[name][kind]['server_cpu_us_per_request']} us CPU/req")

    # Memory must not grow with blob size: one small and one large blob, pushed and pulled one
    # at a time, each under its own sampler.
    for label, size_mb in (("blob_small", options.small_blob_mb), ("blob_large", options.large_blob_mb)):
        [layer] = make_layers(content, 9_000_000 + int(size_mb), 1, int(size_mb * MiB))
        for name, server in servers.items():
            await settle()
            with MemorySampler({name: server}, interval=0.05) as sampler:
                async with client_session(2) as session:
                    await push_streamed(session, server.url, "bench/large", layer, content)
                    await pull_verified(session, server.url, "bench/large", layer)
            results[name][label] = {"size_mib": size_mb, "peak_pss_mib": round(sampler.peak_kib[name] / 1024, 1)}
        log(f"{label:13}: {size_mb:g} MiB pushed and pulled, peak PSS dockyard {results['dockyard'][label]['peak_pss_mib']} MiB, "
            f"reference {results['reference'][label]['peak_pss_mib']} MiB")  # fmt: skip
    for name in servers:
        trail = ", ".join(f"{label} {mib:g}" for label, mib in results[name].get("pss_after_mib", {}).items())
        log(f"memory (PSS MiB) after each phase, {name}: {trail}")

    # CPU that neither this script nor the two servers used: other work on the machine, which
    # makes the figures noisy (the profiler, if on, counts here too).
    wall = time.monotonic() - wall_before
    other = (system_busy_seconds() - busy_before) - (
        time.process_time() + sum(sum(server.cpu()) for server in servers.values()) - own_before
    )
    results["machine"] = {
        "wall_seconds": round(wall, 1),
        "other_processes_cpu_seconds": round(max(other, 0.0), 1),
        "other_processes_cpu_share": round(max(other, 0.0) / (wall * (os.cpu_count() or 1)), 3),
        "loadavg_at_end": os.getloadavg(),
        "busiest_other_processes_cpu_seconds": busiest_others(
            processes_before, all_process_cpu(), {os.getpid(), *(server.pid for server in servers.values())}
        ),
    }
    for name, server in servers.items():
        results[name]["peak_rss_mib"] = round(server.peak_rss_kib() / 1024, 1)
        results[name]["processes"] = len(server.pids())
        results[name]["pss_at_end_mib"] = round(server.pss_kib() / 1024, 1)
        results[name]["pss_when_ready_mib"] = round(server.pss_ready_kib / 1024, 1)
        results[name]["pid"] = server.pid
        results[name]["exe"] = process_exe(server.pid)
        results[name]["threads"] = int(proc_status(server.pid)["Threads"])
    return results


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    pick: Callable[[dict[str, Any]], float | None]
    digits: int = 1
    target: float | None = None
    """The ratio issue 13 asks for: at least this (higher is better) or at most this (lower)."""
    baseline: str = "reference"
    """What Dockyard is compared with: the reference registry, or a limit (nginx, disk)."""


def median_of(rounds: list[dict[str, Any]], phase: str, field_name: str) -> float | None:
    values = [r[phase][field_name] for r in rounds if r[phase][field_name] is not None]
    return statistics.median(values) if values else None


METRICS = [
    Metric("push_docker_mb_s", "Push, docker pattern (1 streamed PATCH)", "MB/s", True, lambda r: median_of(r["rounds"], "push_docker", "mb_per_s"), target=1.1),
    Metric("push_chunked_mb_s", "Push, chunked pattern (PATCH + Content-Range)", "MB/s", True, lambda r: median_of(r["rounds"], "push_chunked", "mb_per_s"), target=1.1),
    Metric("pull_mb_s", "Pull (GET, digest verified)", "MB/s", True, lambda r: median_of(r["rounds"], "pull", "mb_per_s"), target=1.0),
    Metric("pull_bytes_mb_s", "Pull, bytes only (no digest check)", "MB/s", True, lambda r: r["pull_bytes"]["mb_per_s"]),
    Metric("pull_bytes_vs_nginx", "Pull, bytes only, vs nginx sendfile of the same files (reference column: nginx)", "MB/s", True,
           lambda r: r["pull_bytes"]["mb_per_s"], target=0.8, baseline="nginx"),
    Metric("push_vs_disk", "Push, docker pattern, vs a plain fsync'd write loop (reference column: the loop)", "MB/s", True,
           lambda r: median_of(r["rounds"], "push_docker", "mb_per_s"), baseline="disk"),
    Metric("manifest_head_rps", "Manifest HEAD", "req/s", True, lambda r: r["manifest_head"]["per_second"], 0),
    Metric("blob_head_rps", "Blob HEAD", "req/s", True, lambda r: r["blob_head"]["per_second"], 0),
    Metric("small_push_ops", "Small blob push, 4 KiB monolithic", "ops/s", True, lambda r: r["small_push"]["per_second"], 0),
    Metric("dedup_push_ops", "Dedup push: HEAD, mount each blob, PUT manifest into a new repo", "images/s", True,
           lambda r: r["dedup_push"]["per_second"], 1, target=1.2),
    Metric("tags_list_rps", "tags/list", "req/s", True, lambda r: r["tags_list"]["per_second"], 0, target=1.5),
    Metric("catalog_rps", "catalog page (n=100)", "req/s", True, lambda r: r["catalog"]["per_second"], 0),
    Metric("storm_rps", "Small-request storm (manifest HEAD/GET, blob HEAD, tags)", "req/s", True, lambda r: r["storm"]["per_second"], 0, target=2.0),
    Metric("peak_pss_mib", "Server peak memory (PSS of all its processes, sampled)", "MiB", False, lambda r: r["peak_pss_mib"], target=1.5),
    Metric("peak_rss_mib", "Server peak RSS (VmHWM, summed over its processes)", "MiB", False, lambda r: r["peak_rss_mib"]),
    Metric("blob_small_pss_mib", "Server peak memory, one 64 MiB blob pushed then pulled (PSS; quick: 16 MiB)", "MiB", False,
           lambda r: r["blob_small"]["peak_pss_mib"]),
    Metric("blob_large_pss_mib", "Server peak memory, one 1 GiB blob pushed then pulled (PSS; quick: 64 MiB; flat if equal to the row above)", "MiB", False,
           lambda r: r["blob_large"]["peak_pss_mib"]),
    Metric("idle_pss_mib", "Server memory at start, before any load (PSS of all its processes)", "MiB", False, lambda r: r["pss_when_ready_mib"]),
    Metric("push_docker_cpu", "Server CPU, docker-pattern push", "s/GiB", False, lambda r: median_of(r["rounds"], "push_docker", "server_cpu_s_per_gib"), 2),
    Metric("push_chunked_cpu", "Server CPU, chunked push", "s/GiB", False, lambda r: median_of(r["rounds"], "push_chunked", "server_cpu_s_per_gib"), 2),
    Metric("pull_cpu", "Server CPU, pull", "s/GiB", False, lambda r: median_of(r["rounds"], "pull", "server_cpu_s_per_gib"), 2),
    Metric("manifest_head_cpu", "Server CPU per manifest HEAD", "µs", False, lambda r: r["manifest_head"]["server_cpu_us_per_request"], 0),
    Metric("blob_head_cpu", "Server CPU per blob HEAD", "µs", False, lambda r: r["blob_head"]["server_cpu_us_per_request"], 0),
    Metric("small_push_cpu", "Server CPU per small push", "µs", False, lambda r: r["small_push"]["server_cpu_us_per_request"], 0),
]


def tabulate(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for metric in METRICS:
        dockyard = metric.pick(results["dockyard"])
        reference = metric.pick(results[metric.baseline]) if metric.baseline in results else None
        ratio = dockyard / reference if dockyard is not None and reference else None
        better = None
        if ratio is not None:
            better = ratio >= 1 if metric.higher_is_better else ratio <= 1
        rows.append(
            {
                "key": metric.key,
                "metric": metric.label,
                "unit": metric.unit,
                "better": "higher" if metric.higher_is_better else "lower",
                "dockyard": dockyard,
                "reference": reference,
                "ratio": round(ratio, 3) if ratio is not None else None,
                "dockyard_better_or_equal": better,
                "digits": metric.digits,
                "target": metric.target,
                "meets_target": _meets(ratio, metric),
            }
        )
    return rows


def _meets(ratio: float | None, metric: Metric) -> bool | None:
    if ratio is None or metric.target is None:
        return None
    return ratio >= metric.target if metric.higher_is_better else ratio <= metric.target


def median_rows(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each metric's median over whole runs: the figures, and the ratio (the median of the
    runs' ratios, so one noisy run of either registry cannot decide it)."""
    merged = []
    for index, metric in enumerate(METRICS):
        rows = [run[index] for run in runs]
        row = dict(rows[0])
        for field_name in ("dockyard", "reference", "ratio"):
            values = [r[field_name] for r in rows if r[field_name] is not None]
            row[field_name] = statistics.median(values) if values else None
        row["ratio_runs"] = [r["ratio"] for r in rows]
        row["meets_target"] = _meets(row["ratio"], metric)
        if row["ratio"] is not None:
            row["dockyard_better_or_equal"] = row["ratio"] >= 1 if metric.higher_is_better else row["ratio"] <= 1
        merged.append(row)
    return merged


def target_text(row: dict[str, Any]) -> str:
    if row.get("target") is None:
        return ""
    sign = "≥" if row["better"] == "higher" else "≤"
    return f"{sign} {row['target']:g} {'✓' if row['meets_target'] else '✗'}"


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def render_text(rows: list[dict[str, Any]]) -> str:
    header = ["metric", "unit", "dockyard", "reference", "ratio d/r", "target", "better"]
    body = [
        [row["metric"], row["unit"], fmt(row["dockyard"], row["digits"]), fmt(row["reference"], row["digits"]), fmt(row["ratio"], 2),
         target_text(row), f"{row['better']} is better"]
        for row in rows
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    align = ["<", "<", ">", ">", ">", "<", "<"]
    lines = ["  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(line, align, widths)) for line in [header]]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(line, align, widths)) for line in body]
    return "\n".join(lines)


def render_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| Metric | Dockyard | Reference (distribution) | Ratio (Dockyard / reference) | Target | Better |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['metric']} ({row['unit']}) | {fmt(row['dockyard'], row['digits'])} | {fmt(row['reference'], row['digits'])} "
            f"| {fmt(row['ratio'], 2)} | {target_text(row)} | {row['better']} |"
        )
    return "\n".join(lines)


def git_describe(tree: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(tree), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        ).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def reference_version(binary: str) -> str:
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and short loads: a smoke test of a few seconds")
    parser.add_argument("--size-mb", type=float, help="MiB per push pattern per round, split over --layers (default 256; quick 8)")
    parser.add_argument("--layers", type=int, help="layers per push pattern (default 4; quick 2)")
    parser.add_argument("--rounds", type=int, help="push/pull rounds, fresh content each; the median is reported (default 4; quick 1)")
    parser.add_argument("--runs", type=int, help="whole benchmarks on fresh servers; each figure is the median over them (default 3; quick 1)")
    parser.add_argument("--chunk-mb", type=float, help="PATCH size of the chunked pattern (default 5; quick 1)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the HEAD loads (default 32)")
    parser.add_argument("--head-requests", type=int, help="at most this many requests per HEAD load (default 20000; quick 500)")
    parser.add_argument("--head-seconds", type=float, help="and at most this long (default 6; quick 1)")
    parser.add_argument("--small-blobs", type=int, help="at most this many 4 KiB pushes (default 3000; quick 100)")
    parser.add_argument("--small-seconds", type=float, help="and at most this long (default 6; quick 1)")
    parser.add_argument("--small-concurrency", type=int, default=8, help="concurrent small pushes (default 8)")
    parser.add_argument("--push-concurrency", type=int, default=4, help="layers pushed and pulled at once, and concurrent dedup pushes (default 4)")
    parser.add_argument("--large-blob-mb", type=float, help="the large single blob of the memory check (default 1024; quick 64)")
    parser.add_argument("--workers", type=int, help="Dockyard's http.workers (default: its own, one per core)")
    parser.add_argument("--dockyard-tree", type=Path, default=REPO_ROOT, help="source tree whose registry/ is run (default: this checkout)")
    parser.add_argument("--dockyard-python", default=str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable), help="interpreter for Dockyard")
    parser.add_argument("--reference-binary", default=shutil.which("docker-registry") or "/usr/bin/docker-registry")
    parser.add_argument("--access-log", action="store_true", help="leave both servers' access logs on (default: both off)")
    parser.add_argument("--workdir", type=Path, help="parent of the temporary storage (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary storage and server logs")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "latest.json", help="where the JSON results go")
    parser.add_argument("--py-spy", action="store_true", help="profile Dockyard with py-spy during each phase (slows it; figures not comparable)")
    parser.add_argument("--py-spy-rate", type=int, default=200, help="py-spy samples per second (default 200)")
    args = parser.parse_args(argv)
    defaults = (
        dict(size_mb=8, layers=2, rounds=1, runs=1, large_blob_mb=64, chunk_mb=1, head_requests=500, head_seconds=1.0, small_blobs=100, small_seconds=1.0)
        if args.quick
        else dict(size_mb=256, layers=4, rounds=4, runs=3, large_blob_mb=1024, chunk_mb=5, head_requests=20000, head_seconds=6.0, small_blobs=3000, small_seconds=6.0)
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.layers < 1 or args.rounds < 1 or args.runs < 1 or args.size_mb <= 0 or args.chunk_mb <= 0 or args.concurrency < 1:
        parser.error("--layers, --rounds, --size-mb, --chunk-mb and --concurrency must be positive")
    return args


def run_once(args: argparse.Namespace, options: Options, profiler: Profiler, log: Callable[[str], None]) -> dict[str, Any] | int:
    """One whole benchmark on fresh storage and fresh servers: its results, or an exit status."""

    async def interruptible() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        return await benchmark(servers, options, profiler, log)

    workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-", dir=args.workdir))
    servers = {
        "dockyard": dockyard_server(workdir, args.dockyard_tree.resolve(), args.dockyard_python, "info" if args.access_log else "error", args.workers),
        "reference": reference_server(workdir, args.reference_binary, args.access_log),
    }
    outcome = "failed"
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready()
            log(f"{server.name} ready on {server.url} (pid {server.pid}, {process_exe(server.pid)})")
        results = asyncio.run(interruptible())
        outcome = "ok"
        return results
    except (KeyboardInterrupt, asyncio.CancelledError):
        outcome = "interrupted"
        log("interrupted; stopping the registries")
        return 130
    except BenchError as error:
        log(f"FAILED: {error}")
        return 1
    finally:
        profiler.stop()
        for server in servers.values():
            server.stop()
        if outcome == "failed":
            for server in servers.values():
                tail = server.log_tail()
                if tail:
                    log(f"{server.name} log tail:\n{tail}")
        if args.keep:
            log(f"storage and logs kept in {workdir}")
        elif outcome == "failed":
            for data in workdir.glob("*-data"):
                shutil.rmtree(data, ignore_errors=True)
            log(f"server logs and config kept in {workdir} (blob storage removed)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        args.size_mb, args.layers, args.rounds, args.chunk_mb, args.concurrency, args.head_requests,
        args.head_seconds, args.small_blobs, args.small_seconds, args.small_concurrency, args.quick, args.push_concurrency,
        small_blob_mb=min(64.0, args.large_blob_mb / 4), large_blob_mb=args.large_blob_mb,
    )
    if not Path(args.reference_binary).exists():
        print(f"bench: the reference registry {args.reference_binary} is missing (apt-get install docker-registry)", file=sys.stderr)
        return 2
    py_spy = None
    if args.py_spy:
        py_spy = shutil.which("py-spy") or str(Path(args.dockyard_python).parent / "py-spy")
        if not Path(py_spy).exists():
            print("bench: --py-spy needs py-spy (.venv/bin/pip install py-spy)", file=sys.stderr)
            return 2

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # Before the event loop runs, SIGTERM unwinds like Ctrl-C; while it runs, both cancel the
    # benchmark task. Either way the finally below stops both servers.
    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)

    started = time.time()
    runs: list[dict[str, Any]] = []
    profiler = Profiler(py_spy, args.output.parent / "profile", args.py_spy_rate)
    for number in range(1, args.runs + 1):
        if args.runs > 1:
            log(f"run {number} of {args.runs}, on fresh storage and fresh servers")
        outcome = run_once(args, options, profiler, log)
        if isinstance(outcome, int):
            return outcome
        runs.append(outcome)
    results = runs[-1]
    machine = results.pop("machine")
    for other in runs[:-1]:
        other.pop("machine")

    rows = median_rows([tabulate(result) for result in [*runs[:-1], results]])
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_seconds": round(time.time() - started, 1),
        "mode": "quick" if args.quick else "full",
        "options": {key: value for key, value in vars(options).items()},
        "dockyard_revision": git_describe(args.dockyard_tree),
        "reference_version": reference_version(args.reference_binary),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "profiled_with_py_spy": bool(py_spy),
        "access_logs": args.access_log,
        "notes": [
            "ratio = dockyard / reference; for 'higher' metrics above 1 means Dockyard is better, for 'lower' metrics below 1",
            "throughput figures are medians over rounds; the load generator and both servers share the machine's CPUs",
            "with --runs above 1 every figure and ratio is the median over the runs, each on fresh servers and storage",
            "server CPU figures come from /proc/<pid>/stat and do not depend on whether the client was the bottleneck",
        ],
    }
    meta["machine_during_last_run"] = machine
    document = {"meta": meta, "metrics": rows, "runs": [tabulate(result) for result in runs], "registries": results}
    if py_spy:
        document["profiles"] = profiler.files
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")

    client_bound = [
        f"{phase} ({name}: client {results[name][phase]['client_cpu_busy']:.0%} busy)"
        for name in REGISTRIES
        for phase in ("manifest_head", "blob_head", "small_push")
        if (results[name][phase]["client_cpu_busy"] or 0) >= 0.9
    ]
    print()
    print(f"Dockyard {meta['dockyard_revision']} vs {meta['reference_version']}, {meta['mode']} mode, "
          f"{meta['cpus']} CPUs ({meta['cpu_model']}), {meta['duration_seconds']} s")
    print()
    print(render_text(rows))
    if machine["other_processes_cpu_share"] > 0.05:
        print()
        others = ", ".join(f"{name} {cpu} s" for name, cpu in machine["busiest_other_processes_cpu_seconds"].items())
        print(f"warning: other processes used {machine['other_processes_cpu_seconds']} CPU-seconds "
              f"({machine['other_processes_cpu_share']:.0%} of the machine) during the run; the figures are noisy")
        print(f"         busiest of those still running: {others or 'none; they have exited'}")
    if client_bound:
        print()
        print("note: the load generator was (nearly) saturated in: " + ", ".join(client_bound)
              + "; that request rate is a floor for the server, compare the server-CPU rows instead")
    if py_spy:
        print()
        print("note: Dockyard ran under py-spy; its figures above are slowed by the profiler")
        for phase, path in profiler.files.items():
            print(f"\nprofile of Dockyard, {phase} ({path}):")
            print("\n".join(summarise_profile(path)))
    print()
    print("Markdown:")
    print()
    print(render_markdown(rows))
    print()
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
