"""Starts the registry from settings: storage, app, listening socket, graceful stop; with
`http.workers` above one, a supervisor and that many worker processes on one socket."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

from aiohttp import web

from .api.app import create_app
from .api.http import IN_FLIGHT
from .config import ConfigError, Settings
from .core.metadata.json_import import UnimportedMetadata
from .logs import configure_logging
from .storage import open_storage
from .workers import CHANNEL_VARIABLE, CLOSED, SETTINGS_VARIABLE, STARTUP_FAILURE, Handover, Worker, fork_worker, supervise

log = logging.getLogger("dockyard.registry")


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; in-flight requests get `http.shutdown_timeout` to finish.
    Returns the exit status."""
    configure_logging(settings.log_level, settings.log_format)
    count = worker_count(settings)
    if count == 1:
        asyncio.run(_serve(settings))
        return 0
    generated_key = settings.auth.enabled and settings.auth.token_key_file is None
    if generated_key:
        from .core.hub.signing import share_generated_key

        share_generated_key()
    listener = bind(settings)
    # The start-up work every worker would otherwise race to do (a schema migration), once, in
    # a child: Alembic never enters the image the workers share.
    status = _in_child(lambda: _prepare(settings))
    if status:
        listener.close()
        return status
    try:
        # Then once more here, the schema now current: what an app initialises on first use
        # (SQLAlchemy's and pydantic's caches, the routers) is then shared by the workers
        # instead of built in each (5 MiB of each worker's own pages).
        _prepare(settings)
    except BaseException:
        listener.close()
        raise
    _wait_for_one_thread()
    # Every object so far (the imported registry) into the permanent generation: the workers'
    # collections then never write to the pages they share (a 32-connection storm un-shared
    # 44 MiB of them across two workers; with this, 4).
    gc.freeze()
    workers: list[Worker] = []
    for _ in range(count):
        workers.append(fork_worker(lambda channel: _worker(settings, channel), [listener, *(worker.channel for worker in workers)]))
    return supervise(Handover(listener, workers, count, _replacement_settings(settings, generated_key), settings.http.listen,
                              settings.log_level, settings.log_format))  # fmt: skip


def worker_count(settings: Settings) -> int:
    return settings.http.workers or os.cpu_count() or 1


def bind(settings: Settings) -> socket.socket:
    host, port = settings.http.host, settings.http.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise ConfigError(f"cannot listen on {settings.http.listen}: {error.strerror}") from None
    listener.listen(1024)
    return listener


def _in_child(work: Callable[[], None]) -> int:
    """Run `work` in a forked child; its exit status (2: a configuration error, said on stderr)."""
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            work()
        except ConfigError as error:
            print(f"dockyard-registry: {error}", file=sys.stderr)
            status = 2
        except BaseException:
            log.exception("start-up failed")
            status = 1
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _wait_for_one_thread(timeout: float = 5.0) -> None:
    """Until the threads the start-up ran (the storage executor, the database's) have ended:
    a fork copies only the thread that calls it, and a lock another thread held would stay
    held in the child for ever."""
    if not os.path.isdir("/proc/self/task"):  # not Linux
        return
    deadline = time.monotonic() + timeout
    while len(os.listdir("/proc/self/task")) > 1:
        if time.monotonic() > deadline:
            log.warning("start-up left %d threads running; forking the workers anyway", len(os.listdir("/proc/self/task")) - 1)
            return
        time.sleep(0.01)


def _worker(settings: Settings, channel: socket.socket) -> int:
    """A worker process's life: serve what the supervisor hands over `channel`; the exit status."""
    try:
        asyncio.run(_serve(settings, channel))
    except ConfigError as error:
        print(f"dockyard-registry worker {os.getpid()}: {error}", file=sys.stderr)
        return STARTUP_FAILURE
    return 0


def _replacement_settings(settings: Settings, generated_key: bool) -> bytes:
    """What a replacement worker needs to serve exactly as the first ones: the settings as
    loaded (file, environment and flags merged) and the token key generated for this run."""
    key = None
    if generated_key:
        from .core.hub.signing import shared_key_pem

        key = shared_key_pem().decode()
    return json.dumps({"settings": settings.model_dump(mode="json"), "token_key": key}).encode()


