"""A PostgreSQL server for tests, from Debian's package: initdb into a temporary directory,
`postgres` on a free loopback port (as the `postgres` user when the suite runs as root),
stopped by its PID at the end of the session.

`postgres_server` (session scope) starts it once; `postgres_url` gives each test a fresh,
empty database and drops it afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BINARIES = Path("/usr/lib/postgresql/15/bin")


@dataclass
class PostgresServer:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> str:
        """Run one statement as the superuser with psql, outside any transaction (CREATE/DROP
        DATABASE); usable from sync fixtures of async tests, where no event loop may be started."""
        done = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", "postgres", "-d", "postgres", "-c", sql], capture_output=True, text=True, timeout=60)  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"psql {sql!r}: {done.stderr.strip()}")
        return done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres() -> dict[str, Any]:
    """Subprocess options that drop root to the `postgres` user (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam("postgres")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def start_postgres(directory: Path) -> PostgresServer:
    assert (BINARIES / "postgres").exists(), "PostgreSQL 15 is required: `make test` installs it with apt-get"
    data, sockets, log = directory / "data", directory / "sockets", directory / "postgres.log"
    sockets.mkdir(parents=True)
    options = _as_postgres()
    if options:
        shutil.chown(directory, options["user"], options["group"])
        shutil.chown(sockets, options["user"], options["group"])
    subprocess.run([BINARIES / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
                   check=True, capture_output=True, cwd=directory, **options)  # fmt: skip
    port = _free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [BINARIES / "postgres", "-D", data, "-p", str(port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={sockets}", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=300"],
            stdout=output, stderr=subprocess.STDOUT, cwd=directory, **options,
        )  # fmt: skip
    server = PostgresServer(port, process, log)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            server.admin("SELECT 1")
            return server
        except RuntimeError:
            if time.monotonic() > deadline:
                stop_postgres(server)
                raise TimeoutError(f"postgres did not accept connections: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def stop_postgres(server: PostgresServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, stop cleanly
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    directory = Path(tempfile.mkdtemp(prefix="dockyard-postgres-"))
    try:
        server = start_postgres(directory)
        try:
            yield server
        finally:
            stop_postgres(server)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


_undropped: list[str] = []


def _drop_finished(server: PostgresServer) -> None:
    """Drop the databases of earlier tests whose apps have closed their connections by now."""
    if not _undropped:
        return
    listed = ",".join(f"'{name}'" for name in _undropped)
    busy = set(server.admin(f"SELECT DISTINCT datname FROM pg_stat_activity WHERE datname IN ({listed})").split())
    for name in [name for name in _undropped if name not in busy]:  # (DROP would wait 5 s for a busy one)
        try:
            server.admin(f'DROP DATABASE IF EXISTS "{name}"')
            _undropped.remove(name)
        except RuntimeError:
            pass  # connected to meanwhile: next time


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server. It is dropped once nothing uses it
    any more: apps a test started may still be shutting down (and writing) after this
    fixture's own teardown, so a busy database is dropped at a later test's start instead."""
    _drop_finished(postgres_server)
    name = f"test_{uuid.uuid4().hex[:12]}"
    postgres_server.admin(f'CREATE DATABASE "{name}"')
    yield postgres_server.url(name)
    _undropped.append(name)
    _drop_finished(postgres_server)
