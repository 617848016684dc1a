"""A moto S3 server for tests: a subprocess on a free loopback port, stopped by its PID.

`moto_server` (session scope) starts one `python -m moto.server` for the whole test session and
points the standard AWS environment at dummy credentials, so no real account is ever used.
`s3_bucket` gives each test a fresh, empty bucket and resets moto afterwards (freeing memory).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REGION = "us-east-1"

# Dummy credentials and no shared config: moto accepts anything, and nothing real is read.
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class MotoServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    _client: Any = None

    def client(self) -> Any:
        """A synchronous boto3 client for test set-up and inspection, made once (sessions are slow)."""
        if self._client is None:
            import boto3

            self._client = boto3.session.Session().client("s3", region_name=REGION, endpoint_url=self.url)
        return self._client

    def reset(self) -> None:
        """Forget every bucket and object (moto's own reset endpoint)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self, timeout: float = 10.0) -> int:
        """Stop the server by its PID: SIGTERM, then SIGKILL if it does not exit in time."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(server: MotoServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"moto server exited with {server.process.returncode}: {server.log.read_text(errors='replace')[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/moto-api/data.json", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise TimeoutError(f"moto server not serving on {server.url} after {timeout}s")


def start_moto_server(log_dir: Path | None = None, timeout: float = 30.0) -> MotoServer:
    port = _free_port()
    log_path = Path(log_dir or tempfile.gettempdir()) / f"moto-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **AWS_ENVIRONMENT},
        )
    server = MotoServer(f"http://127.0.0.1:{port}", port, process, log_path)
    _wait_until_serving(server, timeout)
    return server


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        server = start_moto_server(tmp_path_factory.mktemp("moto"))
        try:
            yield server
        finally:
            server.stop()


@dataclass
class Bucket:
    name: str
    server: MotoServer


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> Iterator[Bucket]:
    name = f"dockyard-test-{uuid.uuid4().hex[:16]}"
    moto_server.client().create_bucket(Bucket=name)
    try:
        yield Bucket(name, moto_server)
    finally:
        moto_server.reset()