def serve_replacement() -> NoReturn:
    """Entry point of a worker that replaces a dead one (started by the supervisor, see
    `registry.workers`): its channel and settings come as inherited descriptors."""
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=int(os.environ.pop(CHANNEL_VARIABLE)))
    settings_fd = int(os.environ.pop(SETTINGS_VARIABLE))
    try:  # (pread: the file offset is shared with the supervisor and every other replacement)
        saved = json.loads(os.pread(settings_fd, os.fstat(settings_fd).st_size, 0))
    finally:
        os.close(settings_fd)
    settings = Settings.model_validate(saved["settings"])
    if saved["token_key"]:
        from .core.hub.signing import share_key

        share_key(saved["token_key"].encode())
    configure_logging(settings.log_level, settings.log_format)
    sys.exit(_worker(settings, channel))


def _prepare(settings: Settings) -> None:
    """What an app does when it starts, done once before the workers start theirs."""

    async def start_and_stop() -> None:
        runner = web.AppRunner(create_app(open_storage(settings), settings))
        try:
            await runner.setup()
        except UnimportedMetadata as error:
            raise ConfigError(str(error)) from None
        await runner.cleanup()

    asyncio.run(start_and_stop())


class HandedConnections:
    """A worker's "site": the connections its supervisor accepted and passed over `channel`
    (see `registry.workers`), served by the runner's aiohttp server; one byte goes back for
    each that closes, so the supervisor knows how busy this worker is."""

    def __init__(self, runner: web.AppRunner, channel: socket.socket, supervisor_gone: asyncio.Event) -> None:
        self.runner, self.channel, self.supervisor_gone = runner, channel, supervisor_gone
        self.loop = asyncio.get_running_loop()

    async def start(self) -> None:
        server = self.runner.server
        assert server is not None
        forget = server.connection_lost

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            forget(handler, exc)
            self._tell_closed()

        server.connection_lost = connection_lost  # type: ignore[method-assign]
        self.channel.setblocking(False)
        self.loop.add_reader(self.channel.fileno(), self._receive)

    def _receive(self) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(self.channel, 1024, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            message, fds = b"", []
        if not message and not fds:  # the supervisor closed its end
            self.loop.remove_reader(self.channel.fileno())
            self.supervisor_gone.set()
            return
        server = self.runner.server
        assert server is not None
        for fd in fds:
            connection = socket.socket(fileno=fd)
            adopting = self.loop.create_task(self.loop.connect_accepted_socket(server, connection))
            adopting.add_done_callback(self._adopted)

    def _adopted(self, adopting: asyncio.Task[Any]) -> None:
        if not adopting.cancelled() and adopting.exception() is not None:  # e.g. the client reset it already
            log.debug("a handed-over connection could not be served: %s", adopting.exception())
            self._tell_closed()  # it never reached connection_lost: counted off here

    def _tell_closed(self) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: nobody to tell
            self.channel.send(CLOSED)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.channel.fileno())


async def _serve(settings: Settings, channel: socket.socket | None = None) -> None:
    """Serve `http.listen`, or, in a worker, the connections the supervisor hands over `channel`."""
    # Not web.run_app: it cancels the serving task on a signal, which aborts in-flight
    # requests instead of letting them finish.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Blocking storage calls (mostly fsync) wait on the disk, not the CPU: a pool sized for
    # I/O keeps concurrent uploads from queueing behind asyncio's default of cores + 4.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=settings.http.io_threads, thread_name_prefix="storage"))
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    app = create_app(open_storage(settings), settings)
    runner = web.AppRunner(
        app,
        shutdown_timeout=settings.http.shutdown_timeout,
        access_log=logging.getLogger("dockyard.access"),
        # aiohttp closes a connection whose handler still waits for a complete request when this
        # runs out, counted from the connection's start or the previous response's end: that is
        # the bound on slowloris clients dribbling headers, and on idle keep-alive connections
        keepalive_timeout=settings.http.header_timeout,
    )
    try:
        await runner.setup()
    except UnimportedMetadata as error:
        raise ConfigError(str(error)) from None
    except OSError as error:
        raise ConfigError(f"cannot open the metadata database {settings.metadata.url or '(in the storage root)'}: {error}") from None
    try:
        site: web.BaseSite | HandedConnections
        site = HandedConnections(runner, channel, stop) if channel else web.TCPSite(runner, settings.http.host, settings.http.port)
        try:
            await site.start()
        except OSError as error:
            raise ConfigError(f"cannot listen on {settings.http.listen}: {error.strerror}") from None
        log.info("dockyard registry on %s, storage %s", settings.http.listen, settings.storage.backend)
        await stop.wait()
        log.info("stopping: waiting up to %ss for in-flight requests", settings.http.shutdown_timeout)
        await site.stop()
        if not await app[IN_FLIGHT].drain(settings.http.shutdown_timeout):
            log.warning("%d requests still in flight at shutdown; they are cut", app[IN_FLIGHT].count)
    finally:
        await runner.cleanup()
