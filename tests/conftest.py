"""Shared fixtures: a registry over real sockets, on a real storage backend.

`client` serves the app in this test's event loop on a loopback TCP port; `registry_process`
runs `dockyard-registry serve` as a separate process (for third-party clients and signals)
and stops it by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from registry.api.app import create_app
from registry.core.metadata import Database
from storage_backends import StorageBackend
from storage_backends.filesystem import FilesystemBackend
from storage_backends.s3 import S3Backend
from tests.pgserver import postgres_server, postgres_url  # noqa: F401  (fixtures)
from tests.s3server import AWS_ENVIRONMENT, REGION, moto_server, s3_bucket  # noqa: F401  (fixtures)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture
def skopeo_installed() -> None:
    """Third-party tools are requirements of the suite (`make test` installs them), never skips."""
    assert shutil.which("skopeo"), "skopeo is required: `make test` installs it with apt-get"


@pytest.fixture
def reference_registry_installed() -> None:
    assert shutil.which("docker-registry"), "the reference registry is required: `make test` installs docker-registry"


@pytest.fixture(params=["filesystem", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StorageBackend]:
    """Every API test runs on local disk with the embedded SQLite metadata database, and on S3
    (a moto server on loopback) with PostgreSQL, as replicas are deployed.

    The S3 case sets `DOCKYARD_METADATA__URL` to a fresh PostgreSQL database, so every app
    the test creates (and every registry process it starts) uses it. S3 here streams blobs
    through the registry (redirect off) so responses can be asserted byte for byte;
    `tests/test_s3_registry.py` covers the presigned-redirect mode.
    """
    if request.param == "filesystem":
        backend: StorageBackend = FilesystemBackend(tmp_path / "store")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        monkeypatch.setenv("DOCKYARD_METADATA__URL", request.getfixturevalue("postgres_url"))
        backend = S3Backend(bucket.name, prefix="registry", region=REGION, endpoint_url=bucket.server.url, redirect=False)
    yield backend
    await backend.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty metadata database of each kind."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = Database(url)
    await opened.migrate()
    yield opened
    await opened.close()


@pytest.fixture
async def client(aiohttp_client, storage: StorageBackend) -> AsyncIterator[TestClient]:
    yield await aiohttp_client(create_app(storage))


@dataclass
class RegistryProcess:
    url: str
    host: str
    port: int
    root: Path
    process: subprocess.Popen[bytes]


def start_registry(root: Path, env: dict[str, str] | None = None, extra_args: list[str] | None = None) -> RegistryProcess:
    port = free_port()
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"registry-{port}.log", "ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "registry", "serve", "--listen", f"127.0.0.1:{port}", "--storage-root", str(root), *(extra_args or [])],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    wait_for_port(port, process)
    return RegistryProcess(f"http://127.0.0.1:{port}", "127.0.0.1", port, root, process)


def s3_settings_env(bucket, *, metadata_url: str, prefix: str = "registry", redirect: bool = True) -> dict[str, str]:
    """`DOCKYARD_*` variables that put a registry process on `bucket` of the test's moto server,
    with its Hub in the PostgreSQL database `metadata_url`."""
    return {
        "DOCKYARD_METADATA__URL": metadata_url,
        **AWS_ENVIRONMENT,
        "DOCKYARD_STORAGE__BACKEND": "s3",
        "DOCKYARD_STORAGE__S3__BUCKET": bucket.name,
        "DOCKYARD_STORAGE__S3__PREFIX": prefix,
        "DOCKYARD_STORAGE__S3__REGION": REGION,
        "DOCKYARD_STORAGE__S3__ENDPOINT_URL": bucket.server.url,
        "DOCKYARD_STORAGE__S3__REDIRECT": "true" if redirect else "false",
    }


@pytest.fixture(params=["filesystem", "s3"])
def registry_process(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryProcess]:
    """A `dockyard-registry serve` process on local disk, or on S3 with blob redirects on."""
    env = None
    if request.param == "s3":
        env = s3_settings_env(request.getfixturevalue("s3_bucket"), metadata_url=request.getfixturevalue("postgres_url"))
    running = start_registry(tmp_path / "registry-data", env=env)
    try:
        yield running
    finally:
        stop_process(running.process)


HUB_ADMIN = ("root-admin", "admin-secret")


def hub_env(admin: tuple[str, str] = HUB_ADMIN) -> dict[str, str]:
    """`DOCKYARD_*` variables of a registry process with accounts and token auth on."""
    return {"DOCKYARD_AUTH__ENABLED": "true", "DOCKYARD_AUTH__ADMIN_USER": admin[0], "DOCKYARD_AUTH__ADMIN_PASSWORD": admin[1]}


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A `dockyard-registry serve` process with auth on and `HUB_ADMIN` as its site admin."""
    running = start_registry(tmp_path / "hub-data", env=hub_env())
    try:
        yield running
    finally:
        stop_process(running.process)
