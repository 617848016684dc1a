"""Starts the registry from settings: storage, app, listening socket, graceful stop; with
`http.workers` above one, a supervisor and that many worker processes on one socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from .api.app import create_app
from .api.http import IN_FLIGHT
from .config import ConfigError, Settings
from .core.metadata.json_import import UnimportedMetadata
from .logs import configure_logging
from .storage import open_storage
from .workers import CLOSED, Supervisor, bind, worker_count

log = logging.getLogger("dockyard.registry")


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; in-flight requests get `http.shutdown_timeout` to finish.
    Returns the exit status."""
    configure_logging(settings.log_level, settings.log_format)
    count = worker_count(settings)
    if count == 1:
        asyncio.run(_serve(settings))
        return 0
    if settings.auth.enabled and settings.auth.token_key_file is None:
        from .core.hub.signing import share_generated_key

        share_generated_key()
    return Supervisor(settings, count, _serve_worker, _prepare).run(bind(settings))


def _serve_worker(settings: Settings, channel: socket.socket) -> None:
    asyncio.run(_serve(settings, channel))


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
