"""Starts the registry from settings: storage, app, listening socket, graceful stop; with
`http.workers` above one, a supervisor and that many worker processes on one socket."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from .api.app import create_app
from .api.http import IN_FLIGHT
from .config import ConfigError, Settings
from .core.metadata.json_import import UnimportedMetadata
from .logs import configure_logging
from .storage import open_storage
from .workers import Supervisor, bind, worker_count

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
    return Supervisor(settings, count, _serve_worker, _prepare).run(bind(settings, count))


def _serve_worker(settings: Settings, listener: socket.socket) -> None:
    asyncio.run(_serve(settings, listener))


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


async def _serve(settings: Settings, listener: socket.socket | None = None) -> None:
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
        site: web.BaseSite = web.SockSite(runner, listener) if listener else web.TCPSite(runner, settings.http.host, settings.http.port)
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
