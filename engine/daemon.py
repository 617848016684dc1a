"""`dockyardd`: the Dockyard engine daemon, serving the Docker Engine API on a Unix socket.

    dockyardd [--host unix:///PATH] [--data-root DIR] [--config FILE] [--log-level LEVEL]

Start-up: settings (a bad one is one line and exit 2), the data root's lock (a second daemon on
the same data root is refused, naming the holder's PID), the image store, every container's
true state (`Containers.recover`), then the socket (mode 0660). SIGTERM or SIGINT: stop
accepting, finish what is in flight, and by `on_shutdown` either leave running containers
running under their shims (`keep`, the default: the next daemon re-adopts them) or stop them
(`stop`). State is saved before each step is acknowledged, so no signal, not even SIGKILL,
leaves it inconsistent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import grp
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from client.registry_http import ClientSettings
from client.store import ImageStore

from .commit import commit_container
from .config import ConfigError, EngineSettings, load_settings
from .containers import Containers
from .errors import EngineError, InvalidParameter, NotFound
from .images import ImageService
from .networks import Networks
from .runc import Runc

log = logging.getLogger("dockyard.daemon")
PR_SET_CHILD_SUBREAPER = 36


class Engine:
    """Everything the API serves, built once per daemon."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        root = settings.data_root
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self.store = ImageStore(root / "images")
        client_settings = ClientSettings(insecure_registries=frozenset(settings.insecure_registries))
        self.images = ImageService(self.store, client_settings)
        self.runc = Runc(settings.runtime, root / "runc")
        self.networks = Networks(root / "networks", bridge_name=settings.bridge_name, bridge_subnet=str(settings.bridge_subnet),
                                 pool=str(settings.network_pool), ip_masquerade=settings.ip_masquerade)  # fmt: skip
        self.networks.load()
        self.containers = Containers(root, self.images, self.runc, self.networks, stop_timeout=settings.stop_timeout)
        self.daemon_id = _daemon_id(root)
        self.runtime_version = _runtime_version(settings.runtime)

    async def commit(
        self,
        ref: str,
        *,
        repo: str | None,
        tag: str | None,
        author: str,
        comment: str,
        changes: list[str],
        pause: bool,
        run_config: dict[str, Any] | None,
    ) -> str:
        """The container's changes as a new image; a running container is paused meanwhile
        (unless `pause` is false), as Docker does, so the layer is one consistent moment."""
        if not ref:
            raise InvalidParameter("a container is required")
        live = self.containers.get(ref)
        record = live.record
        name = None
        if repo:
            reference = self.images.reference(f"{repo}:{tag}" if tag else repo)
            if reference.digest:
                raise InvalidParameter("refusing to create a tag with a digest reference")
            name = str(reference)
        try:
            parent = await asyncio.to_thread(self.store.resolve, record.manifest_digest)
        except LookupError:
            raise NotFound(f"the image of container {record.short_id} is gone") from None
        paused = False
        if pause and record.State.Running and not record.State.Paused:
            await self.runc.pause(record.Id)
            paused = True
        try:
            image = await asyncio.to_thread(
                commit_container, self.store, record, self.containers.files(record), parent, name,
                author=author, comment=comment, changes=changes, run_config=run_config,
            )  # fmt: skip
        finally:
            if paused:
                with contextlib.suppress(EngineError):
                    await self.runc.resume(record.Id)
        return image.id

    async def shutdown(self) -> None:
        """Before the API stops: stop containers if so configured, and end every pending wait
        (its client sees the connection close, as with dockerd)."""
        if self.settings.on_shutdown == "stop":
            running = [live.record.Id for live in self.containers.live.values() if live.record.State.Running]
            await asyncio.gather(*(self.containers.stop(cid, manual=False) for cid in running), return_exceptions=True)
        for live in self.containers.live.values():
            for waiter in [*live.exit_waiters, *live.removed_waiters]:
                waiter.cancel()
        self.containers.release_idle_bridges()


def _daemon_id(root: Path) -> str:
    path = root / "engine-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        import uuid

        value = str(uuid.uuid4())
        path.write_text(value)
        return value


def _runtime_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = out.splitlines()[0] if out else ""
    return first.rsplit(" ", 1)[-1]


class DataRootLock:
    """An exclusive flock on `<data root>/dockyardd.lock`, held for the daemon's life."""

    def __init__(self, root: Path) -> None:
        self.path = root / "dockyardd.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"another dockyardd (pid {holder}) is using the data root {self.path.parent}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd


def _prepare_socket(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: nobody listens
        else:
            probe.close()
            raise ConfigError(f"{path} is in use by another process")
        finally:
            probe.close()


async def serve(settings: EngineSettings) -> None:
    engine = Engine(settings)
    await engine.containers.recover()
    from .api.app import make_app

    app = make_app(engine)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    path = settings.socket_path
    _prepare_socket(path)
    site = web.UnixSite(runner, str(path))
    await site.start()
    os.chmod(path, 0o660)
    if settings.socket_group:
        with contextlib.suppress(KeyError, PermissionError):
            os.chown(path, -1, grp.getgrnam(settings.socket_group).gr_gid)
    log.info("dockyardd listening on unix://%s (data root %s)", path, settings.data_root)
    print(f"dockyardd: listening on unix://{path}", file=sys.stderr, flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stopping.set)
    await stopping.wait()
    log.info("shutting down (running containers: %s)", settings.on_shutdown)
    await site.stop()
    await engine.shutdown()
    await runner.cleanup()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dockyardd", description="The Dockyard engine: containers from images, on a Unix socket")
    parser.add_argument("-H", "--host", help="unix:///PATH to listen on (default unix:///run/dockyard.sock)")
    parser.add_argument("--data-root", type=Path, help="where images and containers live (default /var/lib/dockyard)")
    parser.add_argument("--config", type=Path, default=os.environ.get("DOCKYARD_DAEMON_CONFIG"), help="YAML settings file")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.data_root:
        overrides["data_root"] = str(args.data_root)
    if args.log_level:
        overrides["log_level"] = args.log_level
    try:
        settings = load_settings(args.config, overrides)
        if shutil.which(settings.runtime) is None:
            raise ConfigError(f"the OCI runtime {settings.runtime!r} is not installed (apt-get install runc)")
        if os.geteuid() != 0:
            raise ConfigError("dockyardd must run as root (it mounts overlay filesystems and runs runc)")
        settings.data_root.mkdir(parents=True, exist_ok=True)
        lock = DataRootLock(settings.data_root)
        lock.acquire()
    except ConfigError as error:
        print(f"dockyardd: {error}", file=sys.stderr)
        return 2 if "another dockyardd" not in str(error) else 1
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        asyncio.run(serve(settings))
    except ConfigError as error:
        print(f"dockyardd: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
